// The bulk allocator and the kernel's list contents in per-decision fidelity: vmalloc's
// page array (kmalloc from __vmalloc_node_range, a pointer per page) says how many
// order-0 pages alloc_pages_bulk takes next, from the head of the CPU's list and, when
// the list runs out, from the refill burst it makes; a vmalloc that falls back to single
// pages shows them as mm_page_alloc events; a bulk of unknown size (a burst no page array
// announced) takes the frames the trace later reveals taken; an interrupt's frees between a refill and its
// allocation leave the burst to that allocation; a trace recorded from boot (uptime 0)
// starts with empty lists; each PHASE marker starts a phase of the figures.
namespace Kmem.Tests.Trace;

public class TraceDecisionBulkTests
{
    private const ulong First = 0x10000;
    private const string Boot = "0.000000";

    private static string Burst(ulong first, int blocks, string time = Boot)
    {
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < blocks; i++)
        {
            sb.Append(ReplayData.Line($"mm_page_alloc_zone_locked: page=ffffea0000000000 pfn=0x{first + (ulong)i:x} order=0 migratetype=0 percpu_refill=1", 0, time));
        }
        return sb.ToString();
    }

    private static string Alloc(ulong pfn, string gfp = "GFP_KERNEL", string time = Boot) =>
        ReplayData.Line($"mm_page_alloc: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=0 gfp_flags={gfp}", 0, time);

    private static string Free(ulong pfn, string time = Boot) =>
        ReplayData.Line($"mm_page_free: page=ffffea0000000000 pfn=0x{pfn:x} order=0", 0, time);

    // __vmalloc_area_node's page array: 8 bytes a page on x86-64.
    private static string VmallocArray(int pages) =>
        ReplayData.Line($"kmalloc: call_site=__vmalloc_node_range+0x1ce/0x880 ptr=ffff88800123{pages:x3}0 bytes_req={8 * pages} bytes_alloc={Math.Max(8, 8 * pages)} gfp_flags=GFP_KERNEL|__GFP_ZERO node=-1 accounted=false", 0, Boot);

    private static string Other(string time = Boot) => ReplayData.Line("kmem_cache_alloc: call_site=g+0x1/0x2 ptr=ffff888001300000 bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false", 0, time);

    private static TraceReplayResult Replay(string text, bool aligned = false)
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        using var reader = ReplayData.Reader(ReplayData.Header + text);
        return new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned, Mismatches = 10 }).Replay(reader);
    }

    [Fact]
    public void AVmallocBulkThatRefillsTakesOnlyItsPagesAndTheRestOfTheBurstServesTheNextAllocations()
    {
        // Empty list: the bulk of 3 refills 5 blocks and takes the first 3; the next two allocations take the
        // 4th and 5th from the list; the one after them finds the list empty again and refills.
        string text = VmallocArray(3) + Burst(First, 5) + Other()
            + Alloc(First + 3) + Alloc(First + 4) + Burst(First + 0x100, 5) + Alloc(First + 0x100) + Other()
            + Free(First) + Free(First + 1) + Free(First + 2) + Other();
        foreach (bool aligned in new[] { false, true })
        {
            var r = Replay(text, aligned);
            Assert.Equal(1, r.BulkRefillBursts);
            Assert.Equal(3, r.BulkPagesReplayed); // not the burst's 5
            Assert.Equal(0, r.UntrackedPageFrees); // the bulk's frames are the ones freed
            var d = r.Decisions["pcp_refill"];
            Assert.Equal(3, d.Compared);
            Assert.Equal(1, d.KernelYes);
        }
        var a = Replay(text, aligned: true).Decisions["pcp_refill"];
        Assert.Equal(a.Compared, a.Matched); // the list Kmem is put in holds 2, 1, then 0 blocks: exactly the kernel's
    }

    [Fact]
    public void AVmallocBulkTheListServesAloneTakesItsHeadAndLeavesTheListShorter()
    {
        // A refill of 5 for one allocation leaves 4; the bulk of 2 takes the next two with no event; two
        // allocations empty the list; the third refills. Aligned, Kmem's list follows: every decision matches.
        string text = Burst(First, 5) + Alloc(First) + Other()
            + VmallocArray(2) + Other()
            + Alloc(First + 3) + Alloc(First + 4) + Burst(First + 0x100, 5) + Alloc(First + 0x100) + Other()
            + Free(First + 1) + Free(First + 2) + Other();
        var r = Replay(text, aligned: true);
        Assert.Equal(0, r.BulkRefillBursts);
        Assert.Equal(2, r.BulkPagesReplayed);
        Assert.Equal(0, r.UntrackedPageFrees);
        var d = r.Decisions["pcp_refill"];
        Assert.Equal(4, d.Compared);
        Assert.Equal(2, d.KernelYes);
        Assert.Equal(4, d.Matched);
    }

    [Fact]
    public void ABulkOfUnknownSizeTakesTheBurstsFramesAsTheTraceRevealsThemTaken()
    {
        // A burst of 6 with no page array before it and no allocation for it. Nothing is taken at the burst: the
        // next allocation from the list, of the third frame, reveals the first two taken (Kmem takes two pages
        // then); a free of the fifth reveals it and the fourth taken; the sixth stays on the list to the end.
        string Steps(bool toFree) => Burst(First, 6) + Other() + (toFree ? "" : Other())
            + Alloc(First + 2) + Other() + (toFree ? Free(First + 4) + Other() : "");
        foreach (bool aligned in new[] { false, true })
        {
            var r = Replay(Steps(toFree: false), aligned);
            Assert.Equal(1, r.BulkRefillBursts);
            Assert.Equal(2, r.BulkPagesReplayed); // not the burst's 6
            r = Replay(Steps(toFree: true), aligned);
            Assert.Equal(4, r.BulkPagesReplayed);
            Assert.Equal(0, r.UntrackedPageFrees); // the fifth frame is a bulk page of Kmem's, freed
        }
        // A refill of the same list says it ran empty: every frame still waiting was taken.
        var refilled = Replay(Burst(First, 6) + Other() + Alloc(First + 2) + Burst(First + 0x100, 4) + Alloc(First + 0x100) + Other());
        Assert.Equal(2 + 3, refilled.BulkPagesReplayed);
    }

    [Fact]
    public void AVmallocThatFallsBackToSinglePagesIsNoBulk()
    {
        string text = Burst(First, 5) + Alloc(First) + Other()
            + VmallocArray(2) + Alloc(First + 1, "GFP_KERNEL|__GFP_HIGHMEM|__GFP_NOWARN") + Alloc(First + 2, "GFP_KERNEL|__GFP_HIGHMEM|__GFP_NOWARN") + Other();
        var r = Replay(text, aligned: true);
        Assert.Equal(0, r.BulkPagesReplayed);
        var d = r.Decisions["pcp_refill"];
        Assert.Equal(3, d.Compared);
        Assert.Equal(3, d.Matched); // both singles served from the list the refill left
    }

    [Fact]
    public void AnInterruptsFreesBetweenARefillAndItsAllocationLeaveTheBurstToTheAllocation()
    {
        string text = Burst(First, 4, "1.000000")
            + ReplayData.Line("kmem_cache_free: call_site=rcu_do_batch+0x19a/0x540 ptr=ffff888001300040 name=filp", 0, "1.000000")
            + ReplayData.Line("kfree: call_site=security_cred_free+0x3c/0x50 ptr=ffff888001300080", 0, "1.000000")
            + Alloc(First, time: "1.000000") + Other("1.000000");
        var r = Replay(text);
        Assert.Equal(0, r.BulkRefillBursts);
        Assert.Equal(1, r.Decisions["pcp_refill"].KernelYes);
    }

    [Fact]
    public void ATraceFromBootStartsWithEmptyListsAndOneFromLaterDoesNot()
    {
        // A frame freed onto the list, then allocated from it with no refill: from boot the list is known to hold
        // it, so aligned Kmem serves it from its list; later in a run the list is unknown and Kmem's own list, empty
        // after boot (no slab event here fills it), refills.
        string Mark(string time) => ReplayData.Line("tracing_mark_write: step", 0, time);
        string Text(string time) => Free(First + 7, time) + Mark(time) + Alloc(First + 7, time: time) + Mark(time);
        var fromBoot = Replay(Text(Boot), aligned: true).Decisions["pcp_refill"];
        var later = Replay(Text("5.000000"), aligned: true).Decisions["pcp_refill"];
        Assert.Equal(1, fromBoot.Compared);
        Assert.Equal(1, fromBoot.Matched);
        Assert.Equal(0, later.Matched);
        Assert.Contains("list not revealed", Assert.Single(later.Mismatches).Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void EachPhaseMarkerStartsAPhaseOfTheFigures()
    {
        string text = Burst(First, 3) + Alloc(First) + Other()
            + ReplayData.Line("tracing_mark_write: PHASE work", 0, Boot)
            + Alloc(First + 1) + Alloc(First + 2) + Other();
        var r = Replay(text);
        Assert.Equal(["boot", "work"], r.DecisionsByPhase.Select(p => p.Phase));
        Assert.Equal(1, r.DecisionsByPhase[0].Decisions["pcp_refill"].KernelYes);
        Assert.Equal(2, r.DecisionsByPhase[1].Decisions["pcp_refill"].Compared);
        Assert.Equal(0, r.DecisionsByPhase[1].Decisions["pcp_refill"].KernelYes);
        Assert.Equal(3, r.Decisions["pcp_refill"].Compared);
    }
}
