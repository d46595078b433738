// The kernel's NR_FREE_PAGES counter as its CPUs leave it (an aligned pressure replay's, part of
// KernelFreePages): the watermark checks of 6.1 read the zone's counter (zone_page_state), which
// each CPU's vm_stat_diff keeps behind the exact count until the diff passes stat_threshold
// (Kmem's Zone.Vmstat.cs does the same for Kmem's zones). Each traced change is made on the
// event's CPU: a refill burst as one change (rmqueue_bulk's, flushed at that CPU's next event of
// another kind), every drained block, every free that bypasses the per-CPU lists. The threshold
// is the normal one, or the pressure one on a zone with a percpu_drift_mark while the traced
// kswapd is awake (its mm_vmscan_kswapd_wake to its _sleep); every CPU folds at each new second
// of the trace's clock (vmstat_update). Where the trace reveals the exact count
// (reclaim_retry_zone) the diffs are kept and the counter follows it; /proc/vmstat's
// nr_free_pages reveals the counters. Before a user page's decision Kmem's zone takes the
// counter and diffs, less the allocating task's own changes since its previous allocation (as
// its exact count does). Used on the replaying thread only.
using Kmem.PageAlloc;

namespace Kmem;

/// <summary>The kernel's NR_FREE_PAGES counter and per-CPU diffs per zone, followed through the trace.</summary>
internal sealed class KernelVmstat(Machine m)
{
    private readonly Machine _m = m;
    private long[]? _counter;
    private long[][]? _diff;
    // Per CPU, the refill burst not yet counted: zone, pages (negative), task.
    private (int Zone, long Pages, int Pid)[]? _burst;
    // Per task, the folds its own changes made since its previous allocation.
    private readonly Dictionary<int, long[]> _own = [];
    private long _second = -1;

    /// <summary>The traced kswapd is awake: zones with a percpu_drift_mark use the pressure threshold.</summary>
    public bool Pressure { get; set; }

    private Zone[] Zones => _m.PageAllocator.Zones;

    // The counters from the trace's first event on: Kmem's booted zones' (a trace recorded from boot).
    private long[] Counters => _counter ??= [.. Zones.Select(z => Volatile.Read(ref z.VmstatFreePages))];

    private long[][] Diffs => _diff ??= [.. Zones.Select(_ => new long[_m.PageAllocator.Cpus.Count])];

    // Every event: vmstat_update at a new second; a CPU's burst ends at its next event of another kind.
    public void BeforeEvent(ref TraceEvent e)
    {
        long second = e.Timestamp / 1_000_000;
        if (second != _second)
        {
            _second = second;
            FoldAll();
        }
        _burst ??= new (int, long, int)[_m.PageAllocator.Cpus.Count];
        if ((uint)e.Cpu < (uint)_burst.Length && _burst[e.Cpu].Pages != 0
            && !(e.Kind == TraceEventKind.MmPageAllocZoneLocked && e.PercpuRefill))
        {
            var (zone, pages, pid) = _burst[e.Cpu];
            _burst[e.Cpu] = default;
            Mod(zone, e.Cpu, pages, pid);
        }
    }

    // A traced change of <zone>'s free pages by <change> on the event's CPU.
    public void Change(ref TraceEvent e, int zone, long change)
    {
        if ((uint)e.Cpu >= (uint)Diffs[zone].Length)
        {
            ChangeOnAnyCpu(zone, change, e.Pid);
            return;
        }
        if (e.Kind == TraceEventKind.MmPageAllocZoneLocked && e.PercpuRefill)
        {
            ref var burst = ref _burst![e.Cpu];
            if (burst.Pages != 0 && burst.Zone != zone)
            {
                Mod(burst.Zone, e.Cpu, burst.Pages, burst.Pid);
                burst = default;
            }
            burst = (zone, burst.Pages + change, e.Pid);
            return;
        }
        Mod(zone, e.Cpu, change, e.Pid);
    }

    // A change no CPU is known for (the free scanner's isolation): counted at once, as a fold.
    public void ChangeOnAnyCpu(int zone, long change, int pid)
    {
        Counters[zone] += change;
        OwnOf(pid)[zone] += change;
    }

    private void Mod(int zone, int cpu, long delta, int pid)
    {
        ref long diff = ref Diffs[zone][cpu];
        long x = diff + delta;
        long t = Threshold(Zones[zone]);
        if (x > t || x < -t)
        {
            Counters[zone] += x;
            OwnOf(pid)[zone] += x;
            x = 0;
        }
        diff = x;
    }

    // The kernel's stat_threshold for <z>: the pressure one while its kswapd is awake on a zone with a percpu_drift_mark.
    private long Threshold(Zone z) => Pressure && z.PercpuDriftMark != 0 ? z.PressureStatThreshold() : z.NormalStatThreshold();

    private void FoldAll()
    {
        if (_diff is null)
        {
            return;
        }
        for (int z = 0; z < _diff.Length; z++)
        {
            foreach (ref long d in _diff[z].AsSpan())
            {
                Counters[z] += d;
                d = 0;
            }
        }
    }

    private long[] OwnOf(int pid)
    {
        if (!_own.TryGetValue(pid, out long[]? own))
        {
            own = new long[Zones.Length];
            _own[pid] = own;
        }
        return own;
    }

    public void ForgetOwn(int pid) => _own.Remove(pid);

    /// <summary>The counter of zone <paramref name="zone"/> whose exact count is <paramref name="exact"/>.</summary>
    public long Counter(int zone, long exact) => exact - Diffs[zone].Sum();

    /// <summary>The exact count revealed: the counter follows it (the diffs stay as they are).</summary>
    public void Rebase(int zone, long exact) => Counters[zone] = Counter(zone, exact);

    /// <summary>The counter revealed: returns the exact count it makes with the diffs.</summary>
    public long RebaseCounter(int zone, long counter)
    {
        Counters[zone] = counter;
        return counter + Diffs[zone].Sum();
    }

    /// <summary>Before a user page's decision: Kmem's zone <paramref name="z"/>, its exact count already the kernel's
    /// as far as Kmem could follow it, takes the kernel's CPU diffs: its counter is that count less them.</summary>
    public void Align(Zone z)
    {
        long[] diffs = Diffs[z.Index];
        z.AlignVmstat(Volatile.Read(ref z.FreePages) - diffs.Sum(), diffs, _m.PageAllocator.Cpus.Current);
    }
}
