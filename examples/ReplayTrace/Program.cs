// docs/trace-replay.md's programs: replay a real kernel trace on a machine of the same shape, print
// the fidelity figure and /proc/slabinfo, then replay it again taking a picture every 100,000 events.
// Arguments: the trace (default: the bundled capture, from the repository root) and the marker to
// stop at (default SNAPSHOT_BEGIN, where the capture's /proc snapshots begin).
using Kmem;

string trace = args.Length > 0 ? args[0] : Path.Combine("captures", "linux-6.1-boot-B", "trace.txt.xz");
string marker = args.Length > 1 ? args[1] : "SNAPSHOT_BEGIN";
Replay(trace, marker);
ReplayWithPictures(trace, marker);

static void Replay(string trace, string marker)
{
    using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
    using var reader = TraceReader.Open(trace, new TraceReaderOptions { StopAtMarker = marker });
    TraceReplayResult r = new TraceReplayer(m).Replay(reader);
    Console.WriteLine($"{r.Events} events; kmalloc size classes as in the kernel: {r.KmallocSizeClassMatch:P1}");
    Console.Write(m.Proc.Read("slabinfo"));
}

static void ReplayWithPictures(string trace, string marker)
{
    using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
    using var reader = TraceReader.Open(trace, new TraceReaderOptions { StopAtMarker = marker });
    var options = new TraceReplayOptions
    {
        SnapshotEvery = 100_000,
        Snapshot = t => MemoryMap.Render(t.Machine, $"map-{t.Events}.png", new MemoryMapOptions { Caption = $"event {t.Events}" }),
    };
    TraceReplayResult r = new TraceReplayer(m, options).Replay(reader);
    Console.WriteLine($"{r.Events} events again; pictures: {Directory.GetFiles(".", "map-*.png").Length} map-*.png in {Directory.GetCurrentDirectory()}");
}
