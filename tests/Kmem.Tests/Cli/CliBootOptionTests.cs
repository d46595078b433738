// The boot parameters every booting command takes (--slub-debug, --slub-nomerge, --sysctl), the
// reports proc prints, kmem markers and the help's naming: each reaches the machine, and a bad value
// is a usage error.
using Kmem.Tests.Trace;

namespace Kmem.Tests.Cli;

public class CliBootOptionTests
{
    private const string SanityChecks = "/sys/kernel/slab/kmalloc-64/sanity_checks";

    [Fact]
    public void SlubDebugReachesTheCaches()
    {
        var plain = CliRun.Kmem("proc", SanityChecks, "--steps", "0");
        var debug = CliRun.Kmem("proc", SanityChecks, "--steps", "0", "--slub-debug", "F");
        Assert.Equal(0, plain.Code);
        Assert.Equal(0, debug.Code);
        Assert.Contains("0", plain.Out, StringComparison.Ordinal);
        Assert.Contains("1", debug.Out, StringComparison.Ordinal);
        Assert.NotEqual(plain.Out, debug.Out);
    }

    [Fact]
    public void ABadSlubDebugIsAUsageErrorNamingTheOption()
    {
        var r = CliRun.Kmem("proc", "meminfo", "--steps", "0", "--slub-debug", "Q!");
        Assert.Equal(2, r.Code);
        Assert.Contains("--slub-debug", r.Err, StringComparison.Ordinal);
        Assert.Equal("", r.Out);
    }

    [Fact]
    public void SysctlMovesTheWatermarks()
    {
        var plain = CliRun.Kmem("proc", "zoneinfo", "--steps", "0");
        var raised = CliRun.Kmem("proc", "zoneinfo", "--steps", "0", "--sysctl", "vm.min_free_kbytes=16384");
        Assert.Equal(0, raised.Code);
        Assert.NotEqual(plain.Out, raised.Out);
        var unknown = CliRun.Kmem("proc", "zoneinfo", "--steps", "0", "--sysctl", "swappiness=10");
        Assert.Equal(2, unknown.Code);
        Assert.Contains("min_free_kbytes", unknown.Err, StringComparison.Ordinal);
        var outOfRange = CliRun.Kmem("proc", "zoneinfo", "--steps", "0", "--sysctl", "watermark_scale_factor=0");
        Assert.Equal(2, outOfRange.Code);
        Assert.Contains("watermark_scale_factor", outOfRange.Err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("swaps", "Filename")]
    [InlineData("percpu_stats", "Percpu Memory Statistics")]
    public void ProcPrintsEveryReportTheLibraryRenders(string name, string expected)
    {
        var r = CliRun.Kmem("proc", name, "--steps", "0");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains(expected, r.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void SlobinfoNeedsSlob()
    {
        var r = CliRun.Kmem("proc", "slobinfo", "--steps", "0", "--slab", "slob");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("free_slob_small", r.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void MarkersListsTheTracesMarkersWithTheirLines()
    {
        string path = Path.Combine(Path.GetTempPath(), $"kmem-markers-{Guid.NewGuid():N}.txt");
        File.WriteAllText(path, ReplayData.Header
            + ReplayData.Line("tracing_mark_write: PHASE boot") + ReplayData.Line("tracing_mark_write: PHASE work"));
        try
        {
            var r = CliRun.Kmem("markers", path);
            Assert.True(r.Code == 0, r.Err);
            string[] lines = r.Out.TrimEnd('\n').Split('\n');
            Assert.Equal(2, lines.Length);
            Assert.EndsWith("PHASE boot", lines[0], StringComparison.Ordinal);
            Assert.EndsWith("PHASE work", lines[1], StringComparison.Ordinal);
            Assert.StartsWith("         4", lines[0], StringComparison.Ordinal); // the header's three lines come first
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void HelpNamesTheCommandKmemAndEverySubcommand()
    {
        var r = CliRun.Kmem("--help");
        Assert.Equal(0, r.Code);
        Assert.Contains("\n  kmem [command] [options]", r.Out, StringComparison.Ordinal);
        foreach (string command in new[] { "replay", "compare", "markers", "proc", "scenario", "bench" })
        {
            Assert.Contains("kmem " + command, r.Out, StringComparison.Ordinal);
        }
        Assert.Contains("\n  kmem replay <TRACE> [options]", CliRun.Kmem("replay", "--help").Out, StringComparison.Ordinal);
    }
}
