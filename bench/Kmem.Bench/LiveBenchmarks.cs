// The live view (kmem serve) on the bundled capture (.xz, as the command reads it): the update
// rate and the replay's slowdown while playing at full speed, and the time of a seek to a
// marker a million events in. A live session reads the trace once (its markers), keeping its
// text in memory, and its replays read that copy; so the live view's own cost is measured on
// that copy: ReplayKept, a plain replay of the kept text on the machine the live view boots (as
// `kmem replay` runs it), is the baseline of PlayLive, which plays the same kept text in a live
// session from the booted machine to the end with one page subscribed (its queue drained as
// the server's event stream drains it); PlayLive's time over ReplayKept's is the slowdown, its
// updates over its time the update rate. From a cold start: Replay, `kmem replay` of the .xz
// file, and PlayAtOnce, a fresh session whose play is pressed as the page opens, its first run
// following the first reading of the .xz as it goes. SeekToMarker starts from a session whose
// markers are read and seeks to "PHASE parallel" (1,007,151 events in), timing until the
// machine is paused there. Two ways to run them: BenchmarkDotNet (--filter '*LiveBenchmarks*'),
// or the quick measurement (`--live [ROUNDS]`, a few minutes), which runs them in turn in one
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

    /// <summary>The trace read once, its markers and kept text ready: what a session has after its first reading.</summary>
    private LiveSource _kept = null!;

    /// <summary>Updates the page received during the last play, and its time.</summary>
    private long _playUpdates;
    private double _playSeconds;

    /// <summary>The quick measurement prints its own table, not a line per play.</summary>
    private bool _quiet;

    [GlobalSetup]
    public void Setup()
    {
        _trace = ReplayBenchmarks.BundledTrace();
        _kept = Source();
        _kept.KeepText();
        _kept.ScanMarkers(CancellationToken.None);
    }

    private static MachineOptions Boot(SlabAllocator slab, int cpus) =>
        new() { Memory = "512M", Cpus = Math.Max(cpus, 1), Slab = slab, Seed = 1 };

    private LiveSource Source() => new(_trace, Boot);

    /// <summary>Boot, then replay every event of the .xz trace, as `kmem replay` does.</summary>
    [Benchmark]
    public long Replay()
    {
        var names = TraceCacheNames.Scan(_trace, TraceCacheNames.ScanOptions); // kmem replay's first pass
        using var reader = TraceReader.Open(_trace);
        using var m = TraceReplayer.Boot(Boot(SlabAllocator.Slub, reader.Cpus));
        return new TraceReplayer(m, new TraceReplayOptions { CacheNames = names }).Replay(reader).Events;
    }

    /// <summary>Boot, then replay every event of the kept text: PlayLive's baseline.</summary>
    [Benchmark(Baseline = true)]
    public long ReplayKept()
    {
        TraceCacheNames names;
        using (var scan = _kept.Open(TraceCacheNames.ScanOptions))
        {
            names = TraceCacheNames.Scan(scan); // as a session's first replay reads them
        }
        using var reader = _kept.Open();
        using var m = TraceReplayer.Boot(Boot(SlabAllocator.Slub, reader.Cpus));
        return new TraceReplayer(m, new TraceReplayOptions { CacheNames = names }).Replay(reader).Events;
    }

    [IterationSetup(Target = nameof(PlayLive))]
    public void StartSession() => StartSession(_kept);

    [IterationSetup(Target = nameof(PlayAtOnce))]
    public void StartSessionAtOnce() => StartSession(Source());

    private void StartSession(LiveSource source)
    {
        _session = new LiveSession(source, SlabAllocator.Slub, updatesPerSecond: 20);
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

    /// <summary>Play the whole kept text at full speed with a page watching.</summary>
    [Benchmark]
    public long PlayLive() => Play();

    /// <summary>A fresh session on the .xz file, play pressed at once: its run follows the first reading.</summary>
    [Benchmark]
    public long PlayAtOnce() => Play();

    private long Play()
    {
        var run = _session!.Run!;
        long before = Interlocked.Read(ref _updates);
        _clock = Stopwatch.StartNew();
        _session.Control("play", k => k == "speed" ? "0" : null);
        WaitFor(() => run.Ended);
        _clock.Stop();
        _playUpdates = Interlocked.Read(ref _updates) - before;
        _playSeconds = _clock.Elapsed.TotalSeconds;
        if (!_quiet)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"// live: {_playUpdates} updates in {_playSeconds:F2} s = {_playUpdates / _playSeconds:F1} updates/s while playing {run.Position:N0} events"));
        }
        return run.Position;
    }

    [IterationSetup(Target = nameof(SeekToMarker))]
    public void StartSessionWithMarkers()
    {
        _session = new LiveSession(_kept, SlabAllocator.Slub, updatesPerSecond: 20);
        _session.Start();
        WaitFor(() => _session.Published > 0);
    }

    private int MarkerIndex() =>
        _session!.Markers!.Select((m, i) => (m.Text, i)).First(m => m.Text == Marker).i;

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

    [IterationCleanup(Targets = [nameof(PlayLive), nameof(PlayAtOnce), nameof(SeekToMarker)])]
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

    /// <summary>Runs <paramref name="play"/> in a fresh session (set up by <paramref name="setup"/>): seconds and
    /// updates a second.</summary>
    private (double Seconds, double Rate) Timed(Action setup, Func<long> play)
    {
        setup();
        play();
        StopSession();
        return (_playSeconds, _playUpdates / _playSeconds);
    }

    private static double Seconds(Func<long> f)
    {
        var clock = Stopwatch.StartNew();
        f();
        return clock.Elapsed.TotalSeconds;
    }

    private static double Median(IEnumerable<double> v)
    {
        var s = v.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[(s.Count / 2) - 1] + s[s.Count / 2]) / 2;
    }

    /// <summary>The quick measurement: <paramref name="rounds"/> rounds of ReplayKept, PlayLive, Replay, PlayAtOnce
    /// and SeekToMarker in turn; writes the medians as a markdown table and returns 0 when every target is met, else 1.</summary>
    public static int Quick(int rounds, TextWriter output)
    {
        var b = new LiveBenchmarks { _quiet = true };
        b.Setup();
        b.ReplayKept(); // warm: the first replay of the process pays for compiling it
        var rows = new List<(double Kept, double Live, double LiveRate, double Xz, double Once, double OnceRate, double Seek)>();
        long seekEvents = 0;
        for (int round = 0; round < rounds; round++)
        {
            double kept = Seconds(b.ReplayKept);
            var live = b.Timed(b.StartSession, b.PlayLive);
            double xz = Seconds(b.Replay);
            var once = b.Timed(b.StartSessionAtOnce, b.PlayAtOnce);
            b.StartSessionWithMarkers();
            double seek = Seconds(() => seekEvents = b.SeekToMarker());
            b.StopSession();
            rows.Add((kept, live.Seconds, live.Rate, xz, once.Seconds, once.Rate, seek));
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"// round {round + 1}: kept {kept:F2} s, live {live.Seconds:F2} s ({live.Rate:F1} updates/s); xz {xz:F2} s, at once {once.Seconds:F2} s ({once.Rate:F1} updates/s); seek {seek:F2} s"));
        }
        double rate = Median(rows.Select(r => r.LiveRate)), slowdown = Median(rows.Select(r => r.Live / r.Kept)), seekS = Median(rows.Select(r => r.Seek));
        double onceRate = Median(rows.Select(r => r.OnceRate)), onceRatio = Median(rows.Select(r => r.Once / r.Xz));
        static string Met(bool ok) => ok ? "yes" : "no";
        var c = CultureInfo.InvariantCulture;
        output.WriteLine("| measure | median | target | met |");
        output.WriteLine("|---|---:|---:|:---:|");
        output.WriteLine(string.Create(c, $"| plain replay of the kept text (as a session keeps it), `kmem replay`'s work | {Median(rows.Select(r => r.Kept)):F2} s | | |"));
        output.WriteLine(string.Create(c, $"| live replay of the same at full speed, one page watching | {Median(rows.Select(r => r.Live)):F2} s | | |"));
        output.WriteLine(string.Create(c, $"| updates a second while playing at full speed | {rate:F1} | ≥ {TargetUpdatesPerSecond} | {Met(rate >= TargetUpdatesPerSecond)} |"));
        output.WriteLine(string.Create(c, $"| replay slowed by the live view (live / plain, per round) | {slowdown:F2}× | ≤ {TargetSlowdown}× | {Met(slowdown <= TargetSlowdown)} |"));
        output.WriteLine(string.Create(c, $"| cold start: `kmem replay` of the .xz file | {Median(rows.Select(r => r.Xz)):F2} s | | |"));
        output.WriteLine(string.Create(c, $"| cold start: a fresh session, play pressed at once (follows the first reading of the .xz) | {Median(rows.Select(r => r.Once)):F2} s | | |"));
        output.WriteLine(string.Create(c, $"| cold start: updates a second, and time over `kmem replay`'s | {onceRate:F1}, {onceRatio:F2}× | ≥ {TargetUpdatesPerSecond}, ≤ {TargetSlowdown}× | {Met(onceRate >= TargetUpdatesPerSecond && onceRatio <= TargetSlowdown)} |"));
        output.WriteLine(string.Create(c, $"| seek to \"{Marker}\" ({seekEvents:N0} events in), until paused there | {seekS:F2} s | < {TargetSeekSeconds} s | {Met(seekS < TargetSeekSeconds)} |"));
        return rate >= TargetUpdatesPerSecond && slowdown <= TargetSlowdown && seekS < TargetSeekSeconds
            && onceRate >= TargetUpdatesPerSecond && onceRatio <= TargetSlowdown ? 0 : 1;
    }
}
