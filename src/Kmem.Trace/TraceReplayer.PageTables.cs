// Page tables of the tasks the replay makes of user pages (TraceReplayer.Pressure.cs). The
// traced kernel's own page-table allocations (GFP_PGTABLE_USER: order 0, GFP_KERNEL_ACCOUNT |
// __GFP_ZERO, in the task's context) come just before the fault that needs them, and the page
// path replays each as a page of its own; Kmem's fault then takes that page as its table
// (UserMemory.TablePageSource) instead of allocating a second one on top, so the page
// allocator sees the kernel's allocations once and Kmem's decisions for the user page are the
// user page's alone. When the kernel frees a frame it handed over, Kmem frees its table at the
// same event if it maps nothing in Kmem's task (free_pgtables), else keeps it (counted). A
// fault the trace gave no table frame before (the kernel's task already had the table, or it
// was highmem) allocates its own, as do tasks Kmem creates (their PGD) when none is queued.
// Part of TraceReplayer.
namespace Kmem;

public sealed partial class TraceReplayer
{
    // Bound on the table frames waiting to be taken (most are never needed: Kmem's tasks map less than the kernel's).
    private const int MaxQueuedTables = 512;

    private readonly List<ulong> _tableFrames = [];
    private readonly HashSet<ulong> _queuedTables = [];
    private readonly Dictionary<ulong, (TaskStruct? Task, uint Pfn)> _lentTables = [];
    private long _tablesHandedOver, _tablesOwn;

    private static bool IsPageTableAlloc(Gfp gfp, int order) => order == 0 && gfp == (Gfp.KernelAccount | Gfp.Zero);

    // Before a page allocation is replayed: a page-table frame is queued; before a user page, the table frames
    // still held back on this CPU are replayed (they come before it in the trace), so its fault finds them.
    private void NotePageTables(ref TraceEvent e, int cpu)
    {
        if (IsPageTableAlloc(e.Gfp, e.Order) && e.Pid > 0)
        {
            if (_tableFrames.Count == MaxQueuedTables)
            {
                foreach (ulong old in _tableFrames[..(MaxQueuedTables / 2)])
                {
                    _queuedTables.Remove(old);
                }
                _tableFrames.RemoveRange(0, MaxQueuedTables / 2);
            }
            _tableFrames.Add(e.Pfn);
            _queuedTables.Add(e.Pfn);
            return;
        }
        if (!PressureReplay.IsUserPage(in e))
        {
            return;
        }
        var list = _pending[cpu];
        for (int i = 0; i < _pendingCount[cpu];)
        {
            if (IsPageTableAlloc(list[i].Gfp, list[i].Order) && _queuedTables.Contains(list[i].Pfn))
            {
                var p = list[i];
                RemovePending(cpu, i);
                ReplayPageAlloc(p);
            }
            else
            {
                i++;
            }
        }
    }

    // UserMemory.TablePageSource: the newest table frame the kernel allocated and has not freed, taken out of the
    // page path's frames (the kernel's table allocations come just before the fork or fault that needs them, and a
    // forked child's tables are allocated in its parent's context); Page.Null (Kmem allocates its own) when none.
    private Page TakeTablePage(TaskStruct? task)
    {
        var page = TakeQueuedTable(task);
        if (page.IsNull)
        {
            _tablesOwn++;
        }
        return page;
    }

    private Page TakeQueuedTable(TaskStruct? task)
    {
        while (_tableFrames.Count > 0)
        {
            ulong pfn = _tableFrames[^1];
            _tableFrames.RemoveAt(_tableFrames.Count - 1);
            if (!_queuedTables.Remove(pfn))
            {
                continue; // freed since, or queued twice
            }
            if (_pages.Remove(pfn, out var block))
            {
                _lentTables[pfn] = (task, block.Page.RawPfn);
                _tablesHandedOver++;
                return block.Page;
            }
        }
        return Page.Null;
    }

    // A frame of Kmem's own for the table whose frame the free being replayed gives back, taken before the free is
    // aligned (PrepareLentTable), or Page.Null.
    private Page _ownTable;

    // Before a page free is aligned and replayed: when it frees a frame handed over as a table and no table frame of
    // the kernel's is queued to move it to, Kmem allocates one now, so that the aligned per-CPU count is the kernel's
    // at the free itself (the allocation and the free are on the same CPU).
    private void PrepareLentTable(ulong pfn)
    {
        if (!_lentTables.ContainsKey(pfn))
        {
            return;
        }
        while (_tableFrames.Count > 0 && !(_queuedTables.Contains(_tableFrames[^1]) && _pages.ContainsKey(_tableFrames[^1])))
        {
            _queuedTables.Remove(_tableFrames[^1]);
            _tableFrames.RemoveAt(_tableFrames.Count - 1);
        }
        if (_tableFrames.Count == 0)
        {
            _ownTable = _m.AllocPages(Gfp.KernelAccount | Gfp.Zero | Gfp.NoWarn, 0);
        }
    }

    // A trace free of a frame handed over as a table (true): Kmem frees the frame at the same event
    // (<paramref name="freed"/>), its table gone when it maps nothing, else moved to the newest queued table frame
    // or to the frame PrepareLentTable took. Kept only when its task has exited (or no frame could be had).
    private bool FreeLentTable(ulong pfn, out bool freed)
    {
        _queuedTables.Remove(pfn);
        freed = false;
        var own = _ownTable;
        _ownTable = Page.Null;
        if (!_lentTables.Remove(pfn, out var lent))
        {
            return false;
        }
        // A PGD was taken before its task existed: the task whose PGD it is now.
        if ((lent.Task ?? Array.Find(_m.Mm.TasksSnapshot(), t => t.PgdPfn == lent.Pfn)) is { } task)
        {
            freed = _m.Mm.ReleaseTable(task, lent.Pfn, () =>
            {
                var p = TakeQueuedTable(task);
                if (p.IsNull && !own.IsNull)
                {
                    (p, own) = (own, Page.Null);
                    _tablesOwn++;
                }
                return p;
            });
        }
        if (!own.IsNull)
        {
            _m.FreePages(own, 0); // the table mapped nothing any more
        }
        return true;
    }
}
