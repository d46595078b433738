// NR_FREE_PAGES as mm/vmstat.c keeps it (part of Zone). FreePages is the exact count, the one
// zone_page_state_snapshot adds up; VmstatFreePages is the zone's counter (zone->vm_stat), the one
// zone_page_state reads, and the one the allocation paths, compaction_suitable and kswapd test the
// watermarks against. Each change is made on a CPU and gathers in that CPU's vm_stat_diff until the
// diff passes stat_threshold, when all of it folds into the counter (__mod_zone_page_state); the
// rest folds when vmstat_update runs (RefreshVmstat: the kernel's every stat_interval, a second).
// stat_threshold is calculate_normal_threshold's, or calculate_pressure_threshold's while kswapd is
// awake, on a zone with a percpu_drift_mark only (set_pgdat_percpu_threshold; WatermarkSetup sets
// both as 6.1's boot leaves them).
// Invariant (checked by Validate): VmstatFreePages + Σ the CPUs' diffs == FreePages.
// Locking: zone->lock, as FreePages; readers read the counter without it, as the kernel does.
using Kmem.Physical;

namespace Kmem.PageAlloc;

/// <summary>vmstat_update and set_pgdat_percpu_threshold over many zones.</summary>
internal static class Vmstat
{
    /// <summary>vmstat_update on every CPU: each CPU's NR_FREE_PAGES diffs fold into the zones' counters.</summary>
    public static void Refresh(IEnumerable<Zone> zones)
    {
        foreach (var zone in zones)
        {
            zone.RefreshVmstat();
        }
    }

    /// <summary>set_pgdat_percpu_threshold: the zones of <paramref name="node"/> with a percpu_drift_mark take the
    /// pressure threshold (<paramref name="pressure"/>: kswapd is awake) or the normal one again.</summary>
    public static void SetPgdatPercpuThreshold(Node node, bool pressure)
    {
        foreach (var zone in node.Zones)
        {
            if (zone.PercpuDriftMark != 0)
            {
                int threshold = pressure ? zone.PressureStatThreshold() : zone.NormalStatThreshold();
                lock (zone.Lock)
                {
                    zone.StatThreshold = threshold;
                }
            }
        }
    }
}

internal sealed partial class Zone
{
    /// <summary>zone->vm_stat[NR_FREE_PAGES]: <see cref="FreePages"/> less what the CPUs' diffs still hold.</summary>
    public long VmstatFreePages;

    /// <summary>stat_threshold, the same on every CPU (set together, as set_pgdat_percpu_threshold sets them).</summary>
    public int StatThreshold { get; set; }

    /// <summary>percpu_drift_mark: 0, or the free pages below which kswapd reads the exact count
    /// (zone_watermark_ok_safe); a zone with one takes the pressure threshold while kswapd runs.</summary>
    public long PercpuDriftMark { get; set; }

    /// <summary>Each CPU's vm_stat_diff[NR_FREE_PAGES].</summary>
    private readonly long[] _freeDiff;

    /// <summary>__mod_zone_freepage_state on the calling CPU: <see cref="FreePages"/> moves by
    /// <paramref name="delta"/>, the counter only when the CPU's diff passes the threshold. Under <see cref="Lock"/>.</summary>
    public void ModFreePages(long delta)
    {
        FreePages += delta;
        ref long diff = ref _freeDiff[_cpus.Current];
        long x = diff + delta;
        if (x > StatThreshold || x < -StatThreshold)
        {
            Volatile.Write(ref VmstatFreePages, VmstatFreePages + x);
            x = 0;
        }
        diff = x;
    }

    /// <summary>refresh_cpu_vm_stats for this zone's free pages: every CPU's diff folds into the counter.</summary>
    public void RefreshVmstat()
    {
        lock (Lock)
        {
            long sum = 0;
            foreach (ref long d in _freeDiff.AsSpan())
            {
                sum += d;
                d = 0;
            }
            Volatile.Write(ref VmstatFreePages, VmstatFreePages + sum);
        }
    }

    /// <summary>The CPU's diff now (read for reports and tests).</summary>
    public long FreeDiff(int cpu)
    {
        lock (Lock)
        {
            return _freeDiff[cpu];
        }
    }

    /// <summary>calculate_normal_threshold: more CPUs and more memory (in 128 MiB units) defer folds longer.</summary>
    public int NormalStatThreshold()
    {
        long mem = ManagedPages >> (27 - PhysMem.PageShift);
        int threshold = 2 * Fls(_cpus.Count) * (1 + Fls(mem));
        return Math.Min(125, threshold);
    }

    /// <summary>calculate_pressure_threshold: the low-to-min distance shared by the CPUs (1 to 125), so that their
    /// drift together cannot hide a breach of the min watermark.</summary>
    public int PressureStatThreshold() =>
        (int)Math.Min(125, Math.Max(1, (WmarkPages(WmarkLow) - WmarkPages(WmarkMin)) / _cpus.Count));

    private static int Fls(long x) => x == 0 ? 0 : 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)x);

    /// <summary>zone_watermark_ok_safe (kswapd's test): the counter, or the exact count when the counter is below the
    /// percpu_drift_mark (the CPUs' diffs could hide a breach of the min watermark there).</summary>
    public bool WatermarkOkSafe(int order, long mark, ZoneType highest)
    {
        long free = Volatile.Read(ref VmstatFreePages);
        if (PercpuDriftMark != 0 && free < PercpuDriftMark)
        {
            free = Volatile.Read(ref FreePages);
        }
        return PageAllocator.ZoneWatermarkOk(this, order, mark, highest, 0, free);
    }

    /// <summary>The Validate check of the counter against the exact count.</summary>
    private void ValidateVmstat()
    {
        long sum = VmstatFreePages;
        foreach (long d in _freeDiff)
        {
            sum += d;
        }
        if (sum != FreePages)
        {
            throw new InvalidOperationException($"zone {Name}: NR_FREE_PAGES counter {VmstatFreePages} and CPU diffs add up to {sum}, not the {FreePages} pages free");
        }
    }
}
