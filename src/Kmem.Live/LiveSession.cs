// A live session: the trace, the run that replays it now (one machine, one slab allocator,
// on its own thread), the page's controls, and the updates sent to the pages watching.
// The run publishes on its thread; the session turns what it publishes into an update
// (frames diffed against the run's previous update, /proc figures parsed) and hands the
// JSON to every subscriber's queue. A restart, a seek backwards or a backend switch starts a
// new run, whose first update is whole; the old run is stopped and its machine released.
// Side by side: with compare on, the session also keeps one run of each other slab allocator
// and, each time the main run comes to rest (paused, a step or a seek done, the end), sends
// them to the same event; each publishes once it is there, whole (its map, slabinfo or
// slobinfo, buddy lists), as a side update the page draws beside the main one. While the
// main run plays they wait where they are, so the page compares moments, never a blur.
// Locking: _lock guards the current run, the other runs, the latest updates and the
// subscribers; a run is never disposed under it (its thread may be waiting for _lock to
// publish).
using System.Threading.Channels;

namespace Kmem.Live;

/// <summary>A live replay session and the pages watching it.</summary>
internal sealed class LiveSession : IDisposable
{
    /// <summary>The speeds the page offers: events per second, 0 for as fast as the machine goes.</summary>
    public const long FullSpeed = 0;

    /// <summary>A seek forwards further than this many events replays from the kept text on a fresh machine.</summary>
    private const long ReplayFromMemory = 200_000;

    private readonly LiveSource _source;
    private readonly double _updatesPerSecond;
    private readonly Lock _lock = new();
    private readonly List<Subscriber> _subscribers = [];
    private readonly CancellationTokenSource _scan = new();
    private ReplayRun? _run;
    private int _runs;
    private long _seq;
    private byte[]? _keys;
    private int _keysRun;
    private LiveUpdate? _latest;
    private bool _disposed;
    private bool _compare;
    private readonly Dictionary<SlabAllocator, ReplayRun> _others = [];
    private readonly Dictionary<SlabAllocator, string> _othersLatest = [];

    /// <summary>The slab allocators, in the order the page shows them.</summary>
    private static readonly SlabAllocator[] s_backends = [SlabAllocator.Slub, SlabAllocator.Slab, SlabAllocator.Slob];

    public LiveSession(LiveSource source, SlabAllocator slab, double updatesPerSecond)
    {
        _source = source;
        _updatesPerSecond = updatesPerSecond;
        InitialSlab = slab;
    }

    public SlabAllocator InitialSlab { get; }

    /// <summary>The trace's markers, null until they are read.</summary>
    public IReadOnlyList<LiveMarker>? Markers => _source.Markers;

    /// <summary>Updates published so far (whole or delta).</summary>
    public long Published => Interlocked.Read(ref _seq);

    /// <summary>The run replaying now.</summary>
    public ReplayRun? Run
    {
        get
        {
            lock (_lock)
            {
                return _run;
            }
        }
    }

    /// <summary>Starts reading the markers (unless the source has read them already) and the first run, paused on the
    /// booted machine.</summary>
    public void Start()
    {
        var token = _scan.Token;
        if (_source.Scenario is null && _source.Markers is null)
        {
            _source.KeepText(); // the first run follows the reading rather than decoding the trace a second time
        }
        _ = _source.Markers is not null ? Task.CompletedTask : Task.Run(() =>
        {
            try
            {
                if (_source.Scenario is not null)
                {
                    _source.ScanScenario(InitialSlab, token);
                }
                else
                {
                    _source.ScanMarkers(token);
                }
                Republish();
            }
            catch (OperationCanceledException)
            {
            }
            catch (Exception e) when (e is TraceFormatException or IOException)
            {
                // The run reports a bad trace itself; without markers the page offers no chapters.
            }
        }, token);
        Replace(InitialSlab, 0, seeking: false);
    }

    /// <summary>The latest update, whole (every frame), as JSON; null before the first.</summary>
    public string? FullJson()
    {
        lock (_lock)
        {
            return FullLocked()?.ToJson();
        }
    }

    private LiveUpdate? FullLocked() =>
        _latest is null || _keys is null ? null : _latest with { Full = true, Runs = null, Frames = Convert.ToBase64String(_keys) };

    /// <summary>A page watching: it gets the latest update whole, then every update.</summary>
    public Subscriber Subscribe()
    {
        var s = new Subscriber();
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (FullLocked() is { } full)
            {
                s.Queue.Writer.TryWrite(full.ToJson());
            }
            foreach (string side in _othersLatest.Values)
            {
                s.Queue.Writer.TryWrite(side);
            }
            _subscribers.Add(s);
        }
        return s;
    }

    public void Unsubscribe(Subscriber s)
    {
        lock (_lock)
        {
            _subscribers.Remove(s);
        }
        s.Queue.Writer.TryComplete();
    }

    /// <summary>A command of the page. Returns null when done, or why it was refused (a 400).</summary>
    public string? Control(string command, Func<string, string?> arg)
    {
        ReplayRun? run = Run;
        if (run is null)
        {
            return "the session is stopping";
        }
        switch (command)
        {
            case "play":
                if (!TryNumber(arg("speed"), 0, 0, long.MaxValue, out long speed))
                {
                    return "play: speed must be a whole number of events per second, 0 for full speed";
                }
                run.Play(speed);
                return null;
            case "pause":
                run.Pause();
                return null;
            case "speed":
                if (!TryNumber(arg("value"), null, 0, long.MaxValue, out long v))
                {
                    return "speed: value must be a whole number of events per second, 0 for full speed";
                }
                run.SetSpeed(v);
                return null;
            case "step":
                if (!TryNumber(arg("n"), 1, 1, 1_000_000_000, out long n))
                {
                    return "step: n must be a whole number from 1 to 1000000000";
                }
                run.RunTo(run.Position + n, seeking: n > 1);
                return null;
            case "seek":
                return Seek(run, arg("marker"), arg("position"));
            case "restart":
                Replace(run.Slab, 0, seeking: false);
                return null;
            case "backend":
                if (ParseSlab(arg("name")) is not { } slab)
                {
                    return "backend: name must be slub, slab or slob";
                }
                Replace(slab, run.Position, seeking: true);
                return null;
            case "compare":
                string? on = arg("on");
                if (on is not ("1" or "0"))
                {
                    return "compare: on must be 1 (the other slab allocators side by side) or 0";
                }
                Compare(on == "1");
                return null;
            default:
                return $"unknown command \"{command}\"; the commands are play, pause, speed, step, seek, restart, backend, compare";
        }
    }

    private string? Seek(ReplayRun run, string? marker, string? position)
    {
        long target;
        if (marker is not null)
        {
            var markers = _source.Markers;
            if (markers is null)
            {
                return "seek: the trace's markers are still being read";
            }
            if (!TryNumber(marker, null, 0, markers.Count - 1, out long i))
            {
                return $"seek: marker must be an index from 0 to {markers.Count - 1}";
            }
            target = markers[(int)i].Position;
        }
        else if (!TryNumber(position, null, 0, long.MaxValue, out target))
        {
            return "seek: give marker=INDEX or position=EVENTS";
        }
        // Forwards on the same machine, unless the run decodes the compressed file and the kept text is there: then a
        // fresh machine replaying from memory gets there sooner, once the distance is more than a little.
        bool fresh = !run.FromKept && _source.Kept && target - run.Position > ReplayFromMemory;
        if (target >= run.Position && !run.Ended && !fresh)
        {
            run.RunTo(target, seeking: target > run.Position);
        }
        else
        {
            Replace(run.Slab, target, seeking: target > 0);
        }
        return null;
    }

    public static SlabAllocator? ParseSlab(string? name) => name switch
    {
        "slub" => SlabAllocator.Slub,
        "slab" => SlabAllocator.Slab,
        "slob" => SlabAllocator.Slob,
        _ => null,
    };

    public static string SlabName(SlabAllocator s) => s switch
    {
        SlabAllocator.Slab => "slab",
        SlabAllocator.Slob => "slob",
        _ => "slub",
    };

    private static bool TryNumber(string? s, long? absent, long min, long max, out long value)
    {
        if (s is null)
        {
            value = absent ?? 0;
            return absent is not null;
        }
        return long.TryParse(s, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out value)
            && value >= min && value <= max;
    }

    /// <summary>Starts a new run of <paramref name="slab"/> that runs to <paramref name="target"/> and stops; the
    /// old run is stopped and its machine released.</summary>
    private void Replace(SlabAllocator slab, long target, bool seeking)
    {
        ReplayRun? old;
        ReplayRun run;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            old = _run;
            run = new ReplayRun(++_runs, _source, slab, target, seeking, _updatesPerSecond, Publish);
            _run = run;
        }
        old?.Dispose();
        run.Start();
    }

    /// <summary>Sends the latest update again with the trace's markers and length, once they are read: a page
    /// paused on the booted machine gets its chapters without waiting for the next move.</summary>
    private void Republish()
    {
        lock (_lock)
        {
            if (_latest is null || _disposed)
            {
                return;
            }
            _latest = _latest with
            {
                Seq = Interlocked.Increment(ref _seq),
                Markers = _source.Markers is { } m ? [.. m] : null,
                Total = _source.Total,
            };
            Broadcast(_latest with { Runs = [], Zones = null, Legend = null });
        }
    }

    /// <summary>Called by a run on its thread, the machine between two events: builds and sends an update.</summary>
    private void Publish(ReplayRun run, Machine m, TraceReplayer? r, long position, bool full)
    {
        byte[] keys = FrameScan.ClassifyAll(m);
        var update = LiveSnapshot.Build(run, m, r, position, _source);
        lock (_lock)
        {
            if (run != _run || _disposed)
            {
                return; // a run being replaced
            }
            if (update.Markers is null && _source.Markers is { } markers)
            {
                // The markers came between building this update and now, and Republish found no update to send again.
                update = update with { Markers = [.. markers], Total = _source.Total };
            }
            bool whole = full || _keys is null || _keysRun != run.Id || _keys.Length != keys.Length;
            int[]? runs = whole ? null : LiveSnapshot.Diff(_keys!, keys);
            _keys = keys;
            _keysRun = run.Id;
            _latest = update with { Seq = Interlocked.Increment(ref _seq), Compare = _compare };
            LiveUpdate sent = whole ? FullLocked()! : _latest with { Runs = runs, Zones = null, Legend = null };
            Broadcast(sent);
        }
        if (run.Resting)
        {
            Follow(run, position);
        }
    }

    /// <summary>Turns the side-by-side view on (runs of the other slab allocators, sent to where the main run
    /// rests) or off (those runs stopped, their machines released).</summary>
    private void Compare(bool on)
    {
        List<ReplayRun> stopped;
        ReplayRun? main;
        lock (_lock)
        {
            _compare = on;
            main = _run;
            stopped = on ? [] : [.. _others.Values];
            if (!on)
            {
                _others.Clear();
                _othersLatest.Clear();
            }
            if (_latest is not null)
            {
                _latest = _latest with { Seq = Interlocked.Increment(ref _seq), Compare = on };
                Broadcast(_latest with { Runs = [], Zones = null, Legend = null });
            }
        }
        foreach (var r in stopped)
        {
            r.Dispose();
        }
        if (on && main is not null)
        {
            Follow(main, main.Position);
        }
    }

    /// <summary>With compare on, sends a run of every other slab allocator to <paramref name="position"/>, where
    /// <paramref name="main"/> rests: one behind it goes on, one ahead or ended starts again; the main run's own
    /// allocator has none.</summary>
    private void Follow(ReplayRun main, long position)
    {
        var stopped = new List<ReplayRun>();
        var started = new List<ReplayRun>();
        lock (_lock)
        {
            if (!_compare || main != _run || _disposed)
            {
                return;
            }
            foreach (var slab in s_backends)
            {
                _others.TryGetValue(slab, out var other);
                if (slab == main.Slab || (other is not null && (other.Position > position || other.Ended)))
                {
                    if (other is not null)
                    {
                        stopped.Add(other);
                        _others.Remove(slab);
                    }
                    _othersLatest.Remove(slab);
                }
                if (slab == main.Slab)
                {
                    continue;
                }
                if (_others.TryGetValue(slab, out other))
                {
                    other.RunTo(position, seeking: true);
                }
                else
                {
                    other = new ReplayRun(++_runs, _source, slab, position, seeking: position > 0, _updatesPerSecond, PublishSide);
                    _others[slab] = other;
                    started.Add(other);
                }
            }
        }
        foreach (var r in stopped)
        {
            r.Dispose();
        }
        foreach (var r in started)
        {
            r.Start();
        }
    }

    /// <summary>Called by a run of another slab allocator on its thread: once it rests, sends it whole as a side update.</summary>
    private void PublishSide(ReplayRun run, Machine m, TraceReplayer? r, long position, bool full)
    {
        if (!run.Resting)
        {
            return; // on its way to the moment compared
        }
        string keys = Convert.ToBase64String(FrameScan.ClassifyAll(m));
        var update = LiveSnapshot.Build(run, m, r, position, _source) with { Side = true, Full = true, Frames = keys };
        string json = update.ToJson();
        lock (_lock)
        {
            if (!_others.TryGetValue(run.Slab, out var current) || current != run || _disposed)
            {
                return;
            }
            _othersLatest[run.Slab] = json;
            foreach (var s in _subscribers)
            {
                s.Queue.Writer.TryWrite(json);
            }
        }
    }

    /// <summary>The side updates (the other slab allocators at the main run's moment) as a JSON array.</summary>
    public string CompareJson()
    {
        lock (_lock)
        {
            return "[" + string.Join(',', s_backends.Where(_othersLatest.ContainsKey).Select(b => _othersLatest[b])) + "]";
        }
    }

    /// <summary>The run of <paramref name="slab"/> beside the main one, if any.</summary>
    public ReplayRun? Other(SlabAllocator slab)
    {
        lock (_lock)
        {
            return _others.GetValueOrDefault(slab);
        }
    }

    /// <summary>Queues <paramref name="sent"/> for every page; under _lock.</summary>
    private void Broadcast(LiveUpdate sent)
    {
        string json = sent.ToJson();
        string? fullJson = null;
        foreach (var s in _subscribers)
        {
            if (s.NeedsFull)
            {
                fullJson ??= FullLocked()!.ToJson();
                s.NeedsFull = !s.Queue.Writer.TryWrite(fullJson);
            }
            else if (!s.Queue.Writer.TryWrite(json))
            {
                s.NeedsFull = true; // a page too slow to keep up gets the whole map once it has room again
            }
        }
    }

    public void Dispose()
    {
        ReplayRun? run;
        List<ReplayRun> others;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            run = _run;
            _run = null;
            others = [.. _others.Values];
            _others.Clear();
            foreach (var s in _subscribers)
            {
                s.Queue.Writer.TryComplete();
            }
            _subscribers.Clear();
        }
        _scan.Cancel();
        run?.Dispose();
        foreach (var r in others)
        {
            r.Dispose();
        }
        _scan.Dispose();
    }

    /// <summary>A page's queue of updates (JSON), bounded: a page that falls behind is sent the whole map.</summary>
    internal sealed class Subscriber
    {
        public Channel<string> Queue { get; } = Channel.CreateBounded<string>(new BoundedChannelOptions(64)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = true,
        });

        public bool NeedsFull { get; set; }
    }
}
