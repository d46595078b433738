// Aligned fallback decisions: after a kernel steal (mm_page_alloc_extfrag) Kmem did not
// make, Kmem's buddy lists of that zone and type are put where the steal left the
// kernel's, so Kmem's next steal comes from its own consumption at the allocation where
// the kernel's does: a hand-written trace from boot whose refills use up exactly one
// stolen order-10 block before the next steal.
namespace Kmem.Tests.Trace;

public class TraceDecisionFallbackTests
{
    private const int Batch = 31; // DMA32's pcp batch on a 512M machine with 2 CPUs

    private static string ZoneLocked(ulong pfn) =>
        ReplayData.Line($"mm_page_alloc_zone_locked: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=0 percpu_refill=1");

    private static string Extfrag(ulong pfn) =>
        ReplayData.Line($"mm_page_alloc_extfrag: page=ffffea0000000000 pfn=0x{pfn:x} alloc_order=0 fallback_order=10 pageblock_order=9 " +
            "alloc_migratetype=0 fallback_migratetype=1 fragmenting=0 change_ownership=1");

    private static string Alloc(ulong pfn) =>
        ReplayData.Line($"mm_page_alloc: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=0 gfp_flags=GFP_KERNEL");

    // A trace from boot: five refills from the kernel's block at 0x8000, a refill that steals the order-10 block at
    // 0x8800, refills of a batch each until the
    // block has one page left, then a refill that takes that page, steals the next block and goes on from it. Every
    // refilled page is allocated. Returns the text and the line of the second steal's allocation.
    private static (string Text, long SecondSteal) Trace()
    {
        var sb = new System.Text.StringBuilder(ReplayData.Line("kfree: call_site=g+0x1/0x2 ptr=0", time: "0.000000"));
        long line = 4; // three header lines, then the boot line
        void Refill(IEnumerable<ulong> pfns, int stealAt, ulong stealPfn)
        {
            var frames = pfns.ToList();
            for (int i = 0; i < frames.Count; i++)
            {
                if (i == stealAt)
                {
                    sb.Append(Extfrag(stealPfn));
                    line++;
                }
                sb.Append(ZoneLocked(frames[i]));
                line++;
            }
            foreach (ulong pfn in frames)
            {
                sb.Append(Alloc(pfn));
                line++;
            }
        }
        for (int r = 0; r < 5; r++)
        {
            Refill(Enumerable.Range(0, Batch).Select(i => 0x8000UL + (ulong)(r * Batch + i)), -1, 0);
        }
        ulong next = 0x8800;
        Refill(Enumerable.Range(0, Batch).Select(i => next + (ulong)i), 0, 0x8800);
        next += Batch;
        for (int r = 0; r < 1024 / Batch - 1; r++)
        {
            Refill(Enumerable.Range(0, Batch).Select(i => next + (ulong)i), -1, 0);
            next += Batch;
        }
        Assert.Equal(0x8bffUL, next); // one page of the first block left
        long second = line + 1 + Batch + 1; // the burst's frames and the steal, then its first allocation
        Refill([next, .. Enumerable.Range(0, Batch - 1).Select(i => 0x8c00UL + (ulong)i)], 1, 0x8c00);
        return (sb.ToString(), second);
    }

    private static TraceDecision Fallback(string text, bool aligned)
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        using var reader = ReplayData.Reader(ReplayData.Header + text);
        return new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned, Mismatches = 100 }).Replay(reader).Decisions["fallback"];
    }

    [Fact]
    public void AfterAKernelStealKmemStealsAgainWhereTheKernelDoes()
    {
        var (text, second) = Trace();
        var free = Fallback(text, aligned: false);
        var aligned = Fallback(text, aligned: true);
        Assert.Equal(2, free.KernelYes);
        Assert.Equal(2, aligned.KernelYes);
        // Free-running, Kmem's steals come a constant 155 pages of allocations before the kernel's: its own boot left
        // it no unmovable block where the kernel still had one.
        Assert.Contains(free.Mismatches, mm => mm.Line == second && mm.Kernel && !mm.Kmem);
        // Aligned, the kernel's first steal puts Kmem's lists where the kernel's are, and Kmem's own refills then run
        // them out at the allocation where the kernel's ran out.
        Assert.DoesNotContain(aligned.Mismatches, mm => mm.Line == second);
        Assert.True(aligned.BothYes >= 1);
    }
}
