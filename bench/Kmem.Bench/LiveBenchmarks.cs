// The live view (kmem serve) under BenchmarkDotNet, on the bundled capture (.xz, as the
// command reads it): the update rate and the replay's slowdown while playing at full speed,
// and the time of a seek to a marker a million events in. Replay is the baseline: a plain
// replay of the whole trace, as `kmem replay` runs it. PlayLive plays the same trace in a
// live session from the booted machine to the end with one page subscribed (its queue
// drained as the server's event stream drains it); the ratio column is the slowdown, and
// the update rate is printed after each iteration ("// live: …"). SeekToMarker starts
// from a session that has read the trace's markers (and kept its text) and seeks to
// "PHASE parallel" (1,007,150 events in), timing until the machine is paused there.
using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using Kmem.Live;

namespace Kmem.Bench;

[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 1, iterationCount: 3)]
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "each iteration's session is disposed by its IterationCleanup")]
public class LiveBenchmarks
{
    private const string Marker = "PHASE parallel";

    private string _trace = "";
    private LiveSession? _session;
    private Task? _drain;
    private long _updates;
    private Stopwatch _clock = new();

    [GlobalSetup]
    public void Setup() => _trace = ReplayBenchmarks.BundledTrace();

    private LiveSource Source() =>
        new(_trace, (slab, cpus) => new MachineOptions { Memory = "512M", Cpus = Math.Max(cpus, 1), Slab = slab, Seed = 1 });

    /// <summary>Boot, then replay every event of the .xz trace: what the live view's replay is compared with.</summary>
    [Benchmark(Baseline = true)]
    public long Replay()
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        using var reader = TraceReader.Open(_trace);
        return new TraceReplayer(m).Replay(reader).Events;
    }

    [IterationSetup(Target = nameof(PlayLive))]
    public void StartSession()
    {
        _session = new LiveSession(Source(), SlabAllocator.Slub, updatesPerSecond: 20);
        _session.Start();
        var page = _session.Subscribe();
        _updates = 0;
        _drain = Task.Run(async () =>
        {
            while (await page.Queue.Reader.WaitToReadAsync().ConfigureAwait(false))
            {
                while (page.Queue.Reader.TryRead(out _))
                {
                    Interlocked.Increment(ref _updates);
                }
            }
        });
        WaitFor(() => _session.Published > 0);
    }

    /// <summary>Play the whole trace at full speed with a page watching.</summary>
    [Benchmark]
    public long PlayLive()
    {
        var run = _session!.Run!;
        _clock = Stopwatch.StartNew();
        long before = Interlocked.Read(ref _updates);
        _session.Control("play", k => k == "speed" ? "0" : null);
        WaitFor(() => run.Ended);
        _clock.Stop();
        Console.WriteLine($"// live: {Interlocked.Read(ref _updates) - before} updates in {_clock.Elapsed.TotalSeconds:F2} s = "
            + $"{(Interlocked.Read(ref _updates) - before) / _clock.Elapsed.TotalSeconds:F1} updates/s while playing {run.Position:N0} events");
        return run.Position;
    }

    [IterationSetup(Target = nameof(SeekToMarker))]
    public void StartSessionWithMarkers()
    {
        _session = new LiveSession(Source(), SlabAllocator.Slub, updatesPerSecond: 20);
        _session.Start();
        WaitFor(() => _session.Published > 0);
        WaitFor(() => MarkerIndex() >= 0);
    }

    private int MarkerIndex() => _session?.FullJson() is { } json && json.Contains("\"markers\"", StringComparison.Ordinal)
        ? System.Text.Json.JsonDocument.Parse(json).RootElement.GetProperty("markers").EnumerateArray()
            .Select((m, i) => (Text: m.GetProperty("text").GetString(), i)).FirstOrDefault(m => m.Text == Marker, (null, -1)).i
        : -1;

    /// <summary>Seek to a marker a million events in and wait until the machine is paused there.</summary>
    [Benchmark]
    public long SeekToMarker()
    {
        int index = MarkerIndex();
        _session!.Control("seek", k => k == "marker" ? index.ToString(System.Globalization.CultureInfo.InvariantCulture) : null);
        var run = _session.Run!;
        WaitFor(() => !run.Seeking && run.Position > 0);
        return run.Position;
    }

    [IterationCleanup(Targets = [nameof(PlayLive), nameof(SeekToMarker)])]
    public void StopSession()
    {
        _session?.Dispose();
        _drain?.Wait();
        _session = null;
    }

    private static void WaitFor(Func<bool> done)
    {
        while (!done())
        {
            Thread.Sleep(2);
        }
    }
}
