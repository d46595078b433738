// The replayer's snapshot hook (TraceReplayOptions.Snapshot, what --map-every hangs
// off): called exactly at each multiple of SnapshotEvery, between two events, and
// looking at the machine from it (a memory-map picture, a /proc file) leaves the replay
// byte-identical to one without snapshots. Bad option values are refused up front.
namespace Kmem.Tests.Trace;

public class TraceReplaySnapshotTests
{
    private static readonly string[] s_procFiles = ["slabinfo", "buddyinfo", "meminfo", "vmstat"];

    [Fact]
    public void TheSnapshotIsCalledAtEachMultipleOfSnapshotEveryBetweenTwoEvents()
    {
        using var m = ReplayData.Boot();
        var seen = new List<(long Events, long Lines)>();
        using var reader = ReplayData.SliceReader();
        var r = new TraceReplayer(m, new TraceReplayOptions
        {
            SnapshotEvery = 7_000,
            Snapshot = t => seen.Add((t.Events, t.Reader!.Lines)),
        }).Replay(reader);
        long expected = r.Events / 7_000;
        Assert.True(expected >= 10, $"the slice has {r.Events} events");
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
            using var reader = ReplayData.SliceReader();
            plainResult = new TraceReplayer(m).Replay(reader);
            plain = [.. s_procFiles.Select(m.Proc.Read)];
        }
        int pictures = 0;
        using (var m = ReplayData.Boot())
        {
            using var reader = ReplayData.SliceReader();
            var r = new TraceReplayer(m, new TraceReplayOptions
            {
                SnapshotEvery = 25_000,
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
        Assert.Equal((int)(plainResult.Events / 25_000), pictures);
    }

    [Fact]
    public void TheReadmeSnapshotExampleWritesAPictureEveryNEvents()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"kmem-snap-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            using var m = ReplayData.Boot();
            using var reader = ReplayData.SliceReader();
            // The README's example, with the files in a temporary folder and a picture every 40,000 events.
            var options = new TraceReplayOptions
            {
                SnapshotEvery = 40_000,
                Snapshot = t => MemoryMap.Render(t.Machine, Path.Combine(dir, $"map-{t.Events}.png"), new MemoryMapOptions { Caption = $"event {t.Events}" }),
            };
            TraceReplayResult r = new TraceReplayer(m, options).Replay(reader);

            Assert.Equal(ReplayData.SliceLines - 12, r.Events);
            Assert.Equal(["map-40000.png", "map-80000.png"], Directory.GetFiles(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
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
