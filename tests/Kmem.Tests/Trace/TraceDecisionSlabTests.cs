// Aligned slab decisions: after a kernel slab allocation that took a new slab (its page
// event and the object inside it), Kmem's cache is put where the kernel's is (a new slab
// with one object taken, no partial slab with a free object), so the next new slab falls
// on the allocation after the slab's last object, as in the kernel; on a slice of the real
// trace, aligned new slabs follow the kernel's far more closely than free-running ones.
namespace Kmem.Tests.Trace;

public class TraceDecisionSlabTests
{
    private const ulong Base = 0xffff888000000000UL;

    private static string Kmalloc(ulong ptr) =>
        ReplayData.Line($"kmalloc: call_site=f+0x1/0x2 ptr={ptr:x} bytes_req=60 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false");

    private static string SlabPage(ulong pfn) =>
        ReplayData.Line($"mm_page_alloc: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=0 gfp_flags=GFP_KERNEL");

    // Two kernel slabs of kmalloc-64 (64 objects a page), filled one after the other, then a third started.
    private static string Text()
    {
        var sb = new System.Text.StringBuilder();
        foreach (ulong pfn in new ulong[] { 0x11000, 0x12000, 0x13000 })
        {
            sb.Append(SlabPage(pfn));
            int objects = pfn == 0x13000 ? 1 : 64;
            for (int i = 0; i < objects; i++)
            {
                sb.Append(Kmalloc(Base + (pfn << 12) + (ulong)(64 * i)));
            }
        }
        return sb.ToString();
    }

    private static TraceDecision NewSlab(bool aligned)
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        // Kmem's kmalloc-64 starts with free objects the kernel's did not have: every other object of two slabs freed.
        var held = Enumerable.Range(0, 128).Select(_ => m.Kmalloc(60, Gfp.Kernel)).ToList();
        for (int i = 0; i < held.Count; i += 2)
        {
            m.Kfree(held[i]);
        }
        using var reader = ReplayData.Reader(ReplayData.Header + Text());
        return new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned, Mismatches = 10 }).Replay(reader).Decisions["new_slab"];
    }

    [Fact]
    public void AfterAKernelNewSlabKmemsCacheTakesItsNextNewSlabWhereTheKernelDoes()
    {
        var aligned = NewSlab(aligned: true);
        Assert.Equal(129, aligned.Compared);
        Assert.Equal(3, aligned.KernelYes);
        // The first new slab (line 5) is decided from Kmem's own state; from there on, aligned, the second and third
        // (lines 70 and 135: header 3 lines, a page event, then 64 objects a slab) fall on the kernel's allocations.
        Assert.DoesNotContain(aligned.Mismatches, mm => mm.Line is 70 or 135);
        Assert.True(aligned.BothYes >= 2, $"both yes {aligned.BothYes}");
        Assert.Equal(aligned.BothYes, aligned.KmemYes); // no new slab where the kernel had none
    }

    [Fact]
    public void OnTheRealSliceAlignedNewSlabsFollowTheKernelsAndFreeRunningOnesLessSo()
    {
        TraceDecision Run(bool aligned)
        {
            using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
            using var reader = ReplayData.SliceReader();
            return new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned }).Replay(reader).Decisions["new_slab"];
        }
        var aligned = Run(true);
        var free = Run(false);
        Assert.True(aligned.KernelYes > 100, $"{aligned.KernelYes} kernel new slabs");
        Assert.True(aligned.Recall >= 0.9 && aligned.Precision >= 0.9, $"aligned recall {aligned.Recall:P1}, precision {aligned.Precision:P1}");
        Assert.True(aligned.Recall > free.Recall, $"aligned {aligned.Recall:P1} against free-running {free.Recall:P1}");
    }

    /// <summary>SLOB keeps no slab per cache, so the replay compares no slab kind on it, and the aligned run takes no
    /// placeholders for the kernel's new slabs (SLOB never reports one: they would be taken until memory ran out);
    /// its page allocator decisions are compared event for event like SLUB's.</summary>
    [Fact]
    public void OnSlobNoSlabKindIsComparedAndTheAlignedRunReplaysEveryPageAllocation()
    {
        TraceReplayResult Run(bool aligned)
        {
            using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1, Slab = SlabAllocator.Slob });
            using var reader = ReplayData.SliceReader();
            return new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned }).Replay(reader);
        }
        var aligned = Run(true);
        var free = Run(false);
        foreach (var r in new[] { aligned, free })
        {
            Assert.DoesNotContain("new_slab", r.Decisions.Keys);
            Assert.DoesNotContain("slab_freed", r.Decisions.Keys);
            Assert.DoesNotContain("oom_victim", r.Decisions.Keys);
        }
        Assert.True(free.Decisions["zone"].Compared > 100, $"{free.Decisions["zone"].Compared} page allocations compared");
        Assert.Equal(free.Decisions["zone"].Compared, aligned.Decisions["zone"].Compared);
    }
    /// <summary>The first kmem_cache_free that names a call site's cache frees its object from the named cache: the
    /// site's objects, the freed one included, move there first, so the free is not the provisional stand-in's, whose
    /// emptied cache and slab go with the move. The kernel's slab stays (the next event frees no slab frame), and so
    /// does Kmem's (the named cache's slab still holds the site's other object).</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AFreeThatNamesItsCacheIsDecidedInTheNamedCacheNotInItsProvisionalStandIn(bool aligned)
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        ulong a = Base + (0x11000UL << 12), b = a + 64;
        static string Alloc(ulong ptr) =>
            ReplayData.Line($"kmem_cache_alloc: call_site=site+0x10/0x80 ptr={ptr:x} bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false");
        string text = SlabPage(0x11000) + Alloc(a) + Alloc(b)
            + ReplayData.Line($"kmem_cache_free: call_site=f+0x1/0x2 ptr={a:x} name=named_cache") + Kmalloc(Base + (0x12000UL << 12));
        using var reader = ReplayData.Reader(ReplayData.Header + text);
        var r = new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned, Mismatches = 10 }).Replay(reader);
        var d = r.Decisions["slab_freed"];
        Assert.Equal(1, d.Compared);
        Assert.Equal(0, d.KernelYes);
        Assert.Equal(0, d.KmemYes);
        Assert.Contains(m.SlabCaches, c => c.Name == "named_cache");
        Assert.DoesNotContain(m.SlabCaches, c => c.Name.StartsWith("site/", StringComparison.Ordinal));
    }
}
