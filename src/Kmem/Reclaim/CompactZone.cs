// compact_zone and its scanners (mm/compaction.c): the run of one zone, the
// migrate scanner (isolate_migratepages, suitable_migration_source,
// isolate_migratepages_block), the free scanner (isolate_freepages,
// suitable_migration_target, isolate_freepages_block with its stride),
// __compact_finished, the pageblock skip bits (isolation_suitable,
// update_pageblock_skip, __reset_isolation_suitable), the cached scanner
// positions and the deferral counters (defer_compaction, compaction_deferred,
// compaction_defer_reset, compaction_restarting).
// Invariants: a zone's cached free position is a pageblock start inside the
// zone, its cached migrate positions are inside the zone; a run only moves a
// page down (to a higher free scanner position than the page).
// Locking: all of it under the reclaim locks (see Compaction.cs).
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Reclaim;

internal sealed partial class Compaction
{
    private uint[]? _cachedMigrateAsync, _cachedMigrateSync, _cachedFree;
    /// <summary>compact_init_migrate_pfn, compact_init_free_pfn: where the last reset put the scanners (0 before any).</summary>
    private uint[]? _initMigrate, _initFree;
    private int[]? _considered, _deferShift, _orderFailed;
    private bool[]? _blockskipFlush;
    private bool[]? _skip;

    private uint BlockPages => 1u << _mem.PageblockOrder;

    private uint PageblockStart(uint pfn) => pfn & ~(BlockPages - 1);

    private void EnsureState()
    {
        if (_cachedFree is not null)
        {
            return;
        }
        int n = _pa.Zones.Length;
        _cachedMigrateAsync = new uint[n];
        _cachedMigrateSync = new uint[n];
        _cachedFree = new uint[n];
        _initMigrate = new uint[n];
        _initFree = new uint[n];
        _considered = new int[n];
        _deferShift = new int[n];
        _orderFailed = new int[n];
        _blockskipFlush = new bool[n];
        _skip = new bool[(_mem.MaxPfn >> _mem.PageblockOrder) + 1];
        foreach (var z in _pa.Zones)
        {
            ResetCachedPositions(z);
        }
    }

    /// <summary>compaction_deferred: whether to skip this zone for the order, counting the attempt.</summary>
    public bool CompactionDeferred(Zone zone, int order)
    {
        EnsureState();
        int i = zone.Index;
        if (order < _orderFailed![i])
        {
            return false;
        }
        int limit = 1 << _deferShift![i];
        if (++_considered![i] >= limit)
        {
            _considered[i] = limit;
            return false;
        }
        return true;
    }

    /// <summary>defer_compaction: a failed run doubles the number of attempts skipped next (up to 64).</summary>
    public void DeferCompaction(Zone zone, int order)
    {
        EnsureState();
        int i = zone.Index;
        _considered![i] = 0;
        _deferShift![i] = Math.Min(_deferShift[i] + 1, CompactMaxDeferShift);
        _orderFailed![i] = Math.Min(_orderFailed[i], order);
    }

    /// <summary>compaction_defer_reset: after a success, orders up to this one are not deferred; an allocation
    /// that really got its page clears the backoff too.</summary>
    public void CompactionDeferReset(Zone zone, int order, bool allocSuccess)
    {
        EnsureState();
        int i = zone.Index;
        if (allocSuccess)
        {
            _considered![i] = 0;
            _deferShift![i] = 0;
        }
        if (order >= _orderFailed![i])
        {
            _orderFailed[i] = order + 1;
        }
    }

    /// <summary>compaction_restarting: the zone was deferred to the maximum and that many attempts were skipped.</summary>
    private bool CompactionRestarting(Zone zone, int order)
    {
        int i = zone.Index;
        return order >= _orderFailed![i] && _deferShift![i] == CompactMaxDeferShift && _considered![i] >= 1 << _deferShift[i];
    }

    /// <summary>(zone's compact_considered, compact_defer_shift, compact_order_failed), for observers.</summary>
    public (int Considered, int DeferShift, int OrderFailed) DeferState(Zone zone)
    {
        EnsureState();
        return (_considered![zone.Index], _deferShift![zone.Index], _orderFailed![zone.Index]);
    }

    /// <summary>get_pageblock_skip.</summary>
    public bool PageblockSkip(uint pfn)
    {
        EnsureState();
        return _skip![pfn >> _mem.PageblockOrder];
    }

    private void ResetCachedPositions(Zone zone)
    {
        int i = zone.Index;
        _cachedMigrateAsync![i] = _cachedMigrateSync![i] = zone.StartPfn;
        _cachedFree![i] = zone.EndPfn > zone.StartPfn ? Math.Max(zone.StartPfn, PageblockStart(zone.EndPfn - 1)) : zone.StartPfn;
    }

    /// <summary>__reset_isolation_suitable, once direct compaction met its scanners (compact_blockskip_flush): from
    /// both ends towards the middle, a pageblock whose sample (every PAGE_ALLOC_COSTLY_ORDER-th frame) shows an LRU
    /// page (migrate side) or a free page (free side, Movable blocks only) has its skip bit cleared, and the first
    /// such block on each side becomes the scanner's cached and initial position; other blocks stay skipped.</summary>
    private void ResetIsolationSuitable(Zone zone)
    {
        int zi = zone.Index;
        if (!_blockskipFlush![zi])
        {
            return;
        }
        _blockskipFlush[zi] = false;
        uint migratePfn = zone.StartPfn, freePfn = zone.EndPfn - 1;
        uint resetMigrate = freePfn, resetFree = migratePfn;
        bool sourceSet = false, freeSet = false;
        for (; migratePfn < freePfn; migratePfn += BlockPages, freePfn -= BlockPages)
        {
            if (ResetIsolationPfn(zone, migratePfn, true, sourceSet) && migratePfn < resetMigrate)
            {
                sourceSet = true;
                resetMigrate = _initMigrate![zi] = _cachedMigrateAsync![zi] = _cachedMigrateSync![zi] = migratePfn;
            }
            if (ResetIsolationPfn(zone, freePfn, freeSet, true) && freePfn > resetFree)
            {
                freeSet = true;
                resetFree = freePfn;
                // Kmem keeps the free positions at pageblock starts (the kernel keeps the sampled pfn in both).
                _initFree![zi] = _cachedFree![zi] = PageblockStart(freePfn);
            }
            if (freePfn < BlockPages)
            {
                break;
            }
        }
        // Leave no distance when no suitable block was reset.
        if (resetMigrate >= resetFree)
        {
            _cachedMigrateAsync![zi] = _cachedMigrateSync![zi] = migratePfn;
            _cachedFree![zi] = PageblockStart(freePfn);
        }
    }

    /// <summary>__reset_isolation_pfn: whether the pageblock of <paramref name="pfn"/> can be a migration source (an LRU
    /// page sampled) or target (a free page sampled, in a Movable block when only the target is checked); a block
    /// found so has its skip bit cleared. A block already unskipped counts once both sides are checked.</summary>
    private bool ResetIsolationPfn(Zone zone, uint pfn, bool checkSource, bool checkTarget)
    {
        uint block = pfn >> _mem.PageblockOrder;
        if (checkSource && checkTarget && !_skip![block])
        {
            return true;
        }
        if (!checkSource && checkTarget && _mem.PageblockMigratetype(pfn) != MigrateType.Movable)
        {
            return false;
        }
        uint first = Math.Max(PageblockStart(pfn), zone.StartPfn);
        uint last = Math.Min(PageblockStart(first) + BlockPages, zone.EndPfn) - 1;
        for (uint p = first; p <= last; p += 1u << PerCpuPages.CostlyOrder)
        {
            var flags = _mem.Frame(p).Flags;
            if ((checkSource && (flags & PageFlags.Lru) != 0) || (checkTarget && (flags & PageFlags.Buddy) != 0))
            {
                _skip![block] = false;
                return true;
            }
        }
        return false;
    }

    /// <summary>reset_isolation_suitable for a node whose kswapd goes to sleep: zones whose direct compaction
    /// met its scanners get their skip bits cleared. Under the reclaim locks.</summary>
    public void ResetIsolationSuitable(Node node)
    {
        EnsureState();
        foreach (var zone in node.Zones)
        {
            if (zone.IsManaged && _blockskipFlush![zone.Index])
            {
                ResetIsolationSuitable(zone);
            }
        }
    }

    /// <summary>compact_zone: run both scanners until they meet or the order is satisfied. Under the reclaim locks.</summary>
    public CompactResult CompactZone(Zone zone, ref CompactControl cc)
    {
        EnsureState();
        int zi = zone.Index;
        cc.SearchOrder = cc.Order;
        cc.FastSearchFail = 0;
        cc.FastStartPfn = 0;
        bool sync = cc.Mode != MigrateMode.Async;
        if (cc.Order >= 0)
        {
            var suitable = CompactionSuitable(zone, cc.Order, cc.Highest);
            if (suitable is CompactResult.Success or CompactResult.Skipped)
            {
                return suitable;
            }
        }
        if (cc.Order >= 0 && CompactionRestarting(zone, cc.Order))
        {
            ResetIsolationSuitable(zone);
        }
        uint start = zone.StartPfn, end = zone.EndPfn;
        uint lastBlock = Math.Max(start, PageblockStart(end - 1));
        if (cc.WholeZone)
        {
            cc.MigratePfn = start;
            cc.FreePfn = lastBlock;
        }
        else
        {
            cc.MigratePfn = sync ? _cachedMigrateSync![zi] : _cachedMigrateAsync![zi];
            cc.FreePfn = _cachedFree![zi];
            if (cc.FreePfn < start || cc.FreePfn >= end)
            {
                cc.FreePfn = _cachedFree[zi] = lastBlock;
            }
            if (cc.MigratePfn < start || cc.MigratePfn >= end)
            {
                cc.MigratePfn = _cachedMigrateAsync![zi] = _cachedMigrateSync![zi] = start;
            }
            if (cc.MigratePfn <= _initMigrate![zi])
            {
                cc.WholeZone = true;
            }
        }
        // Async and sync keep their own migrate positions, but while they agree and the async scanner only
        // skips, sync should skip those blocks too.
        bool updateCached = !sync && _cachedMigrateAsync![zi] == _cachedMigrateSync![zi];
        var freelist = new Stack<uint>();
        var batch = new List<uint>(CompactClusterMax);
        // Where the last batch that isolated pages began (0: nothing migrated since the last flush).
        uint lastMigratedPfn = 0;
        CompactResult ret;
        try
        {
            while ((ret = CompactFinished(zone, ref cc)) == CompactResult.Continue)
            {
                uint iterationStartPfn = cc.MigratePfn;
                batch.Clear();
                IsolateMigratepages(zone, ref cc, batch);
                if (batch.Count == 0)
                {
                    if (updateCached)
                    {
                        _cachedMigrateSync![zi] = _cachedMigrateAsync![zi];
                    }
                    // Nothing isolated, but pages freed by an earlier batch may still wait on the per-CPU lists.
                    FlushMigrated(zone, ref cc, ref lastMigratedPfn);
                    continue;
                }
                updateCached = false;
                lastMigratedPfn = iterationStartPfn;
                _events.Stats.CompactIsolated += batch.Count;
                bool failed = false;
                for (int i = 0; i < batch.Count; i++)
                {
                    // compaction_alloc: the free scanner runs when its pages are used up.
                    if (freelist.Count == 0)
                    {
                        IsolateFreepages(zone, ref cc, freelist, batch.Count - i);
                    }
                    if (freelist.Count == 0 || freelist.Peek() < batch[i])
                    {
                        failed = true; // -ENOMEM: the scanners met; the rest stays where it is
                        break;
                    }
                    MigratePage(batch[i], freelist.Pop());
                }
                if (failed && cc.Direct && cc.Mode == MigrateMode.Async && cc.Order > 0)
                {
                    // A page of this order-aligned block could not move: skip the rest of the block, whose pages
                    // cannot merge into a free block of the order anyway (no flush for it).
                    uint blockSize = 1u << cc.Order;
                    cc.MigratePfn = Math.Max(cc.MigratePfn, (cc.MigratePfn - 1 + blockSize) & ~(blockSize - 1));
                    lastMigratedPfn = 0;
                }
                FlushMigrated(zone, ref cc, ref lastMigratedPfn);
            }
        }
        finally
        {
            // Every run's scans, whoever ran it (direct, kcompactd, proactive, compact_memory), at its end.
            _events.Stats.CompactMigrateScanned += cc.TotalMigrateScanned;
            _events.Stats.CompactFreeScanned += cc.TotalFreeScanned;
            // release_freepages: the free scanner restarts at the highest block it gave back, never further up.
            uint high = 0;
            foreach (uint pfn in freelist)
            {
                high = Math.Max(high, pfn);
                _pa.FreePages(new Page(pfn), 0);
            }
            if (freelist.Count > 0 && PageblockStart(high) > _cachedFree![zi])
            {
                _cachedFree[zi] = PageblockStart(high);
            }
        }
        return ret;
    }

    /// <summary>compact_zone's check_drain: once the migrate scanner has left the order-aligned block it last migrated
    /// from, the pages migration freed there leave the CPU's per-CPU lists (lru_add_drain_cpu_zone), so that they
    /// merge and compact_finished sees a free block of the order at once.</summary>
    private void FlushMigrated(Zone zone, ref CompactControl cc, ref uint lastMigratedPfn)
    {
        if (cc.Order > 0 && lastMigratedPfn != 0 && lastMigratedPfn < (cc.MigratePfn & ~((1u << cc.Order) - 1)))
        {
            _pa.DrainLocalPages(zone);
            lastMigratedPfn = 0; // no more flushing until something migrates again
        }
    }

    /// <summary>compact_finished: the scanners met (Complete for a whole-zone run, else PartialSkipped; the
    /// cached positions reset), a proactive run goes on while its zone's score is above the low mark (and kswapd
    /// is not running), compact_memory goes on, a pageblock is always finished, and a request is done
    /// when a free block of its order is on its migrate type's list or one a fallback may take.</summary>
    private CompactResult CompactFinished(Zone zone, ref CompactControl cc)
    {
        if (cc.FreePfn >> _mem.PageblockOrder <= cc.MigratePfn >> _mem.PageblockOrder)
        {
            ResetCachedPositions(zone);
            if (cc.Direct)
            {
                _blockskipFlush![zone.Index] = true;
            }
            return cc.WholeZone ? CompactResult.Complete : CompactResult.PartialSkipped;
        }
        if (cc.Proactive)
        {
            // Proactive compaction gives way to kswapd and stops once the zone's own score is at the low mark.
            if (KswapdIsRunning(zone.Node))
            {
                return CompactResult.PartialSkipped;
            }
            return Fragmentation.ExtfragForOrder(zone, _mem.PageblockOrder) > FragmentationScoreWmark(low: true)
                ? CompactResult.Continue : CompactResult.Success;
        }
        if (cc.Order < 0 || (cc.MigratePfn & (BlockPages - 1)) != 0)
        {
            return CompactResult.Continue;
        }
        var ret = zone.CompactFreeBlock(cc.Order, cc.Migratetype, steal: true);
        return ret == CompactResult.NoSuitablePage ? CompactResult.Continue : ret;
    }

    private bool IsolationSuitable(ref CompactControl cc, uint pfn) => cc.IgnoreSkipHint || !_skip![pfn >> _mem.PageblockOrder];

    /// <summary>suitable_migration_source: async direct compaction only takes pages from pageblocks of the
    /// request's type (any movable type for a movable request).</summary>
    private bool SuitableMigrationSource(ref CompactControl cc, uint blockStart)
    {
        if (cc.Mode != MigrateMode.Async || !cc.Direct)
        {
            return true;
        }
        var mt = _mem.PageblockMigratetype(blockStart);
        return cc.Migratetype == (int)MigrateType.Movable ? mt == MigrateType.Movable : (int)mt == cc.Migratetype;
    }

    /// <summary>update_cached_migrate: async and sync restart past a block that had nothing for them.</summary>
    private void UpdateCachedMigrate(Zone zone, ref CompactControl cc, uint pfn)
    {
        if (cc.IgnoreSkipHint)
        {
            return;
        }
        pfn = PageblockStart(pfn - 1) + BlockPages;
        int zi = zone.Index;
        _cachedMigrateAsync![zi] = Math.Max(_cachedMigrateAsync[zi], pfn);
        if (cc.Mode != MigrateMode.Async)
        {
            _cachedMigrateSync![zi] = Math.Max(_cachedMigrateSync[zi], pfn);
        }
    }

    /// <summary>isolate_migratepages: the first suitable pageblock from the migrate position, below the free
    /// scanner, and up to 32 movable pages from it.</summary>
    private void IsolateMigratepages(Zone zone, ref CompactControl cc, List<uint> batch)
    {
        uint low = FastFindMigrateblock(zone, ref cc);
        uint blockStart = Math.Max(PageblockStart(low), zone.StartPfn);
        // A block the fast search chose was checked (and marked skipped) already.
        bool fastFindBlock = low != cc.MigratePfn && cc.FastSearchFail == 0;
        uint blockEnd = PageblockStart(low) + BlockPages;
        for (; blockEnd <= cc.FreePfn; fastFindBlock = false, cc.MigratePfn = low = blockEnd, blockStart = blockEnd, blockEnd += BlockPages)
        {
            if ((low & (BlockPages - 1)) == 0 && !fastFindBlock && !IsolationSuitable(ref cc, blockStart))
            {
                continue;
            }
            if (!SuitableMigrationSource(ref cc, blockStart))
            {
                UpdateCachedMigrate(zone, ref cc, blockEnd);
                continue;
            }
            IsolateMigratepagesBlock(zone, ref cc, low, Math.Min(blockEnd, zone.EndPfn), batch);
            return;
        }
    }

    /// <summary>isolate_migratepages_block: movable pages of [low, end) (anon only without __GFP_FS); a block
    /// scanned to its end with nothing taken gets its skip bit.</summary>
    private void IsolateMigratepagesBlock(Zone zone, ref CompactControl cc, uint low, uint end, List<uint> batch)
    {
        uint pfn = low;
        for (; pfn < end; pfn++)
        {
            if (batch.Count >= CompactClusterMax)
            {
                break;
            }
            cc.TotalMigrateScanned++;
            ref PageFrame f = ref _mem.Frame(pfn);
            if ((f.Flags & PageFlags.Buddy) != 0)
            {
                int order = f.Order;
                if (order > 0 && order < Arch.MaxOrder)
                {
                    pfn += (1u << order) - 1;
                }
                continue;
            }
            if ((f.Flags & (PageFlags.Lru | PageFlags.Writeback)) != PageFlags.Lru || f.RefCount != 1 || _mem.ZoneIndexOf(pfn) != zone.Index)
            {
                continue;
            }
            // GFP_NOFS may migrate anonymous pages only: a file page's migration may need the filesystem.
            if ((cc.Gfp & Gfp.Fs) == 0 && _lru.OwnerOf(pfn) is CachedFile)
            {
                continue;
            }
            batch.Add(pfn);
        }
        pfn = Math.Min(pfn, end);
        if (pfn == end && batch.Count == 0)
        {
            _skip![low >> _mem.PageblockOrder] = true;
            UpdateCachedMigrate(zone, ref cc, pfn);
        }
        cc.MigratePfn = pfn;
    }

    /// <summary>suitable_migration_target: never a pageblock that is itself free as a block of pageblock order or
    /// more (compaction would split what it builds); otherwise a Movable pageblock (any, at sync-full).</summary>
    private bool SuitableMigrationTarget(ref CompactControl cc, uint blockStart)
    {
        ref PageFrame f = ref _mem.Frame(blockStart);
        if ((f.Flags & PageFlags.Buddy) != 0 && f.Order >= _mem.PageblockOrder)
        {
            return false;
        }
        return cc.IgnoreBlockSuitable || _mem.PageblockMigratetype(blockStart) == MigrateType.Movable;
    }

    /// <summary>isolate_freepages: pageblocks from the free position down to the migrate scanner's block, until
    /// <paramref name="need"/> free pages are taken; async scans with a stride that grows over empty blocks.</summary>
    private void IsolateFreepages(Zone zone, ref CompactControl cc, Stack<uint> freelist, int need)
    {
        // A small search of the free lists first.
        FastIsolateFreepages(zone, ref cc, freelist, need);
        if (freelist.Count > 0)
        {
            return;
        }
        long blockPages = BlockPages;
        long isolateStart = cc.FreePfn;
        long blockStart = PageblockStart(cc.FreePfn);
        long blockEnd = Math.Min(blockStart + blockPages, zone.EndPfn);
        long lowPfn = PageblockStart(cc.MigratePfn) + blockPages;
        int stride = cc.Mode == MigrateMode.Async ? CompactClusterMax : 1;
        for (; blockStart >= lowPfn; blockEnd = blockStart, blockStart -= blockPages, isolateStart = blockStart)
        {
            uint first = (uint)Math.Max(blockStart, zone.StartPfn);
            if (!SuitableMigrationTarget(ref cc, first) || !IsolationSuitable(ref cc, first))
            {
                continue;
            }
            long from = Math.Max(isolateStart, first);
            int isolated = IsolateFreepagesBlock(zone, ref cc, ref from, blockEnd, freelist, stride, need);
            isolateStart = from;
            if (isolateStart == blockEnd)
            {
                // The whole block was scanned: skip it next time, and restart the free scanner below it.
                _skip![first >> _mem.PageblockOrder] = true;
                _cachedFree![zone.Index] = Math.Min(_cachedFree[zone.Index], first);
            }
            if (freelist.Count >= need)
            {
                if (isolateStart >= blockEnd)
                {
                    isolateStart = blockStart - blockPages;
                }
                break;
            }
            if (isolateStart < blockEnd)
            {
                break; // isolation failed early (the watermark): no point going on
            }
            stride = isolated > 0 ? 1 : Math.Min(CompactClusterMax, stride << 1);
        }
        cc.FreePfn = (uint)Math.Max(isolateStart, 0);
    }

    /// <summary>isolate_freepages_block: free buddy blocks of [start, end) split into order-0 targets, every
    /// <paramref name="stride"/>-th frame looked at, until enough are taken or the zone's min watermark stops it.</summary>
    private int IsolateFreepagesBlock(Zone zone, ref CompactControl cc, ref long start, long end, Stack<uint> freelist, int stride, int need)
    {
        int total = 0;
        long pfn = start;
        for (; pfn < end; pfn += stride)
        {
            cc.TotalFreeScanned++;
            ref PageFrame f = ref _mem.Frame((uint)pfn);
            if ((f.Flags & PageFlags.Buddy) == 0)
            {
                continue;
            }
            int order = f.Order;
            if (!zone.IsolateFreePage((uint)pfn, order))
            {
                break;
            }
            // Highest frames on top of the stack: they are handed out first, away from the migrate scanner.
            for (uint i = 0; i < 1u << order; i++)
            {
                freelist.Push((uint)pfn + i);
            }
            total += 1 << order;
            _events.Stats.CompactIsolated += 1L << order;
            if (freelist.Count >= need)
            {
                pfn += 1L << order;
                break;
            }
            pfn += (1L << order) - stride;
        }
        start = Math.Min(pfn, end);
        return total;
    }
}
