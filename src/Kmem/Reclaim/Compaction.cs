// Memory compaction (mm/compaction.c, mm/migrate.c): the migrate scanner walks
// a zone's pageblocks up from its cached position taking movable pages (task
// anonymous pages and page-cache pages on the LRU; kernel pages never move;
// under GFP_NOFS anonymous pages only), the free scanner walks down from its
// cached position taking free pages of Movable pageblocks (suitable_migration_
// target: never a pageblock that is itself a free block of pageblock order or
// more), and each page is copied to a free page, its page-table entry or cache
// slot pointed at the copy, and the old frame freed, until the scanners meet or
// (for a given order) __compact_finished finds a free block of the order on
// the request's migrate type's list or one a fallback may take. A pageblock
// where isolation found nothing gets its skip bit; both scanners' positions are
// cached per zone (the migrate one per async/sync mode) and reset when they
// meet. Direct compaction (try_to_compact_pages) runs at a priority: async
// only scans source pageblocks of the request's migrate type; sync-light all;
// sync-full the whole zone ignoring skip bits and block suitability. Failed
// sync runs defer compaction of the zone (defer_compaction, compaction_deferred,
// compaction_defer_reset); GFP_NOIO never compacts. kcompactd runs per node
// when kswapd asks and every 500 ms for proactive compaction
// (compaction_proactiveness); CompactMemory is /proc/sys/vm/compact_memory.
// compaction_suitable uses the fragmentation index against extfrag_threshold.
// Before the linear scanners, fast_isolate_freepages and fast_find_migrateblock
// search the free lists (CompactFast.cs).
// Knowingly left out: lock contention (COMPACT_CONTENDED never happens), page
// capture.
// Locking: a run holds the four owner locks (ReclaimLocks, LockOrder.cs): it
// moves task pages, page-cache pages and swap-cache pages and their LRU places;
// zone->lock inside IsolateFreePage and the free path. The per-zone state
// (cached positions, deferral, skip bits) is guarded by the same locks.
using Kmem.Highmem;
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Reclaim;

/// <summary>enum migrate_mode.</summary>
internal enum MigrateMode
{
    Async,
    SyncLight,
    Sync,
}

/// <summary>struct compact_control: one compaction run of one zone.</summary>
internal struct CompactControl
{
    public int Order;
    public Gfp Gfp;
    public int Migratetype;
    public MigrateMode Mode;
    public ZoneType Highest;
    public bool Direct, WholeZone, IgnoreSkipHint, IgnoreBlockSuitable;
    /// <summary>proactive_compaction: the run ends once the zone's fragmentation score is at the low mark.</summary>
    public bool Proactive;
    public uint MigratePfn, FreePfn;
    /// <summary>total_migrate_scanned, total_free_scanned: frames the run's scanners looked at.</summary>
    public long TotalMigrateScanned, TotalFreeScanned;
    /// <summary>fast_search_fail: fast searches that failed in a row (each halves freelist_scan_limit).</summary>
    public int FastSearchFail;
    /// <summary>search_order: the order fast_isolate_freepages starts from (the last that gave a block).</summary>
    public int SearchOrder;
    /// <summary>fast_start_pfn: the lowest free block fast_find_migrateblock found (0 none yet; ULONG_MAX used).</summary>
    public ulong FastStartPfn;
}

/// <summary>Memory compaction of one machine: its tunables and per-zone state; the pages it moves belong to the
/// tasks, the page cache, swap and the LRU.</summary>
internal sealed partial class Compaction(PhysMem mem, PageAllocator pa, Lruvecs lru, UserMemory memory, Swapfile swap, HighmemMaps highmem,
    VmEvents events, ReclaimLocks locks)
{
    private readonly PhysMem _mem = mem;
    private readonly PageAllocator _pa = pa;
    private readonly Lruvecs _lru = lru;
    private readonly UserMemory _memory = memory;
    private readonly Swapfile _swap = swap;
    private readonly HighmemMaps _highmem = highmem;
    private readonly VmEvents _events = events;
    private readonly ReclaimLocks _locks = locks;

    /// <summary>COMPACT_CLUSTER_MAX: pages isolated per batch.</summary>
    private const int CompactClusterMax = Vmscan.SwapClusterMax;
    /// <summary>COMPACT_MAX_DEFER_SHIFT.</summary>
    public const int CompactMaxDeferShift = 6;

    /// <summary>compact_gap: the free pages compaction wants beyond the watermark for an order (twice the request, room
    /// for the pages it isolates to migrate into).</summary>
    public static long CompactGap(int order) => 2L << order;

    /// <summary>vm.extfrag_threshold: 0..1000 (default 500).</summary>
    public int ExtfragThreshold { get; set; } = 500;

    /// <summary>vm.compaction_proactiveness: 0..100 (default 20; 0 turns proactive compaction off).</summary>
    public int CompactionProactiveness { get; set; } = 20;

    /// <summary>fragmentation_score_wmark: the proactive low mark, max(100 − proactiveness, 5), and the high mark
    /// ten above it (at most 100).</summary>
    public int FragmentationScoreWmark(bool low)
    {
        int wmarkLow = Math.Max(100 - CompactionProactiveness, 5);
        return low ? wmarkLow : Math.Min(wmarkLow + 10, 100);
    }

    /// <summary>kswapd_is_running: set by the layer that owns kswapd (a proactive run gives way to reclaim).</summary>
    public Func<Node, bool> KswapdIsRunning { get; set; } = _ => false;

    /// <summary>compaction_suitable: Success when the order's watermark is met already; Skipped without enough
    /// order-0 pages to compact into (<paramref name="wmarkTarget"/> free pages, by default the zone's: the low
    /// watermark for costly orders, min otherwise, plus compact_gap), or for a costly order whose fragmentation
    /// index says the failure is a lack of memory; Continue otherwise.</summary>
    public CompactResult CompactionSuitable(Zone zone, int order, ZoneType highest, long wmarkTarget = -1)
    {
        if (order < 0)
        {
            return CompactResult.Continue;
        }
        long free = Volatile.Read(ref zone.VmstatFreePages); // zone_page_state, as zone_watermark_ok reads it
        if (PageAllocator.ZoneWatermarkOk(zone, order, zone.WmarkPages(Zone.WmarkMin), highest, 0, free))
        {
            return CompactResult.Success;
        }
        long mark = (order > PerCpuPages.CostlyOrder ? zone.WmarkPages(Zone.WmarkLow) : zone.WmarkPages(Zone.WmarkMin)) + CompactGap(order);
        if (!PageAllocator.ZoneWatermarkOk(zone, 0, mark, highest, 0, wmarkTarget >= 0 ? wmarkTarget : free))
        {
            return CompactResult.Skipped;
        }
        if (wmarkTarget < 0 && order > PerCpuPages.CostlyOrder)
        {
            int index = Fragmentation.FragmentationIndex(zone, order);
            if (index >= 0 && index <= ExtfragThreshold)
            {
                return CompactResult.Skipped; // COMPACT_NOT_SUITABLE_ZONE, reported as skipped
            }
        }
        return CompactResult.Continue;
    }

    /// <summary>compaction_zonelist_suitable: would compaction have enough to work with in some zone if a share
    /// (1/order) of the reclaimable pages were reclaimed?</summary>
    public bool CompactionZonelistSuitable(int order, Zone[] zonelist, ZoneType highest, Func<Zone, long> reclaimable)
    {
        foreach (var zone in zonelist)
        {
            if (zone.Type > highest || !zone.IsManaged)
            {
                continue;
            }
            long available = reclaimable(zone) / Math.Max(order, 1) + Volatile.Read(ref zone.FreePages);
            if (CompactionSuitable(zone, order, highest, available) == CompactResult.Continue)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>try_to_compact_pages: direct compaction of the zonelist's zones at a priority; returns the best
    /// result over the zones (Skipped without __GFP_IO: GFP_NOIO never compacts).</summary>
    public CompactResult TryToCompactPages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest, CompactPriority prio)
    {
        if (MmCurrent.Memalloc || (gfp & Gfp.Io) == 0)
        {
            return CompactResult.Skipped;
        }
        MmCurrent.Memalloc = true;
        try
        {
            using (_locks.EnterAll())
            {
                var rc = CompactResult.Skipped;
                foreach (var zone in zonelist)
                {
                    if (zone.Type > highest || !zone.IsManaged)
                    {
                        continue;
                    }
                    if (prio > CompactPriority.SyncFull && CompactionDeferred(zone, order))
                    {
                        rc = Max(rc, CompactResult.Deferred);
                        continue;
                    }
                    var cc = new CompactControl
                    {
                        Order = order, Gfp = gfp, Migratetype = GfpMigratetype(gfp), Highest = highest, Direct = true,
                        Mode = prio == CompactPriority.Async ? MigrateMode.Async : MigrateMode.SyncLight,
                        WholeZone = prio == CompactPriority.SyncFull, IgnoreSkipHint = prio == CompactPriority.SyncFull,
                        IgnoreBlockSuitable = prio == CompactPriority.SyncFull,
                    };
                    var status = CompactZone(zone, ref cc);
                    rc = Max(rc, status);
                    if (status == CompactResult.Success)
                    {
                        // Likely but not certain: the allocator confirms with alloc_success once it has the page.
                        CompactionDeferReset(zone, order, allocSuccess: false);
                        break;
                    }
                    if (prio != CompactPriority.Async && status is CompactResult.Complete or CompactResult.PartialSkipped)
                    {
                        DeferCompaction(zone, order);
                    }
                }
                return rc;
            }
        }
        finally
        {
            MmCurrent.Memalloc = false;
        }
    }

    private static CompactResult Max(CompactResult a, CompactResult b) => a > b ? a : b;

    /// <summary>gfp_migratetype.</summary>
    private static int GfpMigratetype(Gfp gfp) => (int)(gfp & (Gfp.Reclaimable | Gfp.Movable)) >> 3;

    /// <summary>compact_node for every node: /proc/sys/vm/compact_memory (sync, whole zones, skip hints
    /// ignored). Returns pages migrated.</summary>
    public long CompactMemory()
    {
        long before = _events.Stats.PgmigrateSuccess;
        using (_locks.EnterAll())
        {
            foreach (var zone in _pa.Zones)
            {
                if (zone.IsManaged)
                {
                    var cc = new CompactControl
                    {
                        Order = -1, Gfp = Gfp.Kernel, Migratetype = GfpMigratetype(Gfp.Kernel), Highest = zone.Type,
                        Mode = MigrateMode.Sync, WholeZone = true, IgnoreSkipHint = true,
                    };
                    CompactZone(zone, ref cc);
                }
            }
            return _events.Stats.PgmigrateSuccess - before;
        }
    }

    /// <summary>kcompactd_do_work for one zone (sync-light): skipped when deferred or unsuitable; a failed run
    /// defers the zone, a successful one resets the deferral. Under the reclaim locks.</summary>
    public CompactResult KcompactdZone(Zone zone, int order, bool proactive)
    {
        if (!proactive && (CompactionDeferred(zone, order) || CompactionSuitable(zone, order, zone.Type) != CompactResult.Continue))
        {
            return CompactResult.Skipped;
        }
        var cc = new CompactControl
        {
            Order = proactive ? -1 : order, Gfp = Gfp.Kernel, Migratetype = GfpMigratetype(Gfp.Kernel), Highest = zone.Type,
            Mode = MigrateMode.SyncLight, WholeZone = proactive, IgnoreSkipHint = proactive, Proactive = proactive,
        };
        var status = CompactZone(zone, ref cc);
        if (!proactive)
        {
            // kcompactd_do_work counts its runs' scans again as the daemon's (proactive_compact_node does not).
            _events.Stats.CompactDaemonMigrateScanned += cc.TotalMigrateScanned;
            _events.Stats.CompactDaemonFreeScanned += cc.TotalFreeScanned;
            if (status == CompactResult.Success)
            {
                CompactionDeferReset(zone, order, allocSuccess: false);
            }
            else if (status is CompactResult.PartialSkipped or CompactResult.Complete)
            {
                DeferCompaction(zone, order);
            }
        }
        return status;
    }

    /// <summary>migrate_pages for one page: copy the bytes, move the flags and the owner, point the PTE or the
    /// cache slot at the copy, take the old frame's place on the LRU, and free the old frame.</summary>
    private void MigratePage(uint from, uint to)
    {
        _highmem.CopyHighpage(to, from);
        ref PageFrame src = ref _mem.Frame(from);
        ref PageFrame dst = ref _mem.Frame(to);
        var lru = _lru.ListOf(from);
        var owner = _lru.OwnerOf(from)!;
        ulong index = _lru.IndexOf(from);
        const PageFlags moved = PageFlags.Referenced | PageFlags.Uptodate | PageFlags.Dirty | PageFlags.Active
            | PageFlags.Workingset | PageFlags.SwapBacked | PageFlags.SwapCache;
        dst.Flags |= src.Flags & moved;
        dst.MapCount = src.MapCount;
        dst.Private = src.Private;
        if (owner is TaskStruct t)
        {
            // An unmapped page (written to swap, waiting for its second scan) has no PTE to point at the copy.
            if (src.MapCount > 0)
            {
                _memory.RepointPte(t, index, to);
            }
        }
        else
        {
            Filemap.Migrate((CachedFile)owner, (long)index, to);
        }
        if ((src.Flags & PageFlags.SwapCache) != 0)
        {
            _swap.MigrateSwapCache(src.Private, to);
        }
        _lru.Migrate(from, to, lru, owner, index);
        src.Flags &= ~(PageFlags.Lru | moved);
        src.MapCount = 0;
        src.Private = 0;
        _pa.FreePages(new Page(from), 0);
        _events.Stats.PgmigrateSuccess++;
    }
}
