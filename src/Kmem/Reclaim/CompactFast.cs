// Compaction's fast searches (mm/compaction.c): fast_isolate_freepages, which
// looks for a free block to migrate into on the Movable free lists below the
// request's order instead of walking pageblocks down from the free scanner
// (round-robin over the orders from cc->search_order, a scan limit that halves
// with each candidate and each order, the preferred block in the top quarter of
// the space between the scanners and a fallback from the top half), with
// fast_isolate_around taking the rest of the chosen pageblock; and
// fast_find_migrateblock, which for a costly order picks as the migration source
// a pageblock low in the zone that already holds a free block of order
// PAGE_ALLOC_COSTLY_ORDER or more (kcompactd and Movable direct requests only;
// never when skip hints are ignored), with freelist_scan_limit shrinking as the
// searches fail and reinit_migrate_pfn restarting the linear scan at the lowest
// block found. Both rotate the lists they walked (move_freelist_head/_tail) so
// that the next search looks elsewhere.
// Invariants: the fast searches isolate only through Zone.IsolateFreePage (its
// min watermark check), so free-page accounting is the linear scanner's.
// Locking: under the reclaim locks (see Compaction.cs); the free lists are walked
// and rotated under zone->lock.
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Reclaim;

internal sealed partial class Compaction
{
    /// <summary>ULONG_MAX in cc->fast_start_pfn: the linear scan was restarted from it once already.</summary>
    private const ulong FastStartDone = ulong.MaxValue;

    /// <summary>freelist_scan_limit: COMPACT_CLUSTER_MAX halved for each fast search that failed in a row, plus one.</summary>
    internal static int FreelistScanLimit(ref CompactControl cc) =>
        (CompactClusterMax >> Math.Min(63, cc.FastSearchFail)) + 1;

    /// <summary>next_search_order: the orders below the request's, round robin, from the last order that gave a
    /// block; −1 once the search wrapped round (and search_order is lowered for next time).</summary>
    internal static int NextSearchOrder(ref CompactControl cc, int order)
    {
        order--;
        if (order < 0)
        {
            order = cc.Order - 1;
        }
        if (order == cc.SearchOrder)
        {
            cc.SearchOrder--;
            if (cc.SearchOrder < 0)
            {
                cc.SearchOrder = cc.Order - 1;
            }
            return -1;
        }
        return order;
    }

    /// <summary>fast_isolate_freepages: one free block of an order below the request's from the Movable lists, in
    /// the top quarter of the space between the scanners (else the highest candidate in its top half), then the
    /// rest of its pageblock (fast_isolate_around).</summary>
    internal void FastIsolateFreepages(Zone zone, ref CompactControl cc, Stack<uint> freelist, int need)
    {
        if (cc.Order <= 0 || cc.FreePfn <= cc.MigratePfn)
        {
            return;
        }
        int zi = zone.Index;
        int limit = Math.Max(1, FreelistScanLimit(ref cc) >> 1);
        bool scanStart = false;
        // Starting the scan: a deeper search, and the highest pfn found as the fallback.
        if (cc.FreePfn >= _initFree![zi])
        {
            limit = (int)(BlockPages >> 1);
            scanStart = true;
        }
        uint distance = cc.FreePfn - cc.MigratePfn;
        uint lowPfn = PageblockStart(cc.FreePfn - (distance >> 2));
        uint minPfn = PageblockStart(cc.FreePfn - (distance >> 1));
        if (minPfn > lowPfn)
        {
            lowPfn = minPfn;
        }
        cc.SearchOrder = Math.Min(cc.Order - 1, cc.SearchOrder);
        uint highest = 0, page = PhysMem.NoPfn;
        long nrScanned = 0;
        for (int order = cc.SearchOrder; page == PhysMem.NoPfn && order >= 0; order = NextSearchOrder(ref cc, order))
        {
            if (zone.NrFree(order) == 0)
            {
                continue;
            }
            int orderScanned = 0;
            uint highPfn = 0;
            lock (zone.Lock)
            {
                var (_, tail) = zone.FreeListEnds(order, MigrateType.Movable);
                uint freepage = PhysMem.NoPfn;
                for (uint pfn = tail; pfn != PhysMem.NoPfn; pfn = _mem.Frame(pfn).Prev)
                {
                    freepage = pfn;
                    orderScanned++;
                    nrScanned++;
                    if (pfn >= highest)
                    {
                        highest = Math.Max(PageblockStart(pfn), zone.StartPfn);
                    }
                    if (pfn >= lowPfn)
                    {
                        cc.FastSearchFail = 0;
                        cc.SearchOrder = order;
                        page = pfn;
                        break;
                    }
                    if (pfn >= minPfn && pfn > highPfn)
                    {
                        highPfn = pfn;
                        limit >>= 1; // a candidate shortens the scan
                    }
                    if (orderScanned >= limit)
                    {
                        break;
                    }
                    freepage = PhysMem.NoPfn; // walked past: a list walked to its end is left as it is
                }
                if (page == PhysMem.NoPfn && highPfn != 0)
                {
                    page = freepage = highPfn;
                }
                if (freepage != PhysMem.NoPfn)
                {
                    // A future search skips the pages this one looked at.
                    zone.MoveFreelistHead(order, MigrateType.Movable, freepage);
                }
                if (page != PhysMem.NoPfn)
                {
                    if (zone.IsolateFreePage(page, order))
                    {
                        for (uint i = 0; i < 1u << order; i++)
                        {
                            freelist.Push(page + i);
                        }
                        nrScanned += (1L << order) - 1;
                        _events.Stats.CompactIsolated += 1L << order;
                    }
                    else
                    {
                        order = cc.SearchOrder + 1; // isolation failed (the watermark): abort the search
                        page = PhysMem.NoPfn;
                    }
                }
            }
            if (orderScanned >= limit)
            {
                limit = Math.Max(1, limit >> 1); // a smaller scan of the next order
            }
        }
        if (page == PhysMem.NoPfn)
        {
            cc.FastSearchFail++;
            if (scanStart)
            {
                // The highest pageblock seen above min, else (direct compaction) the min mark itself.
                if (highest >= minPfn)
                {
                    page = cc.FreePfn = highest;
                }
                else if (cc.Direct)
                {
                    page = cc.FreePfn = minPfn;
                }
            }
        }
        if (highest != 0 && highest >= _cachedFree![zi])
        {
            _cachedFree[zi] = highest - BlockPages;
        }
        cc.TotalFreeScanned += nrScanned;
        if (page != PhysMem.NoPfn)
        {
            FastIsolateAround(zone, ref cc, page, freelist, need);
        }
    }

    /// <summary>fast_isolate_around: the free pages of the pageblock around <paramref name="pfn"/>, unless enough are
    /// isolated or this is async direct compaction; a block scanned to its end is marked to be skipped.</summary>
    private void FastIsolateAround(Zone zone, ref CompactControl cc, uint pfn, Stack<uint> freelist, int need)
    {
        if (freelist.Count >= need || (cc.Direct && cc.Mode == MigrateMode.Async))
        {
            return;
        }
        long start = Math.Max(PageblockStart(pfn), zone.StartPfn);
        long end = Math.Min(PageblockStart(pfn) + (long)BlockPages, zone.EndPfn);
        IsolateFreepagesBlock(zone, ref cc, ref start, end, freelist, 1, need);
        if (start == end)
        {
            _skip![pfn >> _mem.PageblockOrder] = true;
        }
    }

    /// <summary>update_fast_start_pfn: the lowest free block the fast migrate search found.</summary>
    private static void UpdateFastStartPfn(ref CompactControl cc, uint pfn)
    {
        if (cc.FastStartPfn == FastStartDone)
        {
            return;
        }
        cc.FastStartPfn = cc.FastStartPfn == 0 ? pfn : Math.Min(cc.FastStartPfn, pfn);
    }

    /// <summary>reinit_migrate_pfn: after a failed fast search the linear scan restarts, once, at the lowest free
    /// block an earlier fast search found.</summary>
    private static uint ReinitMigratePfn(ref CompactControl cc)
    {
        if (cc.FastStartPfn is 0 or FastStartDone)
        {
            return cc.MigratePfn;
        }
        cc.MigratePfn = (uint)cc.FastStartPfn;
        cc.FastStartPfn = FastStartDone;
        return cc.MigratePfn;
    }

    /// <summary>fast_find_migrateblock: for a costly order, a pageblock in the first half (first eighth once the
    /// scanner has moved) of the space between the scanners holding a free Movable block of an order from the
    /// request's down to PAGE_ALLOC_COSTLY_ORDER becomes the migration source (and is marked to be skipped next
    /// time). Returns where the migrate scanner goes on.</summary>
    internal uint FastFindMigrateblock(Zone zone, ref CompactControl cc)
    {
        int limit = FreelistScanLimit(ref cc);
        uint pfn = cc.MigratePfn;
        // Skip hints are what keep the fast search from finding the same blocks again.
        if (cc.IgnoreSkipHint)
        {
            return pfn;
        }
        // Not at a pageblock start: the continuation of a block cut short at COMPACT_CLUSTER_MAX.
        if (pfn != zone.StartPfn && pfn != PageblockStart(pfn))
        {
            return pfn;
        }
        // Small orders: few pages to move, not worth emptying a whole block for.
        if (cc.Order <= PerCpuPages.CostlyOrder)
        {
            return pfn;
        }
        // Only kcompactd and Movable direct requests clear out a Movable pageblock this way.
        if (cc.Direct && cc.Migratetype != (int)MigrateType.Movable)
        {
            return pfn;
        }
        uint distance = (cc.FreePfn - cc.MigratePfn) >> 1;
        if (cc.MigratePfn != zone.StartPfn)
        {
            distance >>= 2;
        }
        uint highPfn = PageblockStart(cc.MigratePfn + distance);
        int nrScanned = 0;
        bool found = false;
        for (int order = cc.Order - 1; order >= PerCpuPages.CostlyOrder && !found && nrScanned < limit; order--)
        {
            if (zone.NrFree(order) == 0)
            {
                continue;
            }
            lock (zone.Lock)
            {
                var (head, _) = zone.FreeListEnds(order, MigrateType.Movable);
                for (uint freepage = head; freepage != PhysMem.NoPfn; freepage = _mem.Frame(freepage).Next)
                {
                    if (nrScanned++ >= limit)
                    {
                        zone.MoveFreelistTail(order, MigrateType.Movable, freepage);
                        break;
                    }
                    if (freepage >= highPfn || _skip![freepage >> _mem.PageblockOrder])
                    {
                        continue; // too high, or skipped recently
                    }
                    zone.MoveFreelistTail(order, MigrateType.Movable, freepage);
                    UpdateFastStartPfn(ref cc, freepage);
                    pfn = Math.Max(PageblockStart(freepage), zone.StartPfn);
                    cc.FastSearchFail = 0;
                    found = true;
                    _skip[freepage >> _mem.PageblockOrder] = true;
                    break;
                }
            }
        }
        cc.TotalMigrateScanned += nrScanned;
        if (!found)
        {
            cc.FastSearchFail++;
            pfn = ReinitMigratePfn(ref cc);
        }
        return pfn;
    }
}
