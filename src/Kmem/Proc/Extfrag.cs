// debugfs extfrag/unusable_index and extfrag/extfrag_index (mm/vmstat.c
// unusable_show_print, extfrag_show_print, fill_contig_page_info,
// __fragmentation_index): per populated zone and order, how much free memory is
// unusable for that order, and whether a failure there would be for lack of
// memory (toward 0) or fragmentation (toward 1). The figures themselves are
// PageAlloc's Fragmentation (compaction uses the same). Each zone under its own lock.
using System.Text;
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Proc;

internal static class Extfrag
{
    public static string UnusableIndex(PageAllocator pa) => Show(pa, unusable: true);

    public static string FragmentationIndex(PageAllocator pa) => Show(pa, unusable: false);

    private static string Show(PageAllocator pa, bool unusable)
    {
        var sb = new StringBuilder();
        foreach (var node in pa.Nodes)
        {
            if (!ProcText.HasMemory(node))
            {
                continue;
            }
            foreach (var zone in node.Zones)
            {
                if (!ProcText.Populated(zone))
                {
                    continue;
                }
                lock (zone.Lock)
                {
                    sb.Append("Node ").Num(node.Id).Append(", zone ").Right(zone.Name, 8).Append(' ');
                    for (int order = 0; order < Arch.MaxOrder; order++)
                    {
                        var info = Fragmentation.FillContigPageInfo(zone, order);
                        if (unusable)
                        {
                            // "%d.%03d "
                            int index = Fragmentation.UnusableFreeIndex(order, info);
                            sb.Num(index / 1000).Append('.').NumZero(index % 1000, 3).Append(' ');
                        }
                        else
                        {
                            // "%2d.%03d ": -1000 prints as "-1.000" (C division truncates, as C# does).
                            int index = Fragmentation.FragmentationIndex(order, info);
                            sb.Num(index / 1000, 2).Append('.').NumZero(index % 1000, 3).Append(' ');
                        }
                    }
                    sb.Append('\n');
                }
            }
        }
        return sb.ToString();
    }
}
