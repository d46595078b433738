// kmem replay --map-every of a pressure capture (the bundled excerpt of capture Q's oom
// phase): every picture carries the pressure strip (the grid lower by its height) with
// Kmem's free pages against its watermarks, and the strip's text names the phase, the
// band, kswapd's state and each side's marks (a boot capture's pictures have none: ReplayMapTests).
using SkiaSharp;

namespace Kmem.Tests.Cli;

public sealed class ReplayPressureMapTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"kmem-pmap-{Guid.NewGuid():N}");

    public ReplayPressureMapTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void EveryPictureOfAPressureReplayCarriesTheStrip()
    {
        string trace = Captures.File(Captures.Pressure, Path.Combine("excerpt-oom", "trace.txt.xz"));
        string map = Path.Combine(_dir, "p.png");
        var (code, _, stderr) = CliRun.Kmem("replay", trace, "--seed", "1", "--map", map, "--map-every", "20000");
        Assert.True(code == 0, stderr);
        string[] files = [.. Directory.GetFiles(_dir, "p*.png").Order(StringComparer.Ordinal)];
        Assert.Equal(["p-000001.png", "p-000002.png", "p.png"], files.Select(Path.GetFileName));
        using var plain = Machine.Boot(new MachineOptions { Memory = "384M", Cpus = 2, Seed = 1 });
        int plainHeight = MemoryMap.GetLayout(plain).Height;
        foreach (string file in files)
        {
            using var bmp = SKBitmap.Decode(file);
            Assert.Equal(plainHeight + MemoryMapLayout.PressureHeight, bmp.Height);
        }
    }

    [Fact]
    public void TheStripsTextNamesThePhaseTheBandAndEachSidesMarks()
    {
        var now = new TracePressureNow
        {
            Phase = "anon", FreePages = 650, WatermarkMin = 579, WatermarkLow = 723, WatermarkHigh = 867, KswapdAwake = true,
            Kernel = new SortedDictionary<string, long> { ["kswapd wakeups"] = 12, ["direct reclaims"] = 3 },
            Kmem = new SortedDictionary<string, long> { ["kswapd wakeups"] = 5, ["OOM kills"] = 1 },
            KernelVictims = [], KmemVictims = ["131 (pressure)"],
        };
        var strip = global::Kmem.Cli.ReplayPressure.MapStrip(now);
        Assert.Equal((650L, 579L, 723L, 867L), (strip.FreePages, strip.WatermarkMin, strip.WatermarkLow, strip.WatermarkHigh));
        Assert.Equal(1, strip.Band);
        string[] lines = strip.Text!.Split('\n');
        Assert.Equal("phase anon: free 650 (below low; min 579, low 723, high 867), Kmem's kswapd awake", lines[0]);
        Assert.Equal("phase so far, kernel / Kmem: kswapd 12 / 5, direct reclaim 3 / 0, swap-out 0 / 0, compaction 0 / 0, "
            + "OOM kills 0 / 1 · victims none / 131 (pressure)", lines[1]);
    }
}
