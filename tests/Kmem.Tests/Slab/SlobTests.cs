// SLOB as mm/slob.c (6.1) does it: kmalloc's 8-byte size header and ksize, first-fit placement with
// alignment checked against offsets worked out here by hand, the choice of list by request size, the
// next-fit rotation of a list, blocks of a page or more straight from the page allocator, coalescing
// until every page is back, cache objects without header, the per-node choice, slab accounting, the
// slobinfo summary, and misuse reported with nothing changed.
using System.Globalization;

namespace Kmem.Tests.Slab;

public class SlobTests
{
    private static readonly int[] s_sizes = [30, 7, 100, 64, 1, 200];

    internal static Machine Boot(OnBug onBug = OnBug.Throw, Preset preset = Preset.X64, int nodes = 1, string memory = "256M") =>
        Machine.Boot(new MachineOptions { Memory = memory, Cpus = 2, Nodes = nodes, Preset = preset, Slab = SlabAllocator.Slob, Seed = 3, OnBug = onBug });

    internal static void Validate(Machine m)
    {
        var problems = m.SlabLayer!.ValidateAll();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    private static nint PageOf(Machine m, nint p) => m.PageAddress(m.VirtToPage(p));

    private static long Vmstat(Machine m, string name) => long.Parse(m.Proc.Vmstat().Split('\n')
        .First(l => l.StartsWith(name + " ", StringComparison.Ordinal)).Split(' ')[1], CultureInfo.InvariantCulture);

    private static long Meminfo(Machine m, string name) => long.Parse(m.Proc.Meminfo().Split('\n')
        .First(l => l.StartsWith(name + ":", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);

    /// <summary>The numbers of a slobinfo row.</summary>
    internal static long[] Row(Machine m, string name) => m.Proc.Read("slobinfo").Split('\n')
        .First(l => l.StartsWith(name + " ", StringComparison.Ordinal))
        .Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(x => long.Parse(x, CultureInfo.InvariantCulture)).ToArray();

    [Theory]
    [InlineData(Preset.X64)]
    [InlineData(Preset.X86)]
    public unsafe void KmallocPutsTheSizeInAnEightByteHeaderAndKsizeRoundsToSlobUnits(Preset preset)
    {
        using var m = Boot(preset: preset);
        nint p = m.Kmalloc(13, Gfp.Kernel);
        Assert.Equal(0, p % 8);
        // The header (max(ARCH_KMALLOC_MINALIGN, ARCH_SLAB_MINALIGN) = 8 bytes on both) holds the size.
        Assert.Equal(13u, *(uint*)(p - 8));
        Assert.Equal(PageOf(m, p), p - 8);
        Assert.Equal((nuint)14, m.Ksize(p));
        Assert.True(m.PageSlab(m.VirtToPage(p)));
        Assert.Equal(1, Vmstat(m, "nr_slab_unreclaimable"));
        m.Kfree(p);
        Assert.Equal(0, Vmstat(m, "nr_slab_unreclaimable"));
        Validate(m);
    }

    [Fact]
    public void KmallocOfAPageLessTheHeaderOrMoreGoesToThePageAllocator()
    {
        using var m = Boot();
        long before = Vmstat(m, "nr_slab_unreclaimable");
        // 4087 + 8 bytes still fits a slob page (all 2048 units of it).
        nint a = m.Kmalloc(4087, Gfp.Kernel);
        Assert.True(m.PageSlab(m.VirtToPage(a)));
        Assert.Equal((nuint)4088, m.Ksize(a));
        Assert.Equal(0, Row(m, "free_slob_large")[0]);
        // PAGE_SIZE - 8 and above: pages, page-aligned, not PG_slab; ksize is the whole block.
        nint b = m.Kmalloc(4088, Gfp.Kernel);
        Assert.Equal(0, b % 4096);
        Assert.False(m.PageSlab(m.VirtToPage(b)));
        Assert.Equal((nuint)4096, m.Ksize(b));
        nint c = m.Kmalloc(5000, Gfp.Kernel);
        Assert.Equal((nuint)8192, m.Ksize(c));
        nint d = m.Kmalloc(100_000, Gfp.Kernel);
        Assert.Equal((nuint)131072, m.Ksize(d));
        Assert.Equal(before + 1 + 1 + 2 + 32, Vmstat(m, "nr_slab_unreclaimable"));
        Assert.Equal(new long[] { 1, 1, 3, 35 }, Row(m, "pages"));
        Validate(m);
        foreach (nint p in new[] { a, b, c, d })
        {
            m.Kfree(p);
        }
        Assert.Equal(before, Vmstat(m, "nr_slab_unreclaimable"));
        Assert.Equal(0, m.Kmalloc(5u << 20, Gfp.Kernel | Gfp.NoWarn));
        Assert.Equal(0, m.Kmalloc(nuint.MaxValue, Gfp.Kernel | Gfp.NoWarn));
        Validate(m);
    }

    [Fact]
    public void FirstFitPlacesBlocksWithTheirAlignmentAtTheOffsetsWorkedOutByHand()
    {
        using var m = Boot();
        // kmalloc(10): 18 bytes = 9 units at offset 0; the caller's pointer follows the header.
        nint a = m.Kmalloc(10, Gfp.Kernel);
        nint page = PageOf(m, a);
        Assert.Equal(page + 8, a);
        // kmalloc(20): free space starts at byte 18; 18 + 8 rounds up to 32, so the block starts at 24 and
        // a 3-unit fragment [18, 24) stays free.
        nint b = m.Kmalloc(20, Gfp.Kernel);
        Assert.Equal(page + 32, b);
        // kmalloc(2): 10 bytes, aligned to 8 (a power of two below 8). The fragment at 18 has 3 units but
        // would need 3 more to align; the next free block starts at 52: 52 + 8 → 64, so the block is at 56.
        nint c = m.Kmalloc(2, Gfp.Kernel);
        Assert.Equal(page + 64, c);
        // kmalloc(64): natural alignment for a power of two: 66 + 8 rounds up to 128.
        nint d = m.Kmalloc(64, Gfp.Kernel);
        Assert.Equal(page + 128, d);
        // Fragments [18,24), [52,56), [66,120) and the tail [192,4096): 3 + 2 + 27 + 1952 units.
        Assert.Equal(2048 - 9 - 14 - 5 - 36, Row(m, "free_slob_small")[1]);
        // kmalloc(1) (9 bytes, 5 units, align 8): the [18,24) fragment needs 6 bytes of shift; [52,56) cannot
        // hold it; [66,120): 66 + 8 → 80, so it lands at 72.
        nint e = m.Kmalloc(1, Gfp.Kernel);
        Assert.Equal(page + 80, e);
        Validate(m);
        // Freeing everything coalesces the page back into one block and gives it back.
        foreach (nint p in new[] { c, a, e, d, b })
        {
            m.Kfree(p);
            Validate(m);
        }
        Assert.Equal(new long[] { 0, 0, 0 }, Row(m, "free_slob_small"));
        Assert.Equal(0, Row(m, "pages")[0]);
    }

    [Fact]
    public void CacheObjectsHaveNoHeaderAndKeepTheCacheAlignment()
    {
        using var m = Boot();
        var plain = m.KmemCacheCreate("slob_24", 24, 0, SlabFlags.None, null)!;
        Assert.Equal(24u, plain.Size);
        Assert.Equal(8u, plain.Align);
        nint o0 = m.KmemCacheAlloc(plain, Gfp.Kernel);
        nint page = PageOf(m, o0);
        Assert.Equal(page, o0);
        Assert.Equal(page + 24, m.KmemCacheAlloc(plain, Gfp.Kernel));
        Assert.Equal(page + 48, m.KmemCacheAlloc(plain, Gfp.Kernel));
        // SLAB_HWCACHE_ALIGN for 100 bytes: 64-byte alignment (calculate_alignment), so the next object of
        // the same page starts at 128 (after the 24-byte objects at 0..72 it skips to 128).
        var hw = m.KmemCacheCreate("slob_hw", 100, 0, SlabFlags.HwcacheAlign, null)!;
        Assert.Equal(64u, hw.Align);
        nint h0 = m.KmemCacheAlloc(hw, Gfp.Kernel);
        Assert.Equal(page + 128, h0);
        Assert.Equal(page + 256, m.KmemCacheAlloc(hw, Gfp.Kernel));
        Assert.Equal(2, m.SlabLayer!.Stats(hw).ActiveObjs);
        Assert.Equal(3, m.SlabLayer.Stats(plain).ActiveObjs);
        Assert.Equal(1, m.SlabLayer.Stats(plain).NumSlabs);
        Assert.Equal(new long[] { 3, 72, 72 }, Row(m, "slob_24"));
        Assert.Equal(new long[] { 2, 200, 200 }, Row(m, "slob_hw"));
        Validate(m);
    }

    [Fact]
    public void TheListIsChosenByTheRequestSizeWithTheHeaderCounted()
    {
        using var m = Boot();
        nint small = m.Kmalloc(247, Gfp.Kernel);   // 255 bytes: free_slob_small
        nint medium = m.Kmalloc(248, Gfp.Kernel);  // 256 bytes: free_slob_medium
        nint medium2 = m.Kmalloc(1015, Gfp.Kernel); // 1023 bytes: free_slob_medium
        nint large = m.Kmalloc(1016, Gfp.Kernel);  // 1024 bytes: free_slob_large
        Assert.Equal(PageOf(m, medium), PageOf(m, medium2));
        Assert.Equal(3, new[] { PageOf(m, small), PageOf(m, medium), PageOf(m, large) }.Distinct().Count());
        Assert.Equal(new long[] { 1, 2048 - 128 }, Row(m, "free_slob_small")[..2]);
        Assert.Equal(new long[] { 1, 2048 - 128 - 512 }, Row(m, "free_slob_medium")[..2]);
        Assert.Equal(new long[] { 1, 2048 - 512 }, Row(m, "free_slob_large")[..2]);
        // A cache object chooses by the cache's size: 300 bytes is medium, into the page already there.
        var s = m.KmemCacheCreate("slob_300", 300, 0, SlabFlags.None, null)!;
        Assert.Equal(PageOf(m, medium), PageOf(m, m.KmemCacheAlloc(s, Gfp.Kernel)));
        Validate(m);
    }

    [Fact]
    public void ASuccessfulSearchRotatesTheListToStartAtThatPage()
    {
        using var m = Boot();
        // kmalloc(240) takes 248 bytes: 16 fill a page but for 128 bytes.
        var p1 = Enumerable.Range(0, 16).Select(_ => m.Kmalloc(240, Gfp.Kernel)).ToList();
        nint page1 = PageOf(m, p1[0]);
        Assert.All(p1, p => Assert.Equal(page1, PageOf(m, p)));
        var p2 = Enumerable.Range(0, 16).Select(_ => m.Kmalloc(240, Gfp.Kernel)).ToList();
        nint page2 = PageOf(m, p2[0]);
        Assert.NotEqual(page1, page2);
        Assert.All(p2, p => Assert.Equal(page2, PageOf(m, p)));
        // The new page went to the head: [page2 (128 free), page1 (128 free)]. A hole in page1:
        m.Kfree(p1[5]);
        // 208 bytes fit only page1's hole: found there, the list then starts at page1.
        nint x = m.Kmalloc(200, Gfp.Kernel);
        Assert.Equal(page1, PageOf(m, x));
        // A small block fits both pages; it goes to page1 because the search now starts there.
        nint y = m.Kmalloc(8, Gfp.Kernel);
        Assert.Equal(page1, PageOf(m, y));
        Validate(m);
    }

    [Fact]
    public unsafe void FreeingCoalescesNeighboursAndRestoresTheFreeUnitsExactly()
    {
        using var m = Boot();
        nint keeper = m.Kmalloc(10, Gfp.Kernel);               // 9 units at 0
        long free0 = Row(m, "free_slob_small")[1];
        Assert.Equal(2039, free0);
        var blocks = s_sizes.Select(n => m.Kmalloc((nuint)n, Gfp.Kernel)).ToArray();
        Assert.All(blocks, b => Assert.Equal(PageOf(m, keeper), PageOf(m, b)));
        foreach (int i in new[] { 2, 0, 4, 1, 5, 3 })
        {
            m.Kfree(blocks[i]);
            Validate(m); // free blocks never touch, blocks tile the page
        }
        Assert.Equal(new long[] { 1, free0, free0 * 2 }, Row(m, "free_slob_small"));
        // One free block from unit 9 to the end: the chain in the page's bytes says so.
        nint page = PageOf(m, keeper);
        short* unit9 = (short*)(page + 18);
        Assert.Equal(2039, unit9[0]);
        Assert.Equal(2048, unit9[1]);
        m.Kfree(keeper);
        Assert.Equal(0, Row(m, "pages")[0]);
    }

    [Fact]
    public void FreeingEverythingGivesEveryPageBack()
    {
        using var m = Boot();
        m.DrainAllPages();
        long freeBefore = m.PageAllocator.NrFreePages;
        var rnd = new Random(5);
        var s = m.KmemCacheCreate("slob_mix", 72, 0, SlabFlags.None, null)!;
        var live = new List<(nint P, bool Cache)>();
        for (int i = 0; i < 3000; i++)
        {
            live.Add(rnd.Next(4) == 0 ? (m.KmemCacheAlloc(s, Gfp.Kernel), true) : (m.Kmalloc((nuint)rnd.Next(1, 3000), Gfp.Kernel), false));
        }
        Validate(m);
        foreach (var (p, cache) in live.OrderBy(_ => rnd.Next()))
        {
            if (cache)
            {
                m.KmemCacheFree(s, p);
            }
            else
            {
                m.Kfree(p);
            }
        }
        Validate(m);
        m.DrainAllPages();
        Assert.Equal(freeBefore, m.PageAllocator.NrFreePages);
        Assert.Equal(0, Vmstat(m, "nr_slab_unreclaimable"));
        Assert.Equal(new long[] { 0, 0, 0, 0 }, Row(m, "pages"));
        Assert.Equal(new long[] { 0, 0, 0 }, Row(m, "total"));
    }

    [Fact]
    public void CacheObjectsOfAPageOrMoreArePlainPagesAndTheConstructorRunsOnEveryAllocation()
    {
        using var m = Boot();
        int calls = 0;
        var big = m.KmemCacheCreate("slob_big", 5000, 0, SlabFlags.None, p => calls++)!;
        Assert.Equal(1, big.Order);
        nint a = m.KmemCacheAlloc(big, Gfp.Kernel);
        nint b = m.KmemCacheAlloc(big, Gfp.Kernel);
        Assert.Equal(0, a % 4096);
        Assert.False(m.PageSlab(m.VirtToPage(a)));
        Assert.Equal(4, Vmstat(m, "nr_slab_unreclaimable"));
        m.KmemCacheFree(big, a);
        nint c = m.KmemCacheAlloc(big, Gfp.Kernel);
        Assert.Equal(3, calls);
        Assert.Equal(2, m.SlabLayer!.Stats(big).ActiveObjs);
        Assert.Equal(4, m.SlabLayer.Stats(big).NumSlabs);
        Validate(m);
        m.KmemCacheFree(big, b);
        m.KmemCacheFree(big, c);
        Assert.Equal(0, Vmstat(m, "nr_slab_unreclaimable"));
        m.KmemCacheDestroy(big);
        Assert.True(big.IsDestroyed);
    }

    [Fact]
    public void EverySlobPageCountsAsUnreclaimableSlabInMeminfo()
    {
        using var m = Boot();
        var rcl = m.KmemCacheCreate("slob_rcl", 64, 0, SlabFlags.ReclaimAccount, null)!;
        // SLOB keeps only its CACHE_CREATE_MASK flags: SLAB_RECLAIM_ACCOUNT is accepted and dropped.
        Assert.Equal(SlabFlags.None, rcl.Flags);
        nint o = m.KmemCacheAlloc(rcl, Gfp.Kernel);
        nint k = m.Kmalloc(3000, Gfp.Kernel | Gfp.Reclaimable);
        nint big = m.Kmalloc(20000, Gfp.Kernel);
        Assert.Equal(0, Meminfo(m, "SReclaimable"));
        Assert.Equal((2 + 8) * 4, Meminfo(m, "SUnreclaim"));
        Assert.Equal((2 + 8) * 4, Meminfo(m, "Slab"));
        m.KmemCacheFree(rcl, o);
        m.Kfree(k);
        m.Kfree(big);
        Assert.Equal(0, Meminfo(m, "Slab"));
    }

    [Fact]
    public void ANodeGivenToKmallocNodeLimitsTheSearchToThatNodesPages()
    {
        using var m = Boot(nodes: 2, memory: "512M");
        nint a = m.KmallocNode(100, Gfp.Kernel, 1);
        nint b = m.KmallocNode(100, Gfp.Kernel, 0);
        Assert.Equal(1, m.PageToNid(m.VirtToPage(a)));
        Assert.Equal(0, m.PageToNid(m.VirtToPage(b)));
        Assert.NotEqual(PageOf(m, a), PageOf(m, b));
        Assert.Equal(PageOf(m, a), PageOf(m, m.KmallocNode(100, Gfp.Kernel, 1)));
        Assert.Equal(PageOf(m, b), PageOf(m, m.KmallocNode(100, Gfp.Kernel, 0)));
        // Without a node any listed page will do: the list's head, the node-0 page that served last.
        Assert.Equal(PageOf(m, b), PageOf(m, m.Kmalloc(100, Gfp.Kernel)));
        Validate(m);
    }

    [Fact]
    public void TheSummaryListsTheFreeListsPagesAndOwners()
    {
        using var m = Boot();
        Assert.True(m.Proc.Knows("slobinfo"));
        Assert.False(m.Proc.Knows("/proc/slabinfo"));
        Assert.Throws<InvalidOperationException>(() => m.Proc.Slabinfo());
        var s = m.KmemCacheCreate("slob_sum", 40, 0, SlabFlags.None, null)!;
        nint o1 = m.KmemCacheAlloc(s, Gfp.Kernel);
        nint o2 = m.KmemCacheAlloc(s, Gfp.Kernel);
        nint k1 = m.Kmalloc(100, Gfp.Kernel);  // 108 bytes: 54 units
        nint k2 = m.Kmalloc(600, Gfp.Kernel);  // 608 bytes: medium
        nint k3 = m.Kmalloc(9000, Gfp.Kernel); // order 2
        string text = m.Proc.Read("/kmem/slobinfo");
        Assert.Equal(
            "slobinfo - Kmem's own SLOB summary (Linux has no slabinfo with SLOB)\n"
            + "# list             <pages> <free_units> <free_bytes>\n"
            + "free_slob_small         1         1954         3908\n"
            + "free_slob_medium        1         1744         3488\n"
            + "free_slob_large         0            0            0\n"
            + "# pages            <slob_pages> <full_pages> <page_blocks> <block_pages>\n"
            + "pages                        2            0             1             4\n"
            + "# owner            <blocks> <requested_bytes> <held_bytes>\n"
            + "kmalloc                  3              9700        17100\n"
            + "slob_sum                 2                80           80\n"
            + "total                    5              9780        17180\n", text);
        foreach (nint p in new[] { k1, k2, k3 })
        {
            m.Kfree(p);
        }
        m.KmemCacheFree(s, o1);
        m.KmemCacheFree(s, o2);
        Assert.Equal(new long[] { 0, 0, 0 }, Row(m, "total"));
    }

    [Fact]
    public void CreationChecksTheArgumentsAndRefusesAnAlignmentAboveAPage()
    {
        using var m = Boot();
        Assert.Null(m.KmemCacheCreate("bad", 0, 0, SlabFlags.None, null));
        Assert.Null(m.KmemCacheCreate("bad", 64, 3, SlabFlags.None, null));
        Assert.Null(m.KmemCacheCreate("bad", 64, 8192, SlabFlags.None, null));
        Assert.True(m.Log.Contains("kmem_cache_create_usercopy(bad) failed with error -22"));
        var page = m.KmemCacheCreate("slob_page_aligned", 100, 4096, SlabFlags.None, null)!;
        nint a = m.KmemCacheAlloc(page, Gfp.Kernel);
        nint b = m.KmemCacheAlloc(page, Gfp.Kernel);
        Assert.Equal(0, a % 4096);
        Assert.Equal(0, b % 4096);
        Assert.NotEqual(PageOf(m, a), PageOf(m, b));
        Validate(m);
        m.KmemCacheFree(page, a);
        m.KmemCacheFree(page, b);
        Assert.Equal(0, Row(m, "pages")[0]);
    }

    [Fact]
    public void VmallocBookkeepingRunsOnSlobToo()
    {
        using var m = Boot();
        nint v = m.Vmalloc(1 << 20);
        Assert.NotEqual(0, v);
        Validate(m);
        m.Vfree(v);
        Validate(m);
    }

    [Fact]
    public void ASlubMachineHasNoSlobinfo()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M" });
        Assert.False(m.Proc.Knows("slobinfo"));
        Assert.Throws<InvalidOperationException>(() => m.Proc.Slobinfo());
    }

    [Fact]
    public void ShrinkHasNothingToDoAndDestroyKeepsACacheWithObjects()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("slob_busy", 32, 0, SlabFlags.None, null)!;
        nint o = m.KmemCacheAlloc(s, Gfp.Kernel);
        Assert.Equal(0, m.KmemCacheShrink(s));
        m.KmemCacheDestroy(s);
        Assert.False(s.IsDestroyed);
        Assert.True(m.Log.Contains("kmem_cache_destroy slob_busy: Slab cache still has objects"));
        m.KmemCacheFree(s, o);
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
        Assert.DoesNotContain(m.SlabCaches, c => c.Name == "slob_busy");
    }

    [Fact]
    public unsafe void KreallocKeepsTheContentAndKzallocZeroes()
    {
        using var m = Boot();
        nint p = m.Kmalloc(30, Gfp.Kernel);
        new Span<byte>((void*)p, 30).Fill(0x5a);
        // ksize is 30: growing to 31 moves the block.
        nint q = m.Krealloc(p, 31, Gfp.Kernel);
        Assert.NotEqual(p, q);
        Assert.Equal(-1, new Span<byte>((void*)q, 30).IndexOfAnyExcept((byte)0x5a));
        Assert.Equal(q, m.Krealloc(q, 32, Gfp.Kernel));
        new Span<byte>((void*)q, 32).Fill(0xff);
        m.Kfree(q);
        nint z = m.Kzalloc(32, Gfp.Kernel);
        Assert.Equal(-1, new Span<byte>((void*)z, 32).IndexOfAnyExcept((byte)0));
        Assert.Equal(32u, *(uint*)(z - 8));
        m.Kfree(z);
        Validate(m);
    }
}
