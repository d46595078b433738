// Theory data for the contracts that several slab backends share: each test that takes a
// SlabAllocator runs once per backend listed here.
namespace Kmem.Tests.Slab;

public static class SlabBackends
{
    /// <summary>The backends with kmalloc caches and /proc/slabinfo: SLUB and SLAB.</summary>
    public static TheoryData<SlabAllocator> Cached => new() { SlabAllocator.Slub, SlabAllocator.Slab };
}
