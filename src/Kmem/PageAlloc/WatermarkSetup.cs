// Watermarks, lowmem reserves, totalreserve_pages and per-CPU list sizing of the
// page allocator (init_per_zone_wmark_min, set_recommended_min_free_kbytes,
// __setup_per_zone_wmarks, setup_per_zone_lowmem_reserve,
// calculate_totalreserve_pages, zone_batchsize, zone_highsize, zone_pcp_update,
// refresh_zone_stat_thresholds).
// Runs at boot and when a tunable changes, taking each zone's lock to write the
// watermarks; the pcp sizes are published with volatile writes. The checks that
// read all this are PageAllocator's (Watermarks.cs).
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed class WatermarkSetup(PageAllocator allocator) : PageAllocatorPart(allocator)
{
    /// <summary>The boot-time setup: min_free_kbytes (given or computed), the watermarks, the vmstat thresholds,
    /// the lowmem reserves, and khugepaged's raise when min_free_kbytes was not given.</summary>
    public void Init(int? minFreeKbytes)
    {
        MinFreeKbytes = minFreeKbytes ?? CalculateMinFreeKbytes();
        if (_allocator.Cpus.Count > 1)
        {
            // 6.1 brings the secondary CPUs up (vmstat_cpu_online) before init_per_zone_wmark_min sets a watermark:
            // with low and min still 0, every zone gets a percpu_drift_mark, and no later refresh takes it away.
            RefreshZoneStatThresholds();
        }
        SetupPerZoneWmarks();
        RefreshZoneStatThresholds();
        SetupPerZoneLowmemReserve();
        if (minFreeKbytes is null)
        {
            SetRecommendedMinFreeKbytes();
        }
    }

    /// <summary>sysctl_lowmem_reserve_ratio, by zone type: DMA 256, DMA32 256, Normal 32, others 0.</summary>
    private static readonly int[] s_lowmemReserveRatio = [256, 256, 32, 0, 0, 0];

    /// <summary>vm.min_free_kbytes in force.</summary>
    public int MinFreeKbytes { get; private set; }

    /// <summary>totalreserve_pages: what MemAvailable and overcommit keep back.</summary>
    public long TotalReservePages { get; private set; }

    /// <summary>Sets vm.min_free_kbytes and recomputes the watermarks, as a write to the sysctl does.</summary>
    public void SetMinFreeKbytes(int kbytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(kbytes);
        MinFreeKbytes = kbytes;
        SetupPerZoneWmarks();
    }

    /// <summary>nr_free_buffer_pages at boot: managed pages above the high watermark in zones GFP_USER may use.</summary>
    private long NrFreeBufferPages() =>
        Zones.Where(z => z.Type <= ZoneType.Normal).Sum(z => Math.Max(0, z.ManagedPages - z.Watermark[Zone.WmarkHigh]));

    /// <summary>init_per_zone_wmark_min: int_sqrt(lowmem_kbytes * 16), clamped to [128, 262144].</summary>
    private int CalculateMinFreeKbytes()
    {
        long lowmemKbytes = NrFreeBufferPages() * (PhysMem.PageSize >> 10);
        long v = (long)Math.Sqrt(lowmemKbytes * 16.0);
        while (v * v > lowmemKbytes * 16)
        {
            v--;
        }
        while ((v + 1) * (v + 1) <= lowmemKbytes * 16)
        {
            v++;
        }
        return (int)Math.Clamp(v, 128, 262144);
    }

    /// <summary>
    /// __setup_per_zone_wmarks: min is each lowmem zone's share of min_free_kbytes (HighMem and Movable get
    /// managed/1024 clamped to [32, 128]); low and high each add max(min/4, managed × scale_factor/10000).
    /// Then the pcp lists are resized and totalreserve_pages recomputed.
    /// </summary>
    public void SetupPerZoneWmarks()
    {
        long pagesMin = (long)MinFreeKbytes >> (PhysMem.PageShift - 10);
        long lowmemPages = Zones.Where(z => !IsHighmemForWmark(z)).Sum(z => z.ManagedPages);
        int scale = Options.WatermarkScaleFactor;
        foreach (var zone in Zones)
        {
            lock (zone.Lock)
            {
                long tmp = lowmemPages == 0 ? 0 : pagesMin * zone.ManagedPages / lowmemPages;
                if (IsHighmemForWmark(zone))
                {
                    zone.Watermark[Zone.WmarkMin] = Math.Clamp(zone.ManagedPages / 1024, 32, 128);
                }
                else
                {
                    zone.Watermark[Zone.WmarkMin] = tmp;
                }
                long gap = Math.Max(tmp >> 2, zone.ManagedPages * scale / 10000);
                zone.WatermarkBoost = 0;
                zone.Watermark[Zone.WmarkLow] = zone.Watermark[Zone.WmarkMin] + gap;
                zone.Watermark[Zone.WmarkHigh] = zone.Watermark[Zone.WmarkLow] + gap;
                zone.Watermark[Zone.WmarkPromo] = zone.Watermark[Zone.WmarkHigh] + gap;
            }
        }
        foreach (var zone in Zones)
        {
            ZonePcpUpdate(zone);
        }
        CalculateTotalreservePages();
    }

    private static bool IsHighmemForWmark(Zone zone) => zone.IsHighMem;

    /// <summary>
    /// set_recommended_min_free_kbytes, run when khugepaged starts (THP presets with at least 512 MiB):
    /// keep 2 pageblocks free per lowmem zone plus 3 × 3 for the migrate types' fallbacks, at most 5% of lowmem.
    /// </summary>
    private void SetRecommendedMinFreeKbytes()
    {
        if (!Arch.HasThp || _allocator.TotalRamPages < (512L << 20) >> PhysMem.PageShift)
        {
            return;
        }
        long pageblock = 1L << _mem.PageblockOrder;
        int nrZones = Zones.Count(z => z.IsPopulated && z.Type <= ZoneType.Normal);
        long recommended = pageblock * nrZones * 2 + pageblock * nrZones * Zone.PcpTypes * Zone.PcpTypes;
        recommended = Math.Min(recommended, NrFreeBufferPages() / 20);
        recommended <<= PhysMem.PageShift - 10;
        if (recommended > MinFreeKbytes)
        {
            _allocator.Log.Printk($"khugepaged: raising min_free_kbytes from {MinFreeKbytes} to {recommended} to help transparent hugepage allocations");
            MinFreeKbytes = (int)recommended;
            SetupPerZoneWmarks();
        }
    }

    /// <summary>setup_per_zone_lowmem_reserve: reserve[j] of zone i = managed pages of zones i+1..j / ratio[i].</summary>
    private void SetupPerZoneLowmemReserve()
    {
        foreach (var node in Nodes)
        {
            var zones = node.Zones;
            for (int i = 0; i < zones.Length - 1; i++)
            {
                int ratio = s_lowmemReserveRatio[(int)zones[i].Type];
                bool clear = ratio == 0 || zones[i].ManagedPages == 0;
                long managed = 0;
                for (int j = i + 1; j < zones.Length; j++)
                {
                    managed += zones[j].ManagedPages;
                    zones[i].LowmemReserve[(int)zones[j].Type] = clear ? 0 : managed / ratio;
                }
            }
        }
        CalculateTotalreservePages();
    }

    /// <summary>calculate_totalreserve_pages: per zone, the largest lowmem reserve plus the high watermark.</summary>
    private void CalculateTotalreservePages()
    {
        long total = 0;
        foreach (var node in Nodes)
        {
            var zones = node.Zones;
            for (int i = 0; i < zones.Length; i++)
            {
                long max = 0;
                for (int j = i; j < zones.Length; j++)
                {
                    max = Math.Max(max, zones[i].LowmemReserve[(int)zones[j].Type]);
                }
                max += zones[i].Watermark[Zone.WmarkHigh];
                total += Math.Min(max, zones[i].ManagedPages);
            }
        }
        TotalReservePages = total;
    }

    /// <summary>zone_batchsize: about a quarter of a MiB's worth, as 2^n - 1, at least 1.</summary>
    public static int ZoneBatchsize(long managedPages)
    {
        long batch = Math.Min(managedPages >> 10, (1 << 20) / PhysMem.PageSize) / 4;
        batch = Math.Max(batch, 1);
        long v = batch + batch / 2;
        long pow = 1;
        while (pow * 2 <= v)
        {
            pow *= 2;
        }
        return (int)Math.Max(1, pow - 1);
    }

    /// <summary>zone_highsize: the low watermark (or managed / high_fraction) split between the node's CPUs
    /// and the online CPUs, at least 4 batches.</summary>
    private int ZoneHighsize(Zone zone, int batch)
    {
        int fraction = Options.PercpuPagelistHighFraction;
        // low_wmark_pages: the low watermark with the zone's boost.
        long total = fraction == 0 ? zone.Watermark[Zone.WmarkLow] + zone.WatermarkBoost : zone.ManagedPages / fraction;
        int split = zone.Node.Cpus.Length;
        if (split == 0)
        {
            split = _allocator.Cpus.Count;
        }
        return (int)Math.Max(total / split, (long)batch << 2);
    }

    /// <summary>zone_pcp_update: new high and batch for every CPU's lists of the zone.</summary>
    public void ZonePcpUpdate(Zone zone)
    {
        int batch = ZoneBatchsize(zone.ManagedPages);
        int high = ZoneHighsize(zone, batch);
        foreach (var pcp in zone.Pcp)
        {
            Volatile.Write(ref pcp.Batch, batch);
            Volatile.Write(ref pcp.High, high);
        }
    }

    /// <summary>refresh_zone_stat_thresholds: every zone's CPUs take the normal threshold; a zone whose CPUs could
    /// drift further together than from its low to its min watermark gets a percpu_drift_mark (high watermark plus
    /// that drift), and keeps any mark it had.</summary>
    public void RefreshZoneStatThresholds()
    {
        foreach (var zone in Zones)
        {
            int threshold = zone.NormalStatThreshold();
            lock (zone.Lock)
            {
                zone.StatThreshold = threshold;
                long tolerate = zone.WmarkPages(Zone.WmarkLow) - zone.WmarkPages(Zone.WmarkMin);
                long maxDrift = (long)_allocator.Cpus.Count * threshold;
                if (maxDrift > tolerate)
                {
                    zone.PercpuDriftMark = zone.WmarkPages(Zone.WmarkHigh) + maxDrift;
                }
            }
        }
    }
}
