// The kernel's slabs from before the trace, in a free-running replay (PreTraceSlabs): the
// kernel serves a cache's first objects from a slab no event showed allocated, so Kmem's
// slab taken for them comes off the buddy lists (a stand-in, no per-CPU page); when the
// kernel's old slab runs out (it takes a new slab where Kmem's stand-in still had objects),
// the stand-in's free objects are taken as placeholders, so Kmem's next new slab falls where
// the kernel's does. Aligned runs follow the kernel's new slabs their own way and take none;
// SLOB, which keeps no slab per cache, takes none either.
namespace Kmem.Tests.Trace;

public class TracePreTraceSlabTests
{
    private const ulong Base = 0xffff888000000000UL;
    private const int Header = 3; // lines of ReplayData.Header

    private static string Alloc(ulong pfn, int i) => ReplayData.Line(
        $"kmem_cache_alloc: call_site=pretrace_test+0x1/0x2 ptr={Base + (pfn << 12) + (ulong)(104 * i):x} bytes_req=100 bytes_alloc=104 gfp_flags=GFP_KERNEL node=-1 accounted=false");

    private static string SlabPage(ulong pfn) =>
        ReplayData.Line($"mm_page_alloc: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=0 gfp_flags=GFP_KERNEL");

    // 10 objects from a slab of before the trace (frame 0x20000), then the kernel's new slab 0x21000 filled (39
    // objects of 104 bytes a page), then one more new slab 0x22000.
    private static string Text()
    {
        var sb = new System.Text.StringBuilder(ReplayData.Header);
        for (int i = 0; i < 10; i++)
        {
            sb.Append(Alloc(0x20000, i));
        }
        sb.Append(SlabPage(0x21000));
        for (int i = 0; i < 39; i++)
        {
            sb.Append(Alloc(0x21000, i));
        }
        sb.Append(SlabPage(0x22000)).Append(Alloc(0x22000, 0));
        return sb.ToString();
    }

    private static TraceReplayResult Replay(bool aligned, SlabAllocator slab = SlabAllocator.Slub)
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1, Slab = slab });
        using var reader = ReplayData.Reader(Text());
        return new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned, Mismatches = 10 }).Replay(reader);
    }

    [Fact]
    public void ASlabFromBeforeTheTraceIsStoodInOffTheBuddyListsAndExhaustedWhenTheKernelsRunsOut()
    {
        var r = Replay(aligned: false);
        Assert.Equal(1, r.PreTraceSlabs); // frame 0x20000; the two traced slabs are the kernel's own
        Assert.Equal(1, r.PreTraceStandIns);
        Assert.Equal(39 - 11 + 1, r.PreTracePlaceholders); // the stand-in's 28 objects left, and one of the new slab's

        // new_slab: Kmem's stand-in at the first allocation (line 4) is a new slab the kernel did not take; at the
        // kernel's new slab (line 15) Kmem still served the stand-in; from there Kmem's next new slab is the kernel's
        // (line 55), not 28 allocations early.
        var d = r.Decisions["new_slab"];
        Assert.Equal(2, d.KernelYes);
        Assert.Equal(2, d.KmemYes);
        Assert.Equal(1, d.BothYes);
        Assert.Equal([Header + 1, Header + 12], d.Mismatches.Select(mm => mm.Line).Order());

        // The stand-in's page never went through a per-CPU list: Kmem's slab pages there are the kernel's two.
        long kmem = r.PcpDrift.Sum(p => p.Classes.TryGetValue("slab_page", out var c) ? c.KmemPages : 0);
        long kernel = r.PcpDrift.Sum(p => p.Classes.TryGetValue("slab_page", out var c) ? c.KernelPages : 0);
        Assert.Equal(kernel, kmem);
    }

    [Fact]
    public void TheKernelsFreeOfASlabKmemStoodInForFreesNoPageInItsPlace()
    {
        // Two more traced slabs (the replay learns the direct map's base from three), then the kernel frees the
        // slab from before the trace. Kmem's stand-in is its counterpart (its page goes back when Kmem's slab layer
        // decides), so the replay frees no page in its place, where for any other frame no event showed allocated
        // it frees one off Kmem's buddy lists.
        static string Page(ulong pfn) => SlabPage(pfn) + Alloc(pfn, 0);
        string freed = ReplayData.Line("mm_page_free: page=ffffea0000000000 pfn=0x20000 order=0");
        string other = ReplayData.Line("mm_page_free: page=ffffea0000000000 pfn=0x30000 order=0");
        TraceReplayResult Run(string tail)
        {
            using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
            using var reader = ReplayData.Reader(Text() + Page(0x23000) + Page(0x24000) + tail);
            return new TraceReplayer(m, new TraceReplayOptions { Mismatches = 10 }).Replay(reader);
        }
        static TraceDriftClass Untracked(TraceReplayResult r) => r.PcpDrift.Select(p => p.Classes.GetValueOrDefault("untracked_free"))
            .Aggregate(new TraceDriftClass(0, 0), (a, c) => new TraceDriftClass(a.KernelPages + c.KernelPages, a.KmemPages + c.KmemPages));

        var slab = Run(freed);
        Assert.Equal(1, slab.UntrackedPageFrees);
        Assert.Equal(1, Untracked(slab).KernelPages);
        Assert.Equal(0, Untracked(slab).KmemPages);

        var page = Run(other);
        Assert.Equal(1, page.UntrackedPageFrees);
        Assert.Equal((1, 1), (Untracked(page).KernelPages, Untracked(page).KmemPages));
    }

    [Fact]
    public void SlabsArrayCachesTakeTheStandInToo()
    {
        var r = Replay(aligned: false, SlabAllocator.Slab);
        Assert.Equal(1, r.PreTraceSlabs);
        Assert.Equal(1, r.PreTraceStandIns);
    }

    [Fact]
    public void SlobWhichKeepsNoSlabPerCacheTakesNone()
    {
        var r = Replay(aligned: false, SlabAllocator.Slob);
        Assert.Equal(0, r.PreTraceSlabs);
        Assert.Equal(0, r.PreTraceStandIns);
    }

    [Fact]
    public void AnAlignedRunTakesNoStandIns()
    {
        var r = Replay(aligned: true);
        Assert.Equal(0, r.PreTraceSlabs);
        Assert.Equal(0, r.PreTraceStandIns);
        Assert.Equal(0, r.PreTracePlaceholders);
    }
}
