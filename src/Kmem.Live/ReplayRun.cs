// One replay of the session's trace on one machine (one slab allocator), on a thread of its
// own. The replayer calls BeforeEvent on that thread between every two events; there the
// run decides whether to publish what the machine looks like (at most every publish
// interval while playing, always when it stops) and whether to wait (paused, a step done,
// a seek reached, or ahead of the playing speed). Stopping wakes the thread, which ends the
// replay by throwing out of the callback and disposes the machine. What the page asks of the
// machine (a frame under the pointer, a cache's slabs) is queued and answered on the
// replaying thread at the next boundary, or at once while it waits, so it reads a machine
// between two events and never one in the middle of an event. A PressureWatch follows the
// run event by event (or step by step) for the pressure panel, and a CounterHistory samples
// the charted counters along it.
// Locking: _gate guards the controls (target, playing, speed, stop) and the queued questions,
// and is what the thread waits on; the frame keys and the update are built on the replaying
// thread only, while the machine is between two events.
using System.Diagnostics;

namespace Kmem.Live;

/// <summary>A replay on its own thread, paused and resumed by the session.</summary>
internal sealed class ReplayRun : ILiveReplayObserver, IDisposable
{
    private sealed class StopException : Exception;

    private readonly LiveSource _source;
    private readonly Action<ReplayRun, Machine, TraceReplayer?, long, bool> _publish;
    private readonly object _gate = new();
    private readonly Queue<Action<Machine?>> _asks = new();
    private readonly Thread _thread;
    private readonly long _publishTicks;

    // Controls, under _gate.
    private long _target;
    private bool _playing;
    private long _speed;
    private bool _stop;
    private bool _seeking;
    private bool _done;
    private long _originPos;
    private long _originTicks;

    // Replaying thread only.
    private long _nextPublish;
    private TraceEvent _last;
    private bool _hasLast;
    private string? _step;
    private IReadOnlyDictionary<string, TraceDecision>? _decisionsBefore;
    private long _decisionsBeforePos = -1;
    private long _position;
    private readonly PressureWatch _pressure = new();
    private CounterHistory? _counters;

    public ReplayRun(int id, LiveSource source, SlabAllocator slab, long target, bool seeking, double updatesPerSecond,
        Action<ReplayRun, Machine, TraceReplayer?, long, bool> publish)
    {
        Id = id;
        Slab = slab;
        _source = source;
        _publish = publish;
        _target = target;
        _seeking = seeking;
        FromKept = source.Kept;
        _publishTicks = (long)(Stopwatch.Frequency / updatesPerSecond);
        _thread = new Thread(Main) { IsBackground = true, Name = "kmem live replay " + id };
    }

    public int Id { get; }
    public SlabAllocator Slab { get; }

    /// <summary>Events handled so far (as last seen by the replaying thread).</summary>
    public long Position => Interlocked.Read(ref _position);
    public bool Ended { get; private set; }

    /// <summary>Whether the run is paused where it was told to stop (or at the end): what it publishes then is a
    /// moment to compare. Replaying thread only.</summary>
    public bool Resting { get; private set; }

    /// <summary>A scenario's chapter (its last PHASE step); null for a trace, whose chapters are its markers.</summary>
    public string? Chapter { get; private set; }

    /// <summary>Whether the run reads the trace's text kept in memory rather than the file.</summary>
    public bool FromKept { get; }
    public string? Error { get; private set; }

    public bool Playing
    {
        get
        {
            lock (_gate)
            {
                return _playing;
            }
        }
    }

    public bool Seeking
    {
        get
        {
            lock (_gate)
            {
                return _seeking;
            }
        }
    }

    public long Speed
    {
        get
        {
            lock (_gate)
            {
                return _speed;
            }
        }
    }

    /// <summary>The event handled last, described; null before the first. Replaying thread only.</summary>
    public string? LastEvent => _step ?? (_hasLast ? LiveSource.Describe(in _last) : null);

    /// <summary>The decisions of every kind so far, and what the last event did to them when the run stopped right
    /// after it (a step). Replaying thread only.</summary>
    public List<LiveDecision> Decisions(TraceReplayer? r, long position)
    {
        if (r is null)
        {
            return [];
        }
        var now = r.DecisionsSoFar;
        var before = _decisionsBeforePos == position - 1 ? _decisionsBefore : null; // only right after one event
        return [.. now.Select(kv =>
        {
            TraceDecision? b = before is not null && before.TryGetValue(kv.Key, out var x) ? x : null;
            var v = kv.Value;
            return b is null ? new LiveDecision(kv.Key, v.Compared, v.Matched, 0, 0, 0, 0)
                : new LiveDecision(kv.Key, v.Compared, v.Matched, v.Compared - b.Compared, v.Matched - b.Matched,
                    v.KernelYes - b.KernelYes, v.KmemYes - b.KmemYes);
        })];
    }

    /// <summary>The pressure panel's figures now; null until either side has shown pressure. Replaying thread only.</summary>
    public LivePressure? Pressure(Machine m, TraceReplayer? r) => _pressure.View(m, r is not null, Chapter);

    /// <summary>The charted counters sampled so far. Replaying thread only.</summary>
    public LiveCounterSamples? CounterSamples => _counters?.View();

    public void Start() => _thread.Start();

    /// <summary>Plays at <paramref name="speed"/> events a second (0: as fast as the machine goes).</summary>
    public void Play(long speed)
    {
        lock (_gate)
        {
            _playing = true;
            _seeking = false;
            _speed = speed;
            _originPos = Position;
            _originTicks = Stopwatch.GetTimestamp();
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Changes the playing speed without stopping.</summary>
    public void SetSpeed(long speed)
    {
        lock (_gate)
        {
            _speed = speed;
            _originPos = Position;
            _originTicks = Stopwatch.GetTimestamp();
        }
    }

    /// <summary>Stops at the next event boundary.</summary>
    public void Pause()
    {
        lock (_gate)
        {
            _playing = false;
            _target = 0;
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Runs to position <paramref name="target"/> (events handled) and stops there; with
    /// <paramref name="seeking"/> nothing is published on the way.</summary>
    public void RunTo(long target, bool seeking)
    {
        lock (_gate)
        {
            _playing = false;
            _target = target;
            _seeking = seeking;
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Reads the machine between two events, on the replaying thread; null when the run is over (stopped or
    /// failed) or <paramref name="read"/> says so.</summary>
    public Task<T?> AskAsync<T>(Func<Machine, T?> read)
        where T : class
    {
        var answer = new TaskCompletionSource<T?>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            if (_done || _stop)
            {
                answer.SetResult(null);
                return answer.Task;
            }
            _asks.Enqueue(m =>
            {
                try
                {
                    answer.SetResult(m is null ? null : read(m));
                }
                catch (Exception e)
                {
                    answer.SetException(e);
                }
            });
            Monitor.PulseAll(_gate);
        }
        return answer.Task;
    }

    /// <summary>Answers the queued questions; under _gate, on the replaying thread (null: the machine is gone).</summary>
    private void AnswerLocked(Machine? m)
    {
        while (_asks.TryDequeue(out var ask))
        {
            ask(m);
        }
    }

    private void Main()
    {
        Machine? m = null;
        try
        {
            TraceReplayer? r = null;
            if (_source.Scenario is { } scenario)
            {
                m = Machine.Boot(scenario.Options(Slab, _source.Boot(Slab, 0).Seed ?? 1));
                Play(scenario, m);
            }
            else
            {
                using var reader = _source.Open();
                m = TraceReplayer.Boot(_source.Boot(Slab, reader.Cpus));
                r = new TraceReplayer(m, new TraceReplayOptions { ReservedFrames = _source.ReservedFrames, RingBufferBytes = _source.RingBufferBytes, CacheNames = _source.CacheNames })
                {
                    LiveObserver = this,
                };
                var result = r.Replay(reader);
                Interlocked.Exchange(ref _position, reader.Events);
                _pressure.After(m, null, reader.Events, _hasLast, in _last);
                _counters?.After(m, reader.Events);
                _pressure.Finish(result.Pressure);
            }
            _hasLast = false;
            _step = null;
            Ended = true;
            Resting = true;
            lock (_gate)
            {
                _playing = false;
                _seeking = false;
            }
            _publish(this, m, r, Position, false);
            lock (_gate)
            {
                while (!_stop)
                {
                    AnswerLocked(m);
                    Monitor.Wait(_gate);
                }
            }
        }
        catch (StopException)
        {
        }
        catch (Exception e)
        {
            // Bad input (a malformed line, an unreadable trace, a machine the options cannot boot) or a fault of the
            // replay: the page shows it; a thread's exception must not end the server.
            Error = e.Message;
            if (m is not null)
            {
                _publish(this, m, null, Position, false);
            }
        }
        finally
        {
            lock (_gate)
            {
                _done = true;
                AnswerLocked(null);
            }
            m?.Dispose();
        }
    }

    /// <summary>A scenario's steps, each one an event: the same boundary between two steps as between two events.</summary>
    private void Play(LiveScenario scenario, Machine m)
    {
        using var cpu = m.OnCpu(0);
        long pos = 0;
        _counters = new CounterHistory(1);
        _pressure.Step(m, pos, null);
        _counters.After(m, pos);
        Boundary(m, null, pos);
        foreach (string step in scenario.Steps(m))
        {
            pos++;
            _step = step;
            if (step.StartsWith("PHASE ", StringComparison.Ordinal))
            {
                Chapter = step[6..];
            }
            _pressure.Step(m, pos, step);
            _counters.After(m, pos);
            Boundary(m, null, pos);
        }
        Interlocked.Exchange(ref _position, pos);
    }

    void ILiveReplayObserver.BeforeEvent(TraceReplayer r, PressureReplay pressure, in TraceEvent e)
    {
        _pressure.After(r.Machine, pressure, r.Events - 1, _hasLast, in _last); // the event before this one is handled
        (_counters ??= new CounterHistory(256)).After(r.Machine, r.Events - 1);
        Boundary(r.Machine, r, r.Events - 1);
        _last = e;
        _hasLast = true;
    }

    /// <summary>Between two events (or steps), <paramref name="pos"/> of them handled: publish, wait, or go on.</summary>
    private void Boundary(Machine m, TraceReplayer? r, long pos)
    {
        Interlocked.Exchange(ref _position, pos);
        bool wait;
        bool seeking;
        bool playing;
        long target;
        lock (_gate)
        {
            if (_stop)
            {
                throw new StopException();
            }
            target = _target;
            seeking = _seeking;
            playing = _playing;
            wait = !playing && pos >= target;
            AnswerLocked(m);
        }
        if (wait)
        {
            (target, playing) = Stop(m, r, pos);
        }
        else if (playing)
        {
            Pace(m, r, pos);
        }
        else if (!seeking && Stopwatch.GetTimestamp() >= _nextPublish)
        {
            Publish(m, r, pos);
        }
        if (pos + 1 == target && !playing && r is not null)
        {
            // The step's last event is next (told now, or after a pause here): what it decides is the difference.
            _decisionsBefore = r.DecisionsSoFar;
            _decisionsBeforePos = pos;
        }
    }

    private void Publish(Machine m, TraceReplayer? r, long pos)
    {
        _publish(this, m, r, pos, false);
        _nextPublish = Stopwatch.GetTimestamp() + _publishTicks;
    }

    /// <summary>Paused here: publish the moment (whole after a seek), then wait for the next command; returns the
    /// target and whether playing, as that command left them.</summary>
    private (long Target, bool Playing) Stop(Machine m, TraceReplayer? r, long pos)
    {
        bool full;
        lock (_gate)
        {
            full = _seeking;
            _seeking = false;
        }
        Resting = true;
        _publish(this, m, r, pos, full);
        _nextPublish = Stopwatch.GetTimestamp() + _publishTicks;
        lock (_gate)
        {
            while (!_stop && !_playing && pos >= _target)
            {
                AnswerLocked(m);
                Monitor.Wait(_gate);
            }
            Resting = false;
            if (_stop)
            {
                throw new StopException();
            }
            return (_target, _playing);
        }
    }

    /// <summary>Playing: publish when due; at a limited speed, wait until the clock allows the next event.</summary>
    private void Pace(Machine m, TraceReplayer? r, long pos)
    {
        if (Stopwatch.GetTimestamp() >= _nextPublish)
        {
            Publish(m, r, pos);
        }
        while (true)
        {
            long speed, originPos, originTicks;
            lock (_gate)
            {
                if (_stop)
                {
                    throw new StopException();
                }
                if (!_playing)
                {
                    return; // paused meanwhile: the next boundary stops
                }
                speed = _speed;
                originPos = _originPos;
                originTicks = _originTicks;
            }
            if (speed <= 0)
            {
                return;
            }
            long allowed = originPos + (long)((Stopwatch.GetTimestamp() - originTicks) * (double)speed / Stopwatch.Frequency);
            if (pos < allowed)
            {
                return;
            }
            long due = originTicks + (long)((pos + 1 - originPos) * (double)Stopwatch.Frequency / speed);
            long wait = Math.Min(due, _nextPublish) - Stopwatch.GetTimestamp();
            if (wait > 0)
            {
                lock (_gate)
                {
                    Monitor.Wait(_gate, TimeSpan.FromSeconds(Math.Min(0.05, (double)wait / Stopwatch.Frequency)));
                }
            }
            if (Stopwatch.GetTimestamp() >= _nextPublish)
            {
                Publish(m, r, pos);
            }
        }
    }

    /// <summary>Ends the replay and releases the machine; returns once the thread has.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _stop = true;
            Monitor.PulseAll(_gate);
        }
        if (_thread.IsAlive && Thread.CurrentThread != _thread)
        {
            _thread.Join();
        }
    }
}
