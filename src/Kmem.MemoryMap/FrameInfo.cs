// One frame described for a reader pointing at it (the live view's hover): what
// dump_page (mm/debug.c) would say of it, in the map's vocabulary: its zone, its
// state and the order of the block it belongs to (FrameScan.ClassifyOne), its
// pageblock's migrate type (get_pageblock_migratetype), the slab cache of a slab
// page (slab->slab_cache: the cache id in the head frame; SLOB pages mix caches),
// and the raw flags and counts of its struct page.
// Locking: none; the caller keeps the machine still (between two events).
using Kmem.Physical;
using Kmem.Slab;

namespace Kmem;

/// <summary>One page frame, described.</summary>
internal sealed record FrameDetails(ulong Pfn, string Zone, string State, int Order, string MigrateType, string? Cache, string Flags,
    int RefCount, int MapCount);

/// <summary>Describes one frame.</summary>
internal static class FrameInfo
{
    /// <summary>Frame <paramref name="pfn"/> of <paramref name="m"/>, or null past the end of memory.</summary>
    public static FrameDetails? Describe(Machine m, ulong pfn)
    {
        if (pfn >= m.Mem.MaxPfn)
        {
            return null;
        }
        uint p = (uint)pfn;
        FrameState state = FrameScan.ClassifyOne(m, p, out int order);
        ref PageFrame f = ref m.Mem.Frame(p);
        string? cache = null;
        if (state == FrameState.Slab)
        {
            uint head = (f.Flags & PageFlags.Tail) != 0 ? (uint)f.Private : p;
            cache = m.Options.Slab == SlabAllocator.Slob ? "(SLOB: objects of any cache share its pages)"
                : head < m.Mem.MaxPfn ? m.SlabLayer?.CacheById(SlabPage.CacheId(m.Mem.Frame(head).Private))?.Name : null;
        }
        return new FrameDetails(pfn, m.PageAllocator.ZoneOf(p).Name, state.ToString(), order, m.Mem.PageblockMigratetype(p).ToString(),
            cache, f.Flags.ToString(), Volatile.Read(ref f.RefCount), f.MapCount);
    }
}
