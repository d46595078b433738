// /proc/buddyinfo (mm/vmstat.c frag_show_print): one line per populated zone,
// node by node, with the number of free blocks of each order. Each line is read
// under that zone's lock, as walk_zones_in_node does, so it is one consistent
// picture of the zone; different zones may be a moment apart.
using System.Text;
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Proc;

internal static class Buddyinfo
{
    public static string Show(PageAllocator pa)
    {
        var sb = new StringBuilder();
        foreach (var node in pa.Nodes)
        {
            foreach (var zone in node.Zones)
            {
                if (!ProcText.Populated(zone))
                {
                    continue;
                }
                lock (zone.Lock)
                {
                    // "Node %d, zone %8s " then "%6lu " per order: every line ends in a space.
                    sb.Append("Node ").Num(node.Id).Append(", zone ").Right(zone.Name, 8).Append(' ');
                    for (int order = 0; order < Arch.MaxOrder; order++)
                    {
                        sb.Num(zone.NrFree(order), 6).Append(' ');
                    }
                    sb.Append('\n');
                }
            }
        }
        return sb.ToString();
    }
}
