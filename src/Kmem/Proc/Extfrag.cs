// debugfs extfrag/unusable_index and extfrag/extfrag_index (mm/vmstat.c
// unusable_show_print, extfrag_show_print, fill_contig_page_info,
// __fragmentation_index): per populated zone and order, how much free memory is
// unusable for that order, and whether a failure there would be for lack of
// memory (toward 0) or fragmentation (toward 1). Each zone under its own lock.
using System.Text;
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Proc;

internal static class Extfrag
{
    /// <summary>struct contig_page_info.</summary>
    internal readonly record struct ContigPageInfo(long FreePages, long FreeBlocksTotal, long FreeBlocksSuitable);

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
                        var info = FillContigPageInfo(zone, order);
                        if (unusable)
                        {
                            // "%d.%03d "
                            int index = UnusableFreeIndex(order, info);
                            sb.Num(index / 1000).Append('.').NumZero(index % 1000, 3).Append(' ');
                        }
                        else
                        {
                            // "%2d.%03d ": -1000 prints as "-1.000" (C division truncates, as C# does).
                            int index = FragmentationIndex(order, info);
                            sb.Num(index / 1000, 2).Append('.').NumZero(index % 1000, 3).Append(' ');
                        }
                    }
                    sb.Append('\n');
                }
            }
        }
        return sb.ToString();
    }

    /// <summary>fill_contig_page_info: free blocks and pages of the zone, and how many order-<paramref name="suitableOrder"/>
    /// blocks the free blocks could provide.</summary>
    internal static ContigPageInfo FillContigPageInfo(Zone zone, int suitableOrder)
    {
        long freePages = 0, total = 0, suitable = 0;
        for (int order = 0; order < Arch.MaxOrder; order++)
        {
            long blocks = zone.NrFree(order);
            total += blocks;
            freePages += blocks << order;
            if (order >= suitableOrder)
            {
                suitable += blocks << (order - suitableOrder);
            }
        }
        return new ContigPageInfo(freePages, total, suitable);
    }

    /// <summary>unusable_free_index: the share (×1000) of free pages that cannot serve an order-<paramref name="order"/> request.</summary>
    internal static int UnusableFreeIndex(int order, in ContigPageInfo info) =>
        info.FreePages == 0 ? 1000
        : (int)((info.FreePages - (info.FreeBlocksSuitable << order)) * 1000 / info.FreePages);

    /// <summary>__fragmentation_index: 0 when there are no free blocks, −1000 when a suitable block exists,
    /// else 1000 − (1000 + free_pages × 1000 / 2^order) / free_blocks_total.</summary>
    internal static int FragmentationIndex(int order, in ContigPageInfo info)
    {
        if (info.FreeBlocksTotal == 0)
        {
            return 0;
        }
        if (info.FreeBlocksSuitable != 0)
        {
            return -1000;
        }
        long requested = 1L << order;
        return (int)(1000 - ((1000 + (info.FreePages * 1000 / requested)) / info.FreeBlocksTotal));
    }
}
