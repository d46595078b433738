// Lock order of the memory-pressure layer (the counterpart of mm/rmap.c's
// header). Every owner in this folder names the one lock it holds; a thread
// takes them only downward in this list, never upward:
//
//   UserMemory.Lock    mmap_lock and the page-table locks of every task: the
//                      task list, VMAs, page tables, rss/swapents, the rmap of
//                      anonymous pages, the mm counters
//     Filemap.Lock     i_pages of every cached file: the file list, each
//                      file's index → page map, i_size, dirty/writeback counts
//       Swapfile.Lock  swap_lock: swap areas, swap_map use counts, the swap
//                      cache, nr_swap_pages/total_swap_pages
//         Lruvecs.Lock lru_lock: the LRU lists and their counts, PG_lru and
//                      PG_active, the rmap side tables (page → owner, index)
//           zone->lock and the page allocator's locks (taken to free or
//           isolate a page; the page allocator never calls back up here)
//
// Apart from the order, and never held while taking any lock above:
//   Shrinkers.Lock     shrinker_rwsem: the shrinker list (held to snapshot it)
//   Kswapd/Kcompactd wake locks: a wakeup's order, pending flag and counters
//
// Reclaim, compaction, drop_caches and the validator move pages between all
// four owners, so they take all four (ReclaimLocks.EnterAll, in this order) for
// a pass; a fault takes UserMemory then Swapfile and Lruvecs as it needs them; the
// page cache takes Filemap then Lruvecs. The locks are reentrant, so a
// shrinker callback may call back into the machine on the reclaiming thread.
// No lock of this layer is held while allocating a page that may reclaim:
// allocation happens with the locks dropped and the state is checked again.
// A user frame's flags word is changed only under its owner's lock
// (UserMemory.Lock for an anonymous page, Filemap.Lock for a page-cache page),
// plus the lock of the owner whose bit it is, so that no two threads ever
// rewrite the same frame's flags at once.
namespace Kmem.Reclaim;

/// <summary>The four owner locks of the layer, taken together in the written order.</summary>
internal sealed class ReclaimLocks(Lock memory, Lock filemap, Lock swapfile, Lock lru)
{
    /// <summary>Takes every owner lock in order; dispose to release them in reverse.</summary>
    public Held EnterAll()
    {
        memory.Enter();
        filemap.Enter();
        swapfile.Enter();
        lru.Enter();
        return new Held(this);
    }

    /// <summary>Whether the calling thread holds any of the four (then it may not run a daemon's work inline).</summary>
    public bool AnyHeldByCurrentThread =>
        memory.IsHeldByCurrentThread || filemap.IsHeldByCurrentThread || swapfile.IsHeldByCurrentThread || lru.IsHeldByCurrentThread;

    private void ExitAll()
    {
        lru.Exit();
        swapfile.Exit();
        filemap.Exit();
        memory.Exit();
    }

    /// <summary>The four locks, held.</summary>
    public readonly struct Held(ReclaimLocks locks) : IDisposable
    {
        public void Dispose() => locks.ExitAll();
    }
}

/// <summary>The calling thread's memory-management state (the bits of current->flags and current this layer
/// reads).</summary>
internal static class MmCurrent
{
    /// <summary>PF_MEMALLOC: the thread is reclaiming or compacting; its own allocations neither reclaim nor
    /// compact (no recursion into reclaim from a shrinker callback) and a daemon's work is not run inline.</summary>
    [ThreadStatic]
    public static bool Memalloc;

    /// <summary>current: the task whose fault is allocating on this thread, for the OOM report.</summary>
    [ThreadStatic]
    public static TaskStruct? Task;
}
