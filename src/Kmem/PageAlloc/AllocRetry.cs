// The retry logic of the allocation slow path (mm/page_alloc.c
// __alloc_pages_slowpath's loop, should_reclaim_retry, should_compact_retry,
// __alloc_pages_direct_compact): after direct reclaim and direct compaction
// fail, whether another round can help, judged from the zones' reclaimable
// pages against their min watermark and from compaction's result and priority.
// Locking: none of its own; the reclaimer's calls take the reclaim layer's
// locks, the free-list reads zone->lock.
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed partial class PageAllocator
{
    /// <summary>
    /// The slow path's retry loop: direct reclaim, then direct compaction at the current priority, and retry
    /// while should_reclaim_retry sees a zone that would pass its min watermark with its reclaimable pages
    /// (at most MAX_RECLAIM_RETRIES rounds without progress), or should_compact_retry wants another compaction
    /// round; then, for small orders that may, the OOM killer (__alloc_pages_may_oom) and retry.
    /// __GFP_NORETRY and costly orders without __GFP_RETRY_MAYFAIL get one round. The round cap only guards
    /// against a machine whose reclaim frees pages that others take for ever.
    /// </summary>
    private uint ReclaimRetryLoop(Gfp gfp, int order, AllocFlags flags, bool costly, CompactPriority compactPriority, ref AllocContext ctx)
    {
        int noProgressLoops = 0, compactionRetries = 0;
        for (int round = 0; round < 64 * SlowpathRetry.MaxReclaimRetries; round++)
        {
            if (round > 0)
            {
                // retry: keep kswapd awake while looping, and look at the free lists again.
                if ((flags & AllocFlags.Kswapd) != 0)
                {
                    WakeAllKswapds(order, ref ctx);
                }
                uint again = GetPageFromFreelist(gfp, order, flags, ref ctx);
                if (again != PhysMem.NoPfn)
                {
                    return again;
                }
            }
            uint pfn = DirectReclaim(gfp, order, flags, ref ctx, out long progress);
            if (pfn != PhysMem.NoPfn)
            {
                return pfn;
            }
            pfn = DirectCompact(gfp, order, flags, ref ctx, compactPriority, out var compactResult);
            if (pfn != PhysMem.NoPfn)
            {
                return pfn;
            }
            if ((gfp & Gfp.NoRetry) != 0 || (costly && (gfp & Gfp.RetryMayfail) == 0))
            {
                return PhysMem.NoPfn;
            }
            if (SlowpathRetry.ShouldReclaimRetry(Reclaimer, order, flags, progress > 0, ref noProgressLoops, ctx.Zonelist, ctx.Highest, ctx.Migratetype))
            {
                continue;
            }
            if (progress > 0 && SlowpathRetry.ShouldCompactRetry(Reclaimer, order, compactResult, ref compactPriority, ref compactionRetries, ctx.Zonelist, ctx.Highest))
            {
                continue;
            }
            if (MayOom(gfp, order, ctx.Highest) && Reclaimer.OutOfMemory(gfp, order))
            {
                pfn = GetPageFromFreelist(gfp, order, flags, ref ctx);
                if (pfn != PhysMem.NoPfn)
                {
                    return pfn;
                }
                noProgressLoops = 0;
                continue;
            }
            return PhysMem.NoPfn;
        }
        return PhysMem.NoPfn;
    }

    /// <summary>__alloc_pages_direct_compact: compact at a priority, then retry the free lists; a run that was
    /// not skipped counts a stall and a success or a failure.</summary>
    private uint DirectCompact(Gfp gfp, int order, AllocFlags flags, ref AllocContext ctx, CompactPriority prio, out CompactResult result)
    {
        result = CompactResult.Skipped;
        if (order == 0)
        {
            return PhysMem.NoPfn;
        }
        result = Reclaimer.TryToCompactPages(gfp, order, ctx.Zonelist, ctx.Highest, prio);
        if (result == CompactResult.Skipped)
        {
            return PhysMem.NoPfn;
        }
        uint pfn = GetPageFromFreelist(gfp, order, flags, ref ctx);
        Reclaimer.CompactionDone(pfn, order);
        return pfn;
    }
}

/// <summary>The slow path's retry rules: whether another round of reclaim or compaction can help.</summary>
internal static class SlowpathRetry
{
    /// <summary>MAX_RECLAIM_RETRIES.</summary>
    public const int MaxReclaimRetries = 16;

    /// <summary>MAX_COMPACT_RETRIES.</summary>
    public const int MaxCompactRetries = 16;

    /// <summary>
    /// should_reclaim_retry: progress (for orders up to costly) resets the count of rounds without it; past
    /// MAX_RECLAIM_RETRIES, or when no zone would pass its min watermark for the order even with all its
    /// reclaimable pages free, the last HighAtomic pageblocks are released and the answer is whether any was.
    /// </summary>
    public static bool ShouldReclaimRetry(IReclaimer reclaimer, int order, AllocFlags flags, bool didProgress, ref int noProgressLoops, Zone[] zonelist, ZoneType highest, int migratetype)
    {
        noProgressLoops = didProgress && order <= PerCpuPages.CostlyOrder ? 0 : noProgressLoops + 1;
        if (noProgressLoops <= MaxReclaimRetries)
        {
            foreach (var zone in zonelist)
            {
                if (zone.Type > highest)
                {
                    continue;
                }
                long available = reclaimer.ZoneReclaimablePages(zone) + Volatile.Read(ref zone.FreePages);
                if (PageAllocator.ZoneWatermarkOk(zone, order, zone.WmarkPages(Zone.WmarkMin), highest, flags, available))
                {
                    return true;
                }
            }
        }
        bool released = false;
        foreach (var zone in zonelist)
        {
            released |= zone.UnreserveHighatomicPageblock(migratetype, force: true);
        }
        return released;
    }

    /// <summary>
    /// should_compact_retry: only for order > 0. A success counts a retry (up to MAX_COMPACT_RETRIES, a quarter
    /// for costly orders); a skipped run retries if reclaim could give compaction enough to work with; a
    /// complete, deferred or partial run raises the priority (down to sync-full, sync-light for costly orders)
    /// with the count reset, and gives up once there is none left.
    /// </summary>
    public static bool ShouldCompactRetry(IReclaimer reclaimer, int order, CompactResult result, ref CompactPriority priority, ref int retries, Zone[] zonelist, ZoneType highest)
    {
        if (order == 0)
        {
            return false;
        }
        if (result == CompactResult.Success)
        {
            retries++;
        }
        if (result == CompactResult.Skipped)
        {
            return reclaimer.CompactionZonelistSuitable(order, zonelist, highest);
        }
        if (result is not (CompactResult.Complete or CompactResult.Deferred or CompactResult.Contended or CompactResult.PartialSkipped))
        {
            int maxRetries = order > PerCpuPages.CostlyOrder ? MaxCompactRetries / 4 : MaxCompactRetries;
            if (retries <= maxRetries)
            {
                return true;
            }
        }
        var minPriority = order > PerCpuPages.CostlyOrder ? CompactPriority.SyncLight : CompactPriority.SyncFull;
        if (priority > minPriority)
        {
            priority--;
            retries = 0;
            return true;
        }
        return false;
    }
}
