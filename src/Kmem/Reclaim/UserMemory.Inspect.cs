// What the checker and the tests read of the tasks' tables (part of UserMemory): every task's
// counters against what its tables hold (Validate), and the frames of a task's tables with their
// levels. Locking: both take Lock, as every table walk does.
using Kmem.Physical;

namespace Kmem.Reclaim;

internal sealed unsafe partial class UserMemory
{
    /// <summary>Counts the task's present pages, swap entries and tables, and compares them with its counters.</summary>
    private void ValidateTask(TaskStruct t)
    {
        long rss = 0, swap = 0, tables = 0;
        void WalkTable(uint table, int level, ulong baseVa)
        {
            for (int i = 0; i < 512; i++)
            {
                ulong e = *TableEntry(table, i);
                if (e == 0)
                {
                    continue;
                }
                ulong va = baseVa | ((ulong)i << (PhysMem.PageShift + 9 * level));
                if (level > 0)
                {
                    tables++;
                    WalkTable(PtePfn(e), level - 1, va);
                }
                else if ((e & PtePresent) != 0)
                {
                    rss++;
                    uint pfn = PtePfn(e);
                    if (_lru.OwnerOf(pfn) != t || _lru.IndexOf(pfn) != va || (_mem.Frame(pfn).Flags & PageFlags.Lru) == 0)
                    {
                        throw new InvalidOperationException($"task {t.Pid}: pte at 0x{va:x} maps pfn 0x{pfn:x} whose rmap or LRU state is wrong");
                    }
                }
                else
                {
                    swap++;
                }
            }
        }
        WalkTable(t.PgdPfn, 3, 0);
        if (rss != t.Rss || swap != t.SwapEnts || tables != t.PgtablePages)
        {
            throw new InvalidOperationException($"task {t.Pid}: counters rss {t.Rss} swapents {t.SwapEnts} tables {t.PgtablePages}, tables hold {rss}/{swap}/{tables}");
        }
    }

    /// <summary>The frames of the task's tables below its PGD with their levels (3 a PUD table … 1 a PTE table).</summary>
    public List<(uint Pfn, int Level)> PageTables(TaskStruct t)
    {
        var tables = new List<(uint, int)>();
        void Below(uint table, int level)
        {
            for (int i = 0; i < 512; i++)
            {
                ulong e = *TableEntry(table, i);
                if ((e & PtePresent) != 0)
                {
                    tables.Add((PtePfn(e), level));
                    if (level > 1)
                    {
                        Below(PtePfn(e), level - 1);
                    }
                }
            }
        }
        lock (Lock)
        {
            if (!t.HasExited)
            {
                Below(t.PgdPfn, 3);
            }
        }
        return tables;
    }

    /// <summary>Checks every task's counters against its tables.</summary>
    public void Validate()
    {
        lock (Lock)
        {
            foreach (var t in _tasks)
            {
                ValidateTask(t);
            }
        }
    }
}
