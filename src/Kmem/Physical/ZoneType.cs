// The kernel's enum zone_type and enum migratetype (include/linux/mmzone.h).
// Kmem keeps one logical numbering for every preset; a preset lists the zone
// types it compiles in (X64: DMA, DMA32, Normal, Movable, Device; X86: DMA,
// Normal, HighMem, Movable), and reports print only those, in this order.
namespace Kmem;

/// <summary>A zone's type, in the kernel's order (lowest addresses first).</summary>
public enum ZoneType : byte
{
    /// <summary>ZONE_DMA: below 16 MiB, for ISA DMA.</summary>
    Dma,
    /// <summary>ZONE_DMA32: 16 MiB to 4 GiB (64-bit presets only).</summary>
    Dma32,
    /// <summary>ZONE_NORMAL: directly mapped memory.</summary>
    Normal,
    /// <summary>ZONE_HIGHMEM: above the lowmem limit on 32-bit presets; never in the direct map.</summary>
    HighMem,
    /// <summary>ZONE_MOVABLE: carved out by kernelcore=/movablecore=; movable allocations only.</summary>
    Movable,
    /// <summary>ZONE_DEVICE: device memory; always empty in Kmem, listed because the kernel prints it.</summary>
    Device,
}

/// <summary>The kernel's enum migratetype, as /proc/pagetypeinfo prints it.</summary>
public enum MigrateType : byte
{
    /// <summary>MIGRATE_UNMOVABLE.</summary>
    Unmovable = 0,
    /// <summary>MIGRATE_MOVABLE.</summary>
    Movable = 1,
    /// <summary>MIGRATE_RECLAIMABLE.</summary>
    Reclaimable = 2,
    /// <summary>MIGRATE_HIGHATOMIC, also MIGRATE_PCPTYPES: the reserve for high-order atomic allocations.</summary>
    HighAtomic = 3,
    /// <summary>MIGRATE_ISOLATE: pageblocks taken out of use (compaction, offlining).</summary>
    Isolate = 4,
}
