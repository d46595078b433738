// The public result of a replay under memory pressure (TraceReplayResult.Pressure): the
// pressure timeline per phase, the kernel's beside Kmem's, the vmstat totals per phase and
// at the end, and the OOM victims. Built by PressureReport; immutable once built.
namespace Kmem;

/// <summary>What the kernel's reclaim, compaction and OOM killer did during a traced workload, and what Kmem's did
/// replaying it (<see cref="TraceReplayResult.Pressure"/>).</summary>
public sealed class TracePressure
{
    /// <summary>The phases of the trace ("PHASE name" markers; "boot" before the first), in order.</summary>
    public IReadOnlyList<TracePressurePhase> Phases { get; init; } = [];

    /// <summary>/proc/vmstat counters after each phase (the capture's meta/phase/vmstat-after-NAME.txt) and at the
    /// end ("final", vmstat.txt), the kernel's beside Kmem's.</summary>
    public IReadOnlyList<TracePressureCounter> Vmstat { get; init; } = [];

    /// <summary>The tasks the kernel's OOM killer chose (mark_victim), as "pid (comm)".</summary>
    public IReadOnlyList<string> KernelVictims { get; init; } = [];

    /// <summary>The tasks Kmem's OOM killer chose, named by the trace's pid and comm.</summary>
    public IReadOnlyList<string> KmemVictims { get; init; } = [];

    /// <summary>User pages replayed as pages of Kmem tasks.</summary>
    public long TaskPages { get; init; }

    /// <summary>User pages still allocated when the replay ended whose Kmem task had exited at its trace task's
    /// exit_mmap: the kernel had not freed their frames (page cache other tasks may map, pages in flight to their free).</summary>
    public long ExitedTaskPages { get; init; }

    /// <summary>Kmem's tasks that exited where their trace task's address space went: at exit_mmap's frees, recognised
    /// by their call site (exit_mmap: remove_vma inlined there and vm_area_free's kmem_cache_free a tail call, as x86-64
    /// builds of 6.1 show them), or at the kernel's free of the last table frame the task took (a build whose
    /// exit_mmap frees are named as munmap's are, vm_area_free).</summary>
    public long TasksExited { get; init; }

    /// <summary>User pages the kernel's reclaim freed (left to Kmem's reclaim, not replayed).</summary>
    public long ReclaimFrees { get; init; }

    /// <summary>User pages that were the swap-in of an address the kernel had reclaimed.</summary>
    public long SwapIns { get; init; }

    /// <summary>User pages the kernel's compaction moved (Kmem keeps its page until the task's pages all go).</summary>
    public long MigratedPages { get; init; }

    /// <summary>Pages Kmem holds at the end for memory the kernel used before its trace began, set where the capture
    /// reveals the kernel's free pages (its vmstat after a phase).</summary>
    public long UntracedPages { get; init; }

    /// <summary>Kmem's min, low and high watermarks, summed over the managed zones.</summary>
    public long WatermarkMin { get; init; }

    /// <summary>See <see cref="WatermarkMin"/>.</summary>
    public long WatermarkLow { get; init; }

    /// <summary>See <see cref="WatermarkMin"/>.</summary>
    public long WatermarkHigh { get; init; }
}

/// <summary>One phase of the pressure timeline: episode counts by name, the kernel's and Kmem's.</summary>
public sealed class TracePressurePhase
{
    /// <summary>The phase's name.</summary>
    public string Phase { get; init; } = "";

    /// <summary>The kernel's counts: kswapd wakeups, kswapd runs, direct reclaims, direct reclaimed pages, swap-out
    /// pages, direct compactions, OOM kills, free pages at end (when the capture has the phase's vmstat).</summary>
    public IReadOnlyDictionary<string, long> Kernel { get; init; } = new Dictionary<string, long>();

    /// <summary>Kmem's counts, by the same names.</summary>
    public IReadOnlyDictionary<string, long> Kmem { get; init; } = new Dictionary<string, long>();

    /// <summary>Kmem's fewest free pages seen after a user page of the phase (−1 when it had none).</summary>
    public long KmemMinFreePages { get; init; }

    /// <summary>The tasks Kmem's OOM killer chose during the phase.</summary>
    public IReadOnlyList<string> KmemVictims { get; init; } = [];
}

/// <summary>One /proc/vmstat counter at the end of a phase, the kernel's beside Kmem's.</summary>
public sealed class TracePressureCounter
{
    /// <summary>The phase ("final": the snapshot's vmstat.txt).</summary>
    public string Phase { get; init; } = "";

    /// <summary>The counter's /proc/vmstat name.</summary>
    public string Name { get; init; } = "";

    /// <summary>The kernel's value, or null when its file lacks the counter.</summary>
    public long? Kernel { get; init; }

    /// <summary>Kmem's value.</summary>
    public long Kmem { get; init; }
}

/// <summary>The pressure state of a replay at one moment (<see cref="TraceReplayer.PressureNow"/>), for pictures and
/// live views: the phase, Kmem's free pages against its watermarks, and what each side did in the phase so far.</summary>
public sealed class TracePressureNow
{
    /// <summary>The phase ("PHASE name" marker; "boot" before the first).</summary>
    public string Phase { get; init; } = "";

    /// <summary>Kmem's free pages (all zones).</summary>
    public long FreePages { get; init; }

    /// <summary>Kmem's min watermark, summed over the managed zones.</summary>
    public long WatermarkMin { get; init; }

    /// <summary>Kmem's low watermark, summed over the managed zones.</summary>
    public long WatermarkLow { get; init; }

    /// <summary>Kmem's high watermark, summed over the managed zones.</summary>
    public long WatermarkHigh { get; init; }

    /// <summary>Whether Kmem's kswapd is woken (its run pending or under way).</summary>
    public bool KswapdAwake { get; init; }

    /// <summary>The kernel's counts in the phase so far, by the names of <see cref="TracePressurePhase.Kernel"/>.</summary>
    public IReadOnlyDictionary<string, long> Kernel { get; init; } = new SortedDictionary<string, long>(StringComparer.Ordinal);

    /// <summary>Kmem's counts in the phase so far, by the same names.</summary>
    public IReadOnlyDictionary<string, long> Kmem { get; init; } = new SortedDictionary<string, long>(StringComparer.Ordinal);

    /// <summary>The kernel's OOM victims so far, as "pid (comm)".</summary>
    public IReadOnlyList<string> KernelVictims { get; init; } = [];

    /// <summary>Kmem's OOM victims so far.</summary>
    public IReadOnlyList<string> KmemVictims { get; init; } = [];
}
