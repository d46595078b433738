// Tests for FaultAttr against lib/fault-inject.c should_fail() and mm/page_alloc.c
// should_fail_alloc_page(): decision order, counters, fail-nth, boot option and the report.

namespace Kmem.Tests.PageAlloc;

public class FaultInjectTests
{
    private static FaultAttr NewAttr(KernelLog? log = null, int seed = 1) =>
        new("fail_page_alloc", new Random(seed), log);

    // An allocation every filter lets through with the defaults: order 1, no reclaim, no highmem.
    private const Gfp Eligible = Gfp.Atomic;

    [Fact]
    public void DefaultsAreTheKernels()
    {
        var attr = NewAttr();
        Assert.Equal("fail_page_alloc", attr.Name);
        Assert.Equal(0, attr.Probability);
        Assert.Equal(1, attr.Interval);
        Assert.Equal(1, attr.Times);
        Assert.Equal(0, attr.Space);
        Assert.Equal(2, attr.Verbose);
        Assert.True(attr.IgnoreGfpWait);
        Assert.True(attr.IgnoreGfpHighmem);
        Assert.Equal(1, attr.MinOrder);
        Assert.Equal(0, attr.Failures);
        Assert.False(attr.Enabled);
    }

    [Fact]
    public void NothingFailsWhileProbabilityIsZero()
    {
        var attr = NewAttr();
        for (int i = 0; i < 100; i++)
        {
            Assert.False(attr.ShouldFailAllocPage(Eligible, 3));
            Assert.False(attr.ShouldFail(1));
        }
        Assert.Equal(0, attr.Failures);
    }

    [Fact]
    public void Probability100WithTimes3FailsExactlyThreeTimes()
    {
        var attr = NewAttr();
        attr.Verbose = 0;
        attr.Probability = 100;
        attr.Times = 3;
        var results = Enumerable.Range(0, 10).Select(_ => attr.ShouldFailAllocPage(Eligible, 1)).ToArray();
        Assert.Equal([true, true, true, false, false, false, false, false, false, false], results);
        Assert.Equal(0, attr.Times);
        Assert.Equal(3, attr.Failures);
    }

    [Fact]
    public void TimesMinusOneNeverRunsOut()
    {
        var attr = NewAttr();
        attr.Verbose = 0;
        attr.Probability = 100;
        attr.Times = -1;
        for (int i = 0; i < 1000; i++)
        {
            Assert.True(attr.ShouldFail(1));
        }
        Assert.Equal(-1, attr.Times);
        Assert.Equal(1000, attr.Failures);
    }

    [Fact]
    public void Interval4FailsEveryFourthEligibleCall()
    {
        var attr = NewAttr();
        attr.Verbose = 0;
        attr.Probability = 100;
        attr.Times = -1;
        attr.Interval = 4;
        var failed = new List<int>();
        for (int call = 1; call <= 16; call++)
        {
            // Ineligible calls in between do not count towards the interval.
            Assert.False(attr.ShouldFailAllocPage(Gfp.Kernel, 2));
            Assert.False(attr.ShouldFailAllocPage(Eligible, 0));
            if (attr.ShouldFailAllocPage(Eligible, 1))
            {
                failed.Add(call);
            }
        }
        Assert.Equal([4, 8, 12, 16], failed);
    }

    [Fact]
    public void SpaceIsConsumedBeforeAnythingFails()
    {
        var attr = NewAttr();
        attr.Verbose = 0;
        attr.Probability = 100;
        attr.Times = -1;
        attr.Space = 10;
        Assert.False(attr.ShouldFail(4));
        Assert.Equal(6, attr.Space);
        Assert.False(attr.ShouldFail(4));
        Assert.Equal(2, attr.Space);
        // Space no longer larger than the size: the call goes on to fail and space stays.
        Assert.True(attr.ShouldFail(4));
        Assert.Equal(2, attr.Space);
        Assert.False(attr.ShouldFail(1));
        Assert.Equal(1, attr.Space);
    }

    [Fact]
    public void PageAllocationSpaceIsCountedInPages()
    {
        var attr = NewAttr();
        attr.Verbose = 0;
        attr.Probability = 100;
        attr.Times = -1;
        attr.Space = 9;
        Assert.False(attr.ShouldFailAllocPage(Eligible, 3)); // 8 pages
        Assert.Equal(1, attr.Space);
        Assert.True(attr.ShouldFailAllocPage(Eligible, 1));
    }

    [Fact]
    public void OrdersBelowMinOrderAreNeverFailed()
    {
        var attr = NewAttr();
        attr.Verbose = 0;
        attr.Probability = 100;
        attr.Times = -1;
        Assert.False(attr.ShouldFailAllocPage(Eligible, 0));
        Assert.True(attr.ShouldFailAllocPage(Eligible, 1));
        attr.MinOrder = 3;
        Assert.False(attr.ShouldFailAllocPage(Eligible, 2));
        Assert.True(attr.ShouldFailAllocPage(Eligible, 3));
        attr.MinOrder = 0;
        Assert.True(attr.ShouldFailAllocPage(Eligible, 0));
    }

    [Fact]
    public void NoFailAllocationsAreNeverFailed()
    {
        var attr = NewAttr();
        attr.Verbose = 0;
        attr.Probability = 100;
        attr.Times = -1;
        attr.IgnoreGfpWait = false;
        Assert.False(attr.ShouldFailAllocPage(Gfp.Kernel | Gfp.NoFail, 2));
        Assert.False(attr.ShouldFailAllocPage(Eligible | Gfp.NoFail, 2));
        Assert.True(attr.ShouldFailAllocPage(Gfp.Kernel, 2));
    }

    [Fact]
    public void SleepingAllocationsAreSparedOnlyWhileIgnoreGfpWaitIsSet()
    {
        var attr = NewAttr();
        attr.Verbose = 0;
        attr.Probability = 100;
        attr.Times = -1;
        Assert.False(attr.ShouldFailAllocPage(Gfp.Kernel, 2));
        Assert.False(attr.ShouldFailAllocPage(Gfp.NoIo, 2));
        Assert.True(attr.ShouldFailAllocPage(Gfp.NoWait, 2));
        attr.IgnoreGfpWait = false;
        Assert.True(attr.ShouldFailAllocPage(Gfp.Kernel, 2));
    }

    [Fact]
    public void HighmemAllocationsAreSparedOnlyWhileIgnoreGfpHighmemIsSet()
    {
        var attr = NewAttr();
        attr.Verbose = 0;
        attr.Probability = 100;
        attr.Times = -1;
        Assert.False(attr.ShouldFailAllocPage(Gfp.NoWait | Gfp.HighMem, 2));
        attr.IgnoreGfpHighmem = false;
        Assert.True(attr.ShouldFailAllocPage(Gfp.NoWait | Gfp.HighMem, 2));
        // Still spared for reclaim while ignore-gfp-wait is set.
        Assert.False(attr.ShouldFailAllocPage(Gfp.HighUserMovable, 2));
    }

    [Fact]
    public void FailNthFailsExactlyTheNthEligibleCall()
    {
        var attr = NewAttr();
        attr.Verbose = 0;
        try
        {
            FaultAttr.FailNth = 3;
            Assert.True(attr.Enabled);
            Assert.False(attr.ShouldFailAllocPage(Eligible, 1));
            Assert.Equal(2, FaultAttr.FailNth);
            // Filtered calls never reach should_fail and do not count.
            Assert.False(attr.ShouldFailAllocPage(Eligible, 0));
            Assert.False(attr.ShouldFailAllocPage(Gfp.Kernel, 1));
            Assert.Equal(2, FaultAttr.FailNth);
            Assert.False(attr.ShouldFailAllocPage(Eligible, 1));
            Assert.True(attr.ShouldFailAllocPage(Eligible, 1));
            Assert.Equal(0, FaultAttr.FailNth);
            Assert.False(attr.ShouldFailAllocPage(Eligible, 1));
            Assert.False(attr.Enabled);
            Assert.Equal(1, attr.Failures);
            Assert.Equal(0, attr.Times);
        }
        finally
        {
            FaultAttr.FailNth = 0;
        }
    }

    [Fact]
    public void FailNthOverridesEveryOtherSetting()
    {
        var attr = NewAttr();
        attr.Verbose = 0;
        attr.Probability = 100;
        attr.Times = 0;
        attr.Space = 1000;
        attr.Interval = 7;
        try
        {
            FaultAttr.FailNth = 2;
            Assert.False(attr.ShouldFail(1));
            Assert.True(attr.ShouldFail(1));
            // Times was already 0, so now the other settings refuse.
            Assert.False(attr.ShouldFail(1));
            Assert.Equal(1000, attr.Space);
        }
        finally
        {
            FaultAttr.FailNth = 0;
        }
    }

    [Fact]
    public void FailNthBelongsToTheThreadThatSetIt()
    {
        var attr = NewAttr();
        attr.Verbose = 0;
        try
        {
            FaultAttr.FailNth = 1;
            bool otherThreadFailed = true;
            var thread = new Thread(() => otherThreadFailed = attr.ShouldFail(1));
            thread.Start();
            thread.Join();
            Assert.False(otherThreadFailed);
            Assert.True(attr.ShouldFail(1));
        }
        finally
        {
            FaultAttr.FailNth = 0;
        }
    }

    [Fact]
    public void ASeededRandomGivesTheSameFailuresTwice()
    {
        static bool[] Run()
        {
            var attr = new FaultAttr("fail_page_alloc", new Random(2022));
            attr.Verbose = 0;
            attr.Probability = 50;
            attr.Times = -1;
            return Enumerable.Range(0, 500).Select(_ => attr.ShouldFailAllocPage(Eligible, 1)).ToArray();
        }
        var first = Run();
        var second = Run();
        Assert.Equal(first, second);
        var failures = first.Count(f => f);
        Assert.InRange(failures, 150, 350);
    }

    [Theory]
    [InlineData("Probability", -1, "probability must be 0..100")]
    [InlineData("Probability", 101, "probability must be 0..100")]
    [InlineData("Interval", 0, "interval must be >= 1")]
    [InlineData("Times", -2, "times must be -1 (unlimited) or >= 0")]
    [InlineData("Space", -1, "space must be >= 0")]
    [InlineData("Verbose", 3, "verbose must be 0, 1 or 2")]
    [InlineData("Verbose", -1, "verbose must be 0, 1 or 2")]
    [InlineData("MinOrder", -1, "min-order must be >= 0")]
    [InlineData("FailNth", -1, "fail-nth must be >= 0")]
    public void BadAttributeValuesAreRefusedNamingTheAttribute(string attribute, int value, string message)
    {
        var attr = NewAttr();
        Action set = attribute switch
        {
            "Probability" => () => attr.Probability = value,
            "Interval" => () => attr.Interval = value,
            "Times" => () => attr.Times = value,
            "Space" => () => attr.Space = value,
            "Verbose" => () => attr.Verbose = value,
            "MinOrder" => () => attr.MinOrder = value,
            _ => () => FaultAttr.FailNth = value,
        };
        var e = Assert.Throws<ArgumentOutOfRangeException>(set);
        Assert.StartsWith(message, e.Message, StringComparison.Ordinal);
        Assert.Equal(0, FaultAttr.FailNth);
    }

    [Fact]
    public void VerboseOneLogsTheKernelsLines()
    {
        var log = new KernelLog();
        var attr = NewAttr(log);
        attr.Verbose = 1;
        try
        {
            FaultAttr.FailNth = 1;
            Assert.True(attr.ShouldFailAllocPage(Eligible, 1));
        }
        finally
        {
            FaultAttr.FailNth = 0;
        }
        Assert.Equal(
            ["FAULT_INJECTION: forcing a failure.", "name fail_page_alloc, interval 1, probability 0, space 0, times 1"],
            log.Lines);
    }

    [Fact]
    public void TheReportShowsTheSettingsBeforeTimesIsUsedUp()
    {
        var log = new KernelLog();
        var attr = new FaultAttr("failslab", new Random(1), log);
        attr.Verbose = 1;
        attr.Probability = 100;
        attr.Interval = 1;
        attr.Times = 5;
        attr.Space = 3;
        Assert.False(attr.ShouldFail(2));
        Assert.True(attr.ShouldFail(2));
        Assert.Equal("name failslab, interval 1, probability 100, space 1, times 5", log.Lines[^1]);
        Assert.Equal(4, attr.Times);
    }

    [Fact]
    public void VerboseTwoAddsTheCallTrace()
    {
        var log = new KernelLog();
        var attr = NewAttr(log);
        attr.Probability = 100;
        Assert.True(attr.ShouldFailAllocPage(Eligible, 1));
        var lines = log.Lines;
        Assert.Equal("FAULT_INJECTION: forcing a failure.", lines[0]);
        Assert.Equal("Call Trace:", lines[2]);
        Assert.Contains(lines.Skip(3), l => l.Contains(nameof(VerboseTwoAddsTheCallTrace), StringComparison.Ordinal));
        Assert.All(lines.Skip(3), l => Assert.StartsWith(" ", l, StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Contains(".cs:", StringComparison.Ordinal));
    }

    [Fact]
    public void VerboseZeroAndNoWarnFailSilently()
    {
        var log = new KernelLog();
        var attr = NewAttr(log);
        attr.Probability = 100;
        attr.Times = -1;
        Assert.True(attr.ShouldFailAllocPage(Eligible | Gfp.NoWarn, 1));
        Assert.Empty(log.Lines);
        // NOWARN silences only its own call.
        attr.Verbose = 1;
        Assert.True(attr.ShouldFailAllocPage(Eligible, 1));
        Assert.Equal(2, log.Lines.Count);
        attr.Verbose = 0;
        Assert.True(attr.ShouldFail(1));
        Assert.Equal(2, log.Lines.Count);
        Assert.Equal(3, attr.Failures);
    }

    [Fact]
    public void TheBootOptionSetsIntervalProbabilitySpaceAndTimes()
    {
        var attr = FaultAttr.FromBootOption("10,100,4096,-1", "fail_page_alloc", new Random(1));
        Assert.Equal("fail_page_alloc", attr.Name);
        Assert.Equal(10, attr.Interval);
        Assert.Equal(100, attr.Probability);
        Assert.Equal(4096, attr.Space);
        Assert.Equal(-1, attr.Times);
        Assert.Equal(2, attr.Verbose);
        Assert.True(attr.Enabled);
    }

    [Theory]
    [InlineData("", "expected <interval>,<probability>,<space>,<times>")]
    [InlineData("1,100,0", "expected <interval>,<probability>,<space>,<times>")]
    [InlineData("1,100,0,-1,5", "expected <interval>,<probability>,<space>,<times>")]
    [InlineData("x,100,0,-1", "interval 'x' is not an integer")]
    [InlineData("1,lots,0,-1", "probability 'lots' is not an integer")]
    [InlineData("1,100,0,forever", "times 'forever' is not an integer")]
    [InlineData("1,200,0,-1", "probability must be 0..100")]
    [InlineData("0,100,0,-1", "interval must be >= 1")]
    [InlineData("1,100,99999999999,-1", "too large")]
    public void ABadBootOptionIsRefusedClearly(string value, string message)
    {
        var e = Assert.Throws<FormatException>(() => FaultAttr.FromBootOption(value, "fail_page_alloc", new Random(1)));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
        Assert.StartsWith("fail_page_alloc=", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ConcurrentCallsNeverForceMoreThanTimes()
    {
        var attr = new FaultAttr("fail_page_alloc", new Random(7));
        attr.Verbose = 0;
        attr.Probability = 100;
        attr.Times = 1000;
        long failed = 0;
        Parallel.For(0, 8, _ =>
        {
            for (int i = 0; i < 2000; i++)
            {
                if (attr.ShouldFailAllocPage(Eligible, 1))
                {
                    Interlocked.Increment(ref failed);
                }
            }
        });
        Assert.Equal(1000, failed);
        Assert.Equal(1000, attr.Failures);
        Assert.Equal(0, attr.Times);
    }

    [Fact]
    public void AnOrderBeyondTheShiftIsRefused()
    {
        var attr = NewAttr();
        Assert.Throws<ArgumentOutOfRangeException>(() => attr.ShouldFailAllocPage(Gfp.Kernel, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => attr.ShouldFailAllocPage(Gfp.Kernel, 63));
    }
}
