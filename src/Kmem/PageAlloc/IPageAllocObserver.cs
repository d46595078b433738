// An observer of the page allocator's own decisions (the moments the kernel's
// mm_page_alloc_zone_locked percpu_refill=1, mm_page_pcpu_drain and
// mm_page_alloc_extfrag tracepoints fire), for a trace replay to compare them with
// the recorded kernel's. Given at boot through MachineOptions and fixed for the
// machine's life; null (the default) costs one null test per refill, drain or steal.
// Called with the pcp lock or zone->lock held: an observer records, never calls back.
namespace Kmem.PageAlloc;

/// <summary>What the page allocator tells an observer of its decisions.</summary>
internal interface IPageAllocObserver
{
    /// <summary>rmqueue_bulk refilled CPU <paramref name="cpu"/>'s list of (order, migrate type) in zone
    /// <paramref name="zoneIndex"/> with <paramref name="blocks"/> blocks.</summary>
    void PcpRefill(int zoneIndex, int cpu, int order, int migratetype, int blocks);

    /// <summary>free_pcppages_bulk gave <paramref name="pages"/> pages of CPU <paramref name="cpu"/>'s lists in
    /// zone <paramref name="zoneIndex"/> back to the buddy lists.</summary>
    void PcpDrain(int zoneIndex, int cpu, int pages);

    /// <summary>__rmqueue_fallback stole a block of <paramref name="fallbackOrder"/> from
    /// <paramref name="fallbackMt"/> for an order-<paramref name="order"/> request of <paramref name="startMt"/>;
    /// <paramref name="changeOwnership"/>: the pageblock now has the request's type.</summary>
    void Fallback(int zoneIndex, int order, int fallbackOrder, int startMt, int fallbackMt, bool changeOwnership);
}
