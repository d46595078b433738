// /proc/zoneinfo (mm/vmstat.c zoneinfo_show_print, 6.1): every zone the preset
// compiles in, populated or not, node by node; the node's counters under its
// first populated zone; watermarks with the boost; the protection (lowmem
// reserve) list; zone and NUMA counters; each CPU's pcp list. Each zone is
// printed under its own lock, never two at once.
using System.Text;
using Kmem.PageAlloc;

namespace Kmem.Proc;

internal static class Zoneinfo
{
    public static string Show(PageAllocator pa)
    {
        var items = VmstatText.For(pa.Arch.Preset);
        var sb = new StringBuilder();
        foreach (var node in pa.Nodes)
        {
            Zone? firstPopulated = node.Zones.FirstOrDefault(ProcText.Populated);
            foreach (var zone in node.Zones)
            {
                lock (zone.Lock)
                {
                    ShowZone(sb, pa, items, node, zone, zone == firstPopulated);
                }
            }
        }
        return sb.ToString();
    }

    private static void ShowZone(StringBuilder sb, PageAllocator pa, VmstatItem[] items, Node node, Zone zone, bool nodeStats)
    {
        sb.Append("Node ").Num(node.Id).Append(", zone ").Right(zone.Name, 8);
        if (nodeStats)
        {
            sb.Append("\n  per-node stats");
            foreach (var item in items)
            {
                if (item.Kind == VmstatKind.Node)
                {
                    sb.Append("\n      ").Left(item.Name, 12).Append(' ').Num(VmTotals.NodeValue(node, item));
                }
            }
        }
        sb.Append("\n  pages free     ").Num(Volatile.Read(ref zone.FreePages));
        sb.Append("\n        boost    ").Num(zone.WatermarkBoost);
        sb.Append("\n        min      ").Num(zone.WmarkPages(Zone.WmarkMin));
        sb.Append("\n        low      ").Num(zone.WmarkPages(Zone.WmarkLow));
        sb.Append("\n        high     ").Num(zone.WmarkPages(Zone.WmarkHigh));
        sb.Append("\n        spanned  ").Num(zone.SpannedPages);
        sb.Append("\n        present  ").Num(zone.PresentPages);
        sb.Append("\n        managed  ").Num(zone.ManagedPages);
        sb.Append("\n        cma      ").Num(0);
        // One entry per compiled-in zone (MAX_NR_ZONES), in zone order.
        sb.Append("\n        protection: (");
        var types = pa.Arch.Zones;
        for (int i = 0; i < types.Length; i++)
        {
            sb.Append(i == 0 ? "" : ", ").Num(zone.LowmemReserve[(int)types[i]]);
        }
        sb.Append(')');
        if (!ProcText.Populated(zone))
        {
            // The kernel stops here: nothing else about an empty zone is useful.
            sb.Append('\n');
            return;
        }
        var stats = zone.SumStats();
        foreach (var item in items)
        {
            if (item.Kind is VmstatKind.Zone or VmstatKind.Numa)
            {
                sb.Append("\n      ").Left(item.Name, 12).Append(' ').Num(VmTotals.ZoneValue(zone, item, stats));
            }
        }
        sb.Append("\n  pagesets");
        int threshold = zone.StatThreshold; // stat_threshold as the CPUs have it now
        for (int cpu = 0; cpu < zone.Pcp.Length; cpu++)
        {
            var pcp = zone.Pcp[cpu];
            sb.Append("\n    cpu: ").Num(cpu);
            sb.Append("\n              count: ").Num(Volatile.Read(ref pcp.Count));
            sb.Append("\n              high:  ").Num(Volatile.Read(ref pcp.High));
            sb.Append("\n              batch: ").Num(Volatile.Read(ref pcp.Batch));
            sb.Append("\n  vm stats threshold: ").Num(threshold);
        }
        // node_unreclaimable: kswapd_failures >= MAX_RECLAIM_RETRIES; there is no kswapd yet to fail.
        sb.Append("\n  node_unreclaimable:  ").Num(0);
        sb.Append("\n  start_pfn:           ").Num(zone.StartPfn);
        sb.Append('\n');
    }
}
