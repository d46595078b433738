// The boot reserve of a replay: which frames a from-boot trace shows released from
// memblock's reservations (its first page event on them is a free), the managed pages
// the kernel had before they came, and the replay releasing them so the machine ends
// with the snapshot's managed pages while its watermarks and pcp high stay those it
// derived at boot, as 6.1 leaves them.
namespace Kmem.Tests.Trace;

public class TraceBootReserveTests
{
    private const string Boot = "0.000000";

    private static string Free(ulong pfn, int order = 0) =>
        ReplayData.Line($"mm_page_free: page=ffffea0000000000 pfn=0x{pfn:x} order={order}", 0, Boot);

    // Frames 0x10000 (allocated first) and 0x12010 (refilled first) were the allocator's; 0x12000 and 0x14000-1
    // come out of the reservations; 0x15000 is freed after userspace started (the marker) and is not counted.
    private static string Trace(string firstTime) =>
        ReplayData.Header
        + ReplayData.Line("mm_page_alloc: page=ffffea0000000000 pfn=0x10000 order=0 migratetype=0 gfp_flags=GFP_KERNEL", 0, firstTime)
        + Free(0x10000)
        + Free(0x12000)
        + ReplayData.Line("mm_page_alloc_zone_locked: page=ffffea0000000000 pfn=0x12010 order=0 migratetype=0 percpu_refill=1", 0, Boot)
        + Free(0x12010)
        + Free(0x14000, order: 1)
        + ReplayData.Line("tracing_mark_write: INIT_START", 0, Boot)
        + Free(0x15000);

    private static string Folder(string trace)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"kmem-reserve-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "trace.txt"), trace);
        File.Copy(Path.Combine(ReplayData.BundledFolder, "zoneinfo.txt"), Path.Combine(dir, "zoneinfo.txt"));
        return dir;
    }

    [Fact]
    public void FramesFirstSeenFreedBeforeTheFirstMarkerWereReservedAndLeaveTheirZonesManagedCount()
    {
        string dir = Folder(Trace(Boot));
        try
        {
            var r = TraceBootReserve.Read(Path.Combine(dir, "trace.txt"))!;
            Assert.Equal([0x12000UL, 0x14000UL, 0x14001UL], r.Frames.Order());
            Assert.Equal(112688 - 3, r.ManagedAtBoot["DMA32"]);
            Assert.Equal(3840, r.ManagedAtBoot["DMA"]);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void ATraceNotRecordedFromBootRevealsNoReservation()
    {
        string dir = Folder(Trace("1.000000"));
        try
        {
            var r = TraceBootReserve.Read(Path.Combine(dir, "trace.txt"))!;
            Assert.Empty(r.Frames);
            Assert.Equal(112688, r.ManagedAtBoot["DMA32"]);
            Assert.Null(TraceBootReserve.Read(Path.Combine(Path.GetTempPath(), "no-such-folder-kmem", "trace.txt")));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Theory]
    [InlineData("console=ttyS0 trace_event=kmem:kmalloc trace_buf_size=112M wl=B", 112L << 20)]
    [InlineData("trace_event=kmem:kmalloc trace_buf_size=48m", 48L << 20)]
    [InlineData("trace_buf_size=4096k trace_event=kmem:kmalloc", 4L << 20)]
    [InlineData("trace_event=kmem:kmalloc", 1_441_792L)] // TRACE_BUF_SIZE_DEFAULT
    [InlineData("console=ttyS0 trace_buf_size=112M", 0L)] // no tracing at boot: the buffer is not the trace's business
    [InlineData(null, 0L)] // no command line beside the trace
    public void TheRingBufferSizeIsTheCommandLinesWhenItTracesFromBoot(string? cmdline, long expected)
    {
        string dir = Folder(Trace(Boot));
        try
        {
            if (cmdline is not null)
            {
                File.WriteAllText(Path.Combine(dir, "cmdline.txt"), cmdline + "\n");
            }
            Assert.Equal(expected, TraceBootReserve.Read(Path.Combine(dir, "trace.txt"))!.RingBufferBytes);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void TheBootCpusRingBufferIsHeldBeforeTheFirstEventAsTheKernelAllocatedIt()
    {
        // ring_buffer_alloc: one page per BUF_PAGE_SIZE (the page less a 16-byte header on 64-bit, 12 on 32-bit) and the
        // reader page. Capture B's second CPU allocated 28,789 such pages at SMP bring-up for its 112M.
        Assert.Equal(28_786, PreTraceRingBuffer.PagesPerCpu(112L << 20, is64Bit: true));
        Assert.Equal(12_326, PreTraceRingBuffer.PagesPerCpu(48L << 20, is64Bit: false));
        Assert.Equal(3, PreTraceRingBuffer.PagesPerCpu(1, is64Bit: true)); // at least two, and the reader page

        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        long free = m.PageAllocator.NrFreePages;
        var zone = m.PageAllocator.Zones.Single(z => z.Type == ZoneType.Dma32);
        int unmovable = Blocks(m, zone, MigrateType.Unmovable);
        using var reader = ReplayData.Reader(ReplayData.Header + ReplayData.Line("kmalloc: call_site=f+0x1/0x2 ptr=ffff888000001000 bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false"));
        var r = new TraceReplayer(m, new TraceReplayOptions { RingBufferBytes = 8L << 20 }).Replay(reader);
        long pages = PreTraceRingBuffer.PagesPerCpu(8L << 20, is64Bit: true);
        Assert.Equal(pages, r.PreTraceRingBufferPages);
        // The pages and their descriptors' slab pages are gone from the free lists...
        Assert.InRange(free - m.PageAllocator.NrFreePages, pages, pages + pages / 32);
        // ... taken as unmovable requests steal: straight off the buddy lists, in whole pageblocks of the top zone.
        Assert.True(Blocks(m, zone, MigrateType.Unmovable) - unmovable >= pages / 512, "the buffer's pageblocks turned Unmovable");
    }

    private static int Blocks(Machine m, Kmem.PageAlloc.Zone zone, MigrateType mt)
    {
        int n = 0;
        for (uint pfn = zone.StartPfn; pfn < zone.EndPfn; pfn += 1u << m.PageAllocator.Arch.PageblockOrder)
        {
            n += m.PageAllocator.Mem.PageblockMigratetype(pfn) == mt ? 1 : 0;
        }
        return n;
    }

    // A boot log as the captures keep it (meta/dmesg.txt): what free_reserved_area released, and when.
    private const string BootLog = """
        [    0.107921] Memory: 327312K/392648K available (14343K kernel code, 2338K rwdata, 9132K rodata, 2824K init, 17344K bss, 65132K reserved, 0K cma-reserved)
        [    0.738650] Freeing SMP alternatives memory: 36K
        [    2.191499] Freeing initrd memory: 1516K
        [    2.811832] Freeing unused kernel image (initmem) memory: 2824K
        [    2.816278] Freeing unused kernel image (text/rodata gap) memory: 2040K
        """;

    [Theory]
    [InlineData("1.000000", 1595)]
    [InlineData(Boot, null)]
    public void ATraceRecordedAfterBootTakesItsInitMemoryFromTheBootLog(string firstTime, int? pages)
    {
        // All but the SMP alternatives (freed in start_kernel, before the initcalls) came after the watermarks were
        // derived: (1516 + 2824 + 2040) KiB, in DMA32, which holds the kernel image at 16 MiB. A trace from boot shows
        // those frees itself and needs no log.
        string dir = Folder(Trace(firstTime));
        try
        {
            Directory.CreateDirectory(Path.Combine(dir, "meta"));
            File.WriteAllText(Path.Combine(dir, "meta", "dmesg.txt"), BootLog);
            var r = TraceBootReserve.Read(Path.Combine(dir, "trace.txt"))!;
            if (pages is int p)
            {
                Assert.Equal(new Dictionary<string, long> { ["DMA32"] = p }, r.InitMemoryPages);
                Assert.Equal(112688, r.ManagedAtBoot["DMA32"]); // the snapshot's: the init memory is part of it
            }
            else
            {
                Assert.Null(r.InitMemoryPages);
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void TheReplayReleasesEachReservedFrameOnceAndNothingDerivedMoves()
    {
        string dir = Folder(Trace(Boot));
        try
        {
            string path = Path.Combine(dir, "trace.txt");
            var reserve = TraceBootReserve.Read(path)!;
            using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1, ManagedPages = reserve.ManagedAtBoot });
            var dma32 = m.PageAllocator.Zones.Single(z => z.Name == "DMA32");
            Assert.Equal(112688 - 3, dma32.ManagedPages);
            int high = dma32.Pcp[0].High;
            long low = dma32.Watermark[Kmem.PageAlloc.Zone.WmarkLow];
            long free = m.PageAllocator.Zones.Sum(z => z.FreePages + z.Pcp.Sum(p => (long)p.Count));
            using var reader = TraceReader.Open(path);
            var r = new TraceReplayer(m, new TraceReplayOptions { ReservedFrames = reserve.Frames }).Replay(reader);
            Assert.Equal(112688, dma32.ManagedPages); // the snapshot's count once the trace released them
            Assert.Equal(high, dma32.Pcp[0].High);
            Assert.Equal(low, dma32.Watermark[Kmem.PageAlloc.Zone.WmarkLow]);
            // The three released pages are free now; the allocated-and-freed page and the bulk allocator's frame are
            // back where they were; the free after the marker is of no reserved frame.
            Assert.Equal(free + 3, m.PageAllocator.Zones.Sum(z => z.FreePages + z.Pcp.Sum(p => (long)p.Count)));
            Assert.Equal(1, r.UntrackedPageFrees); // 0x15000: the refilled 0x12010 was the bulk allocator's, replayed
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
