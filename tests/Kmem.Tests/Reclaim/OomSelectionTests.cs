// select_bad_process's rules beyond the badness formula: a victim that is not yet
// done (no MMF_OOM_SKIP) is waited for, a done one is passed over, an
// oom_task_origin task goes first, and vm.panic_on_oom panics with the report.
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

public sealed class OomSelectionTests
{
    [Fact]
    public void AnUnfinishedVictimIsWaitedForAndAFinishedOneIsPassedOver()
    {
        using var m = Boot();
        var big = m.CreateTask("big")!;
        var small = m.CreateTask("small")!;
        Fill(big, big.Mmap(8 << 20), 8 << 20, 1);
        Fill(small, small.Mmap(1 << 20), 1 << 20, 2);
        // big is a victim the reaper has not finished with: the killer waits (progress, nobody killed).
        big.IsKilled = true;
        Assert.True(m.Mm.OutOfMemory(Gfp.Kernel, 0));
        Assert.False(small.IsKilled);
        Assert.Equal(0, Vmstat(m)["oom_kill"]);
        // Once it is done (MMF_OOM_SKIP), it is passed over and the next task is chosen.
        big.MmfOomSkip = true;
        Assert.True(m.Mm.OutOfMemory(Gfp.Kernel, 0));
        Assert.True(small.IsKilled && small.HasExited && small.MmfOomSkip);
        Assert.Equal(1, Vmstat(m)["oom_kill"]);
        Assert.Contains(m.Log.Lines, l => l.StartsWith($"Out of memory: Killed process {small.Pid} (small)", StringComparison.Ordinal));
    }

    [Fact]
    public void AnOomOriginTaskIsChosenFirst()
    {
        using var m = Boot();
        var hog = m.CreateTask("hog")!;
        var origin = m.CreateTask("swapoff")!;
        Fill(hog, hog.Mmap(8 << 20), 8 << 20, 1);
        origin.OomOrigin = true; // as set_current_oom_origin marks swapoff's caller
        Assert.True(m.Mm.OutOfMemory(Gfp.Kernel, 0));
        Assert.True(origin.IsKilled);
        Assert.False(hog.IsKilled);
    }

    [Theory]
    [InlineData(1, "system-wide")]
    [InlineData(2, "compulsory")]
    public void PanicOnOomPanicsWithTheReportInsteadOfKilling(int mode, string why)
    {
        using var m = Boot();
        var t = m.CreateTask("grower")!;
        ulong a = t.Mmap(256 << 20);
        m.PanicOnOom = mode;
        var e = Assert.Throws<OomPanicException>(() => Fill(t, a, 256 << 20, 1));
        Assert.Equal($"Out of memory: {why} panic_on_oom is enabled", e.Message);
        Assert.False(t.IsKilled);
        Assert.Contains(m.Log.Lines, l => l.Contains(" invoked oom-killer: ", StringComparison.Ordinal));
        Assert.Contains($"Kernel panic - not syncing: Out of memory: {why} panic_on_oom is enabled", m.Log.Lines);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.PanicOnOom = 3);
    }
}
