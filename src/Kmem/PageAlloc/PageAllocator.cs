// The page allocator of one machine (mm/page_alloc.c): nodes, zones and
// zonelists, built at boot by MemoryInit (free_area_init, memblock_free_all).
// The allocation paths are in AllocPath.cs, the free paths in FreePath.cs,
// watermarks and pcp sizing in Watermarks.cs, the reports in PageAllocReports,
// the replay's pcp alignment in PcpAlign. Immutable after boot except through
// the zones' own locks.
// The reclaimer: the page allocator and the reclaim layer need each other (the
// slow path reclaims; reclaim frees and isolates pages), as mm/page_alloc.c and
// mm/vmscan.c do. The allocator is built first and takes a factory that it calls
// once, at the end of its constructor, with itself: the reclaim layer is built
// over a finished allocator and the allocator keeps it in a readonly field, so
// neither is ever seen half-wired and nothing can swap the reclaimer later.
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed partial class PageAllocator
{
    private readonly PhysMem _mem;
    private readonly CpuTopology _cpus;
    private readonly KernelLog _log;
    private readonly sbyte[] _gfpZoneTable;
    private readonly PageAllocReports _reports;
    private readonly WatermarkSetup _wmarks;

    public PageAllocator(MachineOptions options, Arch arch, PhysMem mem, CpuTopology cpus, KernelLog log,
        FaultAttr failPageAlloc, Action<KernelBugException> bug, Func<PageAllocator, IReclaimer>? reclaimer = null)
    {
        Options = options;
        Observer = options.PageAllocObserver;
        Arch = arch;
        _mem = mem;
        _cpus = cpus;
        _log = log;
        FailPageAlloc = failPageAlloc;
        _reports = new PageAllocReports(this, bug);
        var init = new MemoryInit(this);
        _gfpZoneTable = init.BuildGfpZoneTable();
        Nodes = init.BuildNodes(options.Nodes, cpus);
        Zones = [.. Nodes.SelectMany(n => n.Zones)];
        foreach (var zone in Zones)
        {
            zone.IsHighMem = zone.Type == ZoneType.HighMem || (zone.Type == ZoneType.Movable && MovableFromHighmem);
        }
        ReservedPages = init.ReserveAndFreeBootMemory(out var reservedRanges);
        BootReserved = new BootReservations(reservedRanges, Arch.HasHighMem ? mem.LowmemPfns : mem.MaxPfn);
        init.BuildZonelists();
        _wmarks = new WatermarkSetup(this);
        _wmarks.Init(options.MinFreeKbytes);
        init.ReleaseInitMemory();
        Vmstat.Refresh(Zones); // boot's frees, folded long before anything runs
        Reclaimer = reclaimer?.Invoke(this) ?? new NoReclaim();
    }

    public MachineOptions Options { get; }
    /// <summary>The observer of refills, drains and steals given at boot, or null.</summary>
    public IPageAllocObserver? Observer { get; }
    public Arch Arch { get; }
    public PhysMem Mem => _mem;
    public CpuTopology Cpus => _cpus;
    public KernelLog Log => _log;
    public Node[] Nodes { get; }
    /// <summary>Every zone of every node, node by node, in zone order; Zone.Index is the position here.</summary>
    public Zone[] Zones { get; }
    public FaultAttr FailPageAlloc { get; }
    /// <summary>What the slow path calls to wake kswapd and reclaim directly: the reclaim layer, made by the
    /// constructor's factory, or <see cref="NoReclaim"/> without one.</summary>
    public IReclaimer Reclaimer { get; }

    /// <summary>The slab layer's drain of the caches threads hold (set by it at boot, null without one): the slow
    /// path calls it before direct reclaim, so before the OOM killer too, as it calls drain_all_pages. Returns the
    /// slab pages it gave back.</summary>
    public Func<long>? DrainCaches { get; set; }

    /// <summary>Frames reserved at boot (holes excluded).</summary>
    public long ReservedPages { get; }

    /// <summary>What boot reserved (memblock.reserved, holes excluded), which later boot users take memory from.</summary>
    public BootReservations BootReserved { get; }

    /// <summary>totalram_pages: managed pages of every zone.</summary>
    public long TotalRamPages => Zones.Sum(z => z.ManagedPages);

    /// <summary>Managed pages of HighMem zones (totalhigh_pages).</summary>
    public long TotalHighPages => Zones.Where(z => z.IsHighMem).Sum(z => z.ManagedPages);

    /// <summary>global NR_FREE_PAGES.</summary>
    public long NrFreePages => Zones.Sum(z => Volatile.Read(ref z.FreePages));

    public Zone ZoneOf(uint pfn) => Zones[_mem.ZoneIndexOf(pfn)];

    /// <summary>vm.min_free_kbytes in force.</summary>
    public int MinFreeKbytes => _wmarks.MinFreeKbytes;

    /// <summary>totalreserve_pages: what MemAvailable and overcommit keep back.</summary>
    public long TotalReservePages => _wmarks.TotalReservePages;

    /// <summary>Sets vm.min_free_kbytes and recomputes the watermarks, as a write to the sysctl does.</summary>
    public void SetMinFreeKbytes(int kbytes) => _wmarks.SetMinFreeKbytes(kbytes);

    /// <summary>__setup_per_zone_wmarks, then the pcp sizes and totalreserve_pages (see <see cref="WatermarkSetup"/>).</summary>
    public void SetupPerZoneWmarks() => _wmarks.SetupPerZoneWmarks();

    /// <summary>zone_pcp_update: the zone's per-CPU high and batch from its managed pages and low watermark now (as
    /// setup_per_zone_wmarks does after it sets the watermarks).</summary>
    internal void ZonePcpUpdate(Zone zone) => _wmarks.ZonePcpUpdate(zone);

    /// <summary>zone_batchsize (see <see cref="WatermarkSetup"/>).</summary>
    public static int ZoneBatchsize(long managedPages) => WatermarkSetup.ZoneBatchsize(managedPages);

    /// <summary>Whether this thread's allocations skip the per-CPU lists (a replay's stand-ins: see <see cref="BuddyOnlyGate"/>).</summary>
    public BuddyOnlyGate BuddyOnly { get; } = new();

    /// <summary>movable_zone == ZONE_HIGHMEM: then ZONE_MOVABLE counts as highmem (is_highmem).</summary>
    public bool MovableFromHighmem => MemoryInit.UsableZoneForMovable(Arch, _mem) == ZoneType.HighMem;
}

/// <summary>What the page allocator asks of the reclaim layer.</summary>
internal interface IReclaimer
{
    /// <summary>wakeup_kswapd for one zone.</summary>
    void WakeupKswapd(Zone zone, int order, ZoneType highest);

    /// <summary>try_to_free_pages: direct reclaim; returns the pages reclaimed.</summary>
    long TryToFreePages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest);

    /// <summary>out_of_memory: kill a task to free memory; returns whether memory was freed.</summary>
    bool OutOfMemory(Gfp gfp, int order);

    /// <summary>try_to_compact_pages: direct compaction at a priority; returns its best result over the zones.</summary>
    CompactResult TryToCompactPages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest, CompactPriority prio);

    /// <summary>The end of __alloc_pages_direct_compact after a run that was not skipped: compact_stall, then
    /// compact_success (and compaction_defer_reset of the page's zone) or compact_fail.</summary>
    void CompactionDone(uint pfn, int order);

    /// <summary>zone_reclaimable_pages: the zone's file LRU pages, plus its anon LRU pages while swap has room.</summary>
    long ZoneReclaimablePages(Zone zone);

    /// <summary>compaction_zonelist_suitable: whether reclaim could give compaction enough to work with.</summary>
    bool CompactionZonelistSuitable(int order, Zone[] zonelist, ZoneType highest);
}

/// <summary>
/// The reclaimer of a machine without a reclaim layer: nothing can be reclaimed, and a woken kswapd finds
/// no work beyond dropping the watermark boost, as balance_pgdat does once the boost is met.
/// </summary>
internal sealed class NoReclaim : IReclaimer
{
    public void WakeupKswapd(Zone zone, int order, ZoneType highest)
    {
        // balance_pgdat, once the node is balanced, drops the boost of every zone up to the wakeup's highest.
        foreach (var z in zone.Node.Zones)
        {
            if (z.Type <= highest && z.WatermarkBoost != 0)
            {
                lock (z.Lock)
                {
                    z.WatermarkBoost = 0;
                }
            }
        }
    }

    public long TryToFreePages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest) => 0;

    public bool OutOfMemory(Gfp gfp, int order) => false;

    public CompactResult TryToCompactPages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest, CompactPriority prio) => CompactResult.Skipped;

    public void CompactionDone(uint pfn, int order)
    {
    }

    public long ZoneReclaimablePages(Zone zone) => 0;

    public bool CompactionZonelistSuitable(int order, Zone[] zonelist, ZoneType highest) => false;
}
