// Allocating and freeing blocks: buddy splitting and merging, alignment,
// compound pages and their references (get_page on a tail pins the head),
// split_page, alloc_pages_exact giving back the unused tail, the by-address
// API (__get_free_pages, free_pages, get_zeroed_page), and real bytes written
// through the direct map.
using static Kmem.Tests.PageAlloc.PageAllocCheck;

namespace Kmem.Tests.PageAlloc;

public class AllocFreeTests
{
    private static Machine Boot(string memory = "256M") => Machine.Boot(new MachineOptions { Memory = memory, Cpus = 2, Seed = 1 });

    [Fact]
    public void BlocksAreAlignedToTheirOrderAndContiguous()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        var held = new List<(Page, int)>();
        for (int order = 0; order < Machine.MaxOrder; order++)
        {
            var p = m.AllocPages(Gfp.Kernel, order);
            Assert.Equal(0UL, p.Pfn % (1UL << order));
            Assert.Equal(m.PageAddress(p) + ((1 << order) - 1) * Machine.PageSize, m.PageAddress(p.Add((1 << order) - 1)));
            Assert.Equal(1, m.PageRefCount(p));
            held.Add((p, order));
        }
        var ranges = held.Select(h => Range(h.Item1, h.Item2)).OrderBy(r => r.Start).ToList();
        for (int i = 1; i < ranges.Count; i++)
        {
            Assert.True(ranges[i - 1].End <= ranges[i].Start, "two blocks overlap");
        }
        foreach (var (p, o) in held)
        {
            m.FreePages(p, o);
        }
    }

    [Fact]
    public void FreeingBothBuddiesMergesToNextOrder()
    {
        using var m = Boot();
        var zone = ZoneOf(m, ZoneType.Dma32);
        // An order-5 block split by hand: two order-4 buddies (bypassing the per-CPU lists, which hold order <= 3).
        var big = m.AllocPages(Gfp.Dma32 | Gfp.Kernel, 5);
        m.SplitPage(big, 5);
        // Give back the upper half page by page; it merges into one order-4 block.
        long free4 = zone.NrFree(4);
        for (int i = 16; i < 32; i++)
        {
            m.FreePage(big.Add(i));
        }
        m.DrainAllPages();
        ValidateAll(m);
        var upperPfn = (uint)big.Pfn + 16;
        Assert.True(IsFreeBuddyHead(m, upperPfn, 4), "the upper half did not merge into an order-4 block");
        Assert.Equal(free4 + 1, zone.NrFree(4));
        // The lower half follows: the two order-4 buddies become one order-5 block (or merge further up).
        for (int i = 0; i < 16; i++)
        {
            m.FreePage(big.Add(i));
        }
        m.DrainAllPages();
        ValidateAll(m);
        Assert.False(IsFreeBuddyHead(m, upperPfn, 4));
        Assert.Equal(free4, zone.NrFree(4));
    }

    private static bool IsFreeBuddyHead(Machine m, uint pfn, int order)
    {
        ref var f = ref m.Mem.Frame(pfn);
        return (f.Flags & Kmem.Physical.PageFlags.Buddy) != 0 && f.Order == order;
    }

    [Fact]
    public void AnAllocationSplitsTheSmallestFreeBlockThatFits()
    {
        using var m = Boot();
        var zone = ZoneOf(m, ZoneType.Dma32);
        // A movable request finds its own type's lists full at boot, so no pageblock is stolen.
        var before = Enumerable.Range(0, Machine.MaxOrder).Select(o => zone.NrFree(o)).ToArray();
        int from = Enumerable.Range(4, Machine.MaxOrder - 4).First(o => zone.NrFree(o, MigrateType.Movable) > 0);
        var p = m.AllocPages(Gfp.HighUserMovable, 4);
        Assert.Equal(ZoneType.Dma32, m.PageZone(p));
        // expand(): one fewer block at the order split, one more at each order from 4 up to it.
        Assert.Equal(before[from] - 1, zone.NrFree(from));
        for (int o = 4; o < from; o++)
        {
            Assert.Equal(before[o] + 1, zone.NrFree(o));
        }
        m.FreePages(p, 4);
        Assert.Equal(before, Enumerable.Range(0, Machine.MaxOrder).Select(o => zone.NrFree(o)).ToArray());
    }

    [Fact]
    public void AllocationsTakeTheirMigrateTypesFromTheGfp()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        // Order 10 goes straight to the buddy lists (order 9 would share the THP per-CPU list across types).
        var movable = m.AllocPages(Gfp.HighUserMovable, 10);
        var unmovable = m.AllocPages(Gfp.Kernel, 10);
        var reclaimable = m.AllocPages(Gfp.Kernel | Gfp.Reclaimable, 10);
        // Whole pageblocks change hands when an unmovable or reclaimable request steals one.
        Assert.Equal(MigrateType.Movable, m.Mem.PageblockMigratetype((uint)movable.Pfn));
        Assert.Equal(MigrateType.Unmovable, m.Mem.PageblockMigratetype((uint)unmovable.Pfn));
        Assert.Equal(MigrateType.Reclaimable, m.Mem.PageblockMigratetype((uint)reclaimable.Pfn));
        Assert.Equal(MigrateType.Unmovable, m.Mem.PageblockMigratetype((uint)unmovable.Pfn + 512));
        m.FreePages(movable, 10);
        m.FreePages(unmovable, 10);
        m.FreePages(reclaimable, 10);
        m.DrainAllPages();
        ValidateAll(m);
        AssertAccounted(m, 0);
    }

    [Fact]
    public void GetPageOnATailPinsTheWholeCompoundPage()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        long before = FreeAndCached(m);
        var head = m.AllocPages(Gfp.Kernel | Gfp.Comp, 3);
        var tail = head.Add(5);
        Assert.Equal(0, m.PageRefCount(tail));
        m.GetPage(tail);
        Assert.Equal(2, m.PageRefCount(head));
        // The allocator's reference goes; the extra one keeps all eight pages.
        m.FreePages(head, 3);
        Assert.Equal(1, m.PageRefCount(head));
        Assert.Equal(before - 8, FreeAndCached(m));
        // put_page on any tail drops the head's last reference and frees the whole block.
        m.PutPage(head.Add(7));
        Assert.Equal(0, m.PageRefCount(head));
        Assert.Equal(before, FreeAndCached(m));
        ValidateAll(m);
    }

    [Fact]
    public void PutPageOnAnOrderZeroPageFreesItOnTheLastReference()
    {
        using var m = Boot();
        long before = FreeAndCached(m);
        var p = m.AllocPage(Gfp.Kernel);
        m.GetPage(p);
        m.GetPage(p);
        m.PutPage(p);
        m.PutPage(p);
        Assert.Equal(1, m.PageRefCount(p));
        Assert.Equal(before - 1, FreeAndCached(m));
        m.PutPage(p);
        Assert.Equal(before, FreeAndCached(m));
    }

    [Fact]
    public void FreeingAPinnedNonCompoundBlockKeepsOnlyItsFirstPage()
    {
        // __free_pages: when another reference holds the first page of a non-compound block, the rest of
        // the block is freed now and the first page stays, an order-0 page freed by the last put_page.
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        long before = FreeAndCached(m);
        var p = m.AllocPages(Gfp.Kernel, 2);
        m.GetPage(p);
        m.FreePages(p, 2);
        Assert.Equal(before - 1, FreeAndCached(m));
        Assert.Equal(1, m.PageRefCount(p));
        m.PutPage(p);
        Assert.Equal(0, m.PageRefCount(p));
        Assert.Equal(before, FreeAndCached(m));
        m.DrainAllPages();
        ValidateAll(m);
        AssertAccounted(m, 0);
    }

    [Fact]
    public void SplitPageLetsEachPageBeFreedOnItsOwn()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        long before = FreeAndCached(m);
        var p = m.AllocPages(Gfp.Kernel, 4);
        m.SplitPage(p, 4);
        for (int i = 0; i < 16; i++)
        {
            Assert.Equal(1, m.PageRefCount(p.Add(i)));
        }
        // Free in a scattered order; every page counts as it goes.
        int[] order = [3, 15, 0, 7, 8, 1, 14, 2, 9, 4, 13, 5, 10, 6, 12, 11];
        for (int i = 0; i < order.Length; i++)
        {
            m.FreePage(p.Add(order[i]));
            Assert.Equal(before - 16 + i + 1, FreeAndCached(m));
        }
        m.DrainAllPages();
        ValidateAll(m);
        AssertAccounted(m, 0);
    }

    [Fact]
    public void SplitPageRefusesACompoundPage()
    {
        using var m = Boot();
        var p = m.AllocPages(Gfp.Kernel | Gfp.Comp, 2);
        var e = Assert.Throws<BadPageStateException>(() => m.SplitPage(p, 2));
        Assert.Contains("PageCompound", e.Message, StringComparison.Ordinal);
        Assert.Equal(1, m.PageRefCount(p));
        m.FreePages(p, 2);
    }

    [Theory]
    [InlineData(0UL, 0)]
    [InlineData(8192UL, 1)]
    [InlineData(8193UL, 2)]
    [InlineData(1UL << 40, 28)]
    [InlineData(ulong.MaxValue, 52)]
    [InlineData(ulong.MaxValue - 4095, 52)]
    public void GetOrderIsExactUpToTheLargestSize(ulong size, int order) =>
        Assert.Equal(order, Machine.GetOrder((nuint)size));

    [Theory]
    [InlineData(1, 0)]
    [InlineData(4096, 0)]
    [InlineData(4097, 1)]
    [InlineData(5 * 4096, 3)]
    [InlineData(100 * 4096 + 1, 7)]
    public unsafe void AllocPagesExactGivesBackTheUnusedTail(int size, int order)
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        Assert.Equal(order, Machine.GetOrder((nuint)size));
        int used = (size + 4095) / 4096;
        long before = FreeAndCached(m);
        nint p = m.AllocPagesExact((nuint)size, Gfp.Kernel);
        Assert.NotEqual(0, p);
        Assert.Equal(0UL, m.VirtToPage(p).Pfn % (1UL << order));
        Assert.Equal(before - used, FreeAndCached(m));
        var first = m.VirtToPage(p);
        for (int i = 0; i < used; i++)
        {
            Assert.Equal(1, m.PageRefCount(first.Add(i)));
        }
        for (int i = used; i < 1 << order; i++)
        {
            Assert.Equal(0, m.PageRefCount(first.Add(i)));
        }
        new Span<byte>((void*)p, size).Fill(0x5a);
        m.FreePagesExact(p, (nuint)size);
        Assert.Equal(before, FreeAndCached(m));
        m.DrainAllPages();
        ValidateAll(m);
    }

    [Fact]
    public void AllocPagesExactOfZeroOrTooMuchFails()
    {
        using var m = Boot();
        Assert.Equal(0, m.AllocPagesExact(0, Gfp.Kernel));
        Assert.Equal(0, m.AllocPagesExact((nuint)(Machine.PageSize << Machine.MaxOrder), Gfp.Kernel | Gfp.NoWarn));
        Assert.DoesNotContain(m.Log.Lines, l => l.Contains("MAX_ORDER", StringComparison.Ordinal));
        Assert.Equal(0, m.AllocPagesExact((nuint)(Machine.PageSize << Machine.MaxOrder), Gfp.Kernel));
        Assert.Contains(m.Log.Lines, l => l.Contains("order:11 >= MAX_ORDER", StringComparison.Ordinal));
        AssertAccounted(m, 0);
    }

    [Fact]
    public void AllocPagesExactDropsCompAndHighmemWithAWarning()
    {
        using var m = Boot();
        nint p = m.AllocPagesExact(3 * (nuint)Machine.PageSize, Gfp.HighUser | Gfp.Comp);
        Assert.NotEqual(0, p);
        Assert.Contains(m.Log.Lines, l => l.Contains("alloc_pages_exact", StringComparison.Ordinal));
        Assert.All(Enumerable.Range(0, 3), i => Assert.Equal(1, m.PageRefCount(m.VirtToPage(p + i * Machine.PageSize))));
        m.FreePagesExact(p, 3 * (nuint)Machine.PageSize);
        AssertAccounted(m, 0);
    }

    [Fact]
    public void GetFreePagesAndFreePagesWorkByAddress()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        long before = FreeAndCached(m);
        nint a = m.GetFreePages(Gfp.Kernel, 3);
        nint b = m.GetFreePage(Gfp.Kernel);
        Assert.NotEqual(0, a);
        Assert.NotEqual(0, b);
        Assert.Equal(0UL, m.VirtToPage(a).Pfn % 8);
        Assert.Equal(m.VirtToPage(a).Add(7), m.VirtToPage(a + 7 * Machine.PageSize + 100));
        Assert.Equal(before - 9, FreeAndCached(m));
        m.FreePages(a, 3);
        m.FreePage(b);
        m.FreePages(0, 5);
        Assert.Equal(before, FreeAndCached(m));
    }

    [Fact]
    public unsafe void GetZeroedPageIsZeroEvenAfterTheFrameWasDirtiedAndFreed()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        nint dirty = m.GetFreePage(Gfp.Kernel);
        new Span<byte>((void*)dirty, Machine.PageSize).Fill(0xa5);
        m.FreePage(dirty);
        nint zeroed = m.GetZeroedPage(Gfp.Kernel);
        // The per-CPU list is LIFO: the same frame comes back, and it has been cleared.
        Assert.Equal(dirty, zeroed);
        Assert.Equal(-1, new ReadOnlySpan<byte>((void*)zeroed, Machine.PageSize).IndexOfAnyExcept((byte)0));
        m.FreePage(zeroed);

        // Without __GFP_ZERO the old bytes are still there.
        nint again = m.GetFreePage(Gfp.Kernel);
        Assert.Equal(dirty, again);
        new Span<byte>((void*)again, Machine.PageSize).Fill(0x77);
        m.FreePage(again);
        var page = m.AllocPages(Gfp.Kernel, 0);
        Assert.Equal(0x77, m.PageSpan(page)[4095]);
        m.FreePage(page);
    }

    [Fact]
    public void GfpZeroClearsAWholeHighOrderBlock()
    {
        using var m = Boot();
        var p = m.AllocPages(Gfp.Kernel, 5);
        m.PageSpan(p, 5).Fill(0xee);
        m.FreePages(p, 5);
        var q = m.AllocPages(Gfp.Kernel | Gfp.Zero, 5);
        Assert.Equal(p, q);
        Assert.Equal(-1, m.PageSpan(q, 5).IndexOfAnyExcept((byte)0));
        m.FreePages(q, 5);
    }

    [Fact]
    public unsafe void BytesWrittenThroughPageSpanReadBackThroughTheDirectMap()
    {
        using var m = Boot();
        var p = m.AllocPages(Gfp.Kernel, 2);
        var span = m.PageSpan(p, 2);
        Assert.Equal(4 * Machine.PageSize, span.Length);
        for (int i = 0; i < span.Length; i++)
        {
            span[i] = (byte)(i * 7 + 3);
        }
        byte* raw = (byte*)m.PageAddress(p);
        Assert.Equal(unchecked((byte)(5000 * 7 + 3)), raw[5000]);
        var third = m.PageSpan(p.Add(3));
        Assert.Equal(unchecked((byte)((3 * 4096 + 10) * 7 + 3)), third[10]);
        Assert.Equal(p.Add(3), m.VirtToPage((nint)(raw + 3 * 4096 + 10)));
        // Another frame's bytes are untouched.
        var q = m.AllocPages(Gfp.Kernel | Gfp.Zero, 0);
        Assert.Equal(-1, m.PageSpan(q).IndexOfAnyExcept((byte)0));
        m.FreePages(p, 2);
        m.FreePage(q);
    }

    [Fact]
    public void PageHandlesConvertToAndFromPfnsAndAddresses()
    {
        using var m = Boot();
        Assert.True(Page.Null.IsNull);
        Assert.Equal(default(Page), Page.Null);
        Assert.Throws<InvalidOperationException>(() => Page.Null.Pfn);
        var p = m.PfnToPage(0x1234);
        Assert.Equal(0x1234UL, Machine.PageToPfn(p));
        Assert.Equal("pfn:0x1234", p.ToString());
        Assert.Equal(p, m.VirtToPage(m.PageAddress(p) + 17));
        Assert.Equal(Page.Null, m.VirtToPage(12345));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.PfnToPage(m.MaxPfn));
        Assert.Equal(ZoneType.Dma, m.PageZone(m.PfnToPage(1)));
        Assert.Equal(ZoneType.Dma32, m.PageZone(m.PfnToPage(4096)));
        Assert.Equal(0, m.PageToNid(p));
        Assert.Throws<ArgumentException>(() => m.PageAddress(Page.Null));
    }
}
