// What is left of the pressure replay's tasks that exited at their trace task's exit_mmap
// (PressureReplay.MmGone) until the kernel frees it. A task whose PGD is a frame the kernel
// allocated keeps its PGD until the kernel's free of that frame (mmdrop), where the kernel's exit
// frees it (a replay's task has no kernel stack of its own: the page path holds the kernel's).
// The pages whose frames stayed allocated in the kernel are held by trace frame: Kmem's page,
// with a reference of the replay's (get_page), so that the task's exit unmaps it without
// freeing it, freed at the kernel's free of the frame. Anonymous ones are in
// flight to their free (an mmu_gather or a per-CPU LRU batch holds them, which no reclaim takes);
// the others are page cache that the trace shows allocated in the exiting task's context, which in
// the kernel other tasks may still map (a shared library's pages). All are held unreclaimable, not
// put on Kmem's file lists, where Kmem would drop them as unmapped clean pages (tried: on capture
// Q the kernel freed few of them before the trace ends, Kmem's reclaim dropped them instead, and
// Kmem's OOM killer never fired). Replaying thread only.
namespace Kmem;

/// <summary>The PGDs and pages the replay holds for its exited tasks until the kernel frees them.</summary>
internal sealed class ExitedTasks(Machine m)
{
    private readonly Dictionary<ulong, Page> _held = [];
    private readonly HashSet<TaskStruct> _awaitingMmdrop = [];

    /// <summary>Whether a task's PGD is a frame the kernel allocated (ReplayPageTables.PgdIsLent), which its mmdrop frees.</summary>
    public Func<TaskStruct, bool>? PgdLent { get; set; }

    /// <summary>The exit of a task whose trace address space is gone: all of it now, or, when the kernel's mmdrop will
    /// free its PGD frame, its address space now and the rest at that free (FinishAtMmdrop).</summary>
    public void Exit(TaskStruct task, Func<DriftClass, IDisposable>? scope)
    {
        if (PgdLent?.Invoke(task) == true)
        {
            ReplayTaskExit.Unmap(task, scope);
            _awaitingMmdrop.Add(task);
        }
        else
        {
            ReplayTaskExit.Exit(task, scope);
        }
    }

    /// <summary>The kernel's free of a task's PGD frame: a task waiting for it exits now (its PGD, the frame freed); false
    /// for any other task.</summary>
    public bool FinishAtMmdrop(TaskStruct task)
    {
        if (!_awaitingMmdrop.Remove(task))
        {
            return false;
        }
        ReplayTaskExit.Finish(task, null); // the frame's free is the event's own
        return true;
    }

    /// <summary>Pages held, not yet freed by the kernel.</summary>
    public int Count => _held.Count;

    /// <summary>Holds the page <paramref name="task"/> maps at <paramref name="va"/> for the kernel's frame
    /// <paramref name="pfn"/> (nothing when none is mapped there).</summary>
    public void Hold(ulong pfn, TaskStruct task, ulong va)
    {
        uint kmemPfn = task.FollowPage(va);
        if (kmemPfn != uint.MaxValue)
        {
            var page = m.PfnToPage(kmemPfn);
            m.GetPage(page);
            _held[pfn] = page;
        }
    }

    /// <summary>The page held for the kernel's frame <paramref name="pfn"/>, or Page.Null.</summary>
    public Page PageOf(ulong pfn) => _held.TryGetValue(pfn, out var page) ? page : Page.Null;

    /// <summary>The kernel's free of frame <paramref name="pfn"/>: the page held for it is freed (put_page). False when
    /// none is held.</summary>
    public bool Free(ulong pfn)
    {
        if (!_held.Remove(pfn, out var page))
        {
            return false;
        }
        m.PutPage(page);
        return true;
    }
}
