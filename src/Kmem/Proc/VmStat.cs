// /proc/vmstat (mm/vmstat.c vmstat_start/vmstat_show): "name value" for every
// item of the preset's vmstat_text table, then nr_unstable. The values come
// from VmTotals, which the metrics read too. Counters are summed without locks,
// as the kernel sums its per-CPU differentials: each is a single 64-bit read,
// so a line can be a moment behind another but never torn.
using System.Text;
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Proc;

internal static class VmStat
{
    public static string Show(PageAllocator pa)
    {
        var totals = VmTotals.Read(pa);
        var sb = new StringBuilder();
        foreach (var item in VmstatText.For(pa.Arch.Preset))
        {
            sb.Append(item.Name).Append(' ').Num(totals.Value(item)).Append('\n');
        }
        return sb.ToString();
    }
}

/// <summary>The machine-wide values behind /proc/vmstat, read once per report.</summary>
internal sealed class VmTotals
{
    private readonly PageAllocator _pa;
    private readonly long[] _pgAlloc = new long[(int)ZoneType.Device + 1];
    private PageAllocStats _all;
    private long _freePages;
    private (long Thresh, long Background)? _dirty;

    private VmTotals(PageAllocator pa) => _pa = pa;

    public static VmTotals Read(PageAllocator pa)
    {
        var t = new VmTotals(pa);
        foreach (var zone in pa.Zones)
        {
            var s = zone.SumStats();
            t._all.Add(s);
            t._pgAlloc[(int)zone.Type] += s.PgAlloc;
            t._freePages += Volatile.Read(ref zone.FreePages);
        }
        return t;
    }

    /// <summary>The machine-wide value of one item (what /proc/vmstat prints).</summary>
    public long Value(in VmstatItem item) => item.Source switch
    {
        VmSource.NrFreePages => _freePages,
        VmSource.NumaHit => _all.NumaHit,
        VmSource.NumaMiss => _all.NumaMiss,
        VmSource.NumaForeign => _all.NumaForeign,
        VmSource.NumaLocal => _all.NumaLocal,
        VmSource.NumaOther => _all.NumaOther,
        VmSource.DirtyThreshold => Dirty().Thresh,
        VmSource.DirtyBackgroundThreshold => Dirty().Background,
        VmSource.PgAlloc => _pgAlloc[(int)item.Zone],
        VmSource.PgFree => _all.PgFree,
        VmSource.NrSlabReclaimable or VmSource.NrSlabUnreclaimable => SumNodes(item),
        VmSource.Mm => MmVmstat.Value(_pa, item),
        _ => 0,
    };

    private long SumNodes(in VmstatItem item)
    {
        long sum = 0;
        foreach (var node in _pa.Nodes)
        {
            sum += NodeValue(node, item);
        }
        return sum;
    }

    /// <summary>One zone's value of a zone or NUMA item (what /proc/zoneinfo prints under the zone).</summary>
    public static long ZoneValue(Zone zone, in VmstatItem item, in PageAllocStats stats) => item.Source switch
    {
        VmSource.NrFreePages => Volatile.Read(ref zone.FreePages),
        VmSource.NumaHit => stats.NumaHit,
        VmSource.NumaMiss => stats.NumaMiss,
        VmSource.NumaForeign => stats.NumaForeign,
        VmSource.NumaLocal => stats.NumaLocal,
        VmSource.NumaOther => stats.NumaOther,
        VmSource.Mm when MmVmstat.Of(zone.Node.Allocator) is { } mm => MmVmstat.ZoneValue(mm, zone, item),
        _ => 0,
    };

    /// <summary>One node's value of a node item: the slab counters and the reclaim layer's.</summary>
    public static long NodeValue(Node node, in VmstatItem item) => item.Source switch
    {
        VmSource.NrSlabReclaimable => Volatile.Read(ref node.NrSlabReclaimable),
        VmSource.NrSlabUnreclaimable => Volatile.Read(ref node.NrSlabUnreclaimable),
        VmSource.Mm when MmVmstat.Of(node.Allocator) is { } mm => MmVmstat.NodeValue(mm, node, item),
        _ => 0,
    };

    private (long Thresh, long Background) Dirty() => _dirty ??= DirtyLimits(_freePages, _pa.TotalReservePages, HighmemDirtyable(_pa), MmVmstat.FileLru(_pa));

    /// <summary>
    /// global_dirty_limits for a task that is not real-time, with the default vm.dirty_ratio (20) and
    /// vm.dirty_background_ratio (10) and no byte limits. global_dirtyable_memory is the free pages beyond
    /// totalreserve_pages, plus the file LRU, minus what highmem holds above its high
    /// watermarks (vm.highmem_is_dirtyable is 0), plus one so it is never 0. The ratios are scaled to
    /// per-PAGE_SIZE units first, as domain_dirty_limits does, so the rounding is the kernel's.
    /// </summary>
    /// <param name="freePages">NR_FREE_PAGES.</param>
    /// <param name="totalReserve">totalreserve_pages.</param>
    /// <param name="highmemDirtyable">Σ over populated highmem zones of free − min(free, high watermark).</param>
    /// <param name="fileLru">Pages on the active and inactive file LRU lists.</param>
    internal static (long Thresh, long Background) DirtyLimits(long freePages, long totalReserve, long highmemDirtyable, long fileLru = 0)
    {
        const long dirtyRatio = 20, backgroundRatio = 10;
        long x = freePages - Math.Min(freePages, totalReserve) + fileLru;
        x -= Math.Min(highmemDirtyable, x);
        long available = x + 1;
        long ratio = dirtyRatio * PhysMem.PageSize / 100;
        long bgRatio = backgroundRatio * PhysMem.PageSize / 100;
        long thresh = ratio * available / PhysMem.PageSize;
        long bg = bgRatio * available / PhysMem.PageSize;
        if (bg >= thresh)
        {
            bg = thresh / 2;
        }
        return (thresh, bg);
    }

    /// <summary>highmem_dirtyable_memory before its cap: free pages above the high watermark in populated
    /// highmem zones.</summary>
    private static long HighmemDirtyable(PageAllocator pa)
    {
        long x = 0;
        foreach (var zone in pa.Zones)
        {
            if (!ProcText.IsHighmem(pa, zone) || !ProcText.Populated(zone))
            {
                continue;
            }
            long free = Volatile.Read(ref zone.FreePages);
            x += free - Math.Min(free, zone.WmarkPages(Zone.WmarkHigh));
        }
        return x;
    }
}
