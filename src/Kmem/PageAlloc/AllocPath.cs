// The allocation paths of mm/page_alloc.c: __alloc_pages with its fast path
// (get_page_from_freelist at the low watermark, order 0..3 and THP through the
// per-CPU lists) and its named slow path (__alloc_pages_slowpath: wake kswapd,
// retry at the min watermark with the caller's reserves, direct reclaim, give
// up with the kernel's warning).
// Locking: pcp lock (try-lock) → zone->lock, never the reverse. An allocation
// that fails returns NoPfn; nothing here throws for lack of memory.
using System.Runtime.CompilerServices;
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed partial class PageAllocator
{
    /// <summary>pcp_allowed_order: orders up to PAGE_ALLOC_COSTLY_ORDER, and pageblock_order with THP.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool PcpAllowedOrder(int order) =>
        order <= PerCpuPages.CostlyOrder || (Arch.HasThp && order == _mem.PageblockOrder);

    /// <summary>__alloc_pages: a block of 2^order frames starting from node <paramref name="preferredNid"/>
    /// (-1: the current CPU's node), or Page.Null.</summary>
    public Page AllocPages(Gfp gfp, int order, int preferredNid)
    {
        if ((uint)order >= Arch.MaxOrder)
        {
            _reports.WarnOrderTooLarge(gfp, order);
            return Page.Null;
        }
        if (FailPageAlloc.Enabled && FailPageAlloc.ShouldFailAllocPage(gfp, order))
        {
            return Page.Null;
        }
        int zoneBits = _gfpZoneTable[(int)gfp & 0xF];
        int mt = (int)(gfp & (Gfp.Reclaimable | Gfp.Movable)) >> 3;
        if (zoneBits < 0 || mt == (int)MigrateType.HighAtomic)
        {
            _reports.BadGfp(gfp);
            return Page.Null;
        }
        var highest = (ZoneType)zoneBits;
        int cpu = _cpus.Current;
        Node node = preferredNid < 0 ? Nodes[_cpus.NodeOf[cpu]] : Nodes[preferredNid];
        Zone[] zonelist = (gfp & Gfp.ThisNode) != 0 ? node.ZonelistNoFallback : node.ZonelistFallback;
        Zone? preferred = FirstZone(zonelist, highest);
        if (preferred is null)
        {
            _reports.WarnAlloc(gfp, order);
            return Page.Null;
        }
        var ctx = new AllocContext(zonelist, highest, preferred, mt, cpu);
        AllocFlags flags = AllocFlags.WmarkLow | AllocFlagsNofragment(preferred, gfp);
        uint pfn = GetPageFromFreelist(gfp, order, flags, ref ctx);
        if (pfn == PhysMem.NoPfn)
        {
            pfn = AllocPagesSlowpath(gfp, order, ref ctx);
            if (pfn == PhysMem.NoPfn)
            {
                return Page.Null;
            }
        }
        return new Page(pfn);
    }

    /// <summary>What one allocation carries through its paths (struct alloc_context).</summary>
    private readonly struct AllocContext(Zone[] zonelist, ZoneType highest, Zone preferred, int migratetype, int cpu)
    {
        public readonly Zone[] Zonelist = zonelist;
        public readonly ZoneType Highest = highest;
        public readonly Zone Preferred = preferred;
        public readonly int Migratetype = migratetype;
        public readonly int Cpu = cpu;
    }

    private static Zone? FirstZone(Zone[] zonelist, ZoneType highest)
    {
        foreach (var z in zonelist)
        {
            if (z.Type <= highest)
            {
                return z;
            }
        }
        return null;
    }

    /// <summary>alloc_flags_nofragment: a Normal-zone request on a machine with DMA32 prefers the lower zone
    /// to fragmenting a pageblock.</summary>
    private AllocFlags AllocFlagsNofragment(Zone preferred, Gfp gfp)
    {
        var flags = (AllocFlags)(uint)(gfp & Gfp.KswapdReclaim);
        if (preferred.Type != ZoneType.Normal || !Arch.HasDma32)
        {
            return flags;
        }
        if (Nodes.Length > 1 && preferred.Node.ZoneOf(ZoneType.Dma32) is not { IsManaged: true })
        {
            return flags;
        }
        return flags | AllocFlags.NoFragment;
    }

    /// <summary>get_page_from_freelist: the first zone of the zonelist whose watermark allows it.</summary>
    private uint GetPageFromFreelist(Gfp gfp, int order, AllocFlags flags, ref AllocContext ctx)
    {
    retry:
        bool noFallback = (flags & AllocFlags.NoFragment) != 0;
        foreach (var zone in ctx.Zonelist)
        {
            if (zone.Type > ctx.Highest)
            {
                continue;
            }
            if (noFallback && Nodes.Length > 1 && zone != ctx.Preferred && zone.Node != ctx.Preferred.Node)
            {
                flags &= ~AllocFlags.NoFragment;
                goto retry;
            }
            long mark = zone.WmarkPages((int)(flags & AllocFlags.WmarkMask));
            if (!ZoneWatermarkFast(zone, order, mark, ctx.Highest, flags, gfp) && (flags & AllocFlags.NoWatermarks) == 0)
            {
                continue;
            }
            uint pfn = Rmqueue(ctx.Preferred, zone, order, flags, ctx.Migratetype, ctx.Cpu);
            if (pfn != PhysMem.NoPfn)
            {
                PrepNewPage(pfn, order, gfp);
                if (order > 0 && (flags & AllocFlags.Harder) != 0)
                {
                    zone.ReserveHighatomicPageblock(pfn);
                }
                return pfn;
            }
        }
        if (noFallback)
        {
            flags &= ~AllocFlags.NoFragment;
            goto retry;
        }
        return PhysMem.NoPfn;
    }

    /// <summary>rmqueue: order 0..3 (and THP) from this CPU's lists, the rest from the buddy lists.</summary>
    private uint Rmqueue(Zone preferred, Zone zone, int order, AllocFlags flags, int mt, int cpu)
    {
        uint pfn = PhysMem.NoPfn;
        if (PcpAllowedOrder(order) && !BuddyOnly.Here)
        {
            pfn = RmqueuePcplist(preferred, zone, order, mt, flags, cpu);
        }
        if (pfn == PhysMem.NoPfn)
        {
            pfn = RmqueueBuddy(preferred, zone, order, flags, mt, cpu);
        }
        if (zone.BoostedWatermark)
        {
            zone.BoostedWatermark = false;
            Reclaimer.WakeupKswapd(zone, 0, zone.Type);
        }
        return pfn;
    }

    /// <summary>rmqueue_pcplist: pop this CPU's list, refilling it with a batch from the buddy lists when
    /// empty. Gives up (NoPfn) when another thread holds the CPU's lists.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint RmqueuePcplist(Zone preferred, Zone zone, int order, int mt, AllocFlags flags, int cpu)
    {
        var pcp = zone.Pcp[cpu];
        VmBug.LockdepAssertNotHeld(zone.Lock); // order: pcp lock → zone->lock
        if (!pcp.TryLock())
        {
            return PhysMem.NoPfn;
        }
        // try/finally: a VM_BUG_ON report thrown from the refill must not leave the CPU's list locked (free of
        // cost when nothing is thrown).
        try
        {
            pcp.FreeFactor >>= 1;
            ref PfnList list = ref pcp.Lists[PerCpuPages.OrderToPindex(mt, order)];
            if (list.IsEmpty && !RmqueueBulk(zone, pcp, order, ref list, mt, flags))
            {
                return PhysMem.NoPfn;
            }
            uint pfn = list.Head;
            list.Remove(_mem, pfn);
            pcp.Count -= 1 << order;
            pcp.Stats.PgAlloc += 1L << order;
            CountNuma(ref pcp.Stats, preferred, zone, cpu);
            return pfn;
        }
        finally
        {
            pcp.Unlock();
        }
    }

    /// <summary>rmqueue_bulk: refill a pcp list with max(batch >> order, 2) blocks under zone->lock.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool RmqueueBulk(Zone zone, PerCpuPages pcp, int order, ref PfnList list, int mt, AllocFlags flags)
    {
        int batch = pcp.Batch;
        if (batch > 1)
        {
            batch = Math.Max(batch >> order, 2);
        }
        int allocated = 0;
        lock (zone.Lock)
        {
            for (; allocated < batch; allocated++)
            {
                uint pfn = zone.Rmqueue(order, mt, flags);
                if (pfn == PhysMem.NoPfn)
                {
                    break;
                }
                _mem.Frame(pfn).Flags = PageFlags.Pcp;
                list.AddTail(_mem, pfn);
            }
            zone.ModFreePages(-((long)allocated << order)); // one change for the batch, as rmqueue_bulk makes it
            zone.Counters.Stats.PcpRefill += allocated;
            if (Observer is { } observer && allocated > 0)
            {
                observer.PcpRefill(zone.Index, _cpus.Current, order, mt, allocated);
            }
        }
        pcp.Count += allocated << order;
        return allocated > 0;
    }

    /// <summary>rmqueue_buddy: one block straight from the buddy lists (high orders, or a busy pcp);
    /// high-order atomic requests try the HighAtomic reserve first.</summary>
    private uint RmqueueBuddy(Zone preferred, Zone zone, int order, AllocFlags flags, int mt, int cpu)
    {
        lock (zone.Lock)
        {
            uint pfn = PhysMem.NoPfn;
            if (order > 0 && (flags & AllocFlags.Harder) != 0)
            {
                pfn = zone.RmqueueSmallest(order, (int)MigrateType.HighAtomic);
            }
            if (pfn == PhysMem.NoPfn)
            {
                pfn = zone.Rmqueue(order, mt, flags);
                if (pfn == PhysMem.NoPfn)
                {
                    return pfn;
                }
            }
            zone.ModFreePages(-(1L << order));
            zone.Counters.Stats.PgAlloc += 1L << order;
            CountNuma(ref zone.Counters.Stats, preferred, zone, cpu);
            return pfn;
        }
    }

    /// <summary>zone_statistics: a hit when the page came from the preferred node, else a miss here and a
    /// foreign allocation there; local or other by the CPU's node.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void CountNuma(ref PageAllocStats stats, Zone preferred, Zone zone, int cpu)
    {
        if (zone.Node == preferred.Node)
        {
            stats.NumaHit++;
        }
        else
        {
            stats.NumaMiss++;
            Interlocked.Increment(ref preferred.Counters.Stats.NumaForeign);
        }
        if (zone.Node.Id == _cpus.NodeOf[cpu])
        {
            stats.NumaLocal++;
        }
        else
        {
            stats.NumaOther++;
        }
    }

    /// <summary>prep_new_page: a referenced page, zeroed for __GFP_ZERO or init_on_alloc, compound for
    /// __GFP_COMP.</summary>
    internal void PrepNewPage(uint pfn, int order, Gfp gfp)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        f.Flags = PageFlags.None;
        f.Order = (byte)order;
        f.MapCount = 0;
        f.Private = 0;
        f.RefCount = 1;
        if ((gfp & Gfp.Zero) != 0 || Options.InitOnAlloc)
        {
            _mem.ZeroFrames(pfn, 1 << order);
        }
        _mem.HandOut(pfn, 1 << order);
        if (order > 0 && (gfp & Gfp.Comp) != 0)
        {
            PrepCompoundPage(pfn, order);
        }
    }

    /// <summary>prep_compound_page: PG_head on the first frame, tails pointing at it.</summary>
    private void PrepCompoundPage(uint pfn, int order)
    {
        _mem.Frame(pfn).Flags |= PageFlags.Head;
        for (uint i = 1; i < 1u << order; i++)
        {
            ref PageFrame t = ref _mem.Frame(pfn + i);
            t.Flags = PageFlags.Tail;
            t.Private = pfn;
            t.RefCount = 0;
        }
    }

    /// <summary>gfp_to_alloc_flags: the min watermark; __GFP_HIGH halves it; __GFP_ATOMIC (without
    /// __GFP_NOMEMALLOC) may dig deeper.</summary>
    private static AllocFlags GfpToAllocFlags(Gfp gfp)
    {
        var flags = AllocFlags.WmarkMin | AllocFlags.Cpuset | (AllocFlags)(uint)(gfp & (Gfp.High | Gfp.KswapdReclaim));
        if ((gfp & Gfp.AtomicBit) != 0)
        {
            if ((gfp & Gfp.NoMemalloc) == 0)
            {
                flags |= AllocFlags.Harder;
            }
            flags &= ~AllocFlags.Cpuset;
        }
        return flags;
    }

    /// <summary>__gfp_pfmemalloc_flags: __GFP_MEMALLOC ignores the watermarks unless __GFP_NOMEMALLOC.</summary>
    private static AllocFlags PfmemallocFlags(Gfp gfp) =>
        (gfp & Gfp.NoMemalloc) != 0 ? 0 : (gfp & Gfp.Memalloc) != 0 ? AllocFlags.NoWatermarks : 0;

    /// <summary>
    /// __alloc_pages_slowpath: wake kswapd, retry at the min watermark with the caller's reserves, then,
    /// for callers that may sleep, direct reclaim in a retry loop (with a pcp drain and release of the
    /// HighAtomic reserve) and, for small orders, the OOM killer. __GFP_NORETRY and costly orders without
    /// __GFP_RETRY_MAYFAIL give up after one round. __GFP_NOFAIL never fails when the caller may reclaim;
    /// without __GFP_DIRECT_RECLAIM (a caller bug in the kernel) it makes one last try with ALLOC_HARDER.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private uint AllocPagesSlowpath(Gfp gfp, int order, ref AllocContext ctx)
    {
        bool canDirectReclaim = (gfp & Gfp.DirectReclaim) != 0;
        bool costly = order > PerCpuPages.CostlyOrder;
        AllocFlags flags = GfpToAllocFlags(gfp);
        if ((flags & AllocFlags.Kswapd) != 0)
        {
            WakeAllKswapds(order, ref ctx);
        }
        uint pfn = GetPageFromFreelist(gfp, order, flags, ref ctx);
        if (pfn != PhysMem.NoPfn)
        {
            return pfn;
        }
        AllocFlags reserve = PfmemallocFlags(gfp);
        if (reserve != 0)
        {
            flags = reserve | (flags & AllocFlags.Kswapd);
            pfn = GetPageFromFreelist(gfp, order, flags, ref ctx);
            if (pfn != PhysMem.NoPfn)
            {
                return pfn;
            }
        }
        var compactPriority = CompactPriority.SyncLight; // DEF_COMPACT_PRIORITY
        bool giveUp = false;
        if (canDirectReclaim && order > 0 && (costly || ctx.Migratetype != (int)MigrateType.Movable) && reserve == 0)
        {
            // __alloc_pages_direct_compact before any reclaim, async: costly and non-movable high-order requests.
            pfn = DirectCompact(gfp, order, flags, ref ctx, CompactPriority.Async, out var compactResult);
            if (pfn != PhysMem.NoPfn)
            {
                return pfn;
            }
            if (costly && (gfp & Gfp.NoRetry) != 0)
            {
                // Whole-pageblock requests that may not retry: when compaction could not even start (too few free
                // pages, or deferred), reclaim would not make the block either; otherwise stay async.
                giveUp = compactResult is CompactResult.Skipped or CompactResult.Deferred;
                compactPriority = CompactPriority.Async;
            }
        }
        if (canDirectReclaim && !giveUp)
        {
            pfn = ReclaimRetryLoop(gfp, order, flags, costly, compactPriority, ref ctx);
            if (pfn != PhysMem.NoPfn)
            {
                return pfn;
            }
        }
        if ((gfp & Gfp.NoFail) != 0)
        {
            pfn = GetPageFromFreelist(gfp, order, flags | AllocFlags.Harder, ref ctx);
            if (pfn != PhysMem.NoPfn)
            {
                return pfn;
            }
            if (canDirectReclaim && Reclaimer is not NoReclaim)
            {
                return NoFailLoop(gfp, order, flags, ref ctx);
            }
        }
        if ((gfp & Gfp.NoWarn) == 0)
        {
            _reports.WarnAlloc(gfp, order);
        }
        return PhysMem.NoPfn;
    }

    /// <summary>__alloc_pages_may_oom's conditions: not for costly orders, __GFP_NORETRY, __GFP_RETRY_MAYFAIL,
    /// __GFP_THISNODE or lowmem-only requests, and only with __GFP_FS (out_of_memory does not kill for
    /// !__GFP_FS), unless __GFP_NOFAIL.</summary>
    private static bool MayOom(Gfp gfp, int order, ZoneType highest)
    {
        if ((gfp & Gfp.NoFail) != 0)
        {
            return order <= PerCpuPages.CostlyOrder;
        }
        return order <= PerCpuPages.CostlyOrder && (gfp & (Gfp.NoRetry | Gfp.RetryMayfail | Gfp.ThisNode)) == 0
            && highest >= ZoneType.Normal && (gfp & Gfp.Fs) != 0;
    }

    /// <summary>
    /// __GFP_NOFAIL with a reclaim layer: retry for ever with ALLOC_HARDER, reclaiming and OOM-killing, and
    /// waiting a millisecond between rounds that free nothing (other threads may free); a stall is reported
    /// once every 10 seconds, as warn_alloc does.
    /// </summary>
    private uint NoFailLoop(Gfp gfp, int order, AllocFlags flags, ref AllocContext ctx)
    {
        var started = Environment.TickCount64;
        long warned = started;
        while (true)
        {
            uint pfn = GetPageFromFreelist(gfp, order, flags | AllocFlags.Harder, ref ctx);
            if (pfn != PhysMem.NoPfn)
            {
                return pfn;
            }
            long progress = Reclaimer.TryToFreePages(gfp, order, ctx.Zonelist, ctx.Highest);
            if (progress == 0 && !(MayOom(gfp, order, ctx.Highest) && Reclaimer.OutOfMemory(gfp, order)))
            {
                DrainAllPages();
                Thread.Sleep(1);
            }
            long now = Environment.TickCount64;
            if (now - warned >= 10_000)
            {
                warned = now;
                _log.Printk($"page allocation stalls for {now - started}ms, order:{order}, mode:0x{(uint)gfp:x}({GfpFlags.Format(gfp)})");
            }
        }
    }

    /// <summary>wake_all_kswapds: one wakeup per node, for the node's first managed zone in the zonelist that the
    /// request may use (last_pgdat), as 6.1 does; a second wakeup of the same node would count twice.</summary>
    private void WakeAllKswapds(int order, ref AllocContext ctx)
    {
        Node? last = null;
        foreach (var zone in ctx.Zonelist)
        {
            if (zone.Type <= ctx.Highest && zone.IsManaged && zone.Node != last)
            {
                Reclaimer.WakeupKswapd(zone, order, ctx.Highest);
                last = zone.Node;
            }
        }
    }

    /// <summary>__alloc_pages_direct_reclaim: the slab layer's thread caches drained (<see cref="PageAllocator.DrainCaches"/>),
    /// reclaim, then retry; on failure release a HighAtomic pageblock and drain the per-CPU lists, and retry once more.</summary>
    private uint DirectReclaim(Gfp gfp, int order, AllocFlags flags, ref AllocContext ctx, out long progress)
    {
        // What threads cache in the slab layer goes back first: it costs no reclaim and kills nothing.
        if (DrainCaches is { } drain && drain() > 0 && GetPageFromFreelist(gfp, order, flags, ref ctx) is var drained && drained != PhysMem.NoPfn)
        {
            progress = 1;
            return drained;
        }
        progress = Reclaimer.TryToFreePages(gfp, order, ctx.Zonelist, ctx.Highest);
        uint pfn = progress > 0 ? GetPageFromFreelist(gfp, order, flags, ref ctx) : PhysMem.NoPfn;
        if (pfn == PhysMem.NoPfn)
        {
            foreach (var zone in ctx.Zonelist)
            {
                zone.UnreserveHighatomicPageblock(ctx.Migratetype, force: false);
            }
            DrainAllPages();
            pfn = GetPageFromFreelist(gfp, order, flags, ref ctx);
        }
        return pfn;
    }
}
