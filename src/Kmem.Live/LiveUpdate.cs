// What the server sends the page: one update per moment of the replay. A full update
// carries every frame's class (base64, one byte per frame: the key of MemoryMap's legend)
// and what does not change while a machine lives (zones, legend, markers); a delta carries
// the runs of frames whose class changed since the previous update of the same run, as
// flat triples [start, length, key]. Everything else (counters, free lists, pagesets,
// slab caches, the current event, the decisions, the pressure panel once either side has
// shown pressure) is small and sent whole every time. A
// side update (compare on) is another slab allocator's machine at the moment the main run
// rests, always whole.
// Immutable once built: built on the replaying thread, serialised and sent from others.
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Kmem.Live;

/// <summary>A zone's span of frames on the map.</summary>
internal sealed record MapZone(string Name, ulong Start, ulong End);

/// <summary>A legend entry: the name and the colour (#rrggbb) of a frame key.</summary>
internal sealed record MapKey(string Name, string Color);

/// <summary>A marker of the trace: its text, its position (events handled before it) and line.</summary>
internal sealed record LiveMarker(string Text, long Position, long Line);

/// <summary>One decision kind so far: compared and matched; and what the last event settled of it (after a step):
/// how many were compared and matched, and how many the kernel and Kmem each answered yes (refilled, drained,
/// stole, made a new slab…).</summary>
internal sealed record LiveDecision(string Kind, long Compared, long Matched, long LastCompared, long LastMatched, long LastKernelYes,
    long LastKmemYes);

/// <summary>One update of the view.</summary>
internal sealed record LiveUpdate
{
    /// <summary>The update's number within the session (a full update restarts nothing: numbers only grow).</summary>
    public long Seq { get; init; }
    /// <summary>Whether this update carries every frame (<see cref="Frames"/>) rather than runs.</summary>
    public bool Full { get; init; }
    /// <summary>The run the update belongs to: a new run (restart, backend switch) starts with a full update.</summary>
    public int Run { get; init; }
    public required string Backend { get; init; }
    public required string Source { get; init; }
    /// <summary>Events handled so far.</summary>
    public long Position { get; init; }
    /// <summary>Events of the whole trace, 0 while unknown.</summary>
    public long Total { get; init; }
    public bool Playing { get; init; }
    public bool Ended { get; init; }
    public bool Seeking { get; init; }
    /// <summary>Events per second while playing; 0 for full speed.</summary>
    public long Speed { get; init; }
    public string? Error { get; init; }
    /// <summary>The last event handled, as a trace line would say it; null before the first.</summary>
    public string? Event { get; init; }
    /// <summary>The last marker at or before <see cref="Position"/>.</summary>
    public string? Chapter { get; init; }
    public string? Frames { get; init; }
    public int[]? Runs { get; init; }
    public ulong MaxPfn { get; init; }
    public List<MapZone>? Zones { get; init; }
    public List<MapKey>? Legend { get; init; }
    public List<LiveMarker>? Markers { get; init; }
    public required Dictionary<string, long> Counters { get; init; }
    /// <summary>The charted counters sampled along the run so far (CounterHistory.cs).</summary>
    public LiveCounterSamples? CounterSamples { get; init; }
    public required List<ZoneFigures> Watermarks { get; init; }
    public required List<FreeAreaFigures> FreeAreas { get; init; }
    public required string Buddyinfo { get; init; }
    public List<SlabRow>? Slabinfo { get; init; }
    public string? Slobinfo { get; init; }
    public required List<LiveDecision> Decisions { get; init; }
    /// <summary>The pressure panel (LivePressure.cs); null while neither side has shown pressure, so a replay without
    /// any shows no panel.</summary>
    public LivePressure? Pressure { get; init; }
    /// <summary>Whether the side-by-side view is on (the main run's updates).</summary>
    public bool Compare { get; init; }
    /// <summary>Whether this is a side update: another slab allocator at the main run's moment, whole.</summary>
    public bool Side { get; init; }

    /// <summary>How the server writes JSON for the page: camelCase, nulls left out.</summary>
    public static JsonSerializerOptions Json { get; } = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>The update as the JSON the page reads.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);
}
