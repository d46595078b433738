// Kmem's per-CPU lists against the kernel's in a free-running replay: the replay mirrors
// each kernel page free on Kmem's lists (a list free an interrupt's event cut in two, a
// page allocated on one CPU and freed on another, a vmalloc freed right after another's
// page array, a bulk allocation of frames the trace never revealed, a frame freed that no event
// showed allocated), and the drift report
// (TraceReplayResult.PcpDrift) says which class of events put pages on either side's lists
// and how far the counts were apart where a drain revealed the kernel's.
namespace Kmem.Tests.Trace;

public class TracePcpDriftTests
{
    private const ulong First = 0x10000;
    private const string Boot = "0.000000";

    private static string Alloc(ulong pfn, int cpu = 0) =>
        ReplayData.Line($"mm_page_alloc: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=0 gfp_flags=GFP_KERNEL", cpu, Boot);

    private static string Free(ulong pfn, string kind = "mm_page_free", int cpu = 0) =>
        ReplayData.Line($"{kind}: page=ffffea0000000000 pfn=0x{pfn:x} order=0", cpu, Boot);

    private static string Burst(ulong first, int blocks, int cpu = 0)
    {
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < blocks; i++)
        {
            sb.Append(ReplayData.Line($"mm_page_alloc_zone_locked: page=ffffea0000000000 pfn=0x{first + (ulong)i:x} order=0 migratetype=0 percpu_refill=1", cpu, Boot));
        }
        return sb.ToString();
    }

    private static string Drain(ulong pfn, int cpu = 0) =>
        ReplayData.Line($"mm_page_pcpu_drain: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=0", cpu, Boot);

    // An event that touches no page: an interrupt's kfree of NULL.
    private static string Other(int cpu = 0) => ReplayData.Line("kfree: call_site=g+0x1/0x2 ptr=0", cpu, Boot);

    private static string VmallocArray(int pages) =>
        ReplayData.Line($"kmalloc: call_site=__vmalloc_node_range+0x1ce/0x880 ptr=ffff88800123{pages:x3}0 bytes_req={8 * pages} bytes_alloc={Math.Max(8, 8 * pages)} gfp_flags=GFP_KERNEL|__GFP_ZERO node=-1 accounted=false", 0, Boot);

    private static TraceReplayResult Replay(string text, bool aligned = false)
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        using var reader = ReplayData.Reader(ReplayData.Header + text);
        return new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned, Mismatches = 10 }).Replay(reader);
    }

    private static TraceDriftClass Class(TraceReplayResult r, string name)
    {
        long kernel = 0, kmem = 0;
        foreach (var p in r.PcpDrift)
        {
            if (p.Classes.TryGetValue(name, out var c))
            {
                kernel += c.KernelPages;
                kmem += c.KmemPages;
            }
        }
        return new TraceDriftClass(kernel, kmem);
    }

    [Fact]
    public void AListFreeAnInterruptCutInTwoFreesEachPageOnce()
    {
        // free_unref_page_list traces mm_page_free for each page, then mm_page_free_batched for each; a softirq's event
        // between the two halves commits the waiting frees, and the batched events are then the same frees again.
        string text = Alloc(First) + Alloc(First + 1) + Other()
            + Free(First) + Free(First + 1) + Other()
            + Free(First, "mm_page_free_batched") + Free(First + 1, "mm_page_free_batched") + Other();
        foreach (bool aligned in new[] { false, true })
        {
            var r = Replay(text, aligned);
            Assert.Equal(2, r.BatchedFreesCountedOnce);
            Assert.Equal(0, r.UntrackedPageFrees);
            Assert.Equal(2, r.Decisions["pcp_drain"].Compared); // two frees, not four
        }
    }

    [Fact]
    public void AFreeOfAFrameNeverAllocatedFreesAStandInFromKmemsBuddyListsWhenFreeRunning()
    {
        // A frame compaction isolated as a migration target (no event), freed later: the kernel's list gains it. Free-
        // running, Kmem frees a page it takes off its own movable buddy lists in its place, so its list gains one too
        // (the free is a pcp_drain decision) and its free pages stay as they were (off the buddy lists, onto the list).
        string text = Alloc(First) + Free(0x30000) + Other();
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        long free = ReplayData.FreeAndPcpPages(m);
        TraceReplayResult r;
        using (var reader = ReplayData.Reader(ReplayData.Header + text))
        {
            r = new TraceReplayer(m, new TraceReplayOptions { Mismatches = 10 }).Replay(reader);
        }
        Assert.Equal(1, r.UntrackedPageFrees);
        Assert.Equal(1, r.Decisions["pcp_drain"].Compared);
        Assert.Equal(1, free - ReplayData.FreeAndPcpPages(m)); // the allocated page only
        var untracked = Class(r, "untracked_free");
        Assert.Equal(untracked.KernelPages, untracked.KmemPages); // +1 on both sides' lists

        // Aligned, the lists are set to the kernel's at the next alignment: no stand-in, no decision.
        var aligned = Replay(text, aligned: true);
        Assert.Equal(1, aligned.UntrackedPageFrees);
        Assert.Equal(0, aligned.Decisions["pcp_drain"].Compared);
    }

    [Fact]
    public void ALoneBatchedFreeIsStillAFreeOfItsOwn()
    {
        string text = Alloc(First) + Other() + Free(First, "mm_page_free_batched") + Other();
        var r = Replay(text);
        Assert.Equal(0, r.BatchedFreesCountedOnce);
        Assert.Equal(0, r.UntrackedPageFrees);
        Assert.Equal(1, r.Decisions["pcp_drain"].Compared);
    }

    [Fact]
    public void APageAllocatedOnOneCpuAndFreedOnTheOtherIsFreedOnTheOthersList()
    {
        // The allocation waits on CPU 0 (a slab allocation may still claim its frame); the free comes on CPU 1 first.
        string text = Alloc(First, cpu: 0) + Free(First, cpu: 1) + Other(cpu: 1) + Other(cpu: 0);
        var r = Replay(text);
        Assert.Equal(0, r.UntrackedPageFrees);
        Assert.Equal(0, r.MissedFrees);
        Assert.Equal(1, r.PageAllocsReplayed);
        var page = Class(r, "page");
        Assert.Equal(page.KernelPages, page.KmemPages); // -1 on CPU 0's list, +1 on CPU 1's, on both sides
    }

    [Fact]
    public void AVmallocFreedRightAfterAnothersPageArrayFreesTheFramesTheFirstBulkTook()
    {
        // The list holds 4 blocks after the refill; a vmalloc of 2 takes two of them with no event; a second vmalloc's
        // page array comes, and the first area's pages are freed before any other event: alloc_pages_bulk for the
        // second ran right after its array's kmalloc, so the frees come after it, not before (taken after them, the
        // second bulk would be the freed frames again, and the second area's own frees untracked).
        string text = Burst(First, 5) + Alloc(First) + Other()
            + VmallocArray(2) + Other()
            + VmallocArray(2) + Free(First + 1) + Free(First + 2) + Other()
            + Free(First + 3) + Free(First + 4) + Other(); // the second area's: the frames left on the list
        foreach (bool aligned in new[] { false, true })
        {
            var r = Replay(text, aligned);
            Assert.Equal(4, r.BulkPagesReplayed);
            Assert.Equal(0, r.UntrackedPageFrees);
        }
    }

    [Fact]
    public void ABulkOfMoreFramesThanTheTraceRevealedTakesTheRestAndGivesThemBackAtUnseenFrees()
    {
        // A trace not from boot: the list's frames are unknown, so the bulk of 3 reveals none of its frames. Kmem
        // takes 3 pages all the same; the kernel's frees of frames never seen allocated are those pages.
        string later = "5.000000";
        string text = ReplayData.Line("kfree: call_site=g+0x1/0x2 ptr=0", 0, later)
            + ReplayData.Line("kmalloc: call_site=__vmalloc_node_range+0x1ce/0x880 ptr=ffff888001230030 bytes_req=24 bytes_alloc=32 gfp_flags=GFP_KERNEL|__GFP_ZERO node=-1 accounted=false", 0, later)
            + ReplayData.Line("kfree: call_site=g+0x1/0x2 ptr=0", 0, later)
            + Free(First + 7) + Free(First + 8) + Free(First + 9) + Free(First + 10) + Other();
        var r = Replay(text);
        Assert.Equal(3, r.BulkPagesReplayed);
        Assert.Equal(1, r.UntrackedPageFrees); // the fourth: a page allocated before tracing
        var bulk = Class(r, "bulk");
        Assert.Equal(bulk.KernelPages, bulk.KmemPages); // -3 taken, +3 given back, on both sides
        Assert.Equal(new TraceDriftClass(1, 1), Class(r, "untracked_free")); // Kmem's stand-in for the fourth
    }

    [Fact]
    public void TheDriftNamesWhatMovedTheCountsAndADrainRevealsTheKernels()
    {
        // From boot: a refill of 8 for one allocation, three more allocations, two frees, then a free that drains.
        // Kmem's own lists took its own refill (its batch), so the refill class differs, the page class does not.
        string text = Burst(First, 8) + Alloc(First) + Alloc(First + 1) + Alloc(First + 2) + Alloc(First + 3) + Other()
            + Free(First) + Free(First + 1) + Other()
            + Free(First + 2) + Drain(First + 2) + Drain(First) + Other();
        var r = Replay(text);
        Assert.NotEmpty(r.PcpDrift);
        Assert.Empty(Replay(text, aligned: true).PcpDrift); // aligned runs are corrected, not measured
        var page = Class(r, "page");
        Assert.Equal(-4 + 3, page.KernelPages);
        Assert.Equal(page.KernelPages, page.KmemPages);
        Assert.Equal(8, Class(r, "refill").KernelPages);
        Assert.Equal(-2, Class(r, "drain").KernelPages);
        var boot = r.PcpDrift[0];
        Assert.Equal("boot", boot.Phase);
        Assert.Equal(1, boot.Reveals); // the drain: the kernel's count was high, then high - 2
        Assert.Equal(1, boot.ListReveals); // the refill: the kernel's list was empty, and so was Kmem's
        Assert.Equal(1, boot.ListEmpty);
        // The counts after the drain: Kmem's own (its refill less what it gave) against the kernel's, high - 2.
        Assert.Equal(boot.Diff, boot.AbsDiff * Math.Sign(boot.Diff));
        Assert.NotEqual(0, boot.Diff);
    }
}
