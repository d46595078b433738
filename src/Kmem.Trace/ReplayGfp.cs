// The gfp flags a replayed allocation is made with: the traced event's own, with __GFP_NOWARN added
// (the replay reports failures itself) and __GFP_NOFAIL taken away. The traced kernel's NOFAIL
// request was satisfied there; on a machine that cannot satisfy it (a smaller machine, another
// slab allocator) the page allocator would retry forever and the replay would never end, so the
// replay lets it fail and counts it among the allocations that succeeded in the trace but failed
// on Kmem. The bulk allocator's pages are replayed as 6.1's __alloc_pages_bulk takes them: from the
// per-CPU lists (refilled from the buddy lists) while the zone passes its watermark, never reclaiming
// (what it could not take, vmalloc allocates page by page, as mm_page_alloc events of their own).
// Stateless.
namespace Kmem;

internal static class ReplayGfp
{
    /// <summary>The flags to replay an allocation traced with <paramref name="traced"/>.</summary>
    public static Gfp Of(Gfp traced) => (traced & ~Gfp.NoFail) | Gfp.NoWarn;

    /// <summary>The flags of a stand-in for a page the bulk allocator took: GFP_KERNEL that neither reclaims nor wakes kswapd.</summary>
    public const Gfp Bulk = (Gfp.Kernel & ~Gfp.Reclaim) | Gfp.NoWarn;
}
