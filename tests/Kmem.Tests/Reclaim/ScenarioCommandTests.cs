// kmem scenario, run in-process: each story ends with the outcome it is about
// (compaction making an order-4 block, user pages in HighMem, the OOM killer
// after kswapd and swap), told with the kernel's counters.
using Kmem.Cli;

namespace Kmem.Tests.Reclaim;

[Collection("reclaim-files")]
public class ScenarioCommandTests
{
    private static (int Code, string Out, string Err) Kmem(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public void FragmentationEndsWithAnOrder4BlockMadeByCompaction()
    {
        var (code, output, err) = Kmem("scenario", "fragmentation");
        Assert.True(code == 0, err);
        Assert.Contains("order-4 GFP_KERNEL allocation: pfn:0x", output, StringComparison.Ordinal);
        var line = output.Split('\n').Single(l => l.StartsWith("after the order-4 allocation", StringComparison.Ordinal));
        Assert.Matches(@"compact_stall [1-9]\d*  compact_success [1-9]", line);
        Assert.Contains("# before: /proc/buddyinfo", output, StringComparison.Ordinal);
    }

    [Fact]
    public void HighmemPutsTheTasksPagesInHighMem()
    {
        var (code, output, err) = Kmem("scenario", "highmem");
        Assert.True(code == 0, err);
        Assert.Contains("read back through kmap_local: byte 77 (written 77)", output, StringComparison.Ordinal);
        Assert.Contains("Node 0, zone  HighMem", output, StringComparison.Ordinal);
    }

    [Fact]
    [Trait("Category", "Soak")]
    public void PressureEndsWithTheOomKillerAfterKswapdAndSwap()
    {
        var (code, output, err) = Kmem("scenario", "pressure");
        Assert.True(code == 0, err);
        Assert.Contains("Out of memory: Killed process", output, StringComparison.Ordinal);
        Assert.Contains("# after: /proc/swaps", output, StringComparison.Ordinal);
    }

    [Fact]
    public void AnUnknownScenarioIsAUsageError()
    {
        var (code, _, err) = Kmem("scenario", "nosuch");
        Assert.Equal(2, code);
        Assert.Contains("nosuch", err, StringComparison.Ordinal);
    }
}
