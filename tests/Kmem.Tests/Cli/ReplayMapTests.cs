// kmem replay --map FILE.png and --map-every N, run in-process on a slice of the bundled
// real trace: the numbered pictures and the final one, their names in the JSON, each a
// PNG of the size MemoryMap.GetLayout predicts; the final picture's cells coloured as
// MemoryMap.Classify says on a machine that replayed the same slice (replays are
// deterministic); and the usage errors, found before anything is replayed.
using System.Text.Json;
using Kmem.Tests.MemoryMaps;
using Kmem.Tests.Trace;
using SkiaSharp;

namespace Kmem.Tests.Cli;

public sealed class ReplayMapTests : IDisposable
{
    private const int SliceLines = 20_000;
    private const int Events = SliceLines - 12; // one event a line after the 12 header lines
    private static readonly string[] s_expectedMaps = ["mem-000001.png", "mem-000002.png", "mem-000003.png", "mem.png"];
    private static readonly byte[] s_pngMagic = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0d, 0x0a, 0x1a, 0x0a];
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"kmem-map-{Guid.NewGuid():N}");

    public ReplayMapTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Out, string Err) Kmem(params string[] args) => CliRun.Kmem(args);

    private string Slice()
    {
        string path = Path.Combine(_dir, "slice.txt");
        using var writer = new StreamWriter(path);
        using var reader = new StreamReader(new MemoryStream(ReplayData.Slice));
        for (int i = 0; i < SliceLines && reader.ReadLine() is string line; i++)
        {
            writer.Write(line);
            writer.Write('\n');
        }
        return path;
    }

    // The command's machine for a trace without meminfo.txt beside it: 1G, the header's 2 CPUs, SLUB, seed 1.
    private static Machine CommandsMachine() => TraceReplayer.Boot(new MachineOptions { Memory = "1G", Cpus = 2, Seed = 1 }); // as the command boots it

    [Fact]
    public void MapEveryWritesANumberedPictureEveryNEventsAndTheFinalOneAllListedInTheJson()
    {
        string trace = Slice();
        string map = Path.Combine(_dir, "mem.png");
        var (code, stdout, stderr) = Kmem("replay", trace, "--map", map, "--map-every", "6000", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout); // nothing but the one JSON object on stdout
        Assert.Equal(Events, doc.RootElement.GetProperty("events").GetInt64());
        string[] maps = [.. doc.RootElement.GetProperty("maps").EnumerateArray().Select(e => e.GetString()!)];
        // 19,988 events: after events 6,000, 12,000 and 18,000, then the end.
        string[] expected = [.. s_expectedMaps.Select(n => Path.Combine(_dir, n))];
        Assert.Equal(expected, maps);
        Assert.Equal(
            [.. expected.Select(Path.GetFileName).Append("slice.txt").Order(StringComparer.Ordinal)],
            Directory.GetFiles(_dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        using var m = CommandsMachine();
        var layout = MemoryMap.GetLayout(m);
        foreach (string file in maps)
        {
            using var png = File.OpenRead(file);
            byte[] magic = new byte[8];
            png.ReadExactly(magic);
            Assert.True(magic.AsSpan().SequenceEqual(s_pngMagic), file);
            png.Position = 0;
            using var bmp = SKBitmap.Decode(png);
            Assert.NotNull(bmp);
            Assert.Equal((layout.Width, layout.Height), (bmp.Width, bmp.Height));
        }
    }

    [Fact]
    public void TheFinalPicturesCellsHaveTheLegendColourOfWhatClassifySaysOfTheirFrames()
    {
        string trace = Slice();
        string map = Path.Combine(_dir, "end.png");
        var (code, stdout, stderr) = Kmem("replay", trace, "--map", map);
        Assert.True(code == 0, stderr);
        Assert.Contains($"memory map: {map}\n", stdout.ReplaceLineEndings("\n"), StringComparison.Ordinal);

        // The same slice on the same machine ends in the same state (replays are deterministic).
        using var m = CommandsMachine();
        using (var reader = TraceReader.Open(trace))
        {
            Assert.Equal(Events, new TraceReplayer(m).Replay(reader).Events);
        }
        var layout = MemoryMap.GetLayout(m);
        Assert.Equal(1UL, layout.FramesPerCell);
        using var bmp = SKBitmap.Decode(map);
        var states = new HashSet<FrameState>();
        ulong firstSlab = ulong.MaxValue;
        for (ulong pfn = 0; pfn < m.MaxPfn; pfn++)
        {
            if (pfn % 61 != 0 && firstSlab != ulong.MaxValue)
            {
                continue;
            }
            var state = MemoryMap.Classify(m, pfn, out int order);
            if (state == FrameState.Slab && firstSlab == ulong.MaxValue)
            {
                firstSlab = pfn;
            }
            if (pfn % 61 == 0 || pfn == firstSlab)
            {
                Assert.True(MapKit.ColorOf(state, state == FrameState.Free ? order : 0) == MapKit.CellColor(bmp, layout, pfn),
                    $"pfn 0x{pfn:x}: {state} order {order}");
                states.Add(state);
            }
        }
        Assert.NotEqual(ulong.MaxValue, firstSlab);
        Assert.Contains(FrameState.Slab, states);
        Assert.Contains(FrameState.Free, states);
    }

    [Fact]
    public void TheTextSummaryNamesTheNumberedPictures()
    {
        string trace = Slice();
        string map = Path.Combine(_dir, "t.png");
        var (code, stdout, stderr) = Kmem("replay", trace, "--map", map, "--map-every", "10000");
        Assert.True(code == 0, stderr);
        Assert.Contains($"memory map: {map}, and 1 pictures every 10000 events: {Path.Combine(_dir, "t-000001.png")} .. {Path.Combine(_dir, "t-000001.png")}", stdout, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(_dir, "t-000001.png")));
        Assert.False(File.Exists(Path.Combine(_dir, "t-000002.png")));
    }

    public static TheoryData<string[], string> UsageErrors => new()
    {
        { ["--map-every", "100"], "--map-every needs --map FILE.png" },
        { ["--map", "{dir}/m.png", "--map-every", "0"], "--map-every must be 1 or more, not 0" },
        { ["--map", "{dir}/m.png", "--map-every", "-5"], "--map-every must be 1 or more, not -5" },
        { ["--map", "{dir}/no-such-folder/m.png"], "does not exist" },
        { ["--map", "{dir}/slice.txt/m.png"], "does not exist" },
        { ["--map", "{dir}/folder.png"], "is a folder, not a file name" },
        { ["--map", "{dir}/m.jpg"], "must end in .png" },
    };

    [Theory]
    [MemberData(nameof(UsageErrors))]
    public void BadMapOptionsAreUsageErrorsBeforeAnythingIsReplayed(string[] options, string message)
    {
        string trace = Slice();
        Directory.CreateDirectory(Path.Combine(_dir, "folder.png"));
        string[] args = [.. new[] { "replay", trace }.Concat(options.Select(o => o.Replace("{dir}", _dir, StringComparison.Ordinal)))];
        var (code, stdout, stderr) = Kmem(args);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Contains(message, stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(_dir, "*.png", SearchOption.AllDirectories));

        // Checked before the trace is even opened: a missing trace does not hide the usage error.
        (code, _, stderr) = Kmem([.. args.Select(a => a == trace ? Path.Combine(_dir, "missing.txt") : a)]);
        Assert.Equal(2, code);
        Assert.Contains(message, stderr, StringComparison.Ordinal);
    }
}
