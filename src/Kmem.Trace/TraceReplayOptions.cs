// The knobs of TraceReplayer: how often to report progress (the command's progress
// bar hangs off it) and how often to take a snapshot (the command's --map-every
// pictures hang off that). Read once when a replay starts; immutable after
// construction, so one instance may serve several replays.
namespace Kmem;

/// <summary>Options for <see cref="TraceReplayer"/>.</summary>
public sealed class TraceReplayOptions
{
    /// <summary>Call <see cref="Progress"/> after every this many events (markers included). Default 65,536.</summary>
    public long ProgressEvery { get; init; } = 1 << 16;

    /// <summary>Called on the replaying thread every <see cref="ProgressEvery"/> events, with the replayer
    /// (its <see cref="TraceReplayer.Reader"/> tells how far through the input it is). Null: none.</summary>
    public Action<TraceReplayer>? Progress { get; init; }

    /// <summary>Call <see cref="Snapshot"/> after every this many events (markers included; the marker that
    /// stops a replay is not an event). 0 (the default): never. Must not be negative.</summary>
    public long SnapshotEvery { get; init; }

    /// <summary>Called on the replaying thread once <see cref="TraceReplayer.Events"/> reaches each multiple of
    /// <see cref="SnapshotEvery"/>: after that event ran and before the next is read, so the machine is between
    /// two events and the same trace gives the same snapshots every time. Meant for looking (a
    /// MemoryMap picture, a /proc file); a snapshot that changes the machine changes the replay.
    /// Page allocations the replayer still holds back (at most 8 per CPU, for at most 64 of that CPU's events,
    /// while it finds out whether they are slab pages) are not in the machine yet. Null: none.</summary>
    public Action<TraceReplayer>? Snapshot { get; init; }

    /// <summary>Keep the first this many disagreements of each decision kind, with their trace lines
    /// (<see cref="TraceDecision.Mismatches"/>). Default 0.</summary>
    public int Mismatches { get; init; }

    /// <summary>Aligned decisions: before Kmem decides for an event, put its per-CPU page lists and free_factor
    /// where the kernel's were before that event, as far as the trace's earlier events reveal them (refills,
    /// allocations, frees, drains); <see cref="TraceReplayResult.Decisions"/> then measures Kmem's decisions from
    /// the kernel's state. Changes the machine's state: the /proc files of an aligned replay are not a free run's.
    /// Default false.</summary>
    public bool Aligned { get; init; }

    /// <summary>Frames the recorded kernel held reserved at boot and released during the trace
    /// (<see cref="TraceBootReserve.Frames"/>): the first free of each releases one of the machine's reserved
    /// pages of its zone to the page allocator, as free_reserved_page does. Boot the machine with
    /// <see cref="TraceBootReserve.ManagedAtBoot"/> so those pages are still reserved. Null (the default): none.</summary>
    public IReadOnlySet<ulong>? ReservedFrames { get; init; }

    /// <summary>The per-CPU size of the recorded kernel's trace ring buffer (<see cref="TraceBootReserve.RingBufferBytes"/>)
    /// for a trace recorded from boot: the boot CPU's buffer was allocated before any event could be traced (a CPU
    /// brought up later allocates its own in the trace), so the replay makes those allocations first, as
    /// ring_buffer_alloc did, and holds them (on a pressure capture its vmstat may give some of the pages back, as for
    /// any memory the kernel used before tracing). 0 (the default): none.</summary>
    public long RingBufferBytes { get; init; }

    /// <summary>The cache each kmem_cache_alloc call site allocates from, read from the same trace beforehand
    /// (<see cref="TraceCacheNames.Scan(TraceReader)"/>): a site found here allocates from its named cache from its first object
    /// on. Null (the default): each site starts in a provisional call-site cache until a free names it.</summary>
    public TraceCacheNames? CacheNames { get; init; }
}
