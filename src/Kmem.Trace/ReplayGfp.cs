// The gfp flags a replayed allocation is made with: the traced event's own, with __GFP_NOWARN added
// (the replay reports failures itself) and __GFP_NOFAIL taken away. The traced kernel's NOFAIL
// request was satisfied there; on a machine that cannot satisfy it (a smaller machine, another
// slab allocator) the page allocator would retry forever and the replay would never end, so the
// replay lets it fail and counts it among the allocations that succeeded in the trace but failed
// on Kmem. Stateless.
namespace Kmem;

internal static class ReplayGfp
{
    /// <summary>The flags to replay an allocation traced with <paramref name="traced"/>.</summary>
    public static Gfp Of(Gfp traced) => (traced & ~Gfp.NoFail) | Gfp.NoWarn;
}
