// An observer of the slab layer's own decisions: a slab allocation that needed a new
// slab (allocate_slab) and a free that gave a slab's pages back (__free_slab), for a
// trace replay to compare them with the recorded kernel's. Given at boot through
// MachineOptions and fixed for the machine's life; null (the default) costs one null
// test per new or freed slab. Called under the backend's locks: record, never call back.
namespace Kmem.Slab;

/// <summary>What a slab backend (SLUB, SLAB) tells an observer of its decisions.</summary>
internal interface ISlabObserver
{
    /// <summary>A new slab of 2^<paramref name="order"/> frames at <paramref name="pfn"/> for <paramref name="cache"/>.</summary>
    void NewSlab(KmemCache cache, uint pfn, int order);

    /// <summary>The slab at <paramref name="pfn"/> went back to the page allocator.</summary>
    void SlabFreed(uint pfn, int order);
}
