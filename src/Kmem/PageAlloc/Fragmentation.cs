// The fragmentation measures of a zone's free lists (mm/vmstat.c
// fill_contig_page_info, __fragmentation_index, unusable_free_index;
// mm/compaction.c extfrag_for_order): how much of the free memory can serve a
// request of a given order. They sit here, beside the free-area counts they
// read, because compaction (compaction_suitable, the proactive score) and the
// debugfs extfrag reports both use them, as in the kernel.
// Locking: the counts are read without zone->lock (each one a single read);
// a caller that wants one consistent picture of a zone holds zone->lock.
using Kmem.Physical;

namespace Kmem.PageAlloc;

/// <summary>struct contig_page_info: a zone's free pages and blocks, and how many blocks of the order asked
/// about the free blocks could provide.</summary>
internal readonly record struct ContigPageInfo(long FreePages, long FreeBlocksTotal, long FreeBlocksSuitable);

/// <summary>Fragmentation figures of a zone's free lists.</summary>
internal static class Fragmentation
{
    /// <summary>fill_contig_page_info: free blocks and pages of the zone, and how many order-<paramref name="suitableOrder"/>
    /// blocks the free blocks could provide.</summary>
    public static ContigPageInfo FillContigPageInfo(Zone zone, int suitableOrder)
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

    /// <summary>__fragmentation_index: 0 when there are no free blocks, −1000 when a suitable block exists,
    /// else 1000 − (1000 + free_pages × 1000 / 2^order) / free_blocks_total: toward 0 when a failure would be
    /// for lack of memory, toward 1000 when it would be for fragmentation.</summary>
    public static int FragmentationIndex(int order, in ContigPageInfo info)
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

    /// <summary>fragmentation_index: the index of an order-<paramref name="order"/> request in <paramref name="zone"/>.</summary>
    public static int FragmentationIndex(Zone zone, int order) => FragmentationIndex(order, FillContigPageInfo(zone, order));

    /// <summary>unusable_free_index: the share (×1000) of free pages that cannot serve an order-<paramref name="order"/> request.</summary>
    public static int UnusableFreeIndex(int order, in ContigPageInfo info) =>
        info.FreePages == 0 ? 1000
        : (int)((info.FreePages - (info.FreeBlocksSuitable << order)) * 1000 / info.FreePages);

    /// <summary>extfrag_for_order: percent of the zone's free pages not in blocks of at least that order.</summary>
    public static long ExtfragForOrder(Zone zone, int order)
    {
        var info = FillContigPageInfo(zone, order);
        return info.FreePages == 0 ? 0 : (info.FreePages - (info.FreeBlocksSuitable << order)) * 100 / info.FreePages;
    }
}
