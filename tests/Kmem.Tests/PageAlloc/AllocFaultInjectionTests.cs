// fail_page_alloc seen from the machine: forced failures of AllocPages as the
// kernel's should_fail_alloc_page makes them (min-order, ignore-gfp-wait,
// ignore-gfp-highmem, times), set at run time or by the boot option, and
// reported as FAULT_INJECTION rather than as an allocation failure.
using static Kmem.Tests.PageAlloc.PageAllocCheck;

namespace Kmem.Tests.PageAlloc;

public class AllocFaultInjectionTests
{
    [Fact]
    public void TimesTwoMakesExactlyTwoAllocationsFail()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Seed = 3 });
        var fpa = m.FailPageAlloc;
        fpa.Probability = 100;
        fpa.Times = 2;
        fpa.MinOrder = 0;
        fpa.IgnoreGfpWait = false;
        long free = FreeAndCached(m);
        var results = Enumerable.Range(0, 6).Select(_ => m.AllocPages(Gfp.Kernel, 0)).ToList();
        Assert.Equal([true, true, false, false, false, false], results.Select(p => p.IsNull));
        Assert.Equal(2, fpa.Failures);
        Assert.Equal(0, fpa.Times);
        Assert.Equal(free - 4, FreeAndCached(m));
        Assert.Equal(2, m.Log.Lines.Count(l => l == "FAULT_INJECTION: forcing a failure."));
        // A forced failure is not an out-of-memory failure: no warn_alloc report.
        Assert.False(m.Log.Contains("page allocation failure"));
        foreach (var p in results.Where(p => !p.IsNull))
        {
            m.FreePage(p);
        }
    }

    [Fact]
    public void TheDefaultFiltersSpareOrderZeroSleepersAndHighmem()
    {
        using var m = Machine.Boot(new MachineOptions { Preset = Preset.X86Pae, Memory = "1G", Seed = 3 });
        var fpa = m.FailPageAlloc;
        fpa.Verbose = 0;
        fpa.Probability = 100;
        fpa.Times = -1;
        var spared = new[]
        {
            m.AllocPages(Gfp.Atomic, 0),        // below min-order 1
            m.AllocPages(Gfp.Kernel, 1),        // may sleep (ignore-gfp-wait)
            m.AllocPages(Gfp.HighUser & ~Gfp.DirectReclaim, 1), // highmem (ignore-gfp-highmem)
            m.AllocPages(Gfp.Atomic | Gfp.NoFail, 1),
        };
        Assert.All(spared, p => Assert.False(p.IsNull));
        Assert.Equal(0, fpa.Failures);
        Assert.True(m.AllocPages(Gfp.Atomic, 1).IsNull);
        Assert.True(m.AllocPages(Gfp.NoWait, 3).IsNull);
        Assert.Equal(2, fpa.Failures);
        Assert.Equal(0, m.GetFreePages(Gfp.Atomic, 2));
        fpa.Probability = 0;
        Assert.False(m.AllocPages(Gfp.Atomic, 1).IsNull);
    }

    [Fact]
    public void TheBootOptionArmsFailPageAlloc()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", FailPageAlloc = "1,100,0,2", Seed = 3 });
        var fpa = m.FailPageAlloc;
        Assert.Equal((1L, 100, 0, 2), (fpa.Interval, fpa.Probability, fpa.Space, fpa.Times));
        Assert.Equal(1, fpa.MinOrder);
        Assert.True(fpa.IgnoreGfpWait);
        Assert.False(m.AllocPages(Gfp.Atomic, 0).IsNull);
        Assert.False(m.AllocPages(Gfp.Kernel, 2).IsNull);
        Assert.True(m.AllocPages(Gfp.Atomic, 1).IsNull);
        Assert.True(m.AllocPages(Gfp.Atomic, 2).IsNull);
        Assert.False(m.AllocPages(Gfp.Atomic, 1).IsNull);
        Assert.Equal(2, fpa.Failures);
        Assert.True(m.Log.Contains("name fail_page_alloc, interval 1, probability 100, space 0, times 2"));
        Assert.True(m.Log.Contains("name fail_page_alloc, interval 1, probability 100, space 0, times 1"));
    }

    [Fact]
    public void IntervalAndSpaceDelayTheFailures()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", FailPageAlloc = "3,100,8,-1", Seed = 3 });
        m.FailPageAlloc.Verbose = 0;
        var failed = new List<int>();
        var held = new List<Page>();
        for (int i = 1; i <= 12; i++)
        {
            var p = m.AllocPages(Gfp.Atomic, 1);
            if (p.IsNull)
            {
                failed.Add(i);
            }
            else
            {
                held.Add(p);
            }
        }
        // space 8 absorbs three order-1 calls (8 > 2, 6 > 2, 4 > 2; then 2 is not > 2); every third call after fails.
        Assert.Equal([6, 9, 12], failed);
        held.ForEach(p => m.FreePages(p, 1));
    }

    [Fact]
    public void NoWarnForcesTheFailureSilently()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", FailPageAlloc = "1,100,0,-1", Seed = 3 });
        Assert.True(m.AllocPages(Gfp.Atomic | Gfp.NoWarn, 2).IsNull);
        Assert.Equal(1, m.FailPageAlloc.Failures);
        Assert.Empty(m.Log.Lines);
        Assert.True(m.AllocPages(Gfp.Atomic, 2).IsNull);
        Assert.True(m.Log.Contains("FAULT_INJECTION: forcing a failure."));
    }
}
