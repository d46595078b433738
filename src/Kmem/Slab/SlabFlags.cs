// The slab_flags_t bits of include/linux/slab.h (Linux 6.1 values) that a cache
// can be created with. Kmem honours the ones documented as such; the values are
// the kernel's so that traces and reports print the same numbers.
namespace Kmem;

/// <summary>Flags for <see cref="Machine.KmemCacheCreate"/> (SLAB_*), with the kernel's 6.1 bit values.</summary>
[Flags]
public enum SlabFlags : uint
{
    /// <summary>No flags.</summary>
    None = 0,

    /// <summary>SLAB_HWCACHE_ALIGN (0x2000): align objects on a cache line (64 bytes), or the largest
    /// power-of-two fraction of one that an object still fills more than half of.</summary>
    HwcacheAlign = 0x00002000,

    /// <summary>SLAB_CACHE_DMA (0x4000): slab pages come from ZONE_DMA (GFP_DMA).</summary>
    CacheDma = 0x00004000,

    /// <summary>SLAB_CACHE_DMA32 (0x8000): slab pages come from ZONE_DMA32 (GFP_DMA32).</summary>
    CacheDma32 = 0x00008000,

    /// <summary>SLAB_RECLAIM_ACCOUNT (0x20000): objects are reclaimable (a shrinker frees them); slab
    /// pages are MIGRATE_RECLAIMABLE and counted in SReclaimable.</summary>
    ReclaimAccount = 0x00020000,

    /// <summary>SLAB_PANIC (0x40000): a failure to create the cache is fatal (an exception here).</summary>
    Panic = 0x00040000,

    /// <summary>SLAB_NO_MERGE (0x1000000): never alias this cache with another. Linux 6.1 has no such flag
    /// (slab_nomerge is global there); the bit is the one later kernels gave it. Kmem does not merge
    /// caches yet, so every cache behaves as if it were set.</summary>
    NoMerge = 0x01000000,

    /// <summary>SLAB_ACCOUNT (0x4000000): objects are charged to the memory cgroup (__GFP_ACCOUNT).</summary>
    Account = 0x04000000,
}
