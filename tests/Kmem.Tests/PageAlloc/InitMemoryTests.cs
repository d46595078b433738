// Init memory (MachineOptions.InitMemoryPages): pages the boot keeps reserved while it derives
// the watermarks, lowmem reserves and per-CPU list sizes and releases afterwards, as 6.1's
// free_initmem comes after the initcall that derived them. The machine then ends with the
// managed count it was given and the derived values of the smaller one.
namespace Kmem.Tests.PageAlloc;

public class InitMemoryTests
{
    private static readonly Dictionary<string, long> Managed = new() { ["DMA"] = 3840, ["DMA32"] = 80429 };

    private static MachineOptions Options(long dma32, IReadOnlyDictionary<string, long>? init = null) => new()
    {
        Memory = "384M",
        Cpus = 2,
        Seed = 1,
        ManagedPages = new Dictionary<string, long>(Managed) { ["DMA32"] = dma32 },
        InitMemoryPages = init,
    };

    [Fact]
    public void TheWatermarksComeFromTheManagedPagesBeforeTheInitMemoryIsReleased()
    {
        const long Init = 2381;
        using var before = Machine.Boot(Options(Managed["DMA32"] - Init));
        using var after = Machine.Boot(Options(Managed["DMA32"], new Dictionary<string, long> { ["DMA32"] = Init }));
        for (int i = 0; i < after.PageAllocator.Zones.Length; i++)
        {
            var (b, a) = (before.PageAllocator.Zones[i], after.PageAllocator.Zones[i]);
            Assert.Equal(b.Watermark, a.Watermark);
            Assert.Equal(b.LowmemReserve, a.LowmemReserve);
            Assert.Equal(b.Pcp.Select(p => (p.High, p.Batch)), a.Pcp.Select(p => (p.High, p.Batch)));
        }
        var dma32 = after.PageAllocator.Zones.Single(z => z.Name == "DMA32");
        Assert.Equal(Managed["DMA32"], dma32.ManagedPages);
        // The released pages are free, on the buddy lists (no per-CPU list holds them), each once.
        Assert.Equal(PageAllocCheck.ManagedPages(before) - PageAllocCheck.FreeAndCached(before),
            PageAllocCheck.ManagedPages(after) - PageAllocCheck.FreeAndCached(after));
        Assert.Equal(PageAllocCheck.PcpPages(before), PageAllocCheck.PcpPages(after));
        PageAllocCheck.ValidateAll(after);
    }

    [Fact]
    public void AFrameReleasedFromTheBootReservationsIsNeverClaimedAfter()
    {
        // The per-CPU allocator's first chunk claims boot-reserved frames top-down when it is set up, which may be
        // after init memory or a replay's free_reserved_area released some of them to the buddy lists.
        var r = new Kmem.PageAlloc.BootReservations([(100, 110)], 1000);
        r.Release(105);
        Assert.Equal(100u, r.Claim(5, 1, 0)); // 106..109 is too short: the span below the released frame
        Assert.Equal(106u, r.Claim(4, 1, 0));
        Assert.False(r.IsClaimed(105));
        Assert.Equal(Kmem.Physical.PhysMem.NoPfn, r.Claim(1, 1, 0));
    }

    public static TheoryData<IReadOnlyDictionary<string, long>, string> Refused => new()
    {
        { new Dictionary<string, long> { ["Normal2"] = 1 }, "Normal2 is not a zone" },
        { new Dictionary<string, long> { ["DMA32"] = -1 }, "-1 pages for zone DMA32" },
        { new Dictionary<string, long> { ["DMA32"] = 80430 }, "80430 pages for zone DMA32" },
    };

    [Theory]
    [MemberData(nameof(Refused))]
    public void AnInitMemoryTheZoneCannotHoldIsRefusedWithTheOptionsName(IReadOnlyDictionary<string, long> init, string inMessage)
    {
        var e = Assert.Throws<MachineOptionException>(() => Machine.Boot(Options(Managed["DMA32"], init)));
        Assert.Equal("InitMemoryPages", e.Option);
        Assert.Contains(inMessage, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WithoutAManagedCountTheInitMemoryComesOutOfTheKernelImage()
    {
        using var plain = Machine.Boot(new MachineOptions { Memory = "384M", Seed = 1 });
        using var m = Machine.Boot(new MachineOptions { Memory = "384M", Seed = 1, InitMemoryPages = new Dictionary<string, long> { ["DMA32"] = 1000 } });
        var (a, b) = (plain.PageAllocator.Zones.Single(z => z.Name == "DMA32"), m.PageAllocator.Zones.Single(z => z.Name == "DMA32"));
        Assert.Equal(a.ManagedPages + 1000, b.ManagedPages);
        Assert.Equal(a.Watermark, b.Watermark);
        // More than the zone's reservations: refused, with how many there were.
        var e = Assert.Throws<MachineOptionException>(() => Machine.Boot(new MachineOptions
        {
            Memory = "384M", InitMemoryPages = new Dictionary<string, long> { ["DMA32"] = 90_000 },
        }));
        Assert.Equal("InitMemoryPages", e.Option);
        Assert.Contains("reserved pages to release", e.Message, StringComparison.Ordinal);
    }
}
