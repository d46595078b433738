// The same trace on SLUB, SLAB and SLOB: one machine per backend, booted with the same
// options but the slab allocator, each replaying the trace from the start, so their
// slab memory, fragmentation and speed can be set side by side. A backend this build
// does not have is reported as unavailable with the machine's own message.
namespace Kmem;

/// <summary>One backend's replay of a trace in a <see cref="SlabBackendComparison"/>.</summary>
/// <param name="Slab">The slab allocator.</param>
/// <param name="Result">The replay's result, or null when the backend is unavailable.</param>
/// <param name="Unavailable">Why the backend could not run (the machine's message), or null.</param>
public sealed record SlabBackendRun(SlabAllocator Slab, TraceReplayResult? Result, string? Unavailable);

/// <summary>Replays one trace on each slab allocator (SLUB, SLAB, SLOB).</summary>
public static class SlabBackendComparison
{
    /// <summary>Replays <paramref name="tracePath"/> on a machine per backend.</summary>
    /// <param name="tracePath">The trace file.</param>
    /// <param name="options">The machine options; <see cref="MachineOptions.Slab"/> is replaced by each backend.</param>
    /// <param name="readerOptions">The reader's options (SkipBad, StopAtMarker), or null.</param>
    /// <param name="replayOptions">The replayer's options (progress), or null.</param>
    /// <param name="backends">The backends to run, or null for all three in the order SLUB, SLAB, SLOB.</param>
    /// <returns>One run per backend, in order.</returns>
    /// <exception cref="TraceFormatException">The trace is malformed (without SkipBad) or corrupt.</exception>
    public static IReadOnlyList<SlabBackendRun> Compare(string tracePath, MachineOptions options, TraceReaderOptions? readerOptions = null,
        TraceReplayOptions? replayOptions = null, IEnumerable<SlabAllocator>? backends = null)
    {
        ArgumentNullException.ThrowIfNull(tracePath);
        ArgumentNullException.ThrowIfNull(options);
        var runs = new List<SlabBackendRun>();
        foreach (var slab in backends ?? [SlabAllocator.Slub, SlabAllocator.Slab, SlabAllocator.Slob])
        {
            using var m = Machine.Boot(With(options, slab));
            try
            {
                _ = m.SlabCaches;
            }
            catch (InvalidOperationException e)
            {
                runs.Add(new SlabBackendRun(slab, null, e.Message));
                continue;
            }
            using var reader = TraceReader.Open(tracePath, readerOptions);
            runs.Add(new SlabBackendRun(slab, new TraceReplayer(m, replayOptions).Replay(reader), null));
        }
        return runs;
    }

    // MachineOptions is init-only: a copy of every option (those added later too), with another slab allocator.
    private static MachineOptions With(MachineOptions o, SlabAllocator slab)
    {
        var copy = new MachineOptions();
        foreach (var p in typeof(MachineOptions).GetProperties(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance))
        {
            if (p.CanWrite)
            {
                p.SetValue(copy, p.Name == nameof(MachineOptions.Slab) ? slab : p.GetValue(o));
            }
        }
        return copy;
    }
}
