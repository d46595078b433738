// The whole pressure capture Q replayed (2.1 million events, twice: free-running and aligned):
// the OOM victim is the kernel's, every phase the capture has a vmstat for is compared, and
// every pressure decision kind is compared. Seconds, not a quick test: behind the Soak trait.
using Kmem.Tests.Trace;

namespace Kmem.Tests.Soak;

[Trait("Category", "Soak")]
public class PressureSoakTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReplayingCaptureQKillsTheKernelsVictimAndComparesEveryPhase(bool aligned)
    {
        var r = PressureReplayTests.ReplayCapture(Captures.Trace(Captures.Pressure), aligned);
        var p = Assert.IsType<TracePressure>(r.Pressure);
        Assert.Equal(["207 (pressure)"], p.KernelVictims);
        Assert.Equal(["207 (pressure)"], p.KmemVictims);
        Assert.Equal(["swapon", "anon", "shmem", "compact", "oom", "final"], p.Vmstat.Select(c => c.Phase).Distinct());
        foreach (string kind in new[] { "kswapd_wake", "direct_reclaim", "compaction", "oom_victim" })
        {
            Assert.True(r.Decisions[kind].Compared > 0, kind);
        }
        // Kmem's kswapd swaps out under the same shortage: some of what the kernel swapped, not nothing.
        long kmemSwapOut = p.Vmstat.Single(c => c.Phase == "final" && c.Name == "pswpout").Kmem;
        Assert.True(kmemSwapOut > 1000, $"pswpout {kmemSwapOut}");
    }
}
