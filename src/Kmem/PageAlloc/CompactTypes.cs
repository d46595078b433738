// What the page allocator's slow path and compaction tell each other
// (include/linux/compaction.h enum compact_priority, enum compact_result) and
// compaction's question to a zone's free lists (__compact_finished: is there a
// free block of the order on the request's list, or one a fallback may steal).
// Immutable enums; the zone helper reads the free lists without zone->lock, as
// the kernel's check does (a stale answer costs one more or one less round).
using Kmem.Physical;

namespace Kmem.PageAlloc;

/// <summary>enum compact_priority: lower is more thorough.</summary>
internal enum CompactPriority
{
    /// <summary>COMPACT_PRIO_SYNC_FULL = MIN_COMPACT_PRIORITY: the whole zone, skip hints ignored.</summary>
    SyncFull = 0,
    /// <summary>COMPACT_PRIO_SYNC_LIGHT = MIN_COMPACT_COSTLY_PRIORITY = DEF_COMPACT_PRIORITY.</summary>
    SyncLight = 1,
    /// <summary>COMPACT_PRIO_ASYNC = INIT_COMPACT_PRIORITY.</summary>
    Async = 2,
}

/// <summary>enum compact_result, in the kernel's order (try_to_compact_pages keeps the largest).</summary>
internal enum CompactResult
{
    /// <summary>COMPACT_NOT_SUITABLE_ZONE: the failure is a lack of memory, not fragmentation.</summary>
    NotSuitableZone,
    /// <summary>COMPACT_SKIPPED: too few free pages to compact into.</summary>
    Skipped,
    /// <summary>COMPACT_DEFERRED: it failed here recently.</summary>
    Deferred,
    /// <summary>COMPACT_NO_SUITABLE_PAGE.</summary>
    NoSuitablePage,
    /// <summary>COMPACT_CONTINUE.</summary>
    Continue,
    /// <summary>COMPACT_COMPLETE: the whole zone was scanned without making the block.</summary>
    Complete,
    /// <summary>COMPACT_PARTIAL_SKIPPED: the scanners met, but part of the zone was skipped.</summary>
    PartialSkipped,
    /// <summary>COMPACT_CONTENDED.</summary>
    Contended,
    /// <summary>COMPACT_SUCCESS: a block of the order is free.</summary>
    Success,
}

internal sealed partial class Zone
{
    /// <summary>__compact_finished's free-list test: a free block of order <paramref name="order"/> or more on
    /// <paramref name="mt"/>'s list, or (for a movable request, or when <paramref name="steal"/> allows) one a
    /// fallback may take. Returns Success, Continue (a non-movable request should finish its pageblock first)
    /// or NoSuitablePage.</summary>
    public CompactResult CompactFreeBlock(int order, int mt, bool steal)
    {
        for (int o = Math.Max(order, 0); o <= Arch.MaxOrder - 1; o++)
        {
            if (!FreeAreaEmpty(o, mt))
            {
                return CompactResult.Success;
            }
            if (FindSuitableFallback(o, mt, out _) != -1)
            {
                return mt == (int)MigrateType.Movable || steal ? CompactResult.Success : CompactResult.Continue;
            }
        }
        return CompactResult.NoSuitablePage;
    }
}
