// __isolate_free_page (mm/page_alloc.c) for compaction's free scanner: a free
// buddy block leaves its list and becomes order-0 pages with one reference each,
// ready to receive migrated pages; the pages not used go back through the
// normal free path. Runs under zone->lock (taken here).
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed partial class Zone
{
    /// <summary>
    /// Takes the free block of <paramref name="order"/> at <paramref name="pfn"/> off the buddy lists, unless it is
    /// not (or no longer) a free block of that order or taking it would leave the zone at or under its min
    /// watermark. Returns whether the block was isolated.
    /// </summary>
    public bool IsolateFreePage(uint pfn, int order)
    {
        lock (Lock)
        {
            ref PageFrame f = ref _mem.Frame(pfn);
            if ((f.Flags & PageFlags.Buddy) == 0 || f.Order != order || !Spans(pfn))
            {
                return false;
            }
            if (Volatile.Read(ref VmstatFreePages) - (1L << order) <= Watermark[WmarkMin]) // zone_watermark_ok: the counter
            {
                return false;
            }
            DelFromFreeList(pfn, order);
            TakeOffFreeLists(pfn, 1u << order);
            return true;
        }
    }

    // Frames taken off the free lists by other than an allocation (compaction's isolation, a replay's stand-in): each
    // an order-0 page with one reference, no longer counted free. Under zone->lock.
    private void TakeOffFreeLists(uint pfn, uint count)
    {
        ModFreePages(-count);
        _mem.HandOut(pfn, (int)count);
        for (uint i = 0; i < count; i++)
        {
            ref PageFrame p = ref _mem.Frame(pfn + i);
            p.Flags = PageFlags.None;
            p.Order = 0;
            p.RefCount = 1;
            p.MapCount = 0;
            p.Private = 0;
        }
    }
}
