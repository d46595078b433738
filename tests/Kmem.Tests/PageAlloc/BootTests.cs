// Booting: the zone layout each preset builds (holes, reservations, memmap,
// ZONE_MOVABLE), large machines that cost nothing until touched, and boot
// options that are refused with a message naming the option.
using static Kmem.Tests.PageAlloc.PageAllocCheck;

namespace Kmem.Tests.PageAlloc;

public class BootTests
{
    [Theory]
    [InlineData("Memory", "1000", "page size")]
    [InlineData("Memory", "100K", "too small")]
    [InlineData("Memory", "32M", "too small")]
    [InlineData("Memory", "12Q", "not a size")]
    [InlineData("Memory", "", "empty")]
    [InlineData("KernelCore", "abc", "abc")]
    [InlineData("MovableCore", "150%", "150%")]
    [InlineData("FailPageAlloc", "x", "fail_page_alloc=x")]
    [InlineData("FailPageAlloc", "1,200,0,1", "probability")]
    public void AStringOptionIsRefusedWithItsName(string option, string value, string inMessage)
    {
        var options = option switch
        {
            "Memory" => new MachineOptions { Memory = value },
            "KernelCore" => new MachineOptions { KernelCore = value },
            "MovableCore" => new MachineOptions { MovableCore = value },
            _ => new MachineOptions { FailPageAlloc = value },
        };
        var e = Assert.Throws<MachineOptionException>(() => Machine.Boot(options));
        Assert.Equal(option, e.Option);
        Assert.StartsWith(option + ":", e.Message, StringComparison.Ordinal);
        Assert.Contains(inMessage, e.Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, MachineOptions, string> BadNumbers => new()
    {
        { "Cpus", new MachineOptions { Cpus = 0 }, "Cpus: 0" },
        { "Cpus", new MachineOptions { Cpus = 8193 }, "8192" },
        { "Nodes", new MachineOptions { Nodes = 0 }, "Nodes: 0" },
        { "Nodes", new MachineOptions { Preset = Preset.X86Pae, Nodes = 2 }, "1 node" },
        { "Memory", new MachineOptions { Preset = Preset.X86, Memory = "8G" }, "4G" },
        { "Memory", new MachineOptions { Preset = Preset.X86Pae, Memory = "65G" }, "64G" },
        { "Memory", new MachineOptions { Memory = "100M", Nodes = 2 }, "128M" },
        { "WatermarkScaleFactor", new MachineOptions { WatermarkScaleFactor = 0 }, "1..3000" },
        { "WatermarkScaleFactor", new MachineOptions { WatermarkScaleFactor = 3001 }, "1..3000" },
        { "WatermarkBoostFactor", new MachineOptions { WatermarkBoostFactor = -1 }, "0 or more" },
        { "MinFreeKbytes", new MachineOptions { MinFreeKbytes = -1 }, "0 or more" },
        { "PercpuPagelistHighFraction", new MachineOptions { PercpuPagelistHighFraction = 7 }, "at least 8" },
    };

    [Theory]
    [MemberData(nameof(BadNumbers))]
    public void ANumericOptionIsRefusedWithItsNameAndLimit(string option, MachineOptions options, string inMessage)
    {
        var e = Assert.Throws<MachineOptionException>(() => Machine.Boot(options));
        Assert.Equal(option, e.Option);
        Assert.Contains(option, e.Message, StringComparison.Ordinal);
        Assert.Contains(inMessage, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("64M")]
    [InlineData("64m")]
    [InlineData("65536K")]
    [InlineData("67108864")]
    public void MemoryTakesTheKernelsSuffixes(string memory)
    {
        using var m = Machine.Boot(new MachineOptions { Memory = memory });
        Assert.Equal(64L << 20, m.MemoryBytes);
        Assert.Equal((ulong)(64 << 20) / Machine.PageSize, m.MaxPfn);
    }

    [Fact]
    public void TheDefaultMachineIs1GWithTwoCpusOnOneNode()
    {
        using var m = Machine.Boot();
        Assert.Equal(1L << 30, m.MemoryBytes);
        Assert.Equal(2, m.NrCpus);
        Assert.Equal(1, m.NrNodes);
        Assert.Equal(Preset.X64, m.Preset);
        // The only boot message: khugepaged raising min_free_kbytes.
        Assert.Contains("raising min_free_kbytes", Assert.Single(m.Log.Lines), StringComparison.Ordinal);
    }

    [Fact]
    public void A64GMachineBootsWithItsThreeZones()
    {
        long before = Environment.WorkingSet;
        using var m = Machine.Boot(new MachineOptions { Memory = "64G", Cpus = 4 });
        // Untouched frames cost nothing: booting touches metadata, not the 64 GiB of frames.
        Assert.True(Environment.WorkingSet - before < 4L << 30, $"booting grew the process by {(Environment.WorkingSet - before) >> 20} MiB");
        Assert.Equal(64UL << 18, m.MaxPfn);
        var dma = ZoneOf(m, ZoneType.Dma);
        var dma32 = ZoneOf(m, ZoneType.Dma32);
        var normal = ZoneOf(m, ZoneType.Normal);
        Assert.Equal((1u, 4096u), (dma.StartPfn, dma.EndPfn));
        Assert.Equal((4096u, 1u << 20), (dma32.StartPfn, dma32.EndPfn));
        Assert.Equal((1u << 20, 16u << 20), (normal.StartPfn, normal.EndPfn));
        Assert.False(ZoneOf(m, ZoneType.Movable).IsPopulated);
        // The memmap (64 bytes a frame: 1 GiB) is reserved at the top of Normal.
        Assert.Equal(normal.SpannedPages - (1L << 18), normal.ManagedPages);
        Assert.Equal(dma32.SpannedPages - 4096, dma32.ManagedPages);
        Assert.Equal(ManagedPages(m), BuddyPages(m));
        // A block from the very top of memory works like any other.
        var p = m.AllocPages(Gfp.Kernel, 10);
        Assert.Equal(ZoneType.Normal, m.PageZone(p));
        m.PageSpan(p, 10)[^1] = 1;
        m.FreePages(p, 10);
        Assert.Equal(ManagedPages(m), FreeAndCached(m));
    }

    [Theory]
    [InlineData(Preset.X64, "512M", new[] { ZoneType.Dma, ZoneType.Dma32 })]
    [InlineData(Preset.X64, "5G", new[] { ZoneType.Dma, ZoneType.Dma32, ZoneType.Normal })]
    [InlineData(Preset.X86, "512M", new[] { ZoneType.Dma, ZoneType.Normal })]
    [InlineData(Preset.X86Pae, "1536M", new[] { ZoneType.Dma, ZoneType.Normal, ZoneType.HighMem })]
    public void EachPresetPopulatesItsZones(Preset preset, string memory, ZoneType[] populated)
    {
        using var m = Machine.Boot(new MachineOptions { Preset = preset, Memory = memory });
        Assert.Equal(populated, m.PageAllocator.Zones.Where(z => z.IsPopulated).Select(z => z.Type));
        // Zones are contiguous and cover every frame from pfn 1 up.
        var spans = m.PageAllocator.Zones.Where(z => z.SpannedPages > 0).OrderBy(z => z.StartPfn).ToList();
        Assert.Equal(1u, spans[0].StartPfn);
        for (int i = 1; i < spans.Count; i++)
        {
            Assert.Equal(spans[i - 1].EndPfn, spans[i].StartPfn);
        }
        Assert.Equal(m.MaxPfn, spans[^1].EndPfn);
        Assert.All(m.PageAllocator.Zones, z => Assert.Equal(z.ManagedPages, z.FreePages));
        ValidateAll(m);
        // At boot every free block is on the lists of its pageblock's type: Movable, but for ZONE_DMA's first block,
        // which starts below the zone (pfn 0 is a hole) and so stays Unmovable, as 6.1's memmap walk leaves it.
        long Free(Kmem.PageAlloc.Zone z, MigrateType mt) => Enumerable.Range(0, Machine.MaxOrder).Sum(o => z.NrFree(o, mt) << o);
        Assert.All(m.PageAllocator.Zones.Where(z => z.Type != ZoneType.Dma), z => Assert.Equal(z.FreePages, Free(z, MigrateType.Movable)));
        var dma = ZoneOf(m, ZoneType.Dma);
        Assert.Equal(dma.FreePages, Free(dma, MigrateType.Movable) + Free(dma, MigrateType.Unmovable));
        Assert.Equal(MigrateType.Unmovable, m.Mem.PageblockMigratetype(dma.StartPfn));
        Assert.Equal(MigrateType.Movable, m.Mem.PageblockMigratetype(1u << m.PageAllocator.Arch.PageblockOrder));
    }

    [Fact]
    public void X86LowmemEndsAtTheDirectMapsEndAndTheMemmapLivesBelowIt()
    {
        using var m = Machine.Boot(new MachineOptions { Preset = Preset.X86Pae, Memory = "1536M" });
        var normal = ZoneOf(m, ZoneType.Normal);
        var high = ZoneOf(m, ZoneType.HighMem);
        // Lowmem is what the 1 GiB kernel space can map once vmalloc has its 128 MiB: just under 896 MiB.
        Assert.InRange(m.Mem.LowmemPfns, (864u << 20) / Machine.PageSize, (896u << 20) / Machine.PageSize);
        Assert.Equal(m.Mem.LowmemPfns, normal.EndPfn);
        Assert.Equal(m.Mem.LowmemPfns, high.StartPfn);
        Assert.Equal(393216u, high.EndPfn);
        Assert.NotEqual(0, m.PageAddress(m.PfnToPage(normal.EndPfn - 1)));
        Assert.Equal(0, m.PageAddress(m.PfnToPage(high.StartPfn)));
        // Highmem has no reservations; the memmap of the whole 1536M (32 bytes a frame on 32-bit: 12 MiB) is in Normal.
        Assert.Equal(high.SpannedPages, high.ManagedPages);
        Assert.Equal(normal.SpannedPages - 4096 - (393216L * 32 / 4096), normal.ManagedPages);
    }

    [Theory]
    [InlineData(null, "25%", 65536)]
    [InlineData(null, "256M", 65536)]
    [InlineData("75%", null, 65536)]
    [InlineData("768M", null, 65536)]
    public void KernelcoreAndMovablecoreCarveZoneMovableFromTheTop(string? kernelCore, string? movableCore, long movablePages)
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "1G", KernelCore = kernelCore, MovableCore = movableCore });
        var movable = ZoneOf(m, ZoneType.Movable);
        Assert.Equal(movablePages, movable.SpannedPages);
        // memblock puts the memmap (64 bytes a frame: 4096 frames for 1G) at the top of the node, so it
        // stays reserved inside ZONE_MOVABLE, as in the kernel.
        Assert.Equal(movablePages - 262144L * 64 / 4096, movable.ManagedPages);
        Assert.Equal(262144u, movable.EndPfn);
        Assert.Equal(movable.StartPfn, ZoneOf(m, ZoneType.Dma32).EndPfn);
        ValidateAll(m);
    }

    [Theory]
    [InlineData("1M")]
    [InlineData("24M")]
    [InlineData("100M")]
    public void ASmallKernelcoreStillAccountsForEveryFrame(string kernelCore)
    {
        // Most of DMA32 becomes ZONE_MOVABLE; the memmap goes to the top of the node regardless and no zone
        // ends up with fewer managed pages than nothing.
        using var m = Machine.Boot(new MachineOptions { Memory = "1G", KernelCore = kernelCore });
        Assert.All(m.PageAllocator.Zones, z => Assert.InRange(z.ManagedPages, 0, z.PresentPages));
        Assert.True(ZoneOf(m, ZoneType.Movable).ManagedPages > 0);
        AssertAccounted(m, 0);
        ValidateAll(m);
    }

    [Fact]
    public void A64GPaeMachineKeepsItsWholeMemmapInLowmem()
    {
        // 64G of frames at 32 bytes each is a 512M memmap, all of it in the 880M of lowmem beside the kernel.
        using var m = Machine.Boot(new MachineOptions { Preset = Preset.X86Pae, Memory = "64G" });
        var normal = ZoneOf(m, ZoneType.Normal);
        Assert.Equal(normal.SpannedPages - 4096 - (16L << 20) * 32 / 4096, normal.ManagedPages);
        Assert.Equal(m.PageAllocator.Zones.Sum(z => z.PresentPages) - m.PageAllocator.ReservedPages, m.PageAllocator.TotalRamPages);
        AssertAccounted(m, 0);
    }

    [Theory]
    [InlineData("0", null)]
    [InlineData("0%", null)]
    [InlineData(null, "100%")]
    [InlineData("2G", null)]
    public void WithoutKernelcoreLeftThereIsNoZoneMovable(string? kernelCore, string? movableCore)
    {
        // find_zone_movable_pfns_for_nodes: "If kernelcore was not specified or kernelcore size is larger
        // than totalpages, there is no ZONE_MOVABLE" (a zero kernelcore counts as not specified).
        using var m = Machine.Boot(new MachineOptions { Memory = "1G", KernelCore = kernelCore, MovableCore = movableCore });
        Assert.Equal(0, ZoneOf(m, ZoneType.Movable).SpannedPages);
        Assert.Equal(3840, ZoneOf(m, ZoneType.Dma).ManagedPages);
        Assert.Equal(249856, ZoneOf(m, ZoneType.Dma32).ManagedPages);
        AssertAccounted(m, 0);
        ValidateAll(m);
    }

    [Fact]
    public void TheSeedIsKeptAndDrivesTheMachinesRandomSource()
    {
        using var a = Machine.Boot(new MachineOptions { Memory = "64M", Seed = 42 });
        using var b = Machine.Boot(new MachineOptions { Memory = "64M", Seed = 42 });
        Assert.Equal(42, a.Seed);
        Assert.Equal(a.Random.Next(), b.Random.Next());
    }
}
