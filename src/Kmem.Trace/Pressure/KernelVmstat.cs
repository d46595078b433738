// The kernel's per-CPU NR_FREE_PAGES diffs as its CPUs leave them (an aligned pressure replay's,
// part of KernelFreePages): the watermark checks of 6.1 read the zone's counter (zone_page_state),
// which each CPU's vm_stat_diff keeps behind the exact count until the diff passes stat_threshold
// (Kmem's Zone.Vmstat.cs does the same for Kmem's zones). Each traced change is made on the
// event's CPU: a refill burst as one change (rmqueue_bulk's, ended by that CPU's next event of
// another kind), every drained block, every free that bypasses the per-CPU lists. The threshold
// is the normal one, or the pressure one on a zone with a percpu_drift_mark while the traced
// kswapd is awake (its mm_vmscan_kswapd_wake to its _sleep); every CPU folds at each new second
// of the trace's clock (vmstat_update). Before a user page's decision Kmem's zone takes these
// diffs: its counter is its free pages (the kernel's, as far as Kmem follows them) less them.
// Used on the replaying thread only.
using Kmem.PageAlloc;

namespace Kmem;

/// <summary>The kernel's per-CPU NR_FREE_PAGES diffs per zone, followed through the trace.</summary>
internal sealed class KernelVmstat(Machine m)
{
    private readonly Machine _m = m;
    private long[][]? _diff;
    // Per CPU, the refill burst not yet counted: zone, pages (negative).
    private (int Zone, long Pages)[]? _burst;
    private long _second = -1;

    /// <summary>The traced kswapd is awake: zones with a percpu_drift_mark use the pressure threshold.</summary>
    public bool Pressure { get; set; }

    private Zone[] Zones => _m.PageAllocator.Zones;

    private long[][] Diffs => _diff ??= [.. Zones.Select(_ => new long[_m.PageAllocator.Cpus.Count])];

    // Every event: vmstat_update at a new second; a CPU's burst ends at its next event of another kind.
    public void BeforeEvent(ref TraceEvent e)
    {
        long second = e.Timestamp / 1_000_000;
        if (second != _second)
        {
            _second = second;
            foreach (var diffs in Diffs)
            {
                Array.Clear(diffs);
            }
        }
        _burst ??= new (int, long)[_m.PageAllocator.Cpus.Count];
        if ((uint)e.Cpu < (uint)_burst.Length && _burst[e.Cpu].Pages != 0
            && !(e.Kind == TraceEventKind.MmPageAllocZoneLocked && e.PercpuRefill))
        {
            var (zone, pages) = _burst[e.Cpu];
            _burst[e.Cpu] = default;
            Mod(zone, e.Cpu, pages);
        }
    }

    // A traced change of <zone>'s free pages by <change> on the event's CPU.
    public void Change(ref TraceEvent e, int zone, long change)
    {
        if ((uint)e.Cpu >= (uint)Diffs[zone].Length)
        {
            return; // a CPU the machine lacks: counted as folded at once
        }
        if (e.Kind == TraceEventKind.MmPageAllocZoneLocked && e.PercpuRefill)
        {
            ref var burst = ref _burst![e.Cpu];
            if (burst.Pages != 0 && burst.Zone != zone)
            {
                Mod(burst.Zone, e.Cpu, burst.Pages);
                burst = default;
            }
            burst = (zone, burst.Pages + change);
            return;
        }
        Mod(zone, e.Cpu, change);
    }

    // __mod_zone_page_state: the diff, or nothing once it passes the threshold (all of it folds).
    private void Mod(int zone, int cpu, long delta)
    {
        ref long diff = ref Diffs[zone][cpu];
        long x = diff + delta;
        long t = Pressure && Zones[zone].PercpuDriftMark != 0 ? Zones[zone].PressureStatThreshold() : Zones[zone].NormalStatThreshold();
        diff = x > t || x < -t ? 0 : x;
    }

    /// <summary>What the CPUs' diffs of zone <paramref name="zone"/> hold: the exact count less the counter.</summary>
    public long Held(int zone) => Diffs[zone].Sum();

    /// <summary>Before a user page's decision: Kmem's zone <paramref name="z"/> takes the kernel's CPU diffs, its counter
    /// being its free pages less them.</summary>
    public void Align(Zone z)
    {
        long[] diffs = Diffs[z.Index];
        z.AlignVmstat(Volatile.Read(ref z.FreePages) - diffs.Sum(), diffs, _m.PageAllocator.Cpus.Current);
    }
}
