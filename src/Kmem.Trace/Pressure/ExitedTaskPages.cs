// The pages of the pressure replay's tasks that exited (PressureReplay.MmGone) while their frames
// stayed allocated in the kernel, by trace frame: Kmem's page, held by a reference of the replay's
// (get_page), so that the task's exit unmaps it without freeing it, and freed at the kernel's free
// of the frame. Anonymous ones are in flight to their free (an mmu_gather or a per-CPU LRU batch
// holds them, which no reclaim takes); the others are page cache that the trace shows allocated in
// the exiting task's context, which in the kernel other tasks may still map (a shared library's
// pages). All are held unreclaimable, not put on Kmem's file lists, where Kmem would drop them as
// unmapped clean pages (tried: on capture Q, 1,792 such pages, 48 of them freed by the kernel before
// the trace ends, and Kmem's OOM killer, finding them to reclaim, never fired). Replaying thread only.
namespace Kmem;

/// <summary>Pages the replay holds for its exited tasks until the kernel frees their frames.</summary>
internal sealed class ExitedTaskPages(Machine m)
{
    private readonly Dictionary<ulong, Page> _held = [];

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
