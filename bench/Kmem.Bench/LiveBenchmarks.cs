// The live view (kmem serve) on the bundled capture (.xz, as the command reads it): the update
// rate and the replay's slowdown while playing at full speed, and the time of a seek to a
// marker a million events in. Replay is the baseline: a plain replay of the whole trace on the
// machine the live view boots, as `kmem replay` runs it. PlayLive plays the same trace in a live
// session from the booted machine to the end with one page subscribed (its queue drained as
// the server's event stream drains it), the trace's markers being read meanwhile as when a page
// presses play at once; its time over Replay's is the slowdown, its updates over its time the
// update rate. SeekToMarker starts from a session that has read the trace's markers (and kept
// its text) and seeks to "PHASE parallel" (1,007,150 events in), timing until the machine is
// paused there. Two ways to run them: BenchmarkDotNet (--filter '*LiveBenchmarks*'), or the
// quick measurement (`--live [ROUNDS]`, a few minutes), which runs the three in turn in one
// process, round after round, so that a loaded host weighs on A and B alike, and prints a
// markdown table of the medians (scripts/live-figures.sh puts it into docs/live-figures.md).
using System.Diagnostics;
using System.Globalization;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using Kmem.Live;

namespace Kmem.Bench;

[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 0, iterationCount: 2)]
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "each iteration's session is disposed by its IterationCleanup")]
public class LiveBenchmarks
{
    private const string Marker = "PHASE parallel";

    /// <summary>The targets of the live view.</summary>
    private const double TargetUpdatesPerSecond = 10, TargetSlowdown = 2, TargetSeekSeconds = 3;

    private string _trace = "";
    private LiveSession? _session;
    private Task? _drain;
    private long _updates;
    private Stopwatch _clock = new();

    /// <summary>Updates the page received during the last PlayLive, and its time.</summary>
    private long _playUpdates;
    private double _playSeconds;

    [GlobalSetup]
    public void Setup() => _trace = ReplayBenchmarks.BundledTrace();

    private static MachineOptions Boot(SlabAllocator slab, int cpus) =>
        new() { Memory = "512M", Cpus = Math.Max(cpus, 1), Slab = slab, Seed = 1 };

    private LiveSource Source() => new(_trace, Boot);

    /// <summary>Boot, then replay every event of the .xz trace: what the live view's replay is compared with.</summary>
    [Benchmark(Baseline = true)]
    public long Replay()
    {
        using var reader = TraceReader.Open(_trace);
        using var m = TraceReplayer.Boot(Boot(SlabAllocator.Slub, reader.Cpus));
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
        long before = Interlocked.Read(ref _updates);
        _clock = Stopwatch.StartNew();
        _session.Control("play", k => k == "speed" ? "0" : null);
        WaitFor(() => run.Ended);
        _clock.Stop();
        _playUpdates = Interlocked.Read(ref _updates) - before;
        _playSeconds = _clock.Elapsed.TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"// live: {_playUpdates} updates in {_playSeconds:F2} s = {_playUpdates / _playSeconds:F1} updates/s while playing {run.Position:N0} events"));
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
        _session!.Control("seek", k => k == "marker" ? index.ToString(CultureInfo.InvariantCulture) : null);
        var run = _session.Run!;
        WaitFor(() => !run.Seeking && run.Position > 0);
        long expected = _session.Markers![index].Position;
        return run.Position == expected ? run.Position
            : throw new InvalidOperationException($"the seek stopped at {run.Position}, not at the marker's {expected}");
    }

    [IterationCleanup(Targets = [nameof(PlayLive), nameof(SeekToMarker)])]
    public void StopSession()
    {
        _session?.Dispose();
        _drain?.Wait();
        _drain = null;
        _session = null;
    }

    private static void WaitFor(Func<bool> done)
    {
        while (!done())
        {
            Thread.Sleep(2);
        }
    }

    /// <summary>The quick measurement: <paramref name="rounds"/> rounds of Replay, PlayLive and SeekToMarker in
    /// turn; writes the medians as a markdown table and returns 0 when every target is met, else 1.</summary>
    public static int Quick(int rounds, TextWriter output)
    {
        var b = new LiveBenchmarks();
        b.Setup();
        var replay = new List<double>();
        var play = new List<double>();
        var rate = new List<double>();
        var slowdown = new List<double>();
        var seek = new List<double>();
        long seekEvents = 0, events = 0;
        for (int round = 0; round < rounds; round++)
        {
            var clock = Stopwatch.StartNew();
            events = b.Replay();
            replay.Add(clock.Elapsed.TotalSeconds);
            b.StartSession();
            b.PlayLive();
            b.StopSession();
            play.Add(b._playSeconds);
            rate.Add(b._playUpdates / b._playSeconds);
            slowdown.Add(b._playSeconds / replay[^1]);
            b.StartSessionWithMarkers();
            clock.Restart();
            seekEvents = b.SeekToMarker();
            seek.Add(clock.Elapsed.TotalSeconds);
            b.StopSession();
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"// round {round + 1}: replay {replay[^1]:F2} s, live {play[^1]:F2} s ({slowdown[^1]:F2}x, {rate[^1]:F1} updates/s), seek {seek[^1]:F2} s"));
        }
        static double Median(List<double> v)
        {
            var s = v.Order().ToList();
            return s.Count % 2 == 1 ? s[s.Count / 2] : (s[(s.Count / 2) - 1] + s[s.Count / 2]) / 2;
        }
        double r = Median(rate), sd = Median(slowdown), sk = Median(seek);
        var c = CultureInfo.InvariantCulture;
        output.WriteLine("| measure | median | target | met |");
        output.WriteLine("|---|---:|---:|:---:|");
        output.WriteLine(string.Create(c, $"| plain replay of the capture ({events:N0} events, .xz) | {Median(replay):F2} s | | |"));
        output.WriteLine(string.Create(c, $"| live replay at full speed, one page watching | {Median(play):F2} s | | |"));
        output.WriteLine(string.Create(c, $"| updates a second while playing at full speed | {r:F1} | ≥ {TargetUpdatesPerSecond} | {(r >= TargetUpdatesPerSecond ? "yes" : "no")} |"));
        output.WriteLine(string.Create(c, $"| replay slowed by the live view (live / plain, per round) | {sd:F2}× | ≤ {TargetSlowdown}× | {(sd <= TargetSlowdown ? "yes" : "no")} |"));
        output.WriteLine(string.Create(c, $"| seek to \"{Marker}\" ({seekEvents:N0} events in), until paused there | {sk:F2} s | < {TargetSeekSeconds} s | {(sk < TargetSeekSeconds ? "yes" : "no")} |"));
        return r >= TargetUpdatesPerSecond && sd <= TargetSlowdown && sk < TargetSeekSeconds ? 0 : 1;
    }
}
