// The replayer's snapshot hook (TraceReplayOptions.Snapshot, what --map-every hangs
// off): called exactly at each multiple of SnapshotEvery, between two events, and
// looking at the machine from it (a memory-map picture, a /proc file) leaves the replay
// byte-identical to one without snapshots. Bad option values are refused up front.
namespace Kmem.Tests.Trace;

public class TraceReplaySnapshotTests
{
    private static readonly string[] s_procFiles = ["slabinfo", "buddyinfo", "meminfo", "vmstat"];

    private const int Lines = 40_000;
    private const int Events = Lines - 12; // one event a line after the 12 header lines

    // The first 40,000 lines of the bundled trace's slice: enough for several snapshots, quick to replay.
    private static TraceReader ShortSlice()
    {
        byte[] slice = ReplayData.Slice;
        int end = 0;
        for (int line = 0; line < Lines; line++)
        {
            end += Array.IndexOf(slice, (byte)'\n', end) - end + 1;
        }
        return new TraceReader(new MemoryStream(slice, 0, end, writable: false), "short.txt");
    }

    [Fact]
    public void TheSnapshotIsCalledAtEachMultipleOfSnapshotEveryBetweenTwoEvents()
    {
        using var m = ReplayData.Boot();
        var seen = new List<(long Events, long Lines)>();
        using var reader = ShortSlice();
        var r = new TraceReplayer(m, new TraceReplayOptions
        {
            SnapshotEvery = 7_000,
            Snapshot = t => seen.Add((t.Events, t.Reader!.Lines)),
        }).Replay(reader);
        Assert.Equal(Events, r.Events);
        long expected = Events / 7_000;
        Assert.Equal(expected, seen.Count);
        for (int k = 0; k < seen.Count; k++)
        {
            Assert.Equal(7_000L * (k + 1), seen[k].Events);
        }
        // The slice's events are one a line after the 12 header lines, so event n is line n + 12: the
        // hook ran after that event and before the next line was read.
        Assert.All(seen, s => Assert.Equal(s.Events + 12, s.Lines));
    }

    [Fact]
    public void LookingAtTheMachineFromTheSnapshotLeavesTheReplayByteIdentical()
    {
        string[] plain;
        TraceReplayResult plainResult;
        using (var m = ReplayData.Boot())
        {
            using var reader = ShortSlice();
            plainResult = new TraceReplayer(m).Replay(reader);
            plain = [.. s_procFiles.Select(m.Proc.Read)];
        }
        int pictures = 0;
        using (var m = ReplayData.Boot())
        {
            using var reader = ShortSlice();
            var r = new TraceReplayer(m, new TraceReplayOptions
            {
                SnapshotEvery = 10_000,
                Snapshot = t =>
                {
                    using var png = new MemoryStream();
                    MemoryMap.Render(t.Machine, png);
                    _ = t.Machine.Proc.Read("slabinfo");
                    pictures++;
                },
            }).Replay(reader);
            Assert.Equal(plain, s_procFiles.Select(m.Proc.Read));
            Assert.Equal(plainResult.KmallocSizeClassMatch, r.KmallocSizeClassMatch);
            Assert.Equal(plainResult.SlabBytesPeak, r.SlabBytesPeak);
        }
        Assert.Equal((int)(plainResult.Events / 10_000), pictures);
    }

    [Fact]
    public void TheReadmeSnapshotExampleWritesAPictureEveryNEvents()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"kmem-snap-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            using var m = ReplayData.Boot();
            using var reader = ShortSlice();
            // The README's example, with the files in a temporary folder and a picture every 15,000 events.
            var options = new TraceReplayOptions
            {
                SnapshotEvery = 15_000,
                Snapshot = t => MemoryMap.Render(t.Machine, Path.Combine(dir, $"map-{t.Events}.png"), new MemoryMapOptions { Caption = $"event {t.Events}" }),
            };
            TraceReplayResult r = new TraceReplayer(m, options).Replay(reader);

            Assert.Equal(Events, r.Events);
            Assert.Equal(["map-15000.png", "map-30000.png"], Directory.GetFiles(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void BadSnapshotOptionsAreRefusedWhenTheReplayerIsCreated()
    {
        using var m = ReplayData.Boot();
        var negative = Assert.Throws<ArgumentOutOfRangeException>(() => new TraceReplayer(m, new TraceReplayOptions { SnapshotEvery = -1, Snapshot = _ => { } }));
        Assert.Contains("SnapshotEvery", negative.Message, StringComparison.Ordinal);
        var missing = Assert.Throws<ArgumentException>(() => new TraceReplayer(m, new TraceReplayOptions { Snapshot = _ => { } }));
        Assert.Contains("SnapshotEvery > 0", missing.Message, StringComparison.Ordinal);
    }
}
