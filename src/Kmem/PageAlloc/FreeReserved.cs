// free_reserved_page (include/linux/mm.h): a page memblock kept reserved at boot (the
// initrd, the kernel's init sections) goes to the buddy allocator later, and
// adjust_managed_page_count adds it to its zone's managed pages. Nothing derived from
// the managed count (min_free_kbytes, watermarks, lowmem_reserve, pcp high) is computed
// again, as in 6.1. Kmem's reserved frames stand for each other: the zone's lowest one
// still reserved at or above the caller's cursor goes, and the cursor moves past it (a
// replay releasing thousands stays linear); frames a boot user took (BootReservations: the
// per-CPU first chunk) are not the initrd's or init sections' and stay. Kept out of PageAllocator (its size limit).
// Locking: the free takes the usual pcp lock → zone->lock; the cursor is the caller's.
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal static class FreeReserved
{
    /// <summary>Releases one reserved page of <paramref name="zone"/> to the buddy allocator and counts it as
    /// managed; false when the zone has no reserved page left at or above <paramref name="cursor"/> (0 to start).</summary>
    public static bool FreeReservedPage(PageAllocator pa, Zone zone, ref uint cursor)
    {
        for (uint pfn = Math.Max(cursor, zone.StartPfn); pfn < zone.EndPfn; pfn++)
        {
            ref PageFrame f = ref pa.Mem.Frame(pfn);
            if ((f.Flags & (PageFlags.Reserved | PageFlags.NoMap)) != PageFlags.Reserved || f.RefCount != 1 || pa.BootReserved.IsClaimed(pfn))
            {
                continue;
            }
            cursor = pfn + 1;
            pa.BootReserved.Release(pfn); // no boot user created later (the per-CPU first chunk) may claim it
            f.Flags &= ~PageFlags.Reserved; // ClearPageReserved; init_page_count left it at one reference
            f.Order = 0;
            pa.FreePages(new Page(pfn), 0);
            zone.ManagedPages++;
            return true;
        }
        cursor = zone.EndPfn;
        return false;
    }
}
