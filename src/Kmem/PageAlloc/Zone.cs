// struct zone: one zone of one node, with its buddy free lists, watermarks,
// lowmem reserves, per-CPU page lists and counters.
// Locking: Lock (zone->lock) guards the free lists and their counts, FreePages,
// the pageblock migrate types of the zone, NrReservedHighatomic and
// WatermarkBoost. Each PerCpuPages has its own lock (pcp->lock), always taken
// before Lock, never after. Readers of FreePages and the watermarks read without
// the lock, as the kernel does (a stale value only makes a check conservative).
// Invariant (checked by Validate): FreePages == Σ over orders and migrate types of
// count × 2^order, and every block on a list is PageBuddy, aligned to its order,
// inside the zone, with no free buddy of the same order left unmerged.
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed partial class Zone
{
    public const int MigrateTypes = 5;
    /// <summary>The number of migrate types with pcp lists (MIGRATE_PCPTYPES).</summary>
    public const int PcpTypes = 3;

    private readonly PhysMem _mem;
    private readonly PfnList[] _freeList = new PfnList[Arch.MaxOrder * MigrateTypes];
    private readonly long[] _freeCount = new long[Arch.MaxOrder * MigrateTypes];

    private readonly CpuTopology _cpus;

    public Zone(PhysMem mem, Node node, ZoneType type, int index, uint startPfn, uint endPfn, CpuTopology cpus)
    {
        _mem = mem;
        _cpus = cpus;
        _freeDiff = new long[cpus.Count];
        Node = node;
        Type = type;
        Index = index;
        StartPfn = startPfn;
        EndPfn = endPfn;
        Array.Fill(_freeList, PfnList.Empty);
        Pcp = new PerCpuPages[cpus.Count];
        for (int i = 0; i < cpus.Count; i++)
        {
            Pcp[i] = new PerCpuPages();
        }
    }

    /// <summary>zone->lock.</summary>
    public Lock Lock { get; } = new();
    public Node Node { get; }
    public ZoneType Type { get; }
    /// <summary>Index among all zones of the machine (the pageblock table's value).</summary>
    public int Index { get; }
    public uint StartPfn { get; }
    public uint EndPfn { get; }
    public long SpannedPages => EndPfn - StartPfn;
    public long PresentPages { get; set; }
    public long ManagedPages { get; set; }
    /// <summary>populated_zone: the zone has present pages.</summary>
    public bool IsPopulated => PresentPages > 0;
    /// <summary>managed_zone: the zone has pages the buddy allocator manages (zonelists hold only these).</summary>
    public bool IsManaged => ManagedPages > 0;
    public string Name => ZoneNames.Of(Type);
    /// <summary>is_highmem: ZONE_HIGHMEM, and ZONE_MOVABLE when it is carved from highmem.</summary>
    public bool IsHighMem { get; set; }

    /// <summary>NR_FREE_PAGES, exact: pages on the buddy lists (not the pcp lists). What the watermark checks read
    /// is <see cref="VmstatFreePages"/> (Zone.Vmstat.cs).</summary>
    public long FreePages;
    /// <summary>_watermark[WMARK_MIN, LOW, HIGH, PROMO], without the boost.</summary>
    public readonly long[] Watermark = new long[4];
    public long WatermarkBoost;
    /// <summary>ZONE_BOOSTED_WATERMARK: kswapd should be woken to reclaim the boost.</summary>
    public volatile bool BoostedWatermark;
    /// <summary>ZONE_RECLAIM_ACTIVE: kswapd is balancing the node for this zone or a higher one, and the per-CPU
    /// lists keep at most four batches (nr_pcp_high).</summary>
    public volatile bool ReclaimActive;
    /// <summary>lowmem_reserve[], indexed by (int)ZoneType of the request's highest zone.</summary>
    public readonly long[] LowmemReserve = new long[6];
    public long NrReservedHighatomic;
    /// <summary>The per-CPU page lists, one per CPU (zone->per_cpu_pageset).</summary>
    public PerCpuPages[] Pcp { get; }
    /// <summary>Counters for work done under zone->lock, outside the pcp lists.</summary>
    public readonly ZoneCounters Counters = new();

    public bool Spans(uint pfn) => pfn - StartPfn < EndPfn - StartPfn;

    /// <summary>wmark_pages(): a watermark plus the boost.</summary>
    public long WmarkPages(int wmark) => Watermark[wmark] + WatermarkBoost;

    /// <summary>nr_free of one order (blocks, all migrate types).</summary>
    public long NrFree(int order)
    {
        long n = 0;
        for (int mt = 0; mt < MigrateTypes; mt++)
        {
            n += _freeCount[order * MigrateTypes + mt];
        }
        return n;
    }

    /// <summary>Blocks of one order on one migrate type's list.</summary>
    public long NrFree(int order, MigrateType mt) => _freeCount[order * MigrateTypes + (int)mt];

    public bool FreeAreaEmpty(int order, int mt) => _freeList[order * MigrateTypes + mt].IsEmpty;

    /// <summary>This zone's page-allocator events: the zone-lock counters plus every CPU's pcp counters,
    /// read without locks (each field is a single 64-bit read).</summary>
    public PageAllocStats SumStats()
    {
        var sum = Counters.Stats;
        foreach (var p in Pcp)
        {
            sum.Add(p.Stats);
        }
        return sum;
    }

    /// <summary>Pages sitting on the per-CPU lists of every CPU.</summary>
    public long PcpPages()
    {
        long n = 0;
        foreach (var p in Pcp)
        {
            n += Volatile.Read(ref p.Count);
        }
        return n;
    }
}

/// <summary>The printed names of the zones.</summary>
internal static class ZoneNames
{
    public static string Of(ZoneType t) => t switch
    {
        ZoneType.Dma => "DMA",
        ZoneType.Dma32 => "DMA32",
        ZoneType.Normal => "Normal",
        ZoneType.HighMem => "HighMem",
        ZoneType.Movable => "Movable",
        _ => "Device",
    };

    public static string Of(MigrateType t) => t switch
    {
        MigrateType.Unmovable => "Unmovable",
        MigrateType.Movable => "Movable",
        MigrateType.Reclaimable => "Reclaimable",
        MigrateType.HighAtomic => "HighAtomic",
        _ => "Isolate",
    };
}
