// The knobs of TraceReplayer: how often to report progress (the command's progress
// bar and --map-every pictures hang off it). Read once when a replay starts;
// immutable after construction, so one instance may serve several replays.
namespace Kmem;

/// <summary>Options for <see cref="TraceReplayer"/>.</summary>
public sealed class TraceReplayOptions
{
    /// <summary>Call <see cref="Progress"/> after every this many events (markers included). Default 65,536.</summary>
    public long ProgressEvery { get; init; } = 1 << 16;

    /// <summary>Called on the replaying thread every <see cref="ProgressEvery"/> events, with the replayer
    /// (its <see cref="TraceReplayer.Reader"/> tells how far through the input it is). Null: none.</summary>
    public Action<TraceReplayer>? Progress { get; init; }
}
