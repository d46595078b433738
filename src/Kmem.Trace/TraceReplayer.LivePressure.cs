// The live view's window on the pressure side of a replay in progress (Pressure/): whether
// either side has shown pressure yet, the report as it stands (the phases ended so far, their
// vmstat, the victims), and each managed zone's free pages and watermarks, read cheaply
// enough to sample every few thousand events. Read-only: nothing here changes the replay.
// Not thread-safe: read on the replaying thread, between two events.
using Kmem.PageAlloc;

namespace Kmem;

public sealed partial class TraceReplayer
{
    /// <summary>Whether either side has shown pressure so far (as <see cref="PressureNow"/> is non-null), without
    /// building the state.</summary>
    internal bool PressureSeenSoFar => _pressure is { PressureSeen: true };

    /// <summary>The pressure report as it stands: the phases ended so far (a phase ends at the next PHASE marker or
    /// WORKLOAD_END), their vmstat, the victims so far. Built afresh: call it when a phase ends, not per event.</summary>
    internal TracePressure? PressureSoFar => _pressure is { } p ? p.Report.Build(p) : null;

    /// <summary>The tasks the kernel's OOM killer chose so far (mark_victim), in order.</summary>
    internal IReadOnlyList<(int Pid, string Comm)> KernelVictimsSoFar => _pressure?.KernelVictims ?? [];

    /// <summary>The tasks Kmem's OOM killer chose so far, named by the trace's pid and comm, in order.</summary>
    internal IReadOnlyList<(int Pid, string Comm)> KmemVictimsSoFar => _pressure?.KmemVictims ?? [];
}

/// <summary>Each managed zone's free pages and watermarks (without the boost of the moment, as the pressure report
/// sums them), in zone order.</summary>
internal static class LiveZones
{
    /// <summary>The managed zones' names, in zone order.</summary>
    public static string[] Names(Machine m) => [.. m.PageAllocator.Zones.Where(z => z.IsManaged).Select(z => z.Name)];

    /// <summary>The managed zones' free pages into <paramref name="free"/> (one per name of <see cref="Names"/>).</summary>
    public static void ReadFree(Machine m, Span<long> free)
    {
        int i = 0;
        foreach (var z in m.PageAllocator.Zones)
        {
            if (z.IsManaged && i < free.Length)
            {
                free[i++] = Volatile.Read(ref z.FreePages);
            }
        }
    }

    /// <summary>The managed zones' min, low and high watermarks, in zone order.</summary>
    public static (long Min, long Low, long High)[] Watermarks(Machine m) =>
        [.. m.PageAllocator.Zones.Where(z => z.IsManaged).Select(z => (z.Watermark[Zone.WmarkMin], z.Watermark[Zone.WmarkLow], z.Watermark[Zone.WmarkHigh]))];
}
