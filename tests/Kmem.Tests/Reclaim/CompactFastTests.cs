// Compaction's fast searches (Reclaim/CompactFast.cs, PageAlloc/CompactFreelist.cs):
// freelist_scan_limit and next_search_order's arithmetic, the free-list rotations,
// fast_find_migrateblock choosing a low pageblock that holds a free block of a costly
// order (and not for small orders, unmovable direct requests or a block too high), and
// fast_isolate_freepages taking a free block from the top quarter between the scanners,
// or, finding none, moving the free scanner to the middle for direct compaction.
using Kmem.PageAlloc;
using Kmem.Physical;
using Kmem.Reclaim;
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

public class CompactFastTests
{
    [Theory]
    [InlineData(0, 33)]
    [InlineData(1, 17)]
    [InlineData(5, 2)]
    [InlineData(6, 1)]
    [InlineData(70, 1)]
    public void TheScanLimitHalvesWithEachFailedSearch(int fails, int limit)
    {
        var cc = new CompactControl { FastSearchFail = fails };
        Assert.Equal(limit, Compaction.FreelistScanLimit(ref cc));
    }

    [Fact]
    public void TheSearchGoesRoundTheOrdersBelowTheRequestsAndStartsLowerAfterAWrap()
    {
        var cc = new CompactControl { Order = 4, SearchOrder = 2 };
        var seen = new List<int>();
        for (int o = 2; o >= 0; o = Compaction.NextSearchOrder(ref cc, o))
        {
            seen.Add(o);
        }
        Assert.Equal([2, 1, 0, 3], seen);
        Assert.Equal(1, cc.SearchOrder);
        cc.SearchOrder = 0;
        Assert.Equal(-1, Compaction.NextSearchOrder(ref cc, 1)); // wrapped at 0: the next search starts at 3
        Assert.Equal(3, cc.SearchOrder);
    }

    /// <summary>A machine whose every free page is allocated (watermarks at zero), then the order-3 blocks at the
    /// given fractions of the last zone's order-3 blocks (by pfn) freed again: the zone's only free pages.</summary>
    private static (Machine M, Zone Zone, uint[] Freed) OnlyTheseFree(params double[] at)
    {
        var m = Boot();
        foreach (var z in m.PageAllocator.Zones)
        {
            lock (z.Lock)
            {
                Array.Clear(z.Watermark);
                Array.Clear(z.LowmemReserve);
            }
        }
        var gfp = (Gfp.HighUserMovable & ~Gfp.Reclaim) | Gfp.NoWarn;
        var blocks = new List<Page>();
        for (var p = m.AllocPages(gfp, 3); !p.IsNull; p = m.AllocPages(gfp, 3))
        {
            blocks.Add(p);
        }
        for (var p = m.AllocPages(gfp, 0); !p.IsNull; p = m.AllocPages(gfp, 0))
        {
        }
        m.DrainAllPages();
        var zone = m.PageAllocator.Zones.Last(z => z.IsManaged);
        Assert.Equal(0, zone.FreePages);
        // Blocks of Movable pageblocks, whose free blocks go on the Movable lists the fast searches read.
        var inZone = blocks.Select(b => b.RawPfn).Where(p => zone.Spans(p) && m.Mem.PageblockMigratetype(p) == MigrateType.Movable).Order().ToArray();
        var freed = at.Select(f => inZone[(int)(f * inZone.Length)]).ToArray();
        Assert.Equal(freed.Length, freed.Distinct().Count());
        foreach (uint pfn in freed)
        {
            m.FreePages(new Page(pfn), 3);
        }
        m.DrainAllPages();
        Assert.Equal(8L * freed.Length, zone.FreePages);
        return (m, zone, freed);
    }

    private static List<uint> Walk(Machine m, Zone zone, int order)
    {
        var list = new List<uint>();
        lock (zone.Lock)
        {
            for (uint pfn = zone.FreeListEnds(order, MigrateType.Movable).Head; pfn != PhysMem.NoPfn; pfn = m.Mem.Frame(pfn).Next)
            {
                list.Add(pfn);
            }
        }
        return list;
    }

    [Fact]
    public void MovingAFreeBlockToTheHeadOrTailRotatesTheListAndKeepsEveryEntry()
    {
        var (m, zone, _) = OnlyTheseFree(0.1, 0.3, 0.5, 0.7, 0.9);
        using var _ = m;
        var before = Walk(m, zone, 3);
        Assert.Equal(5, before.Count);
        lock (zone.Lock)
        {
            zone.MoveFreelistHead(3, MigrateType.Movable, before[2]);
        }
        Assert.Equal(before[2..].Concat(before[..2]), Walk(m, zone, 3));
        lock (zone.Lock)
        {
            zone.MoveFreelistTail(3, MigrateType.Movable, before[3]); // now at index 1: it and the head go to the tail
            zone.Validate();
        }
        Assert.Equal([before[4], before[0], before[1], before[2], before[3]], Walk(m, zone, 3));
        Assert.Equal(5, zone.NrFree(3, MigrateType.Movable));
    }

    private static CompactControl Direct(Zone zone, int order, Gfp gfp) => new()
    {
        Order = order, SearchOrder = order, Gfp = gfp, Direct = true, Mode = MigrateMode.Async, Highest = zone.Type,
        Migratetype = (int)(gfp & (Gfp.Reclaimable | Gfp.Movable)) >> 3,
        MigratePfn = zone.StartPfn, FreePfn = (zone.EndPfn - 1) & ~((1u << 9) - 1),
    };

    [Fact]
    public void ACostlyMovableRequestStartsMigratingAtALowBlockThatHoldsAFreeBlock()
    {
        var (m, zone, freed) = OnlyTheseFree(0, 0.8);
        using var _ = m;
        var compaction = m.Mm.Compaction;
        uint low = freed[0], high = freed[1];
        Assert.False(compaction.PageblockSkip(low));
        // Small orders scan linearly, and an unmovable direct request may not empty a Movable block.
        var small = Direct(zone, 3, Gfp.HighUserMovable);
        Assert.Equal(zone.StartPfn, compaction.FastFindMigrateblock(zone, ref small));
        var unmovable = Direct(zone, 6, Gfp.Kernel);
        Assert.Equal(zone.StartPfn, compaction.FastFindMigrateblock(zone, ref unmovable));
        Assert.Equal(0, small.TotalMigrateScanned + unmovable.TotalMigrateScanned);
        var cc = Direct(zone, 6, Gfp.HighUserMovable);
        uint pageblock = 1u << m.Mem.PageblockOrder;
        Assert.Equal(low & ~(pageblock - 1), compaction.FastFindMigrateblock(zone, ref cc));
        Assert.True(compaction.PageblockSkip(low)); // the next fast search looks elsewhere
        Assert.False(compaction.PageblockSkip(high));
        Assert.Equal(0, cc.FastSearchFail);
        Assert.Equal(low, cc.FastStartPfn);
        Assert.Equal(low, Walk(m, zone, 3)[^1]); // moved to the tail
        // Again: the low block is skipped, the high one above the first half: the search fails and the linear
        // scan restarts at the lowest block found before.
        cc.MigratePfn = zone.StartPfn;
        long scanned = cc.TotalMigrateScanned;
        Assert.Equal(low, compaction.FastFindMigrateblock(zone, ref cc));
        Assert.Equal(1, cc.FastSearchFail);
        Assert.Equal(2, cc.TotalMigrateScanned - scanned); // both entries looked at
    }

    [Fact]
    public void TheFreeSearchTakesABlockFromTheTopQuarterOrMovesTheScannerToTheMiddle()
    {
        var (m, zone, freed) = OnlyTheseFree(0.1, 0.9);
        using var _ = m;
        var compaction = m.Mm.Compaction;
        Assert.False(compaction.PageblockSkip(zone.StartPfn)); // the state exists
        uint low = freed[0], high = freed[1];
        var cc = Direct(zone, 5, Gfp.HighUserMovable);
        var taken = new Stack<uint>();
        compaction.FastIsolateFreepages(zone, ref cc, taken, 32);
        Assert.Equal(Enumerable.Range(0, 8).Select(i => high + (uint)i).Order(), taken.Order());
        Assert.Equal(3, cc.SearchOrder);
        Assert.Equal(0, cc.FastSearchFail);
        Assert.Equal(8, zone.FreePages);
        Assert.True((m.Mem.Frame(low).Flags & PageFlags.Buddy) != 0);
        uint freePfn = cc.FreePfn;
        uint minPfn = (freePfn - ((freePfn - cc.MigratePfn) >> 1)) & ~((1u << m.Mem.PageblockOrder) - 1);
        Assert.True(low < minPfn);
        // Nothing left above the middle: async direct compaction takes nothing and its free scanner goes there.
        compaction.FastIsolateFreepages(zone, ref cc, taken, 32);
        Assert.Equal(8, taken.Count);
        Assert.Equal(1, cc.FastSearchFail);
        Assert.Equal(minPfn, cc.FreePfn);
        Assert.True((m.Mem.Frame(low).Flags & PageFlags.Buddy) != 0);
        foreach (uint pfn in taken)
        {
            m.FreePages(new Page(pfn), 0);
        }
    }
}
