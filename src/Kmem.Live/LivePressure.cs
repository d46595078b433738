// What the pressure panel shows (mm/vmscan.c, mm/compaction.c, mm/oom_kill.c as a replay
// shows them), sent in every update once either side has shown pressure: the phase, each
// managed zone's free pages against its min, low and high watermarks over time, the
// episodes as they happen (kswapd runs, direct reclaim, swap-out, direct compaction, OOM
// kills), the kernel's read from the trace beside Kmem's read from its counters, the totals
// of each, and the per-phase table of the replay's pressure report (kernel / Kmem) as the
// replay passes each phase. Built by PressureWatch; immutable once built.
namespace Kmem.Live;

/// <summary>A managed zone: its free pages now, its watermarks (without boost), and its free pages sampled every
/// <see cref="LivePressure.SampleEvery"/> events from the start (sample i is at event i × SampleEvery).</summary>
internal sealed record PressureZone(string Zone, long Free, long Min, long Low, long High, long[] Samples);

/// <summary>One episode of one side ("kernel": read from the trace's events; "kmem": Kmem's counters rose):
/// <paramref name="Kind"/> is "kswapd run", "direct reclaim", "swap-out", "compaction" or "OOM kill";
/// <paramref name="Position"/> the events handled when it began, <paramref name="Line"/> the trace line that began it
/// (0 for a scenario's step); <paramref name="Who"/> the task ("comm-pid"), or the victim for an OOM kill;
/// <paramref name="Count"/> how many episodes of the kind this entry stands for (consecutive ones of one moment);
/// <paramref name="Reclaimed"/> the pages a direct reclaim reclaimed; <paramref name="Swapped"/> the pages written to
/// swap during it (for "swap-out": outside any kswapd run or direct reclaim); <paramref name="Result"/> a compaction's
/// status; <paramref name="Open"/> whether the kernel's episode has not ended yet.</summary>
internal sealed record PressureEpisode(string Side, string Kind, long Position, long Line, string Who, long Count, long Reclaimed,
    long Swapped, string? Result, bool Open);

/// <summary>A phase of the pressure report, the kernel's counts and Kmem's by the report's names; an open phase's are
/// so far (no free pages at end yet).</summary>
internal sealed record PressurePhase(string Phase, bool Ended, IReadOnlyDictionary<string, long> Kernel, IReadOnlyDictionary<string, long> Kmem,
    long KmemMinFree, IReadOnlyList<string> KmemVictims);

/// <summary>A /proc/vmstat counter after a phase, the kernel's (null when its file lacks it) beside Kmem's.</summary>
internal sealed record PressureCounter(string Phase, string Name, long? Kernel, long Kmem);

/// <summary>The pressure panel's figures in one update.</summary>
internal sealed record LivePressure
{
    /// <summary>The phase now (a trace's "PHASE name" marker, "boot" before the first; a scenario's chapter).</summary>
    public required string Phase { get; init; }

    /// <summary>Whether the kernel's side is there (a trace), or Kmem's only (a scenario).</summary>
    public bool Kernel { get; init; }

    /// <summary>Whether Kmem's kswapd is woken now (a trace only).</summary>
    public bool? KswapdAwake { get; init; }

    /// <summary>Events between two samples of the zones' free pages.</summary>
    public long SampleEvery { get; init; }

    public required List<PressureZone> Zones { get; init; }

    /// <summary>The kernel's counts from the start, by the report's names (kswapd wakeups, kswapd runs, direct
    /// reclaims, direct reclaimed pages, swap-out pages, direct compactions, OOM kills).</summary>
    public required Dictionary<string, long> KernelTotals { get; init; }

    /// <summary>Kmem's counts from the start, by the same names.</summary>
    public required Dictionary<string, long> KmemTotals { get; init; }

    /// <summary>The latest episodes of each side, oldest first.</summary>
    public required List<PressureEpisode> Episodes { get; init; }

    /// <summary>The phases passed (ended), then the phase under way.</summary>
    public required List<PressurePhase> Phases { get; init; }

    /// <summary>/proc/vmstat after each phase passed, the kernel's beside Kmem's (a trace whose capture has them).</summary>
    public List<PressureCounter>? Vmstat { get; init; }

    public required List<string> KernelVictims { get; init; }
    public required List<string> KmemVictims { get; init; }
}
