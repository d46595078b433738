// Memory compaction (mm/compaction.c, mm/migrate.c): the migrate scanner walks
// a zone's pageblocks up from its start taking movable pages (task anonymous
// pages and page-cache pages on the LRU: kernel pages never move), the free
// scanner walks down from its end taking free pages of Movable pageblocks, and
// each page is copied to a free page, its page-table entry or cache slot
// pointed at the copy, and the old frame freed, until the scanners meet or (for
// a given order) a free block of that order exists. Direct compaction runs in
// the allocation slow path for costly orders; kcompactd runs per node when
// kswapd asks and every 500 ms for proactive compaction
// (compaction_proactiveness); CompactMemory is /proc/sys/vm/compact_memory.
// compaction_suitable uses the fragmentation index against extfrag_threshold:
// an index at or under it means the failure is a lack of memory, so reclaim
// rather than compaction is the answer.
// Knowingly left out: cached scanner positions, pageblock skip bits and
// compaction deferral (every run scans afresh), async/sync modes (one mode).
// Locking: a run holds the four owner locks (ReclaimLocks, LockOrder.cs): it
// moves task pages, page-cache pages and swap-cache pages and their LRU places;
// zone->lock inside IsolateFreePage and the free path.
using Kmem.Highmem;
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Reclaim;

/// <summary>enum compact_result, the outcomes Kmem reports.</summary>
internal enum CompactResult
{
    /// <summary>Not attempted: too few free pages, or the failure is not fragmentation.</summary>
    Skipped,
    /// <summary>The scanners met without making the requested block.</summary>
    Complete,
    /// <summary>A free block of the requested order is now available.</summary>
    Success,
}

/// <summary>Memory compaction of one machine: its tunables; the pages it moves belong to the tasks, the page
/// cache, swap and the LRU.</summary>
internal sealed class Compaction(PhysMem mem, PageAllocator pa, Lruvecs lru, UserMemory memory, Swapfile swap, HighmemMaps highmem,
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

    /// <summary>vm.extfrag_threshold: 0..1000 (default 500).</summary>
    public int ExtfragThreshold { get; set; } = 500;

    /// <summary>vm.compaction_proactiveness: 0..100 (default 20; 0 turns proactive compaction off).</summary>
    public int CompactionProactiveness { get; set; } = 20;

    /// <summary>compaction_suitable: enough free pages to compact into (order-0 watermark plus 2 × 2^order), and
    /// for costly orders a fragmentation index above extfrag_threshold.</summary>
    public bool CompactionSuitable(Zone zone, int order, ZoneType highest)
    {
        if (order < 0)
        {
            return true;
        }
        long mark = (order > PerCpuPages.CostlyOrder ? zone.WmarkPages(Zone.WmarkLow) : zone.WmarkPages(Zone.WmarkMin)) + (2L << order);
        if (!PageAllocator.ZoneWatermarkOk(zone, 0, mark, highest, 0, Volatile.Read(ref zone.FreePages)))
        {
            return false;
        }
        if (order > PerCpuPages.CostlyOrder)
        {
            int index = Fragmentation.FragmentationIndex(zone, order);
            if (index >= 0 && index <= ExtfragThreshold)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>A free block of at least the order in a movable-or-unmovable list and the watermark allows it
    /// (__compact_finished's success test).</summary>
    public static bool CompactFinished(Zone zone, int order, ZoneType highest) =>
        order >= 0 && PageAllocator.ZoneWatermarkOk(zone, order, zone.WmarkPages(Zone.WmarkMin), highest, 0, Volatile.Read(ref zone.FreePages));

    /// <summary>try_to_compact_pages: direct compaction of the zonelist's zones for an allocation; returns
    /// whether some zone now has a free block of the order.</summary>
    public bool TryToCompactPages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest)
    {
        if (MmCurrent.Memalloc || (gfp & Gfp.Io) == 0 && (gfp & Gfp.Movable) == 0)
        {
            // Without __GFP_IO (GFP_NOIO) compaction may not wait on pages under I/O; Kmem skips it.
            return false;
        }
        MmCurrent.Memalloc = true;
        try
        {
            using (_locks.EnterAll())
            {
                _events.Stats.CompactStall++;
                foreach (var zone in zonelist)
                {
                    if (zone.Type > highest || !zone.IsManaged || !CompactionSuitable(zone, order, highest))
                    {
                        continue;
                    }
                    if (CompactZone(zone, order, highest, daemon: false) == CompactResult.Success)
                    {
                        _events.Stats.CompactSuccess++;
                        return true;
                    }
                }
                _events.Stats.CompactFail++;
                return false;
            }
        }
        finally
        {
            MmCurrent.Memalloc = false;
        }
    }

    /// <summary>compact_node for every node: /proc/sys/vm/compact_memory. Returns pages migrated.</summary>
    public long CompactMemory()
    {
        long before = _events.Stats.PgmigrateSuccess;
        using (_locks.EnterAll())
        {
            foreach (var zone in _pa.Zones)
            {
                if (zone.IsManaged)
                {
                    CompactZone(zone, -1, zone.Type, daemon: false);
                }
            }
            return _events.Stats.PgmigrateSuccess - before;
        }
    }

    /// <summary>compact_zone: run both scanners until they meet or the order is satisfied. Under the reclaim locks.</summary>
    public CompactResult CompactZone(Zone zone, int order, ZoneType highest, bool daemon)
    {
        uint blockPages = 1u << _mem.PageblockOrder;
        uint migratePfn = zone.StartPfn;
        uint freeBlock = (zone.EndPfn - 1) & ~(blockPages - 1); // the free scanner's current pageblock
        var freelist = new Stack<uint>();
        var result = CompactResult.Complete;
        try
        {
            while (migratePfn < freeBlock)
            {
                if (CompactFinished(zone, order, highest))
                {
                    result = CompactResult.Success;
                    break;
                }
                // isolate_migratepages: up to 32 movable pages from the migrate scanner's position.
                var batch = new List<uint>();
                uint scanEnd = Math.Min(freeBlock, (migratePfn + blockPages) & ~(blockPages - 1));
                for (; migratePfn < scanEnd && batch.Count < CompactClusterMax; migratePfn++)
                {
                    CountScanned(ref _events.Stats.CompactMigrateScanned, ref _events.Stats.CompactDaemonMigrateScanned, daemon);
                    ref PageFrame f = ref _mem.Frame(migratePfn);
                    if ((f.Flags & (PageFlags.Lru | PageFlags.Writeback)) == PageFlags.Lru && f.RefCount == 1 && _mem.ZoneIndexOf(migratePfn) == zone.Index)
                    {
                        batch.Add(migratePfn);
                    }
                }
                if (batch.Count == 0)
                {
                    continue;
                }
                // isolate_freepages: enough free pages from the top, Movable pageblocks only.
                while (freelist.Count < batch.Count && freeBlock > migratePfn)
                {
                    IsolateFreepagesBlock(zone, freeBlock, freelist, daemon);
                    if (freelist.Count < batch.Count)
                    {
                        if (freeBlock < blockPages)
                        {
                            break;
                        }
                        freeBlock -= blockPages;
                    }
                }
                _events.Stats.CompactIsolated += batch.Count;
                foreach (uint pfn in batch)
                {
                    if (freelist.Count == 0)
                    {
                        _events.Stats.PgmigrateFail++;
                        continue;
                    }
                    uint target = freelist.Pop();
                    if (target < pfn)
                    {
                        // The scanners crossed inside this batch: moving down would not help.
                        freelist.Push(target);
                        break;
                    }
                    MigratePage(pfn, target);
                }
            }
            if (result != CompactResult.Success && CompactFinished(zone, order, highest))
            {
                result = CompactResult.Success;
            }
            return result;
        }
        finally
        {
            // release_freepages: whatever the free scanner took and no page needed goes back.
            foreach (uint pfn in freelist)
            {
                _pa.FreePages(new Page(pfn), 0);
            }
        }
    }

    private static void CountScanned(ref long direct, ref long daemonCount, bool daemon)
    {
        if (daemon)
        {
            daemonCount++;
        }
        else
        {
            direct++;
        }
    }

    /// <summary>isolate_freepages_block for one pageblock: every free buddy block in it becomes order-0 targets.</summary>
    private void IsolateFreepagesBlock(Zone zone, uint blockStart, Stack<uint> freelist, bool daemon)
    {
        if (_mem.PageblockMigratetype(blockStart) != MigrateType.Movable)
        {
            return;
        }
        uint end = Math.Min(zone.EndPfn, blockStart + (1u << _mem.PageblockOrder));
        // Lowest addresses last on the stack's bottom: pop hands out the highest first, away from the migrate scanner.
        for (uint pfn = Math.Max(blockStart, zone.StartPfn); pfn < end;)
        {
            CountScanned(ref _events.Stats.CompactFreeScanned, ref _events.Stats.CompactDaemonFreeScanned, daemon);
            ref PageFrame f = ref _mem.Frame(pfn);
            if ((f.Flags & PageFlags.Buddy) != 0)
            {
                int order = f.Order;
                if (zone.IsolateFreePage(pfn, order))
                {
                    for (uint i = 0; i < 1u << order; i++)
                    {
                        freelist.Push(pfn + i);
                    }
                    _events.Stats.CompactIsolated += 1L << order;
                }
                pfn += 1u << order;
                continue;
            }
            pfn++;
        }
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
            _memory.RepointPte(t, index, to);
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
