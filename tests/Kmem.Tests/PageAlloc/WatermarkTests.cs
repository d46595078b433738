// Watermarks and reserves: the kernel's formulas for min_free_kbytes, the
// per-zone min/low/high split, lowmem_reserve and the per-CPU list high and
// batch (checked against a real x86-64 6.1 zoneinfo where the formulas apply),
// and what they do to allocations: GFP_NOWAIT stops at min, GFP_ATOMIC digs to
// 3/8 of it, and lowmem_reserve keeps GFP_KERNEL out of the DMA zone's last pages.
using Kmem.PageAlloc;
using static Kmem.Tests.PageAlloc.PageAllocCheck;

namespace Kmem.Tests.PageAlloc;

public class WatermarkTests
{
    private static long IntSqrt(long x)
    {
        long r = 0;
        for (long bit = 1L << 31; bit != 0; bit >>= 1)
        {
            if ((r + bit) * (r + bit) <= x)
            {
                r += bit;
            }
        }
        return r;
    }

    [Theory]
    [InlineData(Preset.X64, "256M")]
    [InlineData(Preset.X64, "512M")]
    [InlineData(Preset.X86, "1G")]
    [InlineData(Preset.X86, "3G")]
    public void MinFreeKbytesIsIntSqrtOfSixteenTimesLowmemKbytes(Preset preset, string memory)
    {
        // Machines without transparent hugepages (x86-32 without PAE, or under 512M of RAM) keep the
        // init_per_zone_wmark_min value.
        using var m = Machine.Boot(new MachineOptions { Preset = preset, Memory = memory });
        // Lowmem: the zones GFP_USER may use (no HighMem), measured at boot before any watermark exists.
        long lowmemKb = m.PageAllocator.Zones.Where(z => z.Type <= ZoneType.Normal).Sum(z => z.ManagedPages) * 4;
        Assert.Equal(IntSqrt(lowmemKb * 16), m.PageAllocator.MinFreeKbytes);
        Assert.DoesNotContain(m.Log.Lines, l => l.Contains("min_free_kbytes", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(Preset.X64, "1G")]
    [InlineData(Preset.X64, "5G")]
    [InlineData(Preset.X86Pae, "1536M")]
    public void KhugepagedRaisesMinFreeKbytesOnThpMachinesOf512MOrMore(Preset preset, string memory)
    {
        using var m = Machine.Boot(new MachineOptions { Preset = preset, Memory = memory });
        var lowmemZones = m.PageAllocator.Zones.Where(z => z.Type <= ZoneType.Normal && z.ManagedPages > 0).ToList();
        long lowmem = lowmemZones.Sum(z => z.ManagedPages);
        // init_per_zone_wmark_min first ...
        long first = IntSqrt(lowmem * 4 * 16);
        // ... then set_recommended_min_free_kbytes: 2 + 3 * 3 pageblocks per lowmem zone, at most 5% of the
        // pages above the high watermarks that the first value gave.
        long pagesMin = first / 4;
        long buffer = lowmemZones.Sum(z =>
        {
            long share = pagesMin * z.ManagedPages / lowmem;
            return z.ManagedPages - (share + (2 * Math.Max(share / 4, z.ManagedPages * 10 / 10000)));
        });
        long recommended = Math.Min(512L * lowmemZones.Count * 11, buffer / 20) * 4;
        Assert.True(recommended > first);
        Assert.Equal(recommended, m.PageAllocator.MinFreeKbytes);
        Assert.Contains($"raising min_free_kbytes from {first} to {recommended} to help transparent hugepage allocations",
            m.Log.Lines.Single(l => l.Contains("min_free_kbytes", StringComparison.Ordinal)), StringComparison.Ordinal);
    }

    [Fact]
    public void AThpMachineOfOneGigabyteGetsKhugepagedsFigure()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "1G" });
        // 1G less the first MiB, the 16M kernel image and a 16M memmap: 253696 lowmem pages, so
        // int_sqrt(253696 * 4 * 16) = 4029 (the kernel's table says 4096k for 1024MB), which khugepaged
        // raises to (2 + 9) pageblocks for each of DMA and DMA32: 11264 pages.
        Assert.True(m.Log.Contains("raising min_free_kbytes from 4029 to 45056"));
        Assert.Equal(45056, m.PageAllocator.MinFreeKbytes);
    }

    [Fact]
    public void AUserMinFreeKbytesIsUsed()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "1G", MinFreeKbytes = 65536 });
        Assert.Equal(65536, m.PageAllocator.MinFreeKbytes);
        long min = m.PageAllocator.Zones.Sum(z => z.Watermark[Zone.WmarkMin]);
        Assert.InRange(min, 16384 - 2, 16384);
    }

    [Theory]
    [InlineData(Preset.X64, "1G", 10)]
    [InlineData(Preset.X64, "5G", 10)]
    [InlineData(Preset.X64, "5G", 200)]
    [InlineData(Preset.X86Pae, "1536M", 10)]
    public void WatermarksSplitMinFreeKbytesByZoneSize(Preset preset, string memory, int scale)
    {
        using var m = Machine.Boot(new MachineOptions { Preset = preset, Memory = memory, WatermarkScaleFactor = scale });
        long pagesMin = m.PageAllocator.MinFreeKbytes / 4;
        var zones = m.PageAllocator.Zones;
        long lowmem = zones.Where(z => z.Type is not (ZoneType.HighMem or ZoneType.Movable)).Sum(z => z.ManagedPages);
        foreach (var z in zones.Where(z => z.IsPopulated))
        {
            long share = pagesMin * z.ManagedPages / lowmem;
            long min = z.Type == ZoneType.HighMem ? Math.Clamp(z.ManagedPages / 1024, 32, 128) : share;
            long gap = Math.Max(share / 4, z.ManagedPages * scale / 10000);
            Assert.Equal(min, z.Watermark[Zone.WmarkMin]);
            Assert.Equal(min + gap, z.Watermark[Zone.WmarkLow]);
            Assert.Equal(min + 2 * gap, z.Watermark[Zone.WmarkHigh]);
            Assert.Equal(min + 3 * gap, z.Watermark[Zone.WmarkPromo]);
        }
        // Rounding down each share loses less than a page per zone.
        Assert.InRange(zones.Where(z => z.Type < ZoneType.HighMem).Sum(z => z.Watermark[Zone.WmarkMin]), pagesMin - 3, pagesMin);
    }

    [Fact]
    public void DmaAndDma32WatermarksOn1GAreTheKernelsFigures()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "1G" });
        var dma = ZoneOf(m, ZoneType.Dma);
        var dma32 = ZoneOf(m, ZoneType.Dma32);
        Assert.Equal((3840, 249856), (dma.ManagedPages, dma32.ManagedPages));
        // min_free_kbytes 45056 (see above): pages_min = 11264.
        // DMA gets 11264 * 3840 / 253696 = 170, DMA32 11264 * 249856 / 253696 = 11093.
        // Gaps: DMA max(170/4, 3840 * 10/10000) = 42; DMA32 max(11093/4, 249856 * 10/10000) = 2773.
        Assert.Equal([170L, 212, 254], dma.Watermark[..3]);
        Assert.Equal([11093L, 13866, 16639], dma32.Watermark[..3]);
        Assert.Equal(249856 / 256, dma.LowmemReserve[(int)ZoneType.Normal]);
    }

    [Fact]
    public void WithMinFreeKbytesGivenTheWatermarksOn1GUseIt()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "1G", MinFreeKbytes = 4029 });
        var dma = ZoneOf(m, ZoneType.Dma);
        var dma32 = ZoneOf(m, ZoneType.Dma32);
        // pages_min 1007: DMA 1007 * 3840 / 253696 = 15, DMA32 1007 * 249856 / 253696 = 991; gaps
        // DMA max(15/4, 3) = 3, DMA32 max(991/4, 249) = 249: here 0.1% of the zone is the larger.
        Assert.Equal([15L, 18, 21], dma.Watermark[..3]);
        Assert.Equal([991L, 1240, 1489], dma32.Watermark[..3]);
        Assert.DoesNotContain(m.Log.Lines, l => l.Contains("min_free_kbytes", StringComparison.Ordinal));
    }

    [Fact]
    public void LowmemReserveIsTheManagedPagesAboveOverTheRatio()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "5G" });
        var dma = ZoneOf(m, ZoneType.Dma);
        var dma32 = ZoneOf(m, ZoneType.Dma32);
        var normal = ZoneOf(m, ZoneType.Normal);
        Assert.Equal(0, dma.LowmemReserve[(int)ZoneType.Dma]);
        Assert.Equal(dma32.ManagedPages / 256, dma.LowmemReserve[(int)ZoneType.Dma32]);
        Assert.Equal((dma32.ManagedPages + normal.ManagedPages) / 256, dma.LowmemReserve[(int)ZoneType.Normal]);
        Assert.Equal((dma32.ManagedPages + normal.ManagedPages) / 256, dma.LowmemReserve[(int)ZoneType.Movable]);
        Assert.Equal(normal.ManagedPages / 256, dma32.LowmemReserve[(int)ZoneType.Normal]);
        Assert.Equal(0, normal.LowmemReserve[(int)ZoneType.Movable]);

        using var x86 = Machine.Boot(new MachineOptions { Preset = Preset.X86Pae, Memory = "1536M" });
        var n = ZoneOf(x86, ZoneType.Normal);
        var h = ZoneOf(x86, ZoneType.HighMem);
        Assert.Equal(h.ManagedPages / 32, n.LowmemReserve[(int)ZoneType.HighMem]);
        Assert.Equal((n.ManagedPages + h.ManagedPages) / 256, ZoneOf(x86, ZoneType.Dma).LowmemReserve[(int)ZoneType.HighMem]);
    }

    [Fact]
    public void PcpHighAndBatchFollowTheKernelsFormulas()
    {
        foreach (var (preset, memory, cpus, nodes) in new[] { (Preset.X64, "512M", 2, 1), (Preset.X64, "5G", 3, 1), (Preset.X86Pae, "1536M", 4, 1), (Preset.X64, "512M", 4, 2) })
        {
            using var m = Machine.Boot(new MachineOptions { Preset = preset, Memory = memory, Cpus = cpus, Nodes = nodes });
            foreach (var z in m.PageAllocator.Zones.Where(z => z.IsPopulated))
            {
                long b = Math.Min(z.ManagedPages >> 10, 256) / 4;
                b = Math.Max(b, 1);
                long pow = 1;
                while (pow * 2 <= b + b / 2)
                {
                    pow *= 2;
                }
                int batch = (int)Math.Max(1, pow - 1);
                int high = (int)Math.Max(z.Watermark[Zone.WmarkLow] / z.Node.Cpus.Length, 4L * batch);
                Assert.All(z.Pcp, p => Assert.Equal((batch, high), (p.Batch, p.High)));
            }
        }
    }

    [Theory]
    // The real x86-64 6.1 boot (512M, 2 CPUs): DMA managed 3840 low 27, DMA32 managed 112688 low 815.
    [InlineData(3840, 27, 2, 1, 13)]
    [InlineData(112688, 815, 2, 31, 407)]
    // The real i386 PAE boot (1536M): Normal and HighMem.
    [InlineData(213397, 13217, 1, 63, 13217)]
    [InlineData(167897, 2213, 1, 31, 2213)]
    public void PcpSizingReproducesRealZoneinfo(long managed, long low, int cpus, int batch, int high)
    {
        Assert.Equal(batch, PageAllocator.ZoneBatchsize(managed));
        Assert.Equal(high, Math.Max(low / cpus, 4L * batch));
    }

    [Fact]
    public void A512MMachinesDmaZoneMatchesTheRealSnapshot()
    {
        // Same layout as the real boot: pfn 0 and 159..255 are holes, 1..158 reserved.
        using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2 });
        var dma = ZoneOf(m, ZoneType.Dma);
        Assert.Equal(1u, dma.StartPfn);
        Assert.Equal(4095, dma.SpannedPages);
        Assert.Equal(3998, dma.PresentPages);
        Assert.Equal(3840, dma.ManagedPages);
        Assert.Equal(3840, dma.FreePages);
        Assert.All(dma.Pcp, p => Assert.Equal((1, 13), (p.Batch, p.High)));
        Assert.Equal(4096u, ZoneOf(m, ZoneType.Dma32).StartPfn);
    }

    /// <summary>A 64M X64 machine: DMA (3840 pages) and a small DMA32 (7936 pages), pinned to CPU 0.</summary>
    private static Machine Small() => Machine.Boot(new MachineOptions { Memory = "64M", Cpus = 1, Seed = 1 });

    private static List<Page> TakeAll(Machine m, Gfp gfp)
    {
        var held = new List<Page>();
        for (var p = m.AllocPage(gfp); !p.IsNull; p = m.AllocPage(gfp))
        {
            held.Add(p);
        }
        return held;
    }

    [Fact]
    public void NowaitStopsAtMinAndAtomicGoesDeeper()
    {
        using var m = Small();
        var dma32 = ZoneOf(m, ZoneType.Dma32);
        long min = dma32.Watermark[Zone.WmarkMin];
        int batch = dma32.Pcp[0].Batch;

        var nowait = TakeAll(m, Gfp.Dma32 | Gfp.NoWait | Gfp.NoWarn);
        Assert.All(nowait, p => Assert.True(m.PageZone(p) <= ZoneType.Dma32));
        // Stops once free pages reach min (a pcp refill may overshoot by a batch).
        Assert.InRange(dma32.FreePages, min - batch, min);

        var atomic = TakeAll(m, Gfp.Dma32 | Gfp.Atomic | Gfp.NoWarn);
        long atomicMin = min - min / 2;
        atomicMin -= atomicMin / 4;
        Assert.True(atomic.Count >= min - atomicMin - batch, $"GFP_ATOMIC got only {atomic.Count} pages below min");
        Assert.InRange(dma32.FreePages, atomicMin - batch, atomicMin);
        Assert.Contains(atomic, p => m.PageZone(p) == ZoneType.Dma32);

        // __GFP_HIGH alone halves min: between the two.
        foreach (var p in atomic)
        {
            m.FreePage(p);
        }
        m.DrainAllPages();
        var high = TakeAll(m, Gfp.Dma32 | Gfp.NoWait | Gfp.High | Gfp.NoWarn);
        Assert.InRange(dma32.FreePages, min - min / 2 - batch, min - min / 2);
        Assert.True(high.Count > 0);

        foreach (var p in nowait.Concat(high))
        {
            m.FreePage(p);
        }
        m.DrainAllPages();
        AssertAccounted(m, 0);
    }

    [Fact]
    public void MemallocIgnoresTheWatermarksButNomemallocWins()
    {
        using var m = Small();
        var dma32 = ZoneOf(m, ZoneType.Dma32);
        var nowait = TakeAll(m, Gfp.Dma32 | Gfp.Atomic | Gfp.NoWarn);
        long left = dma32.FreePages;
        Assert.True(left > 0);
        Assert.True(m.AllocPage(Gfp.Dma32 | Gfp.Atomic | Gfp.Memalloc | Gfp.NoMemalloc | Gfp.NoWarn).IsNull);
        var reserve = TakeAll(m, Gfp.Dma32 | Gfp.Atomic | Gfp.Memalloc | Gfp.NoWarn);
        Assert.Equal(0, dma32.FreePages);
        Assert.True(reserve.Count >= left);
        foreach (var p in nowait.Concat(reserve))
        {
            m.FreePage(p);
        }
        m.DrainAllPages();
        AssertAccounted(m, 0);
    }

    [Fact]
    public void LowmemReserveKeepsGfpKernelOutOfTheLastDmaPages()
    {
        using var m = Small();
        var dma = ZoneOf(m, ZoneType.Dma);
        long reserve = dma.LowmemReserve[(int)ZoneType.Normal];
        Assert.Equal(ZoneOf(m, ZoneType.Dma32).ManagedPages / 256, reserve);
        Assert.True(reserve > 0);

        var kernel = TakeAll(m, Gfp.Kernel | Gfp.NoWarn);
        Assert.Contains(kernel, p => m.PageZone(p) == ZoneType.Dma);
        // GFP_KERNEL (highest zone Normal) must leave min + lowmem_reserve[Normal] in DMA ...
        // (the watermark checks read the zone's NR_FREE_PAGES counter, which moves by whole folds of a CPU's vmstat
        // diff, up to the threshold and one past it, and lags the exact count by up to a threshold per CPU).
        long kernelFloor = dma.Watermark[Zone.WmarkMin] + reserve;
        Assert.InRange(dma.VmstatFreePages, kernelFloor - dma.Pcp[0].Batch - dma.StatThreshold - 1, kernelFloor);
        Assert.InRange(dma.FreePages - dma.VmstatFreePages, -m.PageAllocator.Cpus.Count * (long)dma.StatThreshold, m.PageAllocator.Cpus.Count * (long)dma.StatThreshold);

        // ... which a GFP_DMA allocation (highest zone DMA, no reserve) may still take.
        var dmaPages = TakeAll(m, Gfp.Dma | Gfp.Kernel | Gfp.NoWarn);
        Assert.True(dmaPages.Count >= reserve - dma.Pcp[0].Batch, $"GFP_DMA got {dmaPages.Count} pages, reserve {reserve}");
        Assert.All(dmaPages, p => Assert.Equal(ZoneType.Dma, m.PageZone(p)));
        Assert.InRange(dma.FreePages, dma.Watermark[Zone.WmarkMin] - dma.Pcp[0].Batch, dma.Watermark[Zone.WmarkMin]);

        foreach (var p in kernel.Concat(dmaPages))
        {
            m.FreePage(p);
        }
        m.DrainAllPages();
        AssertAccounted(m, 0);
        ValidateAll(m);
    }

    [Fact]
    public void AnAllocationFailureIsLoggedWithTheKernelsLine()
    {
        using var m = Small();
        var held = new List<Page>();
        Page p;
        while (!(p = m.AllocPages(Gfp.Dma | Gfp.Kernel, 10)).IsNull)
        {
            held.Add(p);
        }
        Assert.True(m.Log.Contains("page allocation failure: order:10, mode:0xcc1(GFP_KERNEL|GFP_DMA)"),
            string.Join('\n', m.Log.Lines));
        Assert.True(m.Log.Contains("Mem-Info:"));
        Assert.True(m.Log.Contains("Node 0 DMA free:"));

        m.Log.Clear();
        Assert.True(m.AllocPages(Gfp.Dma | Gfp.Kernel | Gfp.NoWarn, 10).IsNull);
        Assert.False(m.Log.Contains("page allocation failure"));
        Assert.Empty(m.Log.Lines);
        foreach (var h in held)
        {
            m.FreePages(h, 10);
        }
    }

    [Fact]
    public void OrderElevenFailsWithAOneTimeWarning()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M" });
        long before = FreeAndCached(m);
        Assert.True(m.AllocPages(Gfp.Kernel, 11).IsNull);
        Assert.True(m.AllocPages(Gfp.Kernel, 12).IsNull);
        Assert.Equal(before, FreeAndCached(m));
        var warnings = m.Log.Lines.Where(l => l.Contains(">= MAX_ORDER", StringComparison.Ordinal)).ToList();
        Assert.Single(warnings);
        Assert.Contains("order:11 >= MAX_ORDER (11)", warnings[0], StringComparison.Ordinal);
        Assert.DoesNotContain(m.Log.Lines, l => l.Contains("page allocation failure", StringComparison.Ordinal));

        using var quiet = Machine.Boot(new MachineOptions { Memory = "256M" });
        Assert.True(quiet.AllocPages(Gfp.Kernel | Gfp.NoWarn, 11).IsNull);
        Assert.Empty(quiet.Log.Lines);
        Assert.Equal(0, quiet.GetFreePages(Gfp.Kernel | Gfp.NoWarn, 11));
    }
}
