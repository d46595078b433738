// The aligned pressure replay (Pressure/PressureReplay.Aligned.cs, KernelFreePages.cs): the
// capture's watermarks and lowmem reserves (zoneinfo.txt beside the trace), the kernel's
// reclaim paged out in Kmem instead of Kmem's choice, kswapd awake and asleep as its own
// events (and their silence) say, and a mismatch's detail naming Kmem's state. Free-running replays keep all of
// it Kmem's own.
using Kmem.PageAlloc;

namespace Kmem.Tests.Trace;

[Collection("reclaim-files")]
public class PressureAlignedTests
{
    private static string Line(string comm, int pid, string text, string time = "1.000000") => $"{comm,16}-{pid,-7} [000] .....     {time}: {text}\n";

    private static string UserPage(string comm, int pid, ulong pfn) =>
        Line(comm, pid, $"mm_page_alloc: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO");

    private const string Zoneinfo = """
        Node 0, zone      DMA
          pages free     3750
                boost    0
                min      26
                low      32
                high     38
                protection: (0, 300, 300, 300, 300)
        Node 0, zone    DMA32
          pages free     6040
                boost    0
                min      500
                low      640
                high     780
                protection: (0, 0, 0, 0, 0)
        Node 0, zone   Normal
          pages free     0
        Node 0, zone  Movable
          pages free     0
        Node 0, zone   Device
          pages free     0
        """;

    // Replays <text> from a trace file in its own directory (beside a zoneinfo.txt), aligned or free-running.
    private static (Machine M, TraceReplayResult R) Replay(string text, bool aligned, string zoneinfo = Zoneinfo)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"kmem-aligned-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            File.WriteAllText(Path.Combine(dir, "zoneinfo.txt"), zoneinfo);
            string trace = Path.Combine(dir, "trace.txt");
            File.WriteAllText(trace, ReplayData.Header + text);
            var m = TraceReplayer.Boot(new MachineOptions { Memory = "384M", Cpus = 2, Seed = 1 });
            using var reader = TraceReader.Open(trace);
            return (m, new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned }).Replay(reader));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string Hog(int pages, int reclaimed)
    {
        var sb = new System.Text.StringBuilder();
        // sys_swapon's address space array: one struct address_space (192 bytes) per 64 MiB of swap.
        sb.Append(Line("swapon", 90, "kmalloc: call_site=init_swap_address_space+0x3a/0x120 ptr=ffff888000002000 bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=false"));
        for (int i = 0; i < pages; i++)
        {
            sb.Append(UserPage("hog", 50, 0x8000 + (ulong)i));
        }
        for (int i = 0; i < reclaimed; i++)
        {
            sb.Append(Line("kswapd0", 44, $"mm_page_free: page=ffffea0000000000 pfn=0x{0x8000 + i:x} order=0"));
        }
        return sb.ToString();
    }

    [Fact]
    public void AnAlignedReplayTakesTheCapturesWatermarksAndLowmemReservesAFreeRunningOneKeepsItsOwn()
    {
        var (m, _) = Replay(Hog(4, 0), aligned: true);
        using (m)
        {
            var dma32 = m.PageAllocator.Zones.Single(z => z.Type == ZoneType.Dma32);
            Assert.Equal([500L, 640L, 780L], dma32.Watermark[..3]);
            var dma = m.PageAllocator.Zones.Single(z => z.Type == ZoneType.Dma);
            Assert.Equal(300, dma.LowmemReserve[(int)ZoneType.Dma32]);
            Assert.Equal(300, dma.LowmemReserve[(int)ZoneType.Movable]);
            Assert.Equal(26, dma.Watermark[Zone.WmarkMin]);
        }
        var (own, _) = Replay(Hog(4, 0), aligned: false);
        using (own)
        {
            Assert.NotEqual(500L, own.PageAllocator.Zones.Single(z => z.Type == ZoneType.Dma32).Watermark[Zone.WmarkMin]);
        }
    }

    [Fact]
    public void AlignedTheKernelsReclaimIsPagedOutInKmemFreeRunningKmemKeepsThePages()
    {
        var (m, r) = Replay(Hog(10, 4), aligned: true);
        using (m)
        {
            Assert.Equal(6, Assert.Single(m.Tasks, t => t.Comm == "hog").Rss);
            Assert.Equal(4, m.Mm.Stats.Pswpout);
            Assert.Equal(4, m.Mm.Stats.PgstealKswapd);
            Assert.Equal(4, Assert.IsType<TracePressure>(r.Pressure).ReclaimFrees);
        }
        var (own, _) = Replay(Hog(10, 4), aligned: false);
        using (own)
        {
            Assert.Equal(10, Assert.Single(own.Tasks, t => t.Comm == "hog").Rss); // left to Kmem's own reclaim
            Assert.Equal(0, own.Mm.Stats.Pswpout);
        }
    }

    [Fact]
    public void AlignedKswapdIsAwakeFromItsWakeEventToItsSleepEvent()
    {
        string wake = Hog(2, 0) + Line("kswapd0", 44, "mm_vmscan_kswapd_wake: nid=0 order=0");
        var (m, _) = Replay(wake, aligned: true);
        using (m)
        {
            Assert.True(m.Mm.KswapdIsRunning(m.PageAllocator.Nodes[0]));
            Assert.Equal(0, m.Mm.KswapdRuns); // its work is the trace's
        }
        var (slept, _) = Replay(wake + Line("kswapd0", 44, "mm_vmscan_kswapd_sleep: nid=0"), aligned: true);
        using (slept)
        {
            Assert.False(slept.Mm.KswapdIsRunning(slept.PageAllocator.Nodes[0]));
        }
    }

    [Theory]
    [InlineData("1.001000", true)]  // kswapd's run goes on: 1 ms without an event of it
    [InlineData("1.010000", false)] // 10 ms of silence: its balance_pgdat has ended, it naps on its waitqueue
    public void AlignedAKswapdRunThatGoesSilentHasEnded(string nextPage, bool running)
    {
        // High watermarks no zone reaches: Kmem's node is never balanced, so only the silence ends the run.
        string zoneinfo = Zoneinfo.Replace("high     780", "high     900000", StringComparison.Ordinal)
            .Replace("high     38", "high     900000", StringComparison.Ordinal);
        string text = Hog(2, 0) + Line("kswapd0", 44, "mm_vmscan_kswapd_wake: nid=0 order=0")
            + Line("hog", 50, "mm_page_alloc: page=ffffea0000000000 pfn=0x9000 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO", nextPage);
        var (m, _) = Replay(text, aligned: true, zoneinfo);
        using (m)
        {
            Assert.Equal(running, m.Mm.KswapdIsRunning(m.PageAllocator.Nodes[0]));
        }
    }
}
