// kmalloc on SLUB as Linux 6.1: the size → cache table at every boundary, ksize,
// the cache type chosen by gfp (dma > rcl > cg), ZERO_SIZE_PTR, kmalloc_large
// through compound pages and back, kcalloc overflow, krealloc and kmemdup
// keeping content, kfree_sensitive, and /proc/slabinfo and meminfo figures.
namespace Kmem.Tests.Slab;

public class KmallocTests
{
    [Theory]
    [InlineData(1u, "kmalloc-8", 8u)]
    [InlineData(8u, "kmalloc-8", 8u)]
    [InlineData(9u, "kmalloc-16", 16u)]
    [InlineData(16u, "kmalloc-16", 16u)]
    [InlineData(17u, "kmalloc-32", 32u)]
    [InlineData(64u, "kmalloc-64", 64u)]
    [InlineData(65u, "kmalloc-96", 96u)]
    [InlineData(96u, "kmalloc-96", 96u)]
    [InlineData(97u, "kmalloc-128", 128u)]
    [InlineData(128u, "kmalloc-128", 128u)]
    [InlineData(129u, "kmalloc-192", 192u)]
    [InlineData(192u, "kmalloc-192", 192u)]
    [InlineData(193u, "kmalloc-256", 256u)]
    [InlineData(256u, "kmalloc-256", 256u)]
    [InlineData(257u, "kmalloc-512", 512u)]
    [InlineData(1025u, "kmalloc-2k", 2048u)]
    [InlineData(8192u, "kmalloc-8k", 8192u)]
    public void EachSizeGoesToTheKernelsCache(uint size, string cache, uint ksize)
    {
        using var m = KmemCacheTests.Boot();
        nint p = m.Kmalloc(size, Gfp.Kernel);
        Assert.NotEqual(0, p);
        Assert.True(m.PageSlab(m.VirtToPage(p)));
        Assert.Equal((nuint)ksize, m.Ksize(p));
        Assert.Equal(1, NumSlabs(m, cache));
        Assert.Equal(0, p % Math.Min(ksize & (~ksize + 1), 4096u));
        m.Kfree(p);
    }

    [Fact]
    public void AboveEightKiBKmallocUsesCompoundPagesCountedAsUnreclaimableSlab()
    {
        using var m = KmemCacheTests.Boot();
        m.DrainAllPages();
        string before = m.Proc.Buddyinfo();
        nint p = m.Kmalloc(8193, Gfp.Kernel);
        Assert.NotEqual(0, p);
        Assert.Equal(0, p % 4096);
        Assert.Equal((nuint)16384, m.Ksize(p));
        var page = m.VirtToPage(p);
        Assert.Equal(1, m.PageRefCount(page));
        Assert.False(m.PageSlab(page));
        Assert.Contains("nr_slab_unreclaimable 4", m.Proc.Zoneinfo(), StringComparison.Ordinal);
        Assert.Equal("4", KmemCacheTests.SlabUnreclaimable(m));
        Assert.Contains("SUnreclaim:           16 kB", m.Proc.Meminfo(), StringComparison.Ordinal);
        m.PageSpan(page, 2).Fill(0x5A);
        m.Kfree(p);
        Assert.Equal("0", KmemCacheTests.SlabUnreclaimable(m));
        m.DrainAllPages();
        Assert.Equal(before, m.Proc.Buddyinfo());
    }

    [Fact]
    public void KmallocOfMoreThanKmallocMaxSizeFailsWithAWarning()
    {
        using var m = KmemCacheTests.Boot();
        nint p = m.Kmalloc(Machine.KmallocMaxSize, Gfp.Kernel);
        Assert.NotEqual(0, p);
        m.Kfree(p);
        Assert.Equal(0, m.Kmalloc(Machine.KmallocMaxSize + 1, Gfp.Kernel));
        Assert.Contains(m.Log.Lines, l => l.Contains("WARNING", StringComparison.Ordinal));
    }

    [Fact]
    public void ZeroSizeGivesZeroSizePtrWhichKfreeAndKsizeAccept()
    {
        using var m = KmemCacheTests.Boot();
        Assert.Equal(16, m.Kmalloc(0, Gfp.Kernel));
        Assert.Equal(Machine.ZeroSizePtr, m.Kzalloc(0, Gfp.Kernel));
        Assert.Equal((nuint)0, m.Ksize(Machine.ZeroSizePtr));
        m.Kfree(Machine.ZeroSizePtr);
        m.Kfree(0);
    }

    [Fact]
    public void KcallocAndKmallocArrayGiveNullOnOverflow()
    {
        using var m = KmemCacheTests.Boot();
        Assert.Equal(0, m.Kcalloc(nuint.MaxValue / 2, 3, Gfp.Kernel));
        Assert.Equal(0, m.KmallocArray(2, nuint.MaxValue, Gfp.Kernel));
        nint p = m.Kcalloc(10, 12, Gfp.Kernel);
        Assert.Equal((nuint)128, m.Ksize(p));
        m.Kfree(p);
    }

    [Theory]
    [InlineData(SlabAllocator.Slub)]
    [InlineData(SlabAllocator.Slab)]
    [InlineData(SlabAllocator.Slob)]
    public void ASizeNoZoneCanHoldGivesNullAndLeavesEveryPageFree(SlabAllocator slab)
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "64M", Slab = slab, Seed = 1 });
        long free = m.PageAllocator.NrFreePages;
        foreach (nuint size in new[] { nuint.MaxValue, nuint.MaxValue - 4095, (nuint)1 << 40, (nuint)128 << 20 })
        {
            Assert.Equal(0, m.Kmalloc(size, Gfp.Kernel | Gfp.NoWarn));
        }
        m.DrainAllPages();
        Assert.Equal(free, m.PageAllocator.NrFreePages);
    }

    [Fact]
    public unsafe void KzallocAndKcallocZeroTheWholeRequest()
    {
        using var m = KmemCacheTests.Boot();
        nint p = m.Kmalloc(100, Gfp.Kernel);
        new Span<byte>((void*)p, 100).Fill(0xEE);
        m.Kfree(p);
        nint q = m.Kzalloc(100, Gfp.Kernel);
        Assert.Equal(-1, new Span<byte>((void*)q, 100).IndexOfAnyExcept((byte)0));
        m.Kfree(q);
    }

    [Fact]
    public unsafe void KreallocKeepsTheContentWhenItGrowsAndInPlaceWhenItFits()
    {
        using var m = KmemCacheTests.Boot();
        nint p = m.Kmalloc(40, Gfp.Kernel);
        var span = new Span<byte>((void*)p, 40);
        for (int i = 0; i < 40; i++)
        {
            span[i] = (byte)i;
        }
        Assert.Equal(p, m.Krealloc(p, 64, Gfp.Kernel));
        nint q = m.Krealloc(p, 5000, Gfp.Kernel);
        Assert.NotEqual(p, q);
        var moved = new Span<byte>((void*)q, 40);
        for (int i = 0; i < 40; i++)
        {
            Assert.Equal((byte)i, moved[i]);
        }
        Assert.Throws<SlabBugException>(() => m.Kfree(p));
        nint r = m.Krealloc(q, 20000, Gfp.Kernel);
        Assert.Equal(39, new Span<byte>((void*)r, 40)[39]);
        Assert.Equal(Machine.ZeroSizePtr, m.Krealloc(r, 0, Gfp.Kernel));
        nint fresh = m.Krealloc(0, 10, Gfp.Kernel);
        Assert.Equal((nuint)16, m.Ksize(fresh));
        m.Kfree(fresh);
    }

    [Fact]
    public unsafe void KmemdupCopiesAndKfreeSensitiveZeroesBeforeFreeing()
    {
        using var m = KmemCacheTests.Boot();
        byte[] src = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        nint p = m.Kmemdup(src, Gfp.Kernel);
        Assert.True(new ReadOnlySpan<byte>((void*)p, src.Length).SequenceEqual(src));
        nint q = m.Kmemdup(p, 11, Gfp.Kernel);
        Assert.True(new ReadOnlySpan<byte>((void*)q, src.Length).SequenceEqual(src));
        m.KfreeSensitive(p);
        // The freed kmalloc-16 object keeps only its free pointer (bytes 8..15); the rest was zeroed.
        var bytes = new ReadOnlySpan<byte>((void*)p, 16);
        Assert.Equal(-1, bytes[..8].IndexOfAnyExcept((byte)0));
        m.Kfree(q);
    }

    [Theory]
    [InlineData(Gfp.Kernel, "kmalloc-64")]
    [InlineData(Gfp.Kernel | Gfp.Reclaimable, "kmalloc-rcl-64")]
    [InlineData(Gfp.KernelAccount, "kmalloc-cg-64")]
    [InlineData(Gfp.Kernel | Gfp.Dma, "dma-kmalloc-64")]
    [InlineData(Gfp.Kernel | Gfp.Dma | Gfp.Reclaimable | Gfp.Account, "dma-kmalloc-64")]
    [InlineData(Gfp.KernelAccount | Gfp.Reclaimable, "kmalloc-rcl-64")]
    public void TheGfpChoosesTheCacheType(Gfp gfp, string cache)
    {
        using var m = KmemCacheTests.Boot();
        nint p = m.Kmalloc(64, gfp);
        Assert.Equal(1, NumSlabs(m, cache));
        if (cache.StartsWith("dma", StringComparison.Ordinal))
        {
            Assert.Equal(ZoneType.Dma, m.PageZone(m.VirtToPage(p)));
        }
        if (cache.Contains("rcl", StringComparison.Ordinal))
        {
            Assert.Contains("SReclaimable:          4 kB", m.Proc.Meminfo(), StringComparison.Ordinal);
            Assert.Contains("KReclaimable:          4 kB", m.Proc.Meminfo(), StringComparison.Ordinal);
        }
        m.Kfree(p);
    }

    [Fact]
    public void HighmemOrDma32InAKmallocGfpIsFixedUpWithTheKernelsWarning()
    {
        using var m = KmemCacheTests.Boot();
        // The warning comes from new_slab, so the cache must need a slab: kmalloc-64 has none yet.
        nint p = m.Kmalloc(64, Gfp.Kernel | Gfp.HighMem);
        Assert.NotEqual(0, p);
        Assert.Contains(m.Log.Lines, l => l.StartsWith("Unexpected gfp: 0x2 (__GFP_HIGHMEM). Fixing up to gfp: 0xcc0 (GFP_KERNEL). Fix your code!", StringComparison.Ordinal));
        nint q = m.Kmalloc(50000, Gfp.Kernel | Gfp.Dma32);
        Assert.NotEqual(0, q);
        Assert.Equal(2, m.Log.Lines.Count(l => l.StartsWith("Unexpected gfp", StringComparison.Ordinal)));
        m.Kfree(p);
        m.Kfree(q);
    }

    [Fact]
    public void SlabinfoHasTheKernelsHeaderAndKmallocGeometryForTwoCpus()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        string[] real = Proc.Snapshots.Lines(Proc.Snapshots.X64, "slabinfo");
        string[] ours = Proc.Snapshots.SplitLines(m.Proc.Read("/proc/slabinfo"));
        Assert.Equal(real[0], ours[0]);
        Assert.Equal(real[1], ours[1]);
        int compared = 0;
        foreach (string line in real.Skip(2))
        {
            string name = line[..17].Trim();
            if (!name.Contains("kmalloc", StringComparison.Ordinal))
            {
                continue;
            }
            string? mine = ours.FirstOrDefault(l => l[..17].Trim() == name);
            Assert.NotNull(mine);
            // objsize, objperslab, pagesperslab and the tunables are the geometry; the counts are the workload's.
            Assert.Equal(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3..9], mine.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3..9]);
            Assert.Equal(line.Length, mine.Length);
            compared++;
        }
        Assert.Equal(52, compared);
        // Newest first, in the kernel's creation order.
        int cg8 = Array.FindIndex(ours, l => l.StartsWith("kmalloc-cg-8 ", StringComparison.Ordinal));
        Assert.Equal("kmalloc-8k", ours[cg8 + 1][..17].Trim());
        Assert.StartsWith("kmalloc-8 ", ours[^1], StringComparison.Ordinal);
    }

    [Fact]
    public void SlabinfoCountsObjectsFreeOnCpuSlabsAsActive()
    {
        using var m = KmemCacheTests.Boot();
        nint p;
        using (m.OnCpu(0))
        {
            p = m.Kmalloc(200, Gfp.Kernel);
        }
        Assert.Equal(16, ActiveObjs(m, "kmalloc-256"));
        Assert.Contains("kmalloc-256           16     16    256   16    1 : tunables    0    0    0 : slabdata      1      1      0",
            m.Proc.Slabinfo(), StringComparison.Ordinal);
        m.Kfree(p);
    }

    internal static long ActiveObjs(Machine m, string cache) => Column(m, cache, 1);

    internal static long NumSlabs(Machine m, string cache) => Column(m, cache, 14);

    private static long Column(Machine m, string cache, int column)
    {
        string line = m.Proc.Slabinfo().Split('\n').First(l => l.Length > 17 && l[..17].Trim() == cache);
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[column], System.Globalization.CultureInfo.InvariantCulture);
    }
}
