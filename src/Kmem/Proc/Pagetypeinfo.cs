// /proc/pagetypeinfo (mm/vmstat.c pagetypeinfo_show): per node with memory, the
// pageblock size, free blocks per order and migrate type, and the number of
// pageblocks of each migrate type. Each zone's rows are read under its lock (the
// free lists and the pageblock types are both guarded by it).
using System.Text;
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Proc;

internal static class Pagetypeinfo
{
    /// <summary>The free-list walk stops here and prints "&gt;" before the count, as the kernel does to
    /// bound its time under the zone lock.</summary>
    private const long FreeCountCap = 100000;

    public static string Show(PageAllocator pa)
    {
        var sb = new StringBuilder();
        foreach (var node in pa.Nodes)
        {
            if (!ProcText.HasMemory(node))
            {
                continue;
            }
            int pageblockOrder = pa.Arch.PageblockOrder;
            sb.Append("Page block order: ").Num(pageblockOrder).Append('\n');
            sb.Append("Pages per block:  ").Num(1L << pageblockOrder).Append('\n');
            sb.Append('\n');
            ShowFree(sb, node);
            ShowBlockCount(sb, pa, node);
        }
        return sb.ToString();
    }

    private static void ShowFree(StringBuilder sb, Node node)
    {
        sb.Left("Free pages count per migrate type at order", 43).Append(' ');
        for (int order = 0; order < Arch.MaxOrder; order++)
        {
            sb.Num(order, 6).Append(' ');
        }
        sb.Append('\n');
        foreach (var zone in node.Zones)
        {
            if (!ProcText.Populated(zone))
            {
                continue;
            }
            lock (zone.Lock)
            {
                for (int mt = 0; mt < Zone.MigrateTypes; mt++)
                {
                    sb.Append("Node ").Num(node.Id, 4).Append(", zone ").Right(zone.Name, 8)
                        .Append(", type ").Right(ZoneNames.Of((MigrateType)mt), 12).Append(' ');
                    for (int order = 0; order < Arch.MaxOrder; order++)
                    {
                        long n = zone.NrFree(order, (MigrateType)mt);
                        if (n >= FreeCountCap)
                        {
                            sb.Append('>');
                            n = FreeCountCap;
                        }
                        sb.Num(n, 6).Append(' ');
                    }
                    sb.Append('\n');
                }
            }
        }
    }

    /// <summary>pagetypeinfo_showblockcount: one pfn per pageblock from the zone's start to its end, counted
    /// by the pageblock's migrate type if the pageblock belongs to this zone.</summary>
    private static void ShowBlockCount(StringBuilder sb, PageAllocator pa, Node node)
    {
        sb.Append('\n').Left("Number of blocks type ", 23);
        for (int mt = 0; mt < Zone.MigrateTypes; mt++)
        {
            sb.Right(ZoneNames.Of((MigrateType)mt), 12).Append(' ');
        }
        sb.Append('\n');
        uint blockPages = 1u << pa.Arch.PageblockOrder;
        Span<long> count = stackalloc long[Zone.MigrateTypes];
        foreach (var zone in node.Zones)
        {
            if (!ProcText.Populated(zone))
            {
                continue;
            }
            count.Clear();
            lock (zone.Lock)
            {
                for (ulong pfn = zone.StartPfn; pfn < zone.EndPfn; pfn += blockPages)
                {
                    if (pa.ZoneOf((uint)pfn) != zone)
                    {
                        continue;
                    }
                    int mt = (int)pa.Mem.PageblockMigratetype((uint)pfn);
                    if (mt < Zone.MigrateTypes)
                    {
                        count[mt]++;
                    }
                }
            }
            sb.Append("Node ").Num(node.Id).Append(", zone ").Right(zone.Name, 8).Append(' ');
            foreach (long c in count)
            {
                sb.Num(c, 12).Append(' ');
            }
            sb.Append('\n');
        }
    }
}
