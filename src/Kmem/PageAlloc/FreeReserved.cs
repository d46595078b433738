// free_reserved_page (include/linux/mm.h): a page memblock kept reserved at boot (the
// initrd, the kernel's init sections) goes to the buddy allocator later, and
// adjust_managed_page_count adds it to its zone's managed pages. Nothing derived from
// the managed count (min_free_kbytes, watermarks, lowmem_reserve, pcp high) is computed
// again, as in 6.1. Kmem's reserved frames stand for each other: the zone's lowest one
// still reserved goes (a cursor per zone, so a replay releasing thousands stays linear).
// Locking: the free takes the usual pcp lock → zone->lock; the cursor is the replaying
// thread's (a trace replay is its only user).
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed partial class PageAllocator
{
    private uint[]? _reservedCursor;

    /// <summary>Releases one reserved page of <paramref name="zone"/> to the buddy allocator and counts it as
    /// managed; false when the zone has no reserved page left.</summary>
    public bool FreeReservedPage(Zone zone)
    {
        _reservedCursor ??= [.. Zones.Select(z => z.StartPfn)];
        for (uint pfn = Math.Max(_reservedCursor[zone.Index], zone.StartPfn); pfn < zone.EndPfn; pfn++)
        {
            ref PageFrame f = ref _mem.Frame(pfn);
            if ((f.Flags & (PageFlags.Reserved | PageFlags.NoMap)) != PageFlags.Reserved || f.RefCount != 1)
            {
                continue;
            }
            _reservedCursor[zone.Index] = pfn + 1;
            f.Flags &= ~PageFlags.Reserved; // ClearPageReserved; init_page_count left it at one reference
            f.Order = 0;
            FreePages(new Page(pfn), 0);
            zone.ManagedPages++;
            return true;
        }
        _reservedCursor[zone.Index] = zone.EndPfn;
        return false;
    }
}
