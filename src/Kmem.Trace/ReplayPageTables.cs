// Page tables of the tasks the replay makes of user pages (TraceReplayer.Pressure.cs). The
// traced kernel's own page-table allocations (GFP_PGTABLE_USER: order 0, GFP_KERNEL_ACCOUNT |
// __GFP_ZERO) come just before the fork or fault that needs them (a forked child's in its
// parent's context), and the page path replays each as a page of its own; Kmem's fault (and a
// new task's PGD) then takes the newest such frame not yet taken and not freed as its table
// (UserMemory.TablePageSource) instead of allocating a second one on top, so the page
// allocator sees the kernel's allocations once and Kmem's decisions for the user page are the
// user page's alone. Under CONFIG_HIGHPTE (x86-32) the kernel's PTE tables are allocated with
// __GFP_HIGHMEM as well: those frames wait in a queue of their own and are taken only for
// Kmem's PTE tables, the others for the levels above (and for PTE tables without HIGHPTE).
// When the kernel frees a frame Kmem took, Kmem frees it at the same event:
// its table goes when it maps nothing in Kmem's task (free_pgtables), else its entries move to
// the next waiting frame, or to a frame of Kmem's own: a spare one an earlier table of Kmem's own
// gave back (UserMemory.TablePageReturn), else one taken off the buddy lists before the free is
// aligned, never through a per-CPU list (the kernel has no such frame). A fault the trace gave
// no frame before takes one of its own the same way. When the trace task's address space goes
// (exit_mmap), Kmem's task gives up its address space and tables below the PGD
// (PressureReplay.MmGone); a frame of the kernel's it had taken there is then no longer Kmem's
// table, but the kernel frees it later (tlb_finish_mmu's batch may come after), so Kmem holds it
// until that free, which frees it (UserMemory.TablePageReturn; likewise for a table Kmem's task
// gave up while it lived), and the per-CPU lists gain it when the kernel's do. The kernel's free
// of the last of the frames a task took at its faults ends its address space too (TablesGone:
// 6.1 frees them all only when the address space goes), for builds whose exit_mmap frees look
// like munmap's. The kernel's free of the task's PGD frame (mmdrop) ends the task
// (ExitedTasks.FinishAtMmdrop), which frees the PGD there. Used by TraceReplayer, on the
// replaying thread only.
namespace Kmem;

/// <summary>The kernel's page-table frames waiting to be taken, and those Kmem's tasks took.</summary>
/// <param name="m">The replay's machine.</param>
/// <param name="takeFrame">Takes the page the replay holds for a trace frame out of the page path (Page.Null if none).</param>
/// <param name="holds">Whether the page path holds a page for a trace frame.</param>
internal sealed class ReplayPageTables(Machine m, Func<ulong, Page> takeFrame, Func<ulong, bool> holds)
{
    // Bound on the frames waiting to be taken (most never are: Kmem's tasks map less than the kernel's).
    private const int MaxQueued = 512;

    // The frames waiting, newest last: GFP_PGTABLE_USER ones, and HIGHPTE ones (with __GFP_HIGHMEM).
    private readonly FrameQueue _plain = new(), _highPte = new();
    private readonly Dictionary<ulong, (TaskStruct? Task, uint Pfn, bool HighPte)> _lent = [];
    // The trace frame of each of Kmem's frames in _lent; and those of them whose table Kmem gave up before the kernel
    // freed the frame (its task exited at its exit_mmap, or the table emptied), held until the kernel's free.
    private readonly Dictionary<uint, ulong> _lentByKmem = [];
    private readonly HashSet<uint> _held = [];
    // Per live task, the frames it took at its faults (below its PGD: a new task's PGD is taken with no task yet).
    private readonly Dictionary<TaskStruct, int> _lentCount = [];
    // A frame of Kmem's own for the table whose frame the free being replayed gives back (Prepare), or Page.Null.
    private Page _own;
    // Live tasks by their PGD frame (a PGD is one task's while it lives): the task list is read again only when a
    // task may have been made since (a PGD was taken for a task not yet made), and a PGD moved by Free is entered
    // there, so every live task is entered under its PGD. An entry whose task exited or moved its PGD away no
    // longer matches and is ignored.
    private readonly Dictionary<uint, TaskStruct> _byPgd = [];
    private bool _byPgdStale = true;
    // Frames of Kmem's own for its tables, kept when their table goes (TablePageReturn) and lent again, by kind (a
    // PTE table's may lie in HighMem, the levels above may not). The kernel has no such frames: a table moves because
    // the replay frees the kernel's frame while Kmem's task still maps pages the kernel had unmapped (tlb_finish_mmu
    // frees the tables ahead of the pages gathered), and allocating and freeing a frame for each move would put
    // pages on the per-CPU lists and take them off where the kernel's stay still. A few spares cover most of the moves
    // in flight at once; more go back where they came from.
    private const int MaxSpare = 16;
    private readonly Stack<Page> _spareLow = new(), _spareHigh = new();
    // Kmem's own frames: whether each is for a HIGHPTE table, and whether it came off the buddy lists (TakeStandIn).
    private readonly Dictionary<uint, (bool HighPte, bool Buddy)> _ownFrames = [];

    /// <summary>Frames taken over, and tables Kmem's tasks allocated themselves.</summary>
    public long TakenOver { get; private set; }

    /// <summary>Tables Kmem's tasks allocated themselves (at a fault no frame waited for, or to move a table to).</summary>
    public long Own { get; private set; }

    /// <summary>Of <see cref="Own"/>, HIGHPTE PTE tables.</summary>
    public long OwnHighPte { get; private set; }

    /// <summary>Of <see cref="Own"/>, frames a table moved to when the kernel freed the frame it had taken.</summary>
    public long OwnMoved { get; private set; }

    /// <summary>Frames taken for <see cref="Own"/>, off the buddy lists (the page allocator's when no zone had a free
    /// page); the rest were spares.</summary>
    public long OwnFramesAllocated { get; private set; }

    /// <summary>The kernel freed the last of the table frames a live task took at its faults: its address space is
    /// gone (PressureReplay.TablesGone).</summary>
    public Action<TaskStruct>? TablesGone { get; set; }

    /// <summary>The kernel's free of a task's PGD frame (mmdrop): true when the task's exit finished there and freed it.</summary>
    public Func<TaskStruct, bool>? FinishAtMmdrop { get; set; }

    /// <summary>Whether <paramref name="task"/>'s PGD is a kernel frame it took, which the kernel's mmdrop will free.</summary>
    public bool PgdIsLent(TaskStruct task)
    {
        uint pgd = task.PgdPfn;
        foreach (var lent in _lent.Values)
        {
            if (lent.Pfn == pgd)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Whether an allocation of the trace is a user page table (GFP_PGTABLE_USER, order 0; with
    /// __GFP_HIGHMEM, a HIGHPTE PTE table).</summary>
    public static bool IsTableAlloc(Gfp gfp, int order) => order == 0 && (gfp == Gfp.PgtableUser || IsHighPteAlloc(gfp));

    /// <summary>Whether a table allocation is a HIGHPTE PTE table's (__userpte_alloc_gfp under CONFIG_HIGHPTE).</summary>
    public static bool IsHighPteAlloc(Gfp gfp) => gfp == (Gfp.PgtableUser | Gfp.HighMem);

    /// <summary>A table frame the kernel allocated (in a task's context) with <paramref name="gfp"/> waits to be taken.</summary>
    public void Note(ulong pfn, Gfp gfp) => (IsHighPteAlloc(gfp) ? _highPte : _plain).Add(pfn);

    /// <summary>Frames waiting to be taken, newest last, bounded: the oldest half goes when it is full.</summary>
    private sealed class FrameQueue
    {
        public readonly List<ulong> Frames = [];
        public readonly HashSet<ulong> Queued = [];

        public void Add(ulong pfn)
        {
            if (Frames.Count == MaxQueued)
            {
                foreach (ulong old in Frames[..(MaxQueued / 2)])
                {
                    Queued.Remove(old);
                }
                Frames.RemoveRange(0, MaxQueued / 2);
            }
            Frames.Add(pfn);
            Queued.Add(pfn);
        }
    }

    /// <summary>UserMemory.TablePageSource: the newest waiting frame of the kind asked for (a HIGHPTE PTE table's, or
    /// a GFP_PGTABLE_USER one), or Page.Null (Kmem allocates its own).</summary>
    public Page Take(TaskStruct? task, bool highPte)
    {
        _byPgdStale |= task is null; // a new task's PGD
        var page = TakeQueued(task, highPte);
        LastTakeAllocated = false;
        if (page.IsNull)
        {
            page = OwnFrame(highPte);
            Own++;
            OwnHighPte += highPte ? 1 : 0;
        }
        return page;
    }

    /// <summary>Whether the last <see cref="Take"/> allocated a frame from the page allocator.</summary>
    public bool LastTakeAllocated { get; private set; }

    // A frame for a table of Kmem's own: a spare one, else a new one of the table's kind (a PTE table's may lie in
    // HighMem, the levels above may not), taken straight off the buddy lists of the zones its gfp allows
    // (PageAlloc.StandIns.Take): the kernel has no such frame, so none of Kmem's per-CPU lists gives or refills one.
    // Only when no zone has a free page does the page allocator give one.
    private Page OwnFrame(bool highPte)
    {
        var spare = highPte ? _spareHigh : _spareLow;
        if (spare.TryPop(out var p))
        {
            return p;
        }
        var gfp = Gfp.PgtableUser | Gfp.NoWarn | (highPte ? Gfp.HighMem : 0);
        uint pfn = Kmem.PageAlloc.StandIns.Take(m.PageAllocator, gfp);
        if (pfn != Kmem.Physical.PhysMem.NoPfn)
        {
            _ownFrames[pfn] = (highPte, true);
            OwnFramesAllocated++;
            return m.PfnToPage(pfn);
        }
        p = m.AllocPages(gfp, 0);
        if (!p.IsNull)
        {
            _ownFrames[p.RawPfn] = (highPte, false);
            OwnFramesAllocated++;
            LastTakeAllocated = true;
        }
        return p;
    }

    /// <summary>UserMemory.TablePageReturn: true when the replay takes the frame back: a kernel frame a task took (held
    /// until the kernel's free of it), or a frame of Kmem's own (kept as a spare, or given back to the buddy lists it
    /// came from); false when the caller frees it.</summary>
    public bool ReturnFrame(uint pfn)
    {
        if (_lentByKmem.ContainsKey(pfn))
        {
            _held.Add(pfn); // the kernel's table frame: freed at the kernel's free of it
            return true;
        }
        if (!_ownFrames.TryGetValue(pfn, out var own))
        {
            return false;
        }
        var spare = own.HighPte ? _spareHigh : _spareLow;
        if (spare.Count < MaxSpare)
        {
            spare.Push(m.PfnToPage(pfn));
            return true;
        }
        _ownFrames.Remove(pfn);
        if (!own.Buddy)
        {
            return false;
        }
        m.PageAllocator.ZoneOf(pfn).ReturnStandIn(pfn); // back where it came from, past the per-CPU lists
        return true;
    }

    /// <summary>The spare frames go back to the page allocator (the replay's end).</summary>
    public void FreeSpares()
    {
        foreach (var p in _spareLow.Concat(_spareHigh))
        {
            _ownFrames.Remove(p.RawPfn);
            m.FreePages(p, 0);
        }
        _spareLow.Clear();
        _spareHigh.Clear();
    }

    private Page TakeQueued(TaskStruct? task, bool highPte)
    {
        var queue = highPte ? _highPte : _plain;
        while (queue.Frames.Count > 0)
        {
            ulong pfn = queue.Frames[^1];
            queue.Frames.RemoveAt(queue.Frames.Count - 1);
            if (!queue.Queued.Remove(pfn))
            {
                continue; // freed since, or queued twice
            }
            var page = takeFrame(pfn);
            if (!page.IsNull)
            {
                _lent[pfn] = (task, page.RawPfn, highPte);
                _lentByKmem[page.RawPfn] = pfn;
                if (task is not null)
                {
                    _lentCount[task] = _lentCount.GetValueOrDefault(task) + 1;
                }
                TakenOver++;
                return page;
            }
        }
        return Page.Null;
    }

    /// <summary>Kmem's frame for a trace frame taken as a table, which the kernel's free of it frees: the table of a task
    /// still live, or the frame held since Kmem gave up the table; Page.Null for any other.</summary>
    public Page Lent(ulong pfn) =>
        _lent.TryGetValue(pfn, out var lent) && (_held.Contains(lent.Pfn) || (lent.Task ?? TaskOfPgd(lent.Pfn)) is { HasExited: false })
            ? m.PfnToPage(lent.Pfn) : Page.Null;

    /// <summary>Before a page free of <paramref name="pfn"/> is aligned and replayed: when it frees a frame taken as a
    /// table and no frame waits to take the table's entries, Kmem allocates one now.</summary>
    public void Prepare(ulong pfn)
    {
        if (!_lent.TryGetValue(pfn, out var lent) || _held.Contains(lent.Pfn))
        {
            return;
        }
        var queue = lent.HighPte ? _highPte : _plain;
        while (queue.Frames.Count > 0 && !(queue.Queued.Contains(queue.Frames[^1]) && holds(queue.Frames[^1])))
        {
            queue.Queued.Remove(queue.Frames[^1]);
            queue.Frames.RemoveAt(queue.Frames.Count - 1);
        }
        if (queue.Frames.Count == 0)
        {
            _own = OwnFrame(lent.HighPte);
        }
    }

    /// <summary>A trace free of <paramref name="pfn"/>: true when it was a frame taken as a table, with
    /// <paramref name="freed"/> whether Kmem freed a page for it (kept only when its task has exited).</summary>
    public bool Free(ulong pfn, out bool freed)
    {
        _plain.Queued.Remove(pfn);
        _highPte.Queued.Remove(pfn);
        freed = false;
        var own = _own;
        _own = Page.Null;
        if (!_lent.Remove(pfn, out var lent))
        {
            return false;
        }
        _lentByKmem.Remove(lent.Pfn);
        bool lastTable = false;
        if (lent.Task is { } counted && _lentCount.TryGetValue(counted, out int left))
        {
            if (left <= 1)
            {
                _lentCount.Remove(counted);
                lastTable = !counted.HasExited;
            }
            else
            {
                _lentCount[counted] = left - 1;
            }
        }
        // A PGD was taken before its task existed: the task whose PGD it is now.
        bool held = _held.Remove(lent.Pfn);
        var owner = held ? null : lent.Task ?? TaskOfPgd(lent.Pfn);
        if (held)
        {
            m.FreePages(m.PfnToPage(lent.Pfn), 0); // Kmem gave up its table before: the frame goes now, as the kernel's
            freed = true;
        }
        else if (owner is { HasExited: false } && owner.PgdPfn == lent.Pfn && FinishAtMmdrop?.Invoke(owner) == true)
        {
            freed = true; // mmdrop of a task unmapped at its exit_mmap: its exit freed the PGD
        }
        else if (owner is { } task)
        {
            uint pgd = task.PgdPfn;
            freed = m.Mm.ReleaseTable(task, lent.Pfn, () =>
            {
                var p = TakeQueued(task, lent.HighPte);
                if (p.IsNull && !own.IsNull)
                {
                    (p, own) = (own, Page.Null);
                    Own++;
                    OwnMoved++;
                    OwnHighPte += lent.HighPte ? 1 : 0;
                }
                return p;
            });
            if (task.PgdPfn != pgd)
            {
                _byPgd[task.PgdPfn] = task;
            }
        }
        if (!own.IsNull && !ReturnFrame(own.RawPfn))
        {
            m.FreePages(own, 0); // the table mapped nothing any more
        }
        if (lastTable && lent.Task is { HasExited: false } gone)
        {
            TablesGone?.Invoke(gone);
        }
        return true;
    }

    // The live task whose PGD is the frame, or null: the first such in the task list (there is at most one).
    private TaskStruct? TaskOfPgd(uint pfn)
    {
        if (_byPgd.TryGetValue(pfn, out var t) && t.PgdPfn == pfn && !t.HasExited)
        {
            return t;
        }
        if (!_byPgdStale)
        {
            return null;
        }
        _byPgdStale = false;
        // Tasks are listed oldest first and every task entered before is still entered under its PGD, so only the
        // tasks after the newest one entered are new.
        var tasks = m.Mm.TasksSnapshot();
        for (int i = tasks.Length - 1; i >= 0; i--)
        {
            var task = tasks[i];
            if (_byPgd.TryGetValue(task.PgdPfn, out var known) && known == task)
            {
                break;
            }
            _byPgd[task.PgdPfn] = task;
        }
        return _byPgd.TryGetValue(pfn, out t) && t.PgdPfn == pfn && !t.HasExited ? t : null;
    }
}
