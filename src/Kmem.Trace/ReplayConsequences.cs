// The consequence totals of a replay (mm_page_alloc_zone_locked, pcp refills, mm_page_pcpu_drain,
// mm_page_alloc_extfrag: the trace's counts beside Kmem's own, read from its zones' counters
// before and after the replay) and the machine's slab pages (NR_SLAB_RECLAIMABLE_B and
// NR_SLAB_UNRECLAIMABLE_B in pages). Static: reads the machine, holds nothing.
namespace Kmem;

/// <summary>Kmem's consequence counters and the replay's consequence totals.</summary>
internal static class ReplayConsequences
{
    /// <summary>Kmem's counters now: zone_locked allocations, refilled blocks, drained blocks, fallback steals.</summary>
    public static (long ZoneLocked, long Refill, long Drain, long Extfrag) Read(Machine m)
    {
        long zl = 0, refill = 0, drain = 0, extfrag = 0;
        foreach (var zone in m.PageAllocator.Zones)
        {
            var s = zone.SumStats();
            zl += s.AllocZoneLocked;
            refill += s.PcpRefill;
            drain += s.PcpDrain;
            extfrag += s.AllocExtfrag;
        }
        return (zl, refill, drain, extfrag);
    }

    /// <summary>The totals: the trace's counts (its refills counted by the replayer) against Kmem's over the replay.</summary>
    public static SortedDictionary<string, TraceConsequence> Totals(TraceReader reader, long traceRefills,
        (long ZoneLocked, long Refill, long Drain, long Extfrag) before, (long ZoneLocked, long Refill, long Drain, long Extfrag) after) =>
        new(StringComparer.Ordinal)
        {
            ["mm_page_alloc_zone_locked"] = new(reader.CountOf(TraceEventKind.MmPageAllocZoneLocked), after.ZoneLocked - before.ZoneLocked),
            ["pcp_refill"] = new(traceRefills, after.Refill - before.Refill),
            ["mm_page_pcpu_drain"] = new(reader.CountOf(TraceEventKind.MmPagePcpuDrain), after.Drain - before.Drain),
            ["mm_page_alloc_extfrag"] = new(reader.CountOf(TraceEventKind.MmPageAllocExtfrag), after.Extfrag - before.Extfrag),
        };

    /// <summary>The machine's slab pages now.</summary>
    public static long SlabPages(Machine m)
    {
        long pages = 0;
        foreach (var node in m.PageAllocator.Nodes)
        {
            pages += Volatile.Read(ref node.NrSlabReclaimable) + Volatile.Read(ref node.NrSlabUnreclaimable);
        }
        return pages;
    }
}
