// Watches one run for the pressure panel (LivePressure), between every two events (or a
// scenario's steps): the kernel's episodes from the trace's vmscan, compaction and oom events
// (mm_vmscan_kswapd_wake to the next wake or _sleep, mm_vmscan_direct_reclaim_begin to _end
// with nr_reclaimed, mm_vmscan_write_folio as swap-out, mm_compaction_try_to_compact_pages
// with mm_compaction_end's status, mark_victim), and their totals as the replay's pressure
// report counts them (PressureReport.KernelTotals); Kmem's from its own counters (kswapd
// wakeups and runs, allocstall, pgsteal_direct, pswpout, compact_stall and _success,
// oom_kill) rising between two events; each managed zone's free pages sampled along the run
// (SampledSeries); and the report's phases, built from the replay's own pressure side (the
// PressureReplay the replayer hands the live observer) whenever a phase ends.
// Cheap until pressure shows: per event, one comparison of the event's kind and one of the
// position; Kmem's counters are read every CheckEvery events until either side has shown
// pressure, then after every event. Replaying thread only (no locks).
using System.Globalization;

namespace Kmem.Live;

/// <summary>The pressure side of one run, watched event by event.</summary>
internal sealed class PressureWatch
{
    private const int CheckEvery = 256;
    private const int EpisodesKept = 10;
    private const string Kernel = "kernel", Kmem = "kmem";
    private const string KswapdRun = "kswapd run", DirectReclaim = "direct reclaim", SwapOut = "swap-out", Compaction = "compaction",
        OomKill = "OOM kill";

    /// <summary>The counts both sides keep, by the pressure report's names.</summary>
    private static readonly string[] s_totals =
    [
        PressureReport.KswapdWakeups, PressureReport.KswapdRuns, PressureReport.DirectReclaims, PressureReport.Reclaimed,
        PressureReport.SwapOut, PressureReport.Compactions, PressureReport.OomKills,
    ];

    private string[]? _zones;
    private SampledSeries _samples = new(0, 1);
    private long[] _free = [];
    private long _nextCheck;
    private bool _seen;
    private bool _trace;
    private PressureReplay? _side;
    private PressureCounters _base, _prev;

    private readonly List<Episode> _kernelEpisodes = [];
    private readonly List<Episode> _kmemEpisodes = [];
    private Episode? _kswapd;
    private readonly Dictionary<int, Episode> _direct = [];
    private readonly Dictionary<int, Episode> _compact = [];
    private readonly List<string> _kmemVictims = [];
    private readonly List<string> _kernelVictims = [];

    // The report's phases passed so far (a trace), or the scenario's own.
    private List<PressurePhase> _phases = [];
    private List<PressureCounter>? _vmstat;
    private bool _final;
    private string _phase = "boot";
    private PressureCounters _phaseStart;
    private long _phaseMinFree = long.MaxValue;
    private long _stepFree;

    /// <summary>After an event of a trace (<paramref name="hasEvent"/>: none before the first), <paramref name="pos"/>
    /// events handled; <paramref name="side"/> is the replay's pressure side (null: the one seen before).</summary>
    public void After(Machine m, PressureReplay? side, long pos, bool hasEvent, in TraceEvent e)
    {
        var r = _side = side ?? _side;
        if (r is null)
        {
            return;
        }
        if (_zones is null)
        {
            _trace = true;
            Init(m, 64);
        }
        if (hasEvent && e.Kind >= TraceEventKind.Marker)
        {
            KernelEvent(r, pos, in e);
        }
        if (_seen || pos >= _nextCheck)
        {
            _nextCheck = pos + CheckEvery;
            _seen |= r.PressureSeen;
            CheckKmem(m, pos, hasEvent ? e.LineNumber : 0, hasEvent ? e.Comm : null, e.Pid, r);
        }
        if (_samples.Due(pos))
        {
            Sample(m);
        }
    }

    /// <summary>After a scenario's step (<paramref name="step"/>: null for the booted machine), <paramref name="pos"/>
    /// steps done.</summary>
    public void Step(Machine m, long pos, string? step)
    {
        if (_zones is null)
        {
            Init(m, 1);
        }
        // The task a step names first ("grower1 wrote 64 pages…"), as the trace names the allocating task.
        string? task = step is null || step.StartsWith("PHASE ", StringComparison.Ordinal) ? null : step.Split(' ', 2)[0];
        // A step that opens a phase tells what it did once done: its work is the new phase's, so the phase before
        // ends where the step before left the machine.
        var before = _prev;
        CheckKmem(m, pos, 0, task, -1, null);
        if (step?.StartsWith("PHASE ", StringComparison.Ordinal) == true)
        {
            string name = step[6..];
            int colon = name.IndexOf(':', StringComparison.Ordinal);
            EndScenarioPhase(colon > 0 ? name[..colon] : name, before);
        }
        _stepFree = FreeNow(m);
        _phaseMinFree = Math.Min(_phaseMinFree, _stepFree);
        if (_samples.Due(pos))
        {
            Sample(m);
        }
    }

    /// <summary>The replay's report at its end: the table becomes the report's.</summary>
    public void Finish(TracePressure? report)
    {
        if (report is null)
        {
            return;
        }
        _phases = [.. report.Phases.Select(p => new PressurePhase(p.Phase, true, p.Kernel, p.Kmem, p.KmemMinFreePages, p.KmemVictims))];
        _vmstat = [.. report.Vmstat.Select(v => new PressureCounter(v.Phase, v.Name, v.Kernel, v.Kmem))];
        _final = true;
    }

    /// <summary>The first look at the machine; <paramref name="every"/>: events (or steps) between two samples at first.</summary>
    private void Init(Machine m, long every)
    {
        _zones = LiveZones.Names(m);
        _samples = new SampledSeries(_zones.Length, every);
        _free = new long[_zones.Length];
        _base = _prev = _phaseStart = PressureCounters.Read(m);
    }

    private long FreeNow(Machine m)
    {
        LiveZones.ReadFree(m, _free);
        return _free.Sum();
    }

    private void Sample(Machine m)
    {
        LiveZones.ReadFree(m, _free);
        _samples.Add(_free);
    }

    // ---------------------------------------------------------------- the kernel's side, from the trace

    private void KernelEvent(PressureReplay r, long pos, in TraceEvent e)
    {
        string text = e.Text ?? "";
        string who = string.Create(CultureInfo.InvariantCulture, $"{e.Comm}-{e.Pid}");
        switch (e.Kind)
        {
            case TraceEventKind.Marker:
                if (text.StartsWith("PHASE ", StringComparison.Ordinal) || text.StartsWith("WORKLOAD_END", StringComparison.Ordinal))
                {
                    TakeReport(r); // the report ended a phase
                }
                return;
            case TraceEventKind.MmVmscanWakeupKswapd: // no episode of its own, but pressure shown
                break;
            case TraceEventKind.MmVmscanKswapdWake:
                _kswapd?.Close();
                _kswapd = Add(_kernelEpisodes, new Episode(Kernel, KswapdRun, pos, e.LineNumber, who) { Open = true });
                break;
            case TraceEventKind.MmVmscanKswapdSleep:
                _kswapd?.Close();
                _kswapd = null;
                break;
            case TraceEventKind.MmVmscanDirectReclaimBegin:
                _direct[e.Pid] = Add(_kernelEpisodes, new Episode(Kernel, DirectReclaim, pos, e.LineNumber, who) { Open = true });
                break;
            case TraceEventKind.MmVmscanDirectReclaimEnd:
                long n = Field(text, "nr_reclaimed=") ?? 0;
                if (_direct.Remove(e.Pid, out var d))
                {
                    d.Reclaimed += n;
                    d.Close();
                }
                break;
            case TraceEventKind.MmVmscanWriteFolio:
                var into = e.Comm.StartsWith("kswapd", StringComparison.Ordinal) ? _kswapd : _direct.GetValueOrDefault(e.Pid);
                if (into is not null)
                {
                    into.Swapped++;
                }
                else
                {
                    SwapOutEpisode(_kernelEpisodes, Kernel, pos, e.LineNumber, who, 1);
                }
                break;
            case TraceEventKind.MmCompactionTryToCompactPages:
                string order = Field(text, "order=") is long o ? string.Create(CultureInfo.InvariantCulture, $" order {o}") : "";
                _compact[e.Pid] = Add(_kernelEpisodes, new Episode(Kernel, Compaction, pos, e.LineNumber, who + order) { Open = true });
                break;
            case TraceEventKind.MmCompactionEnd:
            case TraceEventKind.MmCompactionDeferred:
                if (_compact.TryGetValue(e.Pid, out var c))
                {
                    c.Result = e.Kind == TraceEventKind.MmCompactionDeferred ? "deferred" : Word(text, "status=");
                    c.Close();
                }
                break;
            case TraceEventKind.MarkVictim:
                string victim = string.Create(CultureInfo.InvariantCulture, $"{Field(text, "pid=") ?? e.Pid} ({Word(text, "comm=") ?? e.Comm})");
                _kernelVictims.Add(victim);
                Add(_kernelEpisodes, new Episode(Kernel, OomKill, pos, e.LineNumber, victim));
                break;
            default:
                return;
        }
        _seen = true;
    }

    /// <summary>The report's phases passed so far and their vmstat, taken when a phase ends.</summary>
    private void TakeReport(PressureReplay r)
    {
        var report = r.Report.Build(r);
        _phases = [.. report.Phases.Select(p => new PressurePhase(p.Phase, true, p.Kernel, p.Kmem, p.KmemMinFreePages, p.KmemVictims))];
        _vmstat = report.Vmstat.Count == 0 ? null : [.. report.Vmstat.Select(v => new PressureCounter(v.Phase, v.Name, v.Kernel, v.Kmem))];
    }

    // ---------------------------------------------------------------- Kmem's side, from its counters

    private void CheckKmem(Machine m, long pos, long line, string? comm, int pid, PressureReplay? r)
    {
        var c = PressureCounters.Read(m);
        var p = _prev;
        if (c == p)
        {
            return;
        }
        _prev = c;
        string who = comm is null ? "" : pid < 0 ? comm : string.Create(CultureInfo.InvariantCulture, $"{comm}-{pid}");
        _seen |= c.Wakeups + c.Allocstall + c.CompactStall + c.OomKill > _base.Wakeups + _base.Allocstall + _base.CompactStall + _base.OomKill;
        long swapped = c.Pswpout - p.Pswpout;
        if (c.Allocstall > p.Allocstall)
        {
            Add(_kmemEpisodes, new Episode(Kmem, DirectReclaim, pos, line, who)
            {
                Count = c.Allocstall - p.Allocstall, Reclaimed = c.PgstealDirect - p.PgstealDirect, Swapped = swapped,
            });
            swapped = 0;
        }
        if (c.KswapdRuns > p.KswapdRuns)
        {
            Add(_kmemEpisodes, new Episode(Kmem, KswapdRun, pos, line, who) { Count = c.KswapdRuns - p.KswapdRuns, Swapped = swapped });
            swapped = 0;
        }
        if (swapped > 0)
        {
            SwapOutEpisode(_kmemEpisodes, Kmem, pos, line, who, swapped);
        }
        if (c.CompactStall > p.CompactStall)
        {
            Add(_kmemEpisodes, new Episode(Kmem, Compaction, pos, line, who)
            {
                Count = c.CompactStall - p.CompactStall, Result = c.CompactSuccess > p.CompactSuccess ? "success" : "fail",
            });
        }
        if (c.OomKill > p.OomKill)
        {
            var victims = r is not null ? NewVictims(r) : NewVictims(m, (int)(c.OomKill - p.OomKill));
            _kmemVictims.AddRange(victims);
            Add(_kmemEpisodes, new Episode(Kmem, OomKill, pos, line, string.Join(", ", victims)) { Count = c.OomKill - p.OomKill });
        }
    }

    private List<string> NewVictims(PressureReplay r) =>
        [.. r.KmemVictims.Skip(_kmemVictims.Count).Select(v => string.Create(CultureInfo.InvariantCulture, $"{v.Pid} ({v.Comm})"))];

    /// <summary>A scenario's victims: the last <paramref name="n"/> kills Kmem's OOM killer logged.</summary>
    private static List<string> NewVictims(Machine m, int n)
    {
        const string Killed = "Out of memory: Killed process ";
        var found = new List<string>();
        var lines = m.Log.Lines;
        for (int i = lines.Count - 1; i >= 0 && found.Count < n; i--)
        {
            if (lines[i].StartsWith(Killed, StringComparison.Ordinal))
            {
                string rest = lines[i][Killed.Length..];
                int close = rest.IndexOf(')', StringComparison.Ordinal);
                found.Add(close > 0 ? rest[..(close + 1)] : rest);
            }
        }
        found.Reverse();
        return found;
    }

    private void EndScenarioPhase(string next, PressureCounters end)
    {
        var kmem = KmemCounts(_phaseStart, end);
        if (_phase != "boot" || kmem.Values.Any(v => v != 0))
        {
            kmem[PressureReport.FreePages] = _stepFree;
            _phases.Add(new PressurePhase(_phase, true, new SortedDictionary<string, long>(StringComparer.Ordinal), kmem,
                _phaseMinFree == long.MaxValue ? -1 : _phaseMinFree, []));
        }
        _phase = next;
        _phaseStart = end;
        _phaseMinFree = long.MaxValue;
    }

    private static SortedDictionary<string, long> KmemCounts(PressureCounters b, PressureCounters e) => new(StringComparer.Ordinal)
    {
        [PressureReport.KswapdWakeups] = e.Wakeups - b.Wakeups,
        [PressureReport.KswapdRuns] = e.KswapdRuns - b.KswapdRuns,
        [PressureReport.DirectReclaims] = e.Allocstall - b.Allocstall,
        [PressureReport.Reclaimed] = e.PgstealDirect - b.PgstealDirect,
        [PressureReport.SwapOut] = e.Pswpout - b.Pswpout,
        [PressureReport.Compactions] = e.CompactStall - b.CompactStall,
        [PressureReport.OomKills] = e.OomKill - b.OomKill,
    };

    // ---------------------------------------------------------------- episodes

    private static Episode Add(List<Episode> list, Episode e)
    {
        list.Add(e);
        if (list.Count > EpisodesKept)
        {
            list.RemoveAt(0);
        }
        return e;
    }

    /// <summary>Pages written to swap outside an episode: added to the side's last entry when that is a swap-out
    /// with nothing after it, else a new entry.</summary>
    private static void SwapOutEpisode(List<Episode> list, string side, long pos, long line, string who, long pages)
    {
        if (list.Count > 0 && list[^1] is { Kind: SwapOut } last)
        {
            last.Swapped += pages;
            last.Count++;
            return;
        }
        Add(list, new Episode(side, SwapOut, pos, line, who) { Swapped = pages });
    }

    private sealed class Episode(string side, string kind, long position, long line, string who)
    {
        public string Kind { get; } = kind;
        public long Count = 1, Reclaimed, Swapped;
        public string? Result;
        public bool Open;

        public void Close() => Open = false;

        public PressureEpisode ToRecord() => new(side, Kind, position, line, who, Count, Reclaimed, Swapped, Result, Open);
    }

    // ---------------------------------------------------------------- the view

    /// <summary>The panel's figures now; null until either side has shown pressure (no panel), and for a trace
    /// whose replay failed (<paramref name="replaying"/> false).</summary>
    public LivePressure? View(Machine m, bool replaying, string? chapter)
    {
        var r = _side;
        if (_zones is null || (_trace && (r is null || !replaying)))
        {
            return null;
        }
        if (!_seen)
        {
            _seen = r?.PressureSeen == true;
            if (!_seen)
            {
                return null;
            }
        }
        var now = r is { PressureSeen: true } ? r.Report.Now(r) : null; // as TraceReplayer.PressureNow
        var c = PressureCounters.Read(m);
        var marks = LiveZones.Watermarks(m);
        LiveZones.ReadFree(m, _free);
        var zones = new List<PressureZone>(_zones.Length);
        for (int i = 0; i < _zones.Length; i++)
        {
            var (min, low, high) = i < marks.Length ? marks[i] : default;
            zones.Add(new PressureZone(_zones[i], _free[i], min, low, high, _samples.Samples(i)));
        }
        var phases = new List<PressurePhase>(_phases);
        if (!_final)
        {
            if (now is not null)
            {
                phases.Add(new PressurePhase(now.Phase, false, now.Kernel, now.Kmem, -1, []));
            }
            else if (!_trace)
            {
                phases.Add(new PressurePhase(_phase, false, new SortedDictionary<string, long>(StringComparer.Ordinal), KmemCounts(_phaseStart, c),
                    _phaseMinFree == long.MaxValue ? -1 : _phaseMinFree, []));
            }
        }
        var totals = _side?.Report.KernelTotals;
        var kernel = _trace && totals is not null ? s_totals.ToDictionary(n => n, n => totals.GetValueOrDefault(n), StringComparer.Ordinal) : [];
        return new LivePressure
        {
            Phase = now?.Phase ?? (_trace ? "boot" : chapter ?? _phase),
            Kernel = _trace,
            KswapdAwake = now?.KswapdAwake,
            SampleEvery = _samples.Every,
            Zones = zones,
            KernelTotals = kernel,
            KmemTotals = new Dictionary<string, long>(KmemCounts(_base, c), StringComparer.Ordinal),
            Episodes = [.. _kernelEpisodes.Concat(_kmemEpisodes).Select(e => e.ToRecord()).OrderBy(e => e.Position)],
            Phases = phases,
            Vmstat = _vmstat,
            KernelVictims = [.. _kernelVictims],
            KmemVictims = [.. _kmemVictims],
        };
    }

    // ---------------------------------------------------------------- the trace's fields

    /// <summary>The number after <paramref name="name"/> (e.g. "nr_reclaimed=") in an event's fields, or null.</summary>
    private static long? Field(string text, string name) =>
        Word(text, name) is { } w && long.TryParse(w, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v) ? v : null;

    /// <summary>The word after <paramref name="name"/> in an event's fields, up to a blank, or null.</summary>
    private static string? Word(string text, string name)
    {
        int i = text.IndexOf(name, StringComparison.Ordinal);
        while (i > 0 && text[i - 1] != ' ')
        {
            i = text.IndexOf(name, i + 1, StringComparison.Ordinal); // "order=" is not "alloc_order="
        }
        if (i < 0)
        {
            return null;
        }
        i += name.Length;
        int end = text.IndexOf(' ', i);
        return end < 0 ? text[i..] : text[i..end];
    }
}
