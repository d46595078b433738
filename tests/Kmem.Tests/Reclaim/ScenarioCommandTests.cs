// kmem scenario, run in-process: each story ends with the outcome it is about
// (compaction making an order-4 block, user pages in HighMem, the OOM killer
// after kswapd and swap), told with the kernel's counters and shown in the
// before and after pictures.
using Kmem.Tests.Cli;
using Kmem.Tests.MemoryMaps;
using SkiaSharp;

namespace Kmem.Tests.Reclaim;

[Collection("reclaim-files")]
public class ScenarioCommandTests
{
    private static (int Code, string Out, string Err) Kmem(params string[] args) => CliRun.Kmem(args);

    private static string MapDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "kmem-scenario-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>Pixels of the picture at <paramref name="path"/> in the legend colour of <paramref name="state"/>.</summary>
    private static int PixelsOf(string path, FrameState state)
    {
        using var bmp = SKBitmap.Decode(path) ?? throw new InvalidOperationException($"{path} did not decode");
        uint color = MapKit.ColorOf(state);
        int n = 0;
        foreach (var c in bmp.Pixels)
        {
            n += MapKit.Rgb(c) == color ? 1 : 0;
        }
        return n;
    }

    [Fact]
    public void FragmentationEndsWithAnOrder4BlockMadeByCompaction()
    {
        var (code, output, err) = Kmem("scenario", "fragmentation", "--no-map");
        Assert.True(code == 0, err);
        Assert.Contains("order-4 GFP_KERNEL allocation: pfn:0x", output, StringComparison.Ordinal);
        var line = output.Split('\n').Single(l => l.StartsWith("after the order-4 allocation", StringComparison.Ordinal));
        // 6.1's first try is async compaction, which for an unmovable request only takes pages from unmovable
        // pageblocks: it runs (a stall) and the block comes from reclaim's per-CPU drain or a later round.
        Assert.Matches(@"compact_stall [1-9]\d*  compact_success \d+  compact_fail \d+", line);
        Assert.DoesNotMatch(@"compact_migrate_scanned 0\b", line);
        Assert.Contains("# before: /proc/buddyinfo", output, StringComparison.Ordinal);
    }

    [Fact]
    public void HighmemPutsTheTasksPagesInHighMemAndThePicturesShowThem()
    {
        string dir = MapDir();
        try
        {
            var (code, output, err) = Kmem("scenario", "highmem", "--map-dir", dir);
            Assert.True(code == 0, err);
            Assert.Contains("read back through kmap_local: byte 77 (written 77)", output, StringComparison.Ordinal);
            Assert.Contains("Node 0, zone  HighMem", output, StringComparison.Ordinal);
            string before = Path.Combine(dir, "highmem-before.png"), after = Path.Combine(dir, "highmem-after.png");
            Assert.Contains($"picture (before): {before}", output, StringComparison.Ordinal);
            Assert.Contains($"picture (after): {after}", output, StringComparison.Ordinal);
            // A cell per frame of 2x2 pixels on a 1 GiB machine; zone lines may cover a cell's top or left edge,
            // never its bottom-right pixel. 128 MiB written = 32768 anonymous pages, none at boot.
            int anon = PixelsOf(after, FrameState.TaskAnon) - PixelsOf(before, FrameState.TaskAnon);
            Assert.InRange(anon, 32768, 4 * 32768);
            Assert.True(PixelsOf(after, FrameState.PageTable) > PixelsOf(before, FrameState.PageTable));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void AMissingPictureFolderIsAUsageError()
    {
        var (code, output, err) = Kmem("scenario", "highmem", "--map-dir", "/nonexistent/kmem-pictures");
        Assert.Equal(2, code);
        Assert.Contains("--map-dir: no directory \"/nonexistent/kmem-pictures\"", err, StringComparison.Ordinal);
        Assert.Equal("", output);
    }

    [Fact]
    [Trait("Category", "Soak")]
    public void PressureEndsWithTheOomKillerAfterKswapdAndSwap()
    {
        var (code, output, err) = Kmem("scenario", "pressure", "--no-map");
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
