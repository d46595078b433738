// The registered shrinkers (mm/vmscan.c register_shrinker, shrink_slab,
// do_shrink_slab, drop_slab): reclaim asks each to give objects back in
// proportion to the scan priority and its seeks, carrying unfinished work in
// nr_deferred (per node for a NUMA-aware shrinker, Interlocked) from one call to
// the next. A shrinker that is not NUMA aware is asked about node 0 (its
// callbacks see Nid 0 and its deferred work sits in one slot), as 6.1 does.
// Locking: Lock is shrinker_rwsem: it guards the list only and is held just to
// change or copy it, never while a callback runs. The scans run on the
// reclaiming thread with the four owner locks held (ReclaimLocks), which also
// guard slabs_scanned and drop_slab; callbacks may allocate (PF_MEMALLOC keeps
// them out of reclaim) and call back into the machine (the locks are reentrant).
using Kmem.PageAlloc;

namespace Kmem.Reclaim;

/// <summary>The shrinkers of one machine.</summary>
internal sealed class Shrinkers(PageAllocator pa, VmEvents events)
{
    private readonly List<Shrinker> _list = [];

    /// <summary>shrinker_rwsem (see LockOrder.cs).</summary>
    public Lock Lock { get; } = new();

    /// <summary>Whether none is registered (read without the lock: kswapd's quick test).</summary>
    public bool IsEmpty => Volatile.Read(ref _count) == 0;

    private int _count;

    public void Register(Shrinker s)
    {
        ArgumentNullException.ThrowIfNull(s);
        if (s.Seeks < 0 || s.Batch < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(s), $"shrinker {s.Name}: seeks and batch must not be negative");
        }
        lock (Lock)
        {
            if (_list.Contains(s))
            {
                throw new InvalidOperationException($"shrinker {s.Name} is already registered");
            }
            // prealloc_shrinker: nr_deferred per node when NUMA aware, else one counter.
            s.NrDeferred = new long[s.NumaAware ? pa.Nodes.Length : 1];
            _list.Add(s);
            Volatile.Write(ref _count, _list.Count);
        }
    }

    public void Unregister(Shrinker s)
    {
        lock (Lock)
        {
            if (!_list.Remove(s))
            {
                throw new InvalidOperationException($"shrinker {s.Name} is not registered");
            }
            Volatile.Write(ref _count, _list.Count);
        }
    }

    private Shrinker[] Snapshot()
    {
        lock (Lock)
        {
            return [.. _list];
        }
    }

    /// <summary>shrink_slab: do_shrink_slab for every registered shrinker; returns the pages that came back to
    /// the free lists meanwhile (the kernel's reclaim_state->reclaimed_slab). Under the reclaim locks.</summary>
    public long ShrinkSlab(Gfp gfp, int nid, int priority)
    {
        long before = pa.NrFreePages;
        foreach (var s in Snapshot())
        {
            DoShrinkSlab(s, gfp, nid, priority);
        }
        return Math.Max(0, pa.NrFreePages - before);
    }

    private long DoShrinkSlab(Shrinker s, Gfp gfp, int nid, int priority)
    {
        if (!s.NumaAware)
        {
            nid = 0;
        }
        var ctl = new ShrinkControl { Gfp = gfp, Nid = nid };
        long freeable = s.CountObjects(ctl);
        if (freeable == 0 || freeable == Shrinker.Empty)
        {
            return 0;
        }
        ref long deferred = ref s.NrDeferred[nid];
        long nr = Interlocked.Exchange(ref deferred, 0);
        long delta = s.Seeks > 0 ? (freeable >> priority) * 4 / s.Seeks : freeable / 2;
        long totalScan = (nr >> priority) + delta;
        totalScan = Math.Min(totalScan, 2 * freeable);
        long batch = s.Batch > 0 ? s.Batch : Shrinker.DefaultBatch;
        long freed = 0, scanned = 0;
        while (totalScan >= batch || totalScan >= freeable)
        {
            long n = Math.Min(batch, totalScan);
            ctl.NrToScan = n;
            ctl.NrScanned = n;
            long ret = s.ScanObjects(ctl);
            if (ret == Shrinker.Stop)
            {
                break;
            }
            freed += ret;
            events.Stats.SlabsScanned += ctl.NrScanned;
            totalScan -= ctl.NrScanned;
            scanned += ctl.NrScanned;
            if (ctl.NrScanned <= 0)
            {
                break;
            }
        }
        long next = Math.Max(nr + delta - scanned, 0);
        next = Math.Min(next, 2 * freeable);
        Interlocked.Add(ref deferred, next);
        return freed;
    }

    /// <summary>drop_slab: every shrinker at priority 0 on every node until a round frees (almost) nothing.
    /// Under the reclaim locks.</summary>
    public void DropSlab()
    {
        int shift = 0;
        long freed;
        do
        {
            freed = 0;
            foreach (var node in pa.Nodes)
            {
                foreach (var s in Snapshot())
                {
                    freed += DoShrinkSlab(s, Gfp.Kernel, node.Id, 0);
                }
            }
        }
        while ((freed >> shift++) > 1 && shift < 64);
        events.Stats.DropSlab++;
    }
}
