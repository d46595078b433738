// The per-CPU page lists: an order-0..3 free lands on the freeing CPU's list
// and is handed out again LIFO, an empty list refills a batch from the buddy
// lists, reaching pcp->high (four batches while kswapd reclaims the zone) spills
// a batch back, high orders bypass the lists,
// DrainAllPages empties every CPU's lists, a CPU whose lists are busy (another
// thread on the same CPU id) goes to the buddy lists, and OnCpu pins and restores.
using static Kmem.Tests.PageAlloc.PageAllocCheck;

namespace Kmem.Tests.PageAlloc;

public class PerCpuListTests
{
    // 512M X64 with 2 CPUs: DMA32 has batch 31 and high 427.
    private static Machine Boot(int cpus = 2) => Machine.Boot(new MachineOptions { Memory = "512M", Cpus = cpus, Seed = 1 });

    [Fact]
    public void AFreedOrderZeroPageLandsOnTheFreeingCpusList()
    {
        using var m = Boot();
        var zone = ZoneOf(m, ZoneType.Dma32);
        Page page;
        using (m.OnCpu(0))
        {
            page = m.AllocPage(Gfp.Kernel);
        }
        Assert.Equal(ZoneType.Dma32, m.PageZone(page));
        int before0 = zone.Pcp[0].Count, before1 = zone.Pcp[1].Count;
        long buddy = zone.FreePages;
        using (m.OnCpu(1))
        {
            m.FreePage(page);
        }
        Assert.Equal(before1 + 1, zone.Pcp[1].Count);
        Assert.Equal(before0, zone.Pcp[0].Count);
        Assert.Equal(buddy, zone.FreePages);
        Assert.Equal(0, m.PageRefCount(page));
        // CPU 1 gets the same page back: the list is LIFO.
        using (m.OnCpu(1))
        {
            Assert.Equal(page, m.AllocPage(Gfp.Kernel));
        }
        Assert.Equal(before1, zone.Pcp[1].Count);
        m.FreePage(page);
    }

    [Fact]
    public void AnEmptyListRefillsABatchFromTheBuddyLists()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        var zone = ZoneOf(m, ZoneType.Dma32);
        int batch = zone.Pcp[0].Batch;
        Assert.Equal(31, batch);
        long buddy = zone.FreePages;
        Assert.Equal(0, zone.Pcp[0].Count);
        var first = m.AllocPage(Gfp.Kernel);
        Assert.Equal(batch - 1, zone.Pcp[0].Count);
        Assert.Equal(buddy - batch, zone.FreePages);
        // The next batch - 1 allocations come from the list without touching the buddy lists.
        var more = Enumerable.Range(0, batch - 1).Select(_ => m.AllocPage(Gfp.Kernel)).ToList();
        Assert.Equal(0, zone.Pcp[0].Count);
        Assert.Equal(buddy - batch, zone.FreePages);
        // Order 2: max(batch >> 2, 2) = 7 blocks of 4 pages, one handed out.
        var order2 = m.AllocPages(Gfp.Kernel, 2);
        Assert.Equal(6 * 4, zone.Pcp[0].Count);
        Assert.Equal(buddy - batch - 28, zone.FreePages);
        m.FreePages(order2, 2);
        m.FreePage(first);
        more.ForEach(m.FreePage);
        m.DrainAllPages();
        AssertAccounted(m, 0);
    }

    // Frees pages[freed..] one by one until the CPU's lists hold <count> pages; returns the next index.
    private static int FreeUntil(Machine m, Kmem.PageAlloc.PerCpuPages pcp, List<Page> pages, int freed, int count)
    {
        while (pcp.Count < count)
        {
            m.FreePage(pages[freed++]);
        }
        return freed;
    }

    [Fact]
    public void ReachingHighSpillsABatchBackToTheBuddyLists()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        var zone = ZoneOf(m, ZoneType.Dma32);
        var pcp = zone.Pcp[0];
        int high = pcp.High, batch = pcp.Batch;
        Assert.Equal((427, 31), (high, batch));
        var pages = Enumerable.Range(0, high + 3 * batch).Select(_ => m.AllocPage(Gfp.Kernel)).ToList();
        Assert.All(pages, p => Assert.Equal(ZoneType.Dma32, m.PageZone(p)));
        m.DrainAllPages();
        Assert.Equal(0, pcp.Count);

        int freed = 0;
        long buddy = zone.FreePages;
        while (pcp.Count < high - 1)
        {
            m.FreePage(pages[freed++]);
            Assert.Equal(freed, pcp.Count);
            Assert.Equal(buddy, zone.FreePages);
        }
        // The free that reaches high sends one batch back (free_factor 0) ...
        m.FreePage(pages[freed++]);
        Assert.Equal(high - batch, pcp.Count);
        Assert.Equal(buddy + batch, zone.FreePages);
        // ... and the next spill, still without an allocation in between, sends two batches (free_factor 1).
        freed = FreeUntil(m, pcp, pages, freed, high - 1);
        m.FreePage(pages[freed++]);
        Assert.Equal(high - 2 * batch, pcp.Count);
        Assert.Equal(buddy + 3 * batch, zone.FreePages);
        Assert.True(pcp.Count < high);
        foreach (var p in pages.Skip(freed))
        {
            m.FreePage(p);
            Assert.True(pcp.Count < high);
        }
        m.DrainAllPages();
        AssertAccounted(m, 0);
        ValidateAll(m);
    }

    [Fact]
    public void WhileKswapdReclaimsTheZoneTheListsSpillAtFourBatches()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        var zone = ZoneOf(m, ZoneType.Dma32);
        var pcp = zone.Pcp[0];
        int batch = pcp.Batch;
        var pages = Enumerable.Range(0, 8 * batch).Select(_ => m.AllocPage(Gfp.Kernel)).ToList();
        m.DrainAllPages();
        zone.ReclaimActive = true; // what balance_pgdat's set_reclaim_active does for the zones it balances
        long buddy = zone.FreePages;
        int freed = FreeUntil(m, pcp, pages, 0, 4 * batch - 1);
        Assert.Equal(buddy, zone.FreePages);
        // nr_pcp_high is min(batch << 2, high): the free that reaches four batches spills one (free_factor 0), well
        // below the high of 427 ...
        m.FreePage(pages[freed++]);
        Assert.Equal(3 * batch, pcp.Count);
        Assert.Equal(buddy + batch, zone.FreePages);
        // ... and the next, still without an allocation between, sends two (free_factor 1; at most that high less a batch).
        freed = FreeUntil(m, pcp, pages, freed, 4 * batch - 1);
        m.FreePage(pages[freed++]);
        Assert.Equal(2 * batch, pcp.Count);
        zone.ReclaimActive = false;
        foreach (var p in pages.Skip(freed))
        {
            m.FreePage(p);
        }
        Assert.Equal(2 * batch + pages.Count - freed, pcp.Count); // below high again: nothing spills
        m.DrainAllPages();
        AssertAccounted(m, 0);
        ValidateAll(m);
    }

    [Theory]
    [InlineData(1, true)]
    [InlineData(3, true)]
    [InlineData(4, false)]
    [InlineData(8, false)]
    [InlineData(10, false)]
    public void OnlyOrdersUpToThreeAndThpUseTheLists(int order, bool viaPcp)
    {
        using var m = Boot();
        using var cpu = m.OnCpu(1);
        var page = m.AllocPages(Gfp.Kernel, order);
        var zone = m.PageAllocator.ZoneOf((uint)page.Pfn);
        int count = zone.Pcp[1].Count;
        long buddy = zone.FreePages;
        m.FreePages(page, order);
        if (viaPcp)
        {
            Assert.Equal(count + (1 << order), zone.Pcp[1].Count);
            Assert.Equal(buddy, zone.FreePages);
        }
        else
        {
            Assert.Equal(count, zone.Pcp[1].Count);
            Assert.Equal(buddy + (1L << order), zone.FreePages);
        }
    }

    [Fact]
    public void AThpFreeGoesThroughTheListOfItsOwnOrder()
    {
        // X64 has THP: order 9 (pageblock_order) has a pcp list of its own. On a zone whose high is well above
        // 512 it stays there: on this single-CPU 5G machine DMA32's high is its whole low watermark.
        using var m = Machine.Boot(new MachineOptions { Memory = "5G", Cpus = 1 });
        var zone = ZoneOf(m, ZoneType.Dma32);
        Assert.True(zone.Pcp[0].High > 1024);
        var thp = m.AllocPages(Gfp.Dma32 | Gfp.Kernel, 9);
        Assert.Equal(ZoneType.Dma32, m.PageZone(thp));
        // The refill took max(batch >> 9, 2) = 2 blocks: one handed out, one left on the list.
        Assert.Equal(512, zone.Pcp[0].Count);
        long buddy = zone.FreePages;
        m.FreePages(thp, 9);
        Assert.Equal(1024, zone.Pcp[0].Count);
        Assert.Equal(buddy, zone.FreePages);
        Assert.Equal(thp, m.AllocPages(Gfp.Dma32 | Gfp.Kernel, 9));
        Assert.Equal(512, zone.Pcp[0].Count);
        m.FreePages(thp, 9);
    }

    [Fact]
    public void DrainAllPagesEmptiesEveryCpusLists()
    {
        using var m = Boot(cpus: 4);
        long managed = ManagedPages(m);
        var held = new List<(Page, int)>();
        for (int c = 0; c < 4; c++)
        {
            using var cpu = m.OnCpu(c);
            for (int i = 0; i < 20; i++)
            {
                held.Add((m.AllocPages(i % 3 == 0 ? Gfp.Dma | Gfp.Kernel : Gfp.Kernel, i % 4), i % 4));
            }
        }
        for (int c = 0; c < 4; c++)
        {
            using var cpu = m.OnCpu(c);
            foreach (var (p, o) in held.Skip(c * 10).Take(10))
            {
                m.FreePages(p, o);
            }
        }
        held = [.. held.Skip(40)];
        Assert.True(PcpPages(m) > 0);
        Assert.All(Enumerable.Range(0, 4), c => Assert.True(m.PageAllocator.Zones.Sum(z => z.Pcp[c].Count) > 0));
        m.DrainAllPages();
        Assert.All(m.PageAllocator.Zones, z => Assert.All(z.Pcp, p => Assert.Equal(0, p.Count)));
        Assert.Equal(managed - held.Sum(h => 1L << h.Item2), BuddyPages(m));
        ValidateAll(m);
        foreach (var (p, o) in held)
        {
            m.FreePages(p, o);
        }
        m.DrainAllPages();
        Assert.Equal(managed, BuddyPages(m));
    }

    [Fact]
    public void WhenTheCpusListsAreBusyAllocAndFreeUseTheBuddyLists()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        var zone = ZoneOf(m, ZoneType.Dma32);
        var pcp = zone.Pcp[0];
        var p = m.AllocPage(Gfp.Kernel);
        int count = pcp.Count;
        long buddy = zone.FreePages;
        // Another thread holding CPU 0's lists: pcp_spin_trylock fails.
        Assert.True(pcp.TryLock());
        try
        {
            m.FreePage(p);
            Assert.Equal(count, pcp.Count);
            Assert.Equal(buddy + 1, zone.FreePages);
            var q = m.AllocPage(Gfp.Kernel);
            Assert.False(q.IsNull);
            Assert.Equal(count, pcp.Count);
            Assert.Equal(buddy, zone.FreePages);
            var r = m.AllocPages(Gfp.Kernel, 3);
            Assert.Equal(count, pcp.Count);
            Assert.Equal(buddy - 8, zone.FreePages);
            m.FreePage(q);
            m.FreePages(r, 3);
            Assert.Equal(buddy + 1, zone.FreePages);
        }
        finally
        {
            pcp.Unlock();
        }
        ValidateAll(m);
        m.DrainAllPages();
        AssertAccounted(m, 0);
    }

    [Fact]
    public void AHighAtomicPageFreedWhileTheListsAreBusyGoesBackAsMovable()
    {
        // free_unref_page treats HIGHATOMIC as movable before it tries the CPU's lists; when they are busy,
        // free_one_page gets MIGRATE_MOVABLE too, so the reserve gives the page back.
        using var m = Machine.Boot(new MachineOptions { Memory = "64M", Cpus = 1, Seed = 1 });
        using var cpu = m.OnCpu(0);
        var zone = ZoneOf(m, ZoneType.Dma32);
        var held = new List<Page>();
        for (var p = m.AllocPage(Gfp.NoWait | Gfp.NoWarn); !p.IsNull; p = m.AllocPage(Gfp.NoWait | Gfp.NoWarn))
        {
            held.Add(p);
        }
        // Below the low watermark only the slow path's ALLOC_HARDER lets an atomic request in, and a
        // successful high-order one reserves its pageblock.
        var atomic = m.AllocPages(Gfp.Atomic, 1);
        Assert.Equal(ZoneType.Dma32, m.PageZone(atomic));
        Assert.Equal(MigrateType.HighAtomic, m.Mem.PageblockMigratetype((uint)atomic.Pfn));
        Assert.Equal(512, zone.NrReservedHighatomic);
        long PagesOn(MigrateType mt) => Enumerable.Range(0, Machine.MaxOrder).Sum(o => zone.NrFree(o, mt) << o);
        long highAtomic = PagesOn(MigrateType.HighAtomic), movable = PagesOn(MigrateType.Movable);

        Assert.True(zone.Pcp[0].TryLock());
        try
        {
            m.FreePages(atomic, 1);
        }
        finally
        {
            zone.Pcp[0].Unlock();
        }
        Assert.True(PagesOn(MigrateType.HighAtomic) <= highAtomic, "the freed page went back to the HighAtomic lists");
        Assert.True(PagesOn(MigrateType.Movable) >= movable + 2);
        ValidateAll(m);
        held.ForEach(m.FreePage);
        m.DrainAllPages();
        AssertAccounted(m, 0);
    }

    [Fact]
    public void OnCpuPinsAndRestoresThePreviousPin()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 4 });
        using var other = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 4 });
        Assert.False(m.Cpus.IsPinned);
        using (m.OnCpu(3))
        {
            Assert.Equal(3, m.CurrentCpu);
            Assert.True(m.Cpus.IsPinned);
            Assert.False(other.Cpus.IsPinned);
            using (m.OnCpu(1))
            {
                Assert.Equal(1, m.CurrentCpu);
            }
            Assert.Equal(3, m.CurrentCpu);
            // A page freed here lands on CPU 3's list.
            var p = m.AllocPage(Gfp.Kernel);
            var zone = m.PageAllocator.ZoneOf((uint)p.Pfn);
            int before = zone.Pcp[3].Count;
            m.FreePage(p);
            Assert.Equal(before + 1, zone.Pcp[3].Count);
        }
        Assert.False(m.Cpus.IsPinned);
        Assert.InRange(m.CurrentCpu, 0, 3);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.OnCpu(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.OnCpu(-1));
        Assert.False(m.Cpus.IsPinned);
    }

    [Fact]
    public void APinIsPerThread()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 4 });
        using var pin = m.OnCpu(2);
        bool pinnedThere = true;
        var t = new Thread(() => pinnedThere = m.Cpus.IsPinned);
        t.Start();
        t.Join();
        Assert.False(pinnedThere);
        Assert.Equal(2, m.CurrentCpu);
    }
}
