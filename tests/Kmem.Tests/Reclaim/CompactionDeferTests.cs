// Compaction deferral (defer_compaction, compaction_deferred, compaction_defer_reset)
// and try_to_compact_pages' refusal of GFP_NOIO.
using Kmem.PageAlloc;
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

public sealed class CompactionDeferTests
{
    [Fact]
    public void AFailedZoneIsSkippedForTwiceAsManyAttemptsEachTimeUntilASuccessResetsIt()
    {
        using var m = Boot();
        var c = m.Mm.Compaction;
        var zone = m.PageAllocator.Nodes[0].Zones.Single(z => z.Type == ZoneType.Dma32);
        Assert.False(c.CompactionDeferred(zone, 4)); // never failed: not deferred
        c.DeferCompaction(zone, 4); // shift 1: the next attempt is skipped
        Assert.Equal((0, 1, 0), c.DeferState(zone));
        Assert.True(c.CompactionDeferred(zone, 4));
        Assert.False(c.CompactionDeferred(zone, 4)); // 2 considered = 1 << 1: try again
        c.DeferCompaction(zone, 4); // shift 2: three skipped
        Assert.True(c.CompactionDeferred(zone, 4));
        Assert.True(c.CompactionDeferred(zone, 4));
        Assert.True(c.CompactionDeferred(zone, 4));
        Assert.False(c.CompactionDeferred(zone, 4));
        for (int i = 0; i < 10; i++)
        {
            c.DeferCompaction(zone, 4);
        }
        Assert.Equal(Kmem.Reclaim.Compaction.CompactMaxDeferShift, c.DeferState(zone).DeferShift);
        // A success at order 4 without the page: orders up to 4 are no longer deferred, the backoff stays.
        c.CompactionDeferReset(zone, 4, allocSuccess: false);
        Assert.Equal((0, 6, 5), c.DeferState(zone));
        Assert.False(c.CompactionDeferred(zone, 3));
        c.CompactionDeferReset(zone, 4, allocSuccess: true);
        Assert.Equal((0, 0, 5), c.DeferState(zone));
    }

    [Fact]
    public void GfpNoioNeverCompacts()
    {
        using var m = Boot();
        var zonelist = m.PageAllocator.Nodes[0].ZonelistFallback;
        Assert.Equal(CompactResult.Skipped, m.Mm.TryToCompactPages(Gfp.NoIo | Gfp.Movable, 4, zonelist, ZoneType.Normal, CompactPriority.SyncFull));
        Assert.Equal(0, Vmstat(m)["compact_migrate_scanned"]);
    }
}
