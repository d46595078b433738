// The options of the live view's server: what to replay, how to boot its machines, where
// to listen. Immutable after construction.
using System.Net;

namespace Kmem.Live;

/// <summary>Options for <see cref="LiveServer"/>.</summary>
public sealed class LiveServerOptions
{
    /// <summary>The trace to replay (ftrace text, plain, .gz or .xz). The only file the server reads. Null when
    /// <see cref="Scenario"/> is given.</summary>
    public string? TracePath { get; init; }

    /// <summary>Instead of a trace, a scenario of `kmem scenario` told step by step: pressure, fragmentation or
    /// highmem (each boots its own machine; <see cref="Boot"/> gives the seed). Null: the trace.</summary>
    public string? Scenario { get; init; }

    /// <summary>The machine options for a slab allocator, given the trace header's CPU count (0 when it has
    /// none). Called once per machine the view boots (a restart, a seek backwards, a backend switch).</summary>
    public required Func<SlabAllocator, int, MachineOptions> Boot { get; init; }

    /// <summary>The reserved frames the trace releases (<see cref="TraceBootReserve.Frames"/>), when
    /// <see cref="Boot"/> boots with <see cref="TraceBootReserve.ManagedAtBoot"/>; null (the default): none.</summary>
    public IReadOnlySet<ulong>? ReservedFrames { get; init; }

    /// <summary>The per-CPU trace ring buffer size of the recorded kernel (<see cref="TraceBootReserve.RingBufferBytes"/>),
    /// held before the trace's first event; 0 (the default): none.</summary>
    public long RingBufferBytes { get; init; }

    /// <summary>The slab allocator of the first machine. Default SLUB.</summary>
    public SlabAllocator Slab { get; init; } = SlabAllocator.Slub;

    /// <summary>The address to listen on. Default 127.0.0.1: only this host can connect.</summary>
    public IPAddress Host { get; init; } = IPAddress.Loopback;

    /// <summary>The TCP port; 0 (the default) picks a free one (<see cref="LiveServer.Url"/> tells which).</summary>
    public int Port { get; init; }

    /// <summary>Updates a second while playing, at most. Default 20.</summary>
    public double UpdatesPerSecond { get; init; } = 20;
}
