// Aligned slab decisions: after a kernel slab allocation that took a new slab (its page
// event and the object inside it), Kmem's cache is put where the kernel's is (a new slab
// with one object taken, no partial slab with a free object), so the next new slab falls
// on the allocation after the slab's last object, as in the kernel.
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
        // Kmem's kmalloc-64 starts with free objects the kernel's did not have: a few objects allocated and freed.
        var held = Enumerable.Range(0, 10).Select(_ => m.Kmalloc(60, Gfp.Kernel)).ToList();
        held.ForEach(m.Kfree);
        using var reader = ReplayData.Reader(ReplayData.Header + Text());
        return new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned, Mismatches = 10 }).Replay(reader).Decisions["new_slab"];
    }

    [Fact]
    public void AfterAKernelNewSlabKmemsCacheTakesItsNextNewSlabWhereTheKernelDoes()
    {
        var aligned = NewSlab(aligned: true);
        Assert.Equal(129, aligned.Compared);
        Assert.Equal(3, aligned.KernelYes);
        // The first new slab is decided from Kmem's own state (it has free objects: no new slab); from there on,
        // aligned, the second and third fall on the kernel's allocations.
        Assert.Equal(2, aligned.BothYes);
        Assert.Equal(2, aligned.KmemYes);
        var free = NewSlab(aligned: false);
        Assert.Equal(129, free.Compared);
        Assert.True(free.BothYes < aligned.BothYes, $"free-running both yes {free.BothYes}");
    }
}
