// The slab_flags_t bits of include/linux/slab.h (Linux 6.1 values) that a cache
// can be created with. Kmem honours the ones documented as such; the values are
// the kernel's so that traces and reports print the same numbers.
namespace Kmem;

/// <summary>Flags for <c>Machine.KmemCacheCreate</c> (SLAB_*), with the kernel's 6.1 bit values.</summary>
[Flags]
public enum SlabFlags : uint
{
    /// <summary>No flags.</summary>
    None = 0,

    /// <summary>SLAB_CONSISTENCY_CHECKS (0x100), slub_debug letter F: check a slab's and an object's state
    /// (red zones, poison, padding, free pointer, double free) on every allocation and free of the cache.</summary>
    ConsistencyChecks = 0x00000100,

    /// <summary>SLAB_RED_ZONE (0x400), letter Z: a red zone left and right of every object (0xbb while free,
    /// 0xcc while allocated), checked with <see cref="ConsistencyChecks"/>.</summary>
    RedZone = 0x00000400,

    /// <summary>SLAB_POISON (0x800), letter P: free objects are filled with 0x6b and end in 0xa5, slab and object
    /// padding with 0x5a; the free pointer moves after the object. Not for caches with a constructor or
    /// <see cref="TypesafeByRcu"/>, whose objects are never poisoned (padding still is).</summary>
    Poison = 0x00000800,

    /// <summary>SLAB_KMALLOC (0x1000): set by the slab layer on its kmalloc caches; not accepted by
    /// <c>Machine.KmemCacheCreate</c>.</summary>
    Kmalloc = 0x00001000,

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

    /// <summary>SLAB_STORE_USER (0x10000), letter U: the last allocation and free of each object are recorded
    /// (caller, CPU, thread, time) after the object and printed in reports.</summary>
    StoreUser = 0x00010000,

    /// <summary>SLAB_PANIC (0x40000): a failure to create the cache is fatal (an exception here).</summary>
    Panic = 0x00040000,

    /// <summary>SLAB_TYPESAFE_BY_RCU (0x80000): a slab's pages go back to the page allocator only after an RCU
    /// grace period (<c>Machine.SynchronizeRcu</c>), so a reader may still look at a freed object's memory
    /// (which may meanwhile hold another object of the same cache). Objects themselves are reused at once.</summary>
    TypesafeByRcu = 0x00080000,

    /// <summary>SLAB_TRACE (0x200000), letter T: every allocation and free of the cache is logged (TRACE lines).</summary>
    Trace = 0x00200000,

    /// <summary>SLAB_NO_MERGE (0x1000000): never alias this cache with another, nor another with it. Linux 6.1
    /// has no such flag (only the global slab_nomerge); the bit is the one 6.5 gave it.</summary>
    NoMerge = 0x01000000,

    /// <summary>SLAB_FAILSLAB (0x2000000), slub_debug letter A: the cache is a target of failslab when its
    /// cache-filter is on (<see cref="FaultAttr.CacheFilter"/>).</summary>
    Failslab = 0x02000000,

    /// <summary>SLAB_ACCOUNT (0x4000000): objects are charged to the memory cgroup (__GFP_ACCOUNT).</summary>
    Account = 0x04000000,
}
