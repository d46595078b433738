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
// Locking: MmState.Lock for the whole run (the LRU and the owners' tables);
// zone->lock inside IsolateFreePage and the free path.
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

internal sealed partial class MmState
{
    /// <summary>COMPACT_CLUSTER_MAX: pages isolated per batch.</summary>
    private const int CompactClusterMax = SwapClusterMax;

    /// <summary>vm.extfrag_threshold: 0..1000 (default 500).</summary>
    public int ExtfragThreshold { get; set; } = 500;

    /// <summary>vm.compaction_proactiveness: 0..100 (default 20; 0 turns proactive compaction off).</summary>
    public int CompactionProactiveness { get; set; } = 20;

    /// <summary>fragmentation_index: −1000 when a block of the order is free, else toward 0 for lack of memory
    /// and toward 1000 for fragmentation.</summary>
    public static int FragmentationIndex(Zone zone, int order)
    {
        long freePages = 0, blocks = 0, suitable = 0;
        for (int o = 0; o < Arch.MaxOrder; o++)
        {
            long n = zone.NrFree(o);
            blocks += n;
            freePages += n << o;
            if (o >= order)
            {
                suitable += n;
            }
        }
        if (blocks == 0)
        {
            return 0;
        }
        if (suitable > 0)
        {
            return -1000;
        }
        return (int)(1000 - (1000 + freePages * 1000 / (1L << order)) / blocks);
    }

    /// <summary>compaction_suitable: enough free pages to compact into (order-0 watermark plus 2 × 2^order), and
    /// for costly orders a fragmentation index above extfrag_threshold.</summary>
    private bool CompactionSuitable(Zone zone, int order, ZoneType highest)
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
            int index = FragmentationIndex(zone, order);
            if (index >= 0 && index <= ExtfragThreshold)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>A free block of at least the order in a movable-or-unmovable list and the watermark allows it
    /// (__compact_finished's success test).</summary>
    private static bool CompactFinished(Zone zone, int order, ZoneType highest) =>
        order >= 0 && PageAllocator.ZoneWatermarkOk(zone, order, zone.WmarkPages(Zone.WmarkMin), highest, 0, Volatile.Read(ref zone.FreePages));

    /// <summary>try_to_compact_pages: direct compaction of the zonelist's zones for an allocation; returns
    /// whether some zone now has a free block of the order.</summary>
    public bool TryToCompactPages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest)
    {
        if (t_memalloc || IsDisposed || (gfp & Gfp.Io) == 0 && (gfp & Gfp.Movable) == 0)
        {
            // Without __GFP_IO (GFP_NOIO) compaction may not wait on pages under I/O; Kmem skips it.
            return false;
        }
        t_memalloc = true;
        try
        {
            lock (Lock)
            {
                Stats.CompactStall++;
                foreach (var zone in zonelist)
                {
                    if (zone.Type > highest || !zone.IsManaged || !CompactionSuitable(zone, order, highest))
                    {
                        continue;
                    }
                    if (CompactZone(zone, order, highest, daemon: false) == CompactResult.Success)
                    {
                        Stats.CompactSuccess++;
                        return true;
                    }
                }
                Stats.CompactFail++;
                return false;
            }
        }
        finally
        {
            t_memalloc = false;
        }
    }

    /// <summary>compact_node for every node: /proc/sys/vm/compact_memory. Returns pages migrated.</summary>
    public long CompactMemory()
    {
        long before = Stats.PgmigrateSuccess;
        lock (Lock)
        {
            foreach (var zone in _pa.Zones)
            {
                if (zone.IsManaged)
                {
                    CompactZone(zone, -1, zone.Type, daemon: false);
                }
            }
            return Stats.PgmigrateSuccess - before;
        }
    }

    /// <summary>compact_zone: run both scanners until they meet or the order is satisfied. Under Lock.</summary>
    private CompactResult CompactZone(Zone zone, int order, ZoneType highest, bool daemon)
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
                    CountScanned(ref Stats.CompactMigrateScanned, ref Stats.CompactDaemonMigrateScanned, daemon);
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
                Stats.CompactIsolated += batch.Count;
                foreach (uint pfn in batch)
                {
                    if (freelist.Count == 0)
                    {
                        Stats.PgmigrateFail++;
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
            CountScanned(ref Stats.CompactFreeScanned, ref Stats.CompactDaemonFreeScanned, daemon);
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
                    Stats.CompactIsolated += 1L << order;
                }
                pfn += 1u << order;
                continue;
            }
            pfn++;
        }
    }

    /// <summary>migrate_pages for one page: copy the bytes, move the flags and the owner, point the PTE or the
    /// cache slot at the copy, take the old frame's place on the LRU, and free the old frame.</summary>
    private unsafe void MigratePage(uint from, uint to)
    {
        _m.CopyHighpage(new Page(to), new Page(from));
        ref PageFrame src = ref _mem.Frame(from);
        ref PageFrame dst = ref _mem.Frame(to);
        var lru = ListOf(from);
        var owner = OwnerOf(from)!;
        ulong index = IndexOf(from);
        const PageFlags moved = PageFlags.Referenced | PageFlags.Uptodate | PageFlags.Dirty | PageFlags.Active
            | PageFlags.Workingset | PageFlags.SwapBacked | PageFlags.SwapCache;
        dst.Flags |= src.Flags & moved;
        dst.MapCount = src.MapCount;
        dst.Private = src.Private;
        if (owner is TaskStruct t)
        {
            ulong* pte = Walk(t, index, out _);
            *pte = ((ulong)to << PhysMem.PageShift) | (*pte & ~PtePfnMask);
        }
        else
        {
            ((CachedFile)owner).Pages[(long)index] = to;
        }
        if ((src.Flags & PageFlags.SwapCache) != 0)
        {
            _swapCache[src.Private] = to;
        }
        SetOwner(to, owner, index);
        RemoveFromList(from, lru);
        dst.Flags |= PageFlags.Lru;
        AddToList(to, lru, head: true);
        src.Flags &= ~(PageFlags.Lru | moved);
        src.MapCount = 0;
        src.Private = 0;
        ClearOwner(from);
        _pa.FreePages(new Page(from), 0);
        Stats.PgmigrateSuccess++;
    }
}
