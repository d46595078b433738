// Runs repeat: the same command with the same options and seed prints the same bytes,
// run after run, in one process (so host threads, CPU choice and kswapd's timing are
// the only things that could differ). kswapd and kcompactd run synchronously on a
// seeded machine, and every workload and story pins its CPU.
using Kmem.Tests.Trace;

namespace Kmem.Tests.Cli;

[Collection("reclaim-files")]
public class DeterminismTests
{
    private static string Twice(params string[] args)
    {
        var first = CliRun.Kmem(args);
        Assert.True(first.Code == 0, first.Err);
        var second = CliRun.Kmem(args);
        Assert.True(second.Code == 0, second.Err);
        Assert.Equal(first.Out, second.Out);
        return first.Out;
    }

    [Fact]
    public void ProcPrintsTheSameFilesEveryRun()
    {
        string output = Twice("proc", "buddyinfo", "zoneinfo", "pagetypeinfo", "meminfo", "vmstat", "--steps", "40000", "--seed", "3");
        Assert.Contains("# /proc/zoneinfo", output, StringComparison.Ordinal);
    }

    [Fact]
    public void TheFragmentationScenarioTellsTheSameStoryEveryRun() =>
        Assert.Contains("compact_memory:", Twice("scenario", "fragmentation", "--no-map"), StringComparison.Ordinal);

    [Fact]
    public void TheHighmemScenarioTellsTheSameStoryEveryRun() =>
        Assert.Contains("read back through kmap_local", Twice("scenario", "highmem", "--no-map"), StringComparison.Ordinal);

    [Fact]
    public void ThePressureScenarioTellsTheSameStoryEveryRunAndNamesTheSwapFileWithoutItsDirectory()
    {
        string output = Twice("scenario", "pressure", "--no-map", "--seed", "2");
        Assert.Contains("Out of memory: Killed process", output, StringComparison.Ordinal);
        Assert.Contains("48 MiB swap in the file kmem-pressure.swap;", output, StringComparison.Ordinal);
        Assert.Contains("\nkmem-pressure.swap                      file\t", output, StringComparison.Ordinal);
        Assert.DoesNotContain(Path.GetTempPath(), output, StringComparison.Ordinal);
        Assert.DoesNotContain("elapsed", output, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void ReplayPrintsTheSameReportEveryRunAndItsTimingOnlyWhenAsked()
    {
        string dir = ReplayData.SliceFolder();
        try
        {
            string trace = Path.Combine(dir, "trace.txt");
            string output = Twice("replay", trace, "--proc", "buddyinfo", "--proc", "slabinfo", "--compare-proc");
            Assert.DoesNotContain("# time:", output, StringComparison.Ordinal);
            Assert.DoesNotContain("events/s", output, StringComparison.Ordinal);
            var timed = CliRun.Kmem("replay", trace, "--timing");
            Assert.Contains("# time: ", timed.Out, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void CompareLeavesItsSpeedsOutOfStdoutUnlessAsked()
    {
        string dir = ReplayData.SliceFolder();
        try
        {
            string trace = Path.Combine(dir, "trace.txt");
            string output = Twice("compare", trace);
            Assert.DoesNotContain("events/s", output, StringComparison.Ordinal);
            Assert.Contains("M events/s", CliRun.Kmem("compare", trace, "--timing").Out, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
