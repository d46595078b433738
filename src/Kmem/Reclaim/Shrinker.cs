// The shrinker API (include/linux/shrinker.h): a cache outside the LRU lists
// registers count and scan callbacks, and reclaim asks it to give objects back
// in proportion to the scan priority and its seeks (do_shrink_slab in
// Shrinkers.cs). NrDeferred carries unfinished work between calls, per node for
// a NUMA-aware shrinker (Interlocked);
// the callbacks run under the reclaim locks of LockOrder.cs.

namespace Kmem;

/// <summary>struct shrink_control: what reclaim asks of a shrinker in one call.</summary>
public sealed class ShrinkControl
{
    /// <summary>The gfp of the allocation that caused reclaim: a shrinker that needs __GFP_FS returns
    /// <see cref="Shrinker.Stop"/> without it.</summary>
    public Gfp Gfp { get; init; }

    /// <summary>The node being reclaimed.</summary>
    public int Nid { get; init; }

    /// <summary>nr_to_scan: objects to scan in this call.</summary>
    public long NrToScan { get; internal set; }

    /// <summary>nr_scanned: objects actually scanned; a scan callback may lower it.</summary>
    public long NrScanned { get; set; }
}

/// <summary>
/// struct shrinker: a cache reclaim can shrink. Register it with <see cref="Machine.RegisterShrinker"/>; reclaim
/// (kswapd, direct reclaim, <see cref="Machine.DropCaches"/> 2) calls <see cref="CountObjects"/> and then
/// <see cref="ScanObjects"/> in batches of <see cref="Batch"/>, scanning (freeable &gt;&gt; priority) × 4 / seeks.
/// </summary>
/// <remarks>The callbacks run on the reclaiming thread (an allocating thread or kswapd) under the reclaim
/// layer's lock; they may free memory and allocate (their allocations do not reclaim recursively).</remarks>
public sealed class Shrinker
{
    /// <summary>SHRINK_STOP: returned by a scan callback that cannot make progress now (wrong gfp, lock busy).</summary>
    public const long Stop = -1;

    /// <summary>SHRINK_EMPTY: returned by a count callback with nothing cached at all.</summary>
    public const long Empty = -2;

    /// <summary>DEFAULT_SEEKS.</summary>
    public const int DefaultSeeks = 2;

    /// <summary>SHRINK_BATCH.</summary>
    public const long DefaultBatch = 128;

    /// <summary>Creates a shrinker.</summary>
    /// <param name="name">Its name (as register_shrinker's format gives it).</param>
    /// <param name="countObjects">count_objects: freeable objects now (0 or <see cref="Empty"/>: nothing to do).</param>
    /// <param name="scanObjects">scan_objects: free up to <see cref="ShrinkControl.NrToScan"/> objects; returns
    /// the number freed, or <see cref="Stop"/>.</param>
    public Shrinker(string name, Func<ShrinkControl, long> countObjects, Func<ShrinkControl, long> scanObjects)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Name = name;
        CountObjects = countObjects ?? throw new ArgumentNullException(nameof(countObjects));
        ScanObjects = scanObjects ?? throw new ArgumentNullException(nameof(scanObjects));
    }

    /// <summary>The shrinker's name.</summary>
    public string Name { get; }

    /// <summary>count_objects.</summary>
    public Func<ShrinkControl, long> CountObjects { get; }

    /// <summary>scan_objects.</summary>
    public Func<ShrinkControl, long> ScanObjects { get; }

    /// <summary>seeks: the cost of recreating an object (0: scan half of the freeable objects each call).</summary>
    public int Seeks { get; init; } = DefaultSeeks;

    /// <summary>batch: objects per scan call (0: <see cref="DefaultBatch"/>).</summary>
    public long Batch { get; init; }

    /// <summary>SHRINKER_NUMA_AWARE: the callbacks count and scan the node of <see cref="ShrinkControl.Nid"/>,
    /// and deferred work is kept per node; otherwise every call sees node 0.</summary>
    public bool NumaAware { get; init; }

    /// <summary>nr_deferred: scan work carried over from earlier calls (summed over the nodes).</summary>
    public long Deferred
    {
        get
        {
            long sum = 0;
            long[] perNode = NrDeferred;
            for (int i = 0; i < perNode.Length; i++)
            {
                sum += Volatile.Read(ref perNode[i]);
            }
            return sum;
        }
    }

    /// <summary>nr_deferred per node (one slot for a shrinker that is not NUMA aware), sized at registration.</summary>
    internal long[] NrDeferred = new long[1];
}
