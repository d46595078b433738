// Page tables of the tasks the replay makes of user pages (TraceReplayer.Pressure.cs). The
// traced kernel's own page-table allocations (GFP_PGTABLE_USER: order 0, GFP_KERNEL_ACCOUNT |
// __GFP_ZERO) come just before the fork or fault that needs them (a forked child's in its
// parent's context), and the page path replays each as a page of its own; Kmem's fault (and a
// new task's PGD) then takes the newest such frame not yet taken and not freed as its table
// (UserMemory.TablePageSource) instead of allocating a second one on top, so the page
// allocator sees the kernel's allocations once and Kmem's decisions for the user page are the
// user page's alone. When the kernel frees a frame Kmem took, Kmem frees it at the same event:
// its table goes when it maps nothing in Kmem's task (free_pgtables), else its entries move to
// the next waiting frame, or to a frame of Kmem's own allocated before the free is aligned (so
// the aligned per-CPU count is the kernel's at the free). A fault the trace gave no frame
// before allocates its own. When the trace task's address space goes (exit_mmap), Kmem's task
// gives up its address space and tables below the PGD (PressureReplay.MmGone); a frame it had
// taken below the PGD is then no longer Kmem's table, and its later free by the kernel frees
// nothing in Kmem. The kernel's free of the task's PGD frame (mmdrop) ends the task
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

    private readonly List<ulong> _frames = [];
    private readonly HashSet<ulong> _queued = [];
    private readonly Dictionary<ulong, (TaskStruct? Task, uint Pfn)> _lent = [];
    // A frame of Kmem's own for the table whose frame the free being replayed gives back (Prepare), or Page.Null.
    private Page _own;
    // Live tasks by their PGD frame (a PGD is one task's while it lives): the task list is read again only when a
    // task may have been made since (a PGD was taken for a task not yet made), and a PGD moved by Free is entered
    // there, so every live task is entered under its PGD. An entry whose task exited or moved its PGD away no
    // longer matches and is ignored.
    private readonly Dictionary<uint, TaskStruct> _byPgd = [];
    private bool _byPgdStale = true;

    /// <summary>Frames taken over, and tables Kmem's tasks allocated themselves.</summary>
    public long TakenOver { get; private set; }

    public long Own { get; private set; }

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

    /// <summary>Whether an allocation of the trace is a user page table (GFP_PGTABLE_USER, order 0).</summary>
    public static bool IsTableAlloc(Gfp gfp, int order) => order == 0 && gfp == Gfp.PgtableUser;

    /// <summary>A table frame the kernel allocated (in a task's context) waits to be taken.</summary>
    public void Note(ulong pfn)
    {
        if (_frames.Count == MaxQueued)
        {
            foreach (ulong old in _frames[..(MaxQueued / 2)])
            {
                _queued.Remove(old);
            }
            _frames.RemoveRange(0, MaxQueued / 2);
        }
        _frames.Add(pfn);
        _queued.Add(pfn);
    }

    /// <summary>UserMemory.TablePageSource: the newest waiting frame, or Page.Null (Kmem allocates its own).</summary>
    public Page Take(TaskStruct? task)
    {
        _byPgdStale |= task is null; // a new task's PGD
        var page = TakeQueued(task);
        if (page.IsNull)
        {
            Own++;
        }
        return page;
    }

    private Page TakeQueued(TaskStruct? task)
    {
        while (_frames.Count > 0)
        {
            ulong pfn = _frames[^1];
            _frames.RemoveAt(_frames.Count - 1);
            if (!_queued.Remove(pfn))
            {
                continue; // freed since, or queued twice
            }
            var page = takeFrame(pfn);
            if (!page.IsNull)
            {
                _lent[pfn] = (task, page.RawPfn);
                TakenOver++;
                return page;
            }
        }
        return Page.Null;
    }

    /// <summary>Kmem's frame for a trace frame taken as a table by a task still live, or Page.Null (its task exited: Kmem freed the table then).</summary>
    public Page Lent(ulong pfn) =>
        _lent.TryGetValue(pfn, out var lent) && (lent.Task ?? TaskOfPgd(lent.Pfn)) is { HasExited: false } ? m.PfnToPage(lent.Pfn) : Page.Null;

    /// <summary>Before a page free of <paramref name="pfn"/> is aligned and replayed: when it frees a frame taken as a
    /// table and no frame waits to take the table's entries, Kmem allocates one now.</summary>
    public void Prepare(ulong pfn)
    {
        if (!_lent.ContainsKey(pfn))
        {
            return;
        }
        while (_frames.Count > 0 && !(_queued.Contains(_frames[^1]) && holds(_frames[^1])))
        {
            _queued.Remove(_frames[^1]);
            _frames.RemoveAt(_frames.Count - 1);
        }
        if (_frames.Count == 0)
        {
            _own = m.AllocPages(Gfp.PgtableUser | Gfp.NoWarn, 0);
        }
    }

    /// <summary>A trace free of <paramref name="pfn"/>: true when it was a frame taken as a table, with
    /// <paramref name="freed"/> whether Kmem freed a page for it (kept only when its task has exited).</summary>
    public bool Free(ulong pfn, out bool freed)
    {
        _queued.Remove(pfn);
        freed = false;
        var own = _own;
        _own = Page.Null;
        if (!_lent.Remove(pfn, out var lent))
        {
            return false;
        }
        // A PGD was taken before its task existed: the task whose PGD it is now.
        var owner = lent.Task ?? TaskOfPgd(lent.Pfn);
        if (owner is { HasExited: false } && owner.PgdPfn == lent.Pfn && FinishAtMmdrop?.Invoke(owner) == true)
        {
            freed = true; // mmdrop of a task unmapped at its exit_mmap: its exit freed the PGD
        }
        else if (owner is { } task)
        {
            uint pgd = task.PgdPfn;
            freed = m.Mm.ReleaseTable(task, lent.Pfn, () =>
            {
                var p = TakeQueued(task);
                if (p.IsNull && !own.IsNull)
                {
                    (p, own) = (own, Page.Null);
                    Own++;
                }
                return p;
            });
            if (task.PgdPfn != pgd)
            {
                _byPgd[task.PgdPfn] = task;
            }
        }
        if (!own.IsNull)
        {
            m.FreePages(own, 0); // the table mapped nothing any more
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
