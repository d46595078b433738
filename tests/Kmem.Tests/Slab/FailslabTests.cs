// failslab (mm/failslab.c over lib/fault-inject.c): the kernel's attributes with exact counts: times,
// interval, space (in object sizes), probability, verbose; ignore-gfp-wait and cache-filter; __GFP_NOFAIL
// exempt; kmem_cache_alloc, kmalloc and the bulk call (one decision per call) honour it, large kmalloc goes
// to fail_page_alloc instead; the failslab= boot option. Threads are pinned so every call reaches the check
// the same way.
namespace Kmem.Tests.Slab;

public class FailslabTests
{
    private static Machine Boot(string? failslab = null) =>
        Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 9, Failslab = failslab });

    private static int CountFailures(Machine m, Func<nint> alloc, int calls, List<nint>? keep = null)
    {
        int failed = 0;
        for (int i = 0; i < calls; i++)
        {
            nint p = alloc();
            if (p == 0)
            {
                failed++;
            }
            else
            {
                keep?.Add(p);
            }
        }
        return failed;
    }

    /// <summary>"x" for a failed allocation, "." for one that succeeded.</summary>
    private static string Pattern(IEnumerable<nint> results) => string.Concat(results.Select(p => p == 0 ? 'x' : '.'));

    [Fact]
    public void DisabledByDefault()
    {
        using var m = Boot();
        Assert.Equal("failslab", m.Failslab.Name);
        Assert.Equal(0, m.Failslab.Probability);
        Assert.True(m.Failslab.IgnoreGfpWait);
        Assert.False(m.Failslab.CacheFilter);
        Assert.Equal(0, CountFailures(m, () => m.Kmalloc(32, Gfp.Atomic), 100));
    }

    [Fact]
    public void TimesLimitsTheFailuresAndVerboseReportsEach()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        m.Failslab.Probability = 100;
        m.Failslab.Times = 3;
        var s = m.KmemCacheCreate("fs_times", 64, 0, SlabFlags.None, null)!;
        Assert.Equal(3, CountFailures(m, () => m.KmemCacheAlloc(s, Gfp.Atomic), 10));
        Assert.Equal(0, m.Failslab.Times);
        Assert.Equal(3, m.Failslab.Failures);
        Assert.Equal(3, m.Log.Lines.Count(l => l.Contains("FAULT_INJECTION: forcing a failure.", StringComparison.Ordinal)));
        Assert.True(m.Log.Contains("name failslab, interval 1, probability 100, space 0, times 3"));
        Assert.True(m.Log.Contains("name failslab, interval 1, probability 100, space 0, times 1"));
    }

    [Fact]
    public void IntervalFailsEveryNthEligibleCall()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        m.Failslab.Probability = 100;
        m.Failslab.Times = -1;
        m.Failslab.Interval = 3;
        m.Failslab.Verbose = 0;
        var results = Enumerable.Range(0, 9).Select(_ => m.Kmalloc(100, Gfp.Atomic)).ToList();
        Assert.Equal("..x..x..x", Pattern(results));
        Assert.DoesNotContain(m.Log.Lines, l => l.Contains("FAULT_INJECTION", StringComparison.Ordinal));
    }

    [Fact]
    public void SpaceIsConsumedInObjectSizesBeforeAnyFailure()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        m.Failslab.Probability = 100;
        m.Failslab.Space = 200;
        var s = m.KmemCacheCreate("fs_space", 64, 0, SlabFlags.None, null)!;
        // 200 → 136 → 72 → 8: three successes, then 8 is not more than 64 and the call fails.
        var results = Enumerable.Range(0, 5).Select(_ => m.KmemCacheAlloc(s, Gfp.Atomic)).ToList();
        Assert.Equal("...x.", Pattern(results));
        Assert.Equal(8, m.Failslab.Space);
    }

    [Fact]
    public void ProbabilityFailsAboutThatShareAndRepeatsWithTheSeed()
    {
        int Run()
        {
            using var m = Boot();
            using var cpu = m.OnCpu(0);
            m.Failslab.Probability = 30;
            m.Failslab.Times = -1;
            m.Failslab.Verbose = 0;
            return CountFailures(m, () => m.Kmalloc(16, Gfp.NoWait), 2000);
        }
        int first = Run();
        Assert.InRange(first, 450, 750);
        Assert.Equal(first, Run());
    }

    [Fact]
    public void ReclaimingAllocationsAreSparedUnlessIgnoreGfpWaitIsOff()
    {
        using var m = Boot();
        m.Failslab.Probability = 100;
        m.Failslab.Times = -1;
        m.Failslab.Verbose = 0;
        Assert.Equal(0, CountFailures(m, () => m.Kmalloc(64, Gfp.Kernel), 20));
        Assert.Equal(0, CountFailures(m, () => m.Kmalloc(64, Gfp.Atomic | Gfp.NoFail), 20));
        m.Failslab.IgnoreGfpWait = false;
        Assert.Equal(20, CountFailures(m, () => m.Kmalloc(64, Gfp.Kernel), 20));
        // kmalloc above 8 KiB is the page allocator's business.
        Assert.Equal(0, CountFailures(m, () => m.Kmalloc(64 * 1024, Gfp.Kernel), 5));
    }

    [Fact]
    public void CacheFilterFailsOnlyCachesMarkedFailslab()
    {
        using var m = Boot();
        m.Failslab.Probability = 100;
        m.Failslab.Times = -1;
        m.Failslab.Verbose = 0;
        m.Failslab.CacheFilter = true;
        var marked = m.KmemCacheCreate("fs_marked", 48, 0, SlabFlags.Failslab, null)!;
        var plain = m.KmemCacheCreate("fs_plain", 48, 0, SlabFlags.NoMerge, null)!;
        Assert.Equal(10, CountFailures(m, () => m.KmemCacheAlloc(marked, Gfp.Atomic), 10));
        var kept = new List<nint>();
        Assert.Equal(0, CountFailures(m, () => m.KmemCacheAlloc(plain, Gfp.Atomic), 10, kept));
        Assert.Equal(0, CountFailures(m, () => m.Kmalloc(48, Gfp.Atomic), 10));
        foreach (nint p in kept)
        {
            m.KmemCacheFree(plain, p);
        }
    }

    [Fact]
    public void SlubDebugLetterAMarksCachesForTheFilter()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Seed = 9, SlubDebug = "A,fs_a" });
        var a = m.KmemCacheCreate("fs_a", 40, 0, SlabFlags.None, null)!;
        Assert.Equal(SlabFlags.Failslab, a.Flags);
        m.Failslab.Probability = 100;
        m.Failslab.Times = 1;
        m.Failslab.CacheFilter = true;
        Assert.Equal(0, m.KmemCacheAlloc(a, Gfp.Atomic));
    }

    [Theory]
    [InlineData(SlabAllocator.Slub, 3)]
    [InlineData(SlabAllocator.Slab, 3)]
    [InlineData(SlabAllocator.Slob, 0)] // CONFIG_FAILSLAB depends on SLAB || SLUB: SLOB has no hook
    public void EveryBackendWithTheHookHonoursItForCachesKmallocAndBulk(SlabAllocator slab, int failures)
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 9, Slab = slab });
        using var cpu = m.OnCpu(0);
        var s = m.KmemCacheCreate("fs_backend", 64, 0, SlabFlags.None, null)!;
        m.Failslab.Probability = 100;
        m.Failslab.Times = -1;
        m.Failslab.Verbose = 0;
        var kept = new List<nint>();
        var kmalloced = new List<nint>();
        Assert.Equal(failures == 0 ? 0 : 1, CountFailures(m, () => m.KmemCacheAlloc(s, Gfp.Atomic), 1, kept));
        Assert.Equal(failures == 0 ? 0 : 1, CountFailures(m, () => m.Kmalloc(100, Gfp.Atomic), 1, kmalloced));
        var bulk = new nint[8];
        Assert.Equal(failures == 0 ? 8 : 0, m.KmemCacheAllocBulk(s, Gfp.Atomic, bulk));
        Assert.Equal(failures, m.Failslab.Failures);
        // __GFP_NOFAIL is exempt, and off again everything succeeds.
        Assert.Equal(0, CountFailures(m, () => m.KmemCacheAlloc(s, Gfp.Atomic | Gfp.NoFail), 1, kept));
        m.Failslab.Probability = 0;
        Assert.Equal(0, CountFailures(m, () => m.KmemCacheAlloc(s, Gfp.Atomic), 1, kept));
        foreach (nint p in kept)
        {
            m.KmemCacheFree(s, p);
        }
        foreach (nint p in kmalloced)
        {
            m.Kfree(p);
        }
        if (failures == 0)
        {
            m.KmemCacheFreeBulk(s, bulk);
        }
        SlabPropertyTests.Validate(m);
    }

    [Fact]
    public void ABulkAllocationIsOneDecision()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        var s = m.KmemCacheCreate("fs_bulk", 32, 0, SlabFlags.None, null)!;
        m.Failslab.Probability = 100;
        m.Failslab.Times = -1;
        m.Failslab.Interval = 2;
        m.Failslab.Verbose = 0;
        var objs = new nint[16];
        Assert.Equal(16, m.KmemCacheAllocBulk(s, Gfp.Atomic, objs));
        Assert.All(objs, p => Assert.NotEqual(0, p));
        var more = new nint[16];
        Assert.Equal(0, m.KmemCacheAllocBulk(s, Gfp.Atomic, more));
        Assert.All(more, p => Assert.Equal(0, p));
        Assert.Equal(1, m.Failslab.Failures);
        m.KmemCacheFreeBulk(s, objs);
        SlabPropertyTests.Validate(m);
    }

    [Fact]
    public void TheBootOptionSetsTheAttributes()
    {
        using var m = Boot("3,100,0,2");
        Assert.Equal(3, m.Failslab.Interval);
        Assert.Equal(100, m.Failslab.Probability);
        Assert.Equal(2, m.Failslab.Times);
        using var cpu = m.OnCpu(0);
        var results = Enumerable.Range(0, 9).Select(_ => m.Kmalloc(8, Gfp.Atomic)).ToList();
        Assert.Equal("..x..x...", Pattern(results));
    }

    [Theory]
    [InlineData("1,100,0")]
    [InlineData("1,101,0,1")]
    [InlineData("x,1,0,1")]
    public void ABadBootOptionIsRefusedNamingIt(string value)
    {
        var e = Assert.Throws<MachineOptionException>(() => Boot(value));
        Assert.Equal("Failslab", e.Option);
        Assert.Contains("failslab=" + value, e.Message, StringComparison.Ordinal);
    }
}
