// What Kmem's own allocator decided during one replayed call: the page allocator's
// refills, drains and fallback steals and the slab layer's new and freed slabs, as the
// observer hooks of the core report them (IPageAllocObserver, ISlabObserver). The
// replayer resets it before each call it makes on the machine and reads it after, so
// a decision is always Kmem's, never read from the trace (new and freed slabs are also
// passed on as they come, for PreTraceSlabs' stand-ins). Reports from any other
// thread (kswapd, kcompactd) are ignored: they are not the replayed event's.
// Written and read on the replaying thread only.
using Kmem.PageAlloc;
using Kmem.Slab;

namespace Kmem;

/// <summary>Records the decisions Kmem's allocators report while the replayer drives one call.</summary>
internal sealed class DecisionRecorder : IPageAllocObserver, ISlabObserver
{
    private readonly int _thread = Environment.CurrentManagedThreadId;

    /// <summary>Refills (rmqueue_bulk) since the last reset, and the blocks they took.</summary>
    public int Refills, RefillBlocks;

    /// <summary>Drains (free_pcppages_bulk) since the last reset, and the pages they gave back.</summary>
    public int Drains, DrainPages;

    /// <summary>Fallback steals since the last reset; whether the last one changed the pageblock's owner.</summary>
    public int Fallbacks;
    public bool Ownership;

    /// <summary>The (zone, migrate type) pairs Kmem's steals since the last reset were for: bit zone * 8 + type.</summary>
    public ulong StealTypes;

    /// <summary>The last steal since the reset: zone index, requested and fallback type, the stolen block's order.</summary>
    public (int Zone, int Mt, int FallbackMt, int FallbackOrder) LastSteal;

    /// <summary>New slabs and slabs given back since the last reset.</summary>
    public int NewSlabs, SlabsFreed;

    /// <summary>Forgets what was recorded: the next call's decisions start from nothing.</summary>
    public void Reset()
    {
        Refills = RefillBlocks = Drains = DrainPages = Fallbacks = NewSlabs = SlabsFreed = 0;
        Ownership = false;
        StealTypes = 0;
    }

    /// <summary>Where the refilled and drained pages go as well (free-running replays), or null.</summary>
    public PcpDrift? Drift;

    private bool Mine => Environment.CurrentManagedThreadId == _thread;

    public void PcpRefill(int zoneIndex, int cpu, int order, int migratetype, int blocks)
    {
        if (Mine)
        {
            Refills++;
            RefillBlocks += blocks;
            Drift?.KmemRefill(zoneIndex, cpu, blocks << order);
        }
    }

    public void PcpDrain(int zoneIndex, int cpu, int pages)
    {
        if (Mine)
        {
            Drains++;
            DrainPages += pages;
            Drift?.KmemDrain(zoneIndex, cpu, pages);
        }
    }

    public void Fallback(int zoneIndex, int order, int fallbackOrder, int startMt, int fallbackMt, bool changeOwnership)
    {
        if (Mine)
        {
            Fallbacks++;
            Ownership = changeOwnership;
            StealTypes |= 1UL << (zoneIndex * 8 + startMt);
            LastSteal = (zoneIndex, startMt, fallbackMt, fallbackOrder);
        }
    }

    /// <summary>Kmem's new slabs and freed slabs as they come (head frame), on the replaying thread, or null.</summary>
    public Action<uint>? OnNewSlab, OnSlabFreed;

    public void NewSlab(KmemCache cache, uint pfn, int order)
    {
        if (Mine)
        {
            NewSlabs++;
            OnNewSlab?.Invoke(pfn);
        }
    }

    public void SlabFreed(uint pfn, int order)
    {
        if (Mine)
        {
            SlabsFreed++;
            OnSlabFreed?.Invoke(pfn);
        }
    }
}
