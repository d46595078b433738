// Per-decision fidelity: the kernel's side read from hand-written event sequences
// (a refill burst its allocation claims, one no allocation claims, a list free and its
// drains, new slab pages, kswapd's lower high), Kmem's side from its own allocator, both runs (aligned and
// free-running) on a slice of the real trace; and nothing is compared on a machine
// booted without the observers.
namespace Kmem.Tests.Trace;

public class TraceDecisionTests
{
    private static string Burst(ulong first, int blocks, int cpu = 0)
    {
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < blocks; i++)
        {
            sb.Append(ReplayData.Line($"mm_page_alloc_zone_locked: page=ffffea0000000000 pfn=0x{first + (ulong)i:x} order=0 migratetype=0 percpu_refill=1", cpu));
        }
        return sb.ToString();
    }

    private static string Alloc(ulong pfn, int cpu = 0) =>
        ReplayData.Line($"mm_page_alloc: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=0 gfp_flags=GFP_KERNEL", cpu);

    private static string Free(ulong pfn, string kind = "mm_page_free", int cpu = 0) =>
        ReplayData.Line($"{kind}: page=ffffea0000000000 pfn=0x{pfn:x} order=0", cpu);

    private static string Drain(ulong pfn, int cpu = 0) =>
        ReplayData.Line($"mm_page_pcpu_drain: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=0", cpu);

    private const string Other = "kfree: call_site=g+0x1/0x2 ptr=0";

    private static TraceReplayResult Replay(string text, bool aligned = false, int mismatches = 10)
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        using var reader = ReplayData.Reader(ReplayData.Header + text);
        return new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned, Mismatches = mismatches }).Replay(reader);
    }

    [Fact]
    public void ARefillBurstBelongsToTheAllocationOfItsFirstFrameAndTheNextAllocationIsServedFromTheList()
    {
        string text = Burst(0x20000, 4) + Alloc(0x20000) + ReplayData.Line(Other) + Alloc(0x20001) + ReplayData.Line(Other);
        var free = Replay(text).Decisions["pcp_refill"];
        Assert.Equal(2, free.Compared);
        Assert.Equal(1, free.KernelYes);
        var aligned = Replay(text, aligned: true).Decisions["pcp_refill"];
        Assert.Equal(2, aligned.Compared);
        Assert.Equal(1, aligned.KernelYes);
        // Aligned: after the burst the list held 3 blocks, so Kmem, put there, serves the second from its list.
        Assert.DoesNotContain(aligned.Mismatches, mm => mm.Line == 3 + 4 + 3);
    }

    [Fact]
    public void ABurstNoAllocationClaimsIsTheBulkAllocatorAndItsPagesAreReplayed()
    {
        string text = Burst(0x30000, 5) + ReplayData.Line(Other)
            + Free(0x30000) + Free(0x30004) + ReplayData.Line(Other);
        var r = Replay(text);
        Assert.Equal(1, r.BulkRefillBursts);
        Assert.Equal(5, r.BulkPagesReplayed);
        Assert.Equal(0, r.UntrackedPageFrees); // the bulk pages' frees find them
        Assert.Equal(0, r.Decisions["pcp_refill"].Compared); // no allocation event: nothing to compare
    }

    [Fact]
    public void AListFreeIsCountedOnceAndItsDrainsGoToTheFreeTheyFollow()
    {
        string text = Alloc(0x40000) + Alloc(0x40001) + ReplayData.Line(Other)
            + Free(0x40000) + Free(0x40001)
            + Free(0x40000, "mm_page_free_batched") + Drain(0x50000) + Drain(0x50001) + Drain(0x50002)
            + Free(0x40001, "mm_page_free_batched") + ReplayData.Line(Other);
        var r = Replay(text);
        Assert.Equal(2, r.BatchedFreesCountedOnce);
        Assert.Equal(0, r.UntrackedPageFrees);
        Assert.Equal(0, r.UnattributedDrains);
        var d = r.Decisions["pcp_drain"];
        Assert.Equal(2, d.Compared);
        Assert.Equal(1, d.KernelYes);
        // Kmem's lists are nowhere near high after two frees: it drains on neither, so the miss is the first free's.
        Assert.Equal(0, d.KmemYes);
        var miss = Assert.Single(d.Mismatches);
        Assert.Equal(3 + 4, miss.Line); // the mm_page_free of 0x40000 (header 3 lines, then 3 events)
        Assert.Contains("kernel drained 3 pages", miss.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void AlignedAModelCountTheKernelDidNotDrainAtIsUnknownNotHighLessOne()
    {
        // A drain makes the count known (high less the page drained); then frees with no drain: the kernel's count
        // was lower than the model's (pages taken with no event), by an amount no event tells. Kmem drains at the
        // first free the model puts at high; after it the count is unknown, so Kmem keeps its own instead of being
        // put back at high - 1 before every free (which drained at each of the 1,000 frees).
        const int frees = 1000;
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i <= frees; i++)
        {
            sb.Append(Alloc(0x10000 + (ulong)i)).Append(ReplayData.Line(Other));
        }
        sb.Append(Free(0x10000)).Append(Drain(0x50000)).Append(ReplayData.Line(Other));
        for (int i = 1; i <= frees; i++)
        {
            sb.Append(Free(0x10000 + (ulong)i)).Append(ReplayData.Line(Other));
        }
        var d = Replay(sb.ToString(), aligned: true).Decisions["pcp_drain"];
        Assert.Equal(frees + 1, d.Compared);
        Assert.Equal(1, d.KernelYes);
        Assert.InRange(d.KmemYes, 1, 20); // Kmem's own drains as its count climbs again, free_factor doubling them
    }

    [Theory]
    [InlineData(true, "1.000000")]   // kswapd awake, its events still coming: nr_pcp_high is four batches
    [InlineData(true, "1.010000")]   // kswapd woken, but nothing of it for 10 ms: its balance_pgdat is over
    [InlineData(false, "1.000000")]  // kswapd asleep
    public void AlignedWhileTheKernelsKswapdReclaimsTheListsSpillAtFourBatches(bool woken, string freeTime)
    {
        // 512M, 2 CPUs: DMA32's lists have batch 31 and high 427 (PerCpuListTests). A free that drains 303 pages
        // leaves a known count of 124, four batches; the next free brings it to 125.
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i <= 2; i++)
        {
            sb.Append(Alloc(0x10000 + (ulong)i)).Append(ReplayData.Line(Other));
        }
        sb.Append(Free(0x10000));
        for (int i = 0; i < 303; i++)
        {
            sb.Append(Drain(0x50000 + (ulong)i));
        }
        sb.Append(ReplayData.Line(Other));
        if (woken)
        {
            sb.Append("         kswapd0-44      [001] .....     1.000000: mm_vmscan_kswapd_wake: nid=0 order=0\n");
        }
        sb.Append(ReplayData.Line(Other, time: freeTime));
        long freeLine = 3 + sb.ToString().Count(c => c == '\n') + 1; // after the header's three lines
        sb.Append(ReplayData.Line("mm_page_free: page=ffffea0000000000 pfn=0x10001 order=0", time: freeTime));
        bool kernelDrains = woken && freeTime == "1.000000";
        if (kernelDrains)
        {
            for (int i = 0; i < 62; i++) // nr_pcp_free: batch << free_factor 1, within four batches less one
            {
                sb.Append(Drain(0x60000 + (ulong)i));
            }
        }
        sb.Append(ReplayData.Line(Other, time: freeTime));
        var d = Replay(sb.ToString(), aligned: true).Decisions["pcp_drain"];
        Assert.Equal(2, d.Compared);
        Assert.Equal(kernelDrains ? 2 : 1, d.KernelYes);
        // At the second free Kmem, its count and ZONE_RECLAIM_ACTIVE put where the kernel's were, does as the kernel
        // did (the first free's drain is the kernel's alone: nothing revealed Kmem's count before it).
        Assert.Equal(kernelDrains ? 1 : 0, d.BothYes);
        Assert.DoesNotContain(d.Mismatches, mm => mm.Line == freeLine);
    }

    [Fact]
    public void DrainsAfterNoFreeAreCountedApart()
    {
        var r = Replay(ReplayData.Line(Other) + Drain(0x50000) + Drain(0x50001));
        Assert.Equal(2, r.UnattributedDrains);
        Assert.Equal(0, r.Decisions["pcp_drain"].Compared);
    }

    [Fact]
    public void ASlabPageTheNextObjectFallsIntoIsTheKernelsNewSlab()
    {
        const ulong Base = 0xffff888000000000UL;
        var text = new System.Text.StringBuilder();
        foreach (ulong pfn in new ulong[] { 0x1000, 0x2345 })
        {
            text.Append(Alloc(pfn));
            text.Append(ReplayData.Line($"kmalloc: call_site=f+0x1/0x2 ptr={Base + (pfn << 12) + 0x40:x} bytes_req=60 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false"));
        }
        text.Append(ReplayData.Line($"kmalloc: call_site=f+0x1/0x2 ptr={Base + (0x2345UL << 12) + 0x80:x} bytes_req=60 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false"));
        var d = Replay(text.ToString()).Decisions["new_slab"];
        Assert.Equal(3, d.Compared);
        Assert.Equal(2, d.KernelYes);
    }

    [Fact]
    public void AMachineBootedWithoutTheObserversComparesNothing()
    {
        using var m = ReplayData.Boot();
        using var reader = ReplayData.Reader(ReplayData.Header + Burst(0x20000, 2) + Alloc(0x20000));
        var r = new TraceReplayer(m).Replay(reader);
        Assert.Empty(r.Decisions);
        Assert.Equal(1.0, r.TraceChecks["page_migratetype_match"]);
    }

    [Fact]
    public void OnTheRealSliceAlignedRefillsFollowTheKernelAndFreeRunningOnesAreMeasuredToo()
    {
        TraceReplayResult Run(bool aligned)
        {
            using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
            using var reader = ReplayData.SliceReader();
            return new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned }).Replay(reader);
        }
        var aligned = Run(true).Decisions["pcp_refill"];
        var free = Run(false).Decisions["pcp_refill"];
        Assert.True(aligned.KernelYes > 100, $"{aligned.KernelYes} kernel refills");
        Assert.Equal(aligned.Compared, free.Compared); // the same decisions, from two states
        Assert.True(aligned.Precision >= 0.95 && aligned.Recall >= 0.8, $"aligned recall {aligned.Recall:P1}, precision {aligned.Precision:P1}");
        Assert.True(aligned.Recall > free.Recall, $"aligned {aligned.Recall:P1} against free-running {free.Recall:P1}");
    }
}
