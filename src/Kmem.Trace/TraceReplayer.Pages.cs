// Page events of a replay. An mm_page_alloc whose gfp a new slab page or a large kmalloc
// can carry is held back on its CPU (HeldPageAllocs) until the CPU's next page event, or a
// few events: when the next slab allocation on that CPU falls inside the frame, the frame
// was a new slab (or a large kmalloc) and Kmem's slab layer makes its own, so the page event
// is dropped and its later free ignored; otherwise it is replayed on the page allocator,
// before that next page event, so Kmem's page allocations keep the kernel's order on the CPU.
// Any other mm_page_alloc is replayed at its event. Frees of part of a block (split_page,
// alloc_pages_exact) split Kmem's block the same way. Part of TraceReplayer.
namespace Kmem;

public sealed partial class TraceReplayer
{
    private readonly HeldPageAllocs _held;
    private readonly long[] _cpuEvents;
    private readonly Dictionary<ulong, PageBlock> _pages = [];
    private readonly Dictionary<ulong, int> _slabPages = [];
    // The kind of frame the last PageFree freed (PcpDrift's class).
    private DriftClass _freeClass;

    private void PageAlloc(ref TraceEvent e, int cpu)
    {
        if (e.Pfn == 0 && e.Page == 0)
        {
            _traceFailures++;
            if (_pressure!.AttemptsFailed(in e))
            {
                ReplayHeldBefore(cpu);
                var gfp = ReplayGfp.Of(e.Gfp);
                int order = e.Order;
                if (_pressure.AttemptFailedCostly(ref e, () => _m.AllocPages(gfp, order)))
                {
                    _kmemServedTraceFailures++;
                }
            }
            return;
        }
        _pageAllocEvents++;
        if (GfpFlags.GfpMigratetype(e.Gfp) == e.MigrateType)
        {
            _pageMtMatches++;
        }
        DeferredPageFrees.Reallocated(_deferred, e.Pfn); // a later batched free of the frame is a new free
        ReplayHeldBefore(cpu);
        NotePageTables(ref e, cpu); // a task's page tables are the kernel's frames (ReplayPageTables.cs)
        var (refill, steal, ownership, blocks, steals) = _kernel.KernelPageDecision(ref e, cpu);
        var (modelBefore, modelFf) = _options.Aligned ? _pcpModel!.Alloc(cpu, e.Pfn, e.Order, e.MigrateType, refill, blocks) : (-1, -1);
        bool user;
        using (new DriftScope(_drift, DriftClass.User))
        {
            user = UserPageAlloc(ref e, new PendingPage(e.Pfn, e.Order, e.Gfp, -1, _cpuEvents[cpu], 0, e.LineNumber, refill, steal, ownership, modelBefore, modelFf, _decisions.Phase, steals));
        }
        if (refill >= 0)
        {
            _drift?.KernelAlloc(cpu, e.Pfn, e.Order, refill == 1 ? blocks << e.Order : 0,
                user ? DriftClass.User : ReplayPageTables.IsTableAlloc(e.Gfp, e.Order) ? DriftClass.PageTable : DriftClass.Page);
        }
        if (user)
        {
            return; // a user page: a page of a Kmem task (TraceReplayer.Pressure.cs)
        }
        var page = new PendingPage(e.Pfn, e.Order, e.Gfp, -1, _cpuEvents[cpu], 0, e.LineNumber, refill, steal, ownership, modelBefore, modelFf, _decisions.Phase, steals);
        if (HeldPageAllocs.MayBeSlabPage(e.Gfp, e.Order))
        {
            _held.Hold(cpu, page);
        }
        else
        {
            ReplayPageAlloc(page);
        }
    }

    // A slab object at trace address ptr was allocated on this CPU: a held frame holding it is a slab page.
    private bool MatchHeld(int cpu, ulong ptr)
    {
        if (!_held.TryTakeSlabPage(cpu, ptr, out var p))
        {
            return false;
        }
        _slabPages[p.Pfn] = p.Order;
        _slabPageAllocs++;
        if (p.KernelRefill >= 0)
        {
            _drift?.Reclass(-(1 << p.Order), DriftClass.Page, DriftClass.SlabPage); // its pages left the list as a slab page
        }
        (_slabPageGfp, _slabPagePfn) = (p.Gfp, p.Pfn);
        _slabPageSteals = p.Steals;
        return true;
    }

    // A page allocation or free on a CPU: the allocation held back there comes first. A new slab's object allocation
    // is the CPU's next event (6.1's allocate_slab allocates and frees no other page in between), so the held one is a
    // page allocation, and Kmem makes it before this event's, as the kernel did.
    private void ReplayHeldBefore(int cpu)
    {
        if (_held.TryTake(cpu, out var p))
        {
            ReplayPageAlloc(p);
        }
    }

    private void ReplayPageAlloc(in PendingPage p)
    {
        using var drift = new DriftScope(_drift, ReplayPageTables.IsTableAlloc(p.Gfp, p.Order) ? DriftClass.PageTable : DriftClass.Page);
        if (p.KernelRefill == 1)
        {
            _drift?.ListReveal(_m.PageAllocator.Cpus.Current, p.Pfn, p.Order, (int)GfpFlags.GfpMigratetype(p.Gfp));
        }
        if (_pages.Remove(p.Pfn, out var stale))
        {
            if (!_bulkPfns.Remove(p.Pfn))
            {
                _missedFrees++;
            }
            FreeBlock(stale); // a frame of a bulk burst the bulk allocator left on the list, now allocated
        }
        int node = Node(p.Node);
        if (_options.Aligned)
        {
            _pcpModel!.AlignForAlloc(p.Pfn, p.Order, p.Gfp, p.ModelBefore, p.ModelFf, _m.PageAllocator.Cpus.Current);
        }
        _kmem?.Reset();
        var pressureBefore = _pressure!.ReadPressureCounters();
        var page = node >= 0 ? _m.AllocPagesNode(node, ReplayGfp.Of(p.Gfp), p.Order) : _m.AllocPages(ReplayGfp.Of(p.Gfp), p.Order);
        _pressure.PageAllocated(p.Pfn, pressureBefore); // a costly order's reclaim and compaction decisions
        if (page.IsNull)
        {
            _kmemFailures++;
            return;
        }
        if (_kmem is not null)
        {
            DecidePageAlloc(p, page);
            AlignKernelSteals(p.Steals);
        }
        _pagesReplayed++;
        _pages[p.Pfn] = new PageBlock(page, p.Order, (p.Gfp & Gfp.Comp) != 0);
    }

    private void FlushAllHeld()
    {
        for (int cpu = 0; cpu < _deferred.Length; cpu++)
        {
            using (_m.OnCpu(cpu))
            {
                if (_kernel.BurstOpen(cpu))
                {
                    _kernel.FinishBulk(cpu); // the trace ended on a burst no allocation claimed
                }
                ReplayHeldBefore(cpu);
            }
        }
    }

    // mm_page_free events not yet given to Kmem, per CPU: a page freed as part of a list (free_unref_page_list)
    // shows mm_page_free first and goes to the per-CPU list at its mm_page_free_batched, so a free waits until
    // the next event on its CPU says which it was; any other event commits the waiting ones as single frees.
    private readonly DeferredPageFrees[] _deferred;
    // Whether the CPU's last page-free event was an mm_page_free_batched: drains then belong to that commit, and the
    // waiting mm_page_free events are the rest of its list, not single frees.
    private readonly bool[] _afterBatched;

    private void FlushDeferredFrees(int cpu, int count) => _deferred[cpu].Flush(count);

    // mm_page_free_batched (DeferredPageFrees.Batched).
    private void BatchedFree(ulong pfn, int order, int cpu, long line) => _batchedOnce += _deferred[cpu].Batched(pfn, order, line) ? 1 : 0;

    // A page free of the trace; Kmem's drain decision is set beside the kernel's once the drains that follow are read.
    private void PageFreeEvent(ulong pfn, int order, int cpu, long line)
    {
        bool? revealed = null;
        var cls = _drift?.Enter(DriftClass.PageTable);
        _tables.Prepare(pfn); // a table frame of Kmem's own, when it needs one, before the count is aligned
        _drift?.Enter(DriftClass.Page);
        if (_options.Aligned)
        {
            ReplayHeldHolding(cpu, pfn); // its allocation first, so the count is aligned for the free itself
            if (_pages.TryGetValue(pfn, out var block))
            {
                revealed = _pcpModel!.AlignForFree(cpu, pfn, block.Page);
            }
            else if ((_pressure!.UserPageOf(pfn) is { IsNull: false } user ? user : _tables.Lent(pfn)) is { IsNull: false } taskPage)
            {
                revealed = _pcpModel!.AlignForFree(cpu, pfn, taskPage); // a page of a task of Kmem's, or a table one took over
            }
            else if (order == 0 && _reserved.Unreleased(pfn))
            {
                revealed = _pcpModel!.AlignForFree(cpu, pfn, null);
            }
            else if (order == 0 && !_slabPages.ContainsKey(pfn) && _bulkUnkeyed[TraceZones.ZoneOf(_m.PageAllocator, pfn).Index].TryPeek(out var bulk))
            {
                revealed = _pcpModel!.AlignForFree(cpu, pfn, bulk); // a bulk page whose frame the trace did not reveal
            }
            _pcpModel!.Free(cpu, pfn, order);
        }
        _kernel.Contents.Free(cpu, pfn, order);
        _kmem?.Reset();
        bool freed = PageFree(pfn, order, cpu);
        _drift?.Freed(cpu, pfn, order, _freeClass, cls ?? default);
        if (_kmem is not null)
        {
            _decisions.OpenFree(cpu, pfn, order, line, freed, _kmem.DrainPages, revealed);
        }
    }

    // Returns whether Kmem freed a page for it (not for a slab frame or a frame never allocated in the trace);
    // _freeClass says which kind of frame it was.
    private bool PageFree(ulong pfn, int order, int cpu)
    {
        _freeClass = DriftClass.User;
        if (_pressure!.FreeUserPage(pfn, out bool kmemFreed))
        {
            return kmemFreed; // a user page's (TraceReplayer.Pressure.cs)
        }
        _freeClass = DriftClass.PageTable;
        if (_tables.Free(pfn, out bool tableFreed))
        {
            return tableFreed; // a page table a task of Kmem's took over (ReplayPageTables.cs)
        }
        _freeClass = DriftClass.SlabPage;
        if (_slabPages.Remove(pfn))
        {
            return false; // a slab page (or large kmalloc) the trace's slab layer gave back: Kmem's own slab layer decides
        }
        _freeClass = DriftClass.Page;
        _bulkPfns.Remove(pfn);
        ReplayHeldHolding(cpu, pfn);
        if (_pages.Remove(pfn, out var block))
        {
            if (block.Order <= order || block.Compound)
            {
                FreeBlock(block);
            }
            else
            {
                SplitAndFree(pfn, block, pfn, order);
            }
            return true;
        }
        // Part of a larger block (split_page, alloc_pages_exact): find the block that holds the frame.
        for (int k = 1; k < Machine.MaxOrder; k++)
        {
            ulong head = pfn & ~((1UL << k) - 1);
            if (_pages.TryGetValue(head, out block) && block.Order >= k && !block.Compound)
            {
                _pages.Remove(head);
                SplitAndFree(head, block, pfn, order);
                return true;
            }
        }
        _freeClass = DriftClass.Reserved;
        if (_reserved.Release(pfn, order))
        {
            return true;
        }
        _freeClass = DriftClass.Bulk;
        if (order == 0 && _bulkUnkeyed[TraceZones.ZoneOf(_m.PageAllocator, pfn).Index].TryPop(out var bulkPage))
        {
            _m.FreePages(bulkPage, 0); // a bulk allocation's page whose frame the trace did not reveal (ReplayBulk)
            return true;
        }
        _freeClass = DriftClass.Untracked;
        _untrackedPageFrees++;
        if (_preTrace is { } pre && _held.Base is ulong b && pre.KernelFreedSlab(b + (pfn << 12), order))
        {
            return false; // a slab from before tracing that Kmem stood in for (PreTraceSlabs)
        }
        return order == 0 && !_options.Aligned && FreeStandIn(pfn);
    }

    // A frame freed that the trace never showed allocated left the kernel's buddy lists with no event (a migration
    // target compaction isolated, or a page allocated before tracing began): Kmem takes a page of the frame's zone off
    // its own buddy lists in its place (Zone.TakeStandIn) and frees it, so the per-CPU list gains a page on both sides.
    // Movable: compaction isolates its targets from movable pageblocks. Free-running only: the aligned run sets Kmem's
    // lists to the kernel's, which count the free, at its next alignment. Returns whether Kmem freed a page.
    private bool FreeStandIn(ulong pfn)
    {
        uint standIn = TraceZones.ZoneOf(_m.PageAllocator, pfn).TakeStandIn((int)MigrateType.Movable);
        if (standIn == Kmem.Physical.PhysMem.NoPfn)
        {
            return false;
        }
        _m.FreePages(_m.PfnToPage(standIn), 0);
        return true;
    }

    // A held allocation whose block holds the frame is replayed now: the frame is being freed. The free's CPU is
    // looked at first; a page allocated on one CPU and freed on another (a pipe's page, written on one, read on the
    // other) is replayed on the CPU that allocated it, so Kmem's free goes to the freeing CPU's list as the kernel's
    // did, instead of finding no page (an untracked free) while the allocation waits on the other CPU.
    private void ReplayHeldHolding(int cpu, ulong pfn)
    {
        if (!_held.TryTakeHolding(cpu, pfn, out int heldCpu, out var p))
        {
            return;
        }
        if (heldCpu == cpu)
        {
            ReplayPageAlloc(p);
            return;
        }
        using (_m.OnCpu(heldCpu))
        {
            ReplayPageAlloc(p); // allocated on the other CPU, replayed there
        }
    }

    // Splits a non-compound block into order-0 pages, as split_page does, and frees [pfn, pfn + 2^order).
    private void SplitAndFree(ulong head, PageBlock block, ulong pfn, int order)
    {
        _m.SplitPage(block.Page, block.Order);
        ulong first = Machine.PageToPfn(block.Page);
        for (ulong i = 0; i < 1UL << block.Order; i++)
        {
            var page = _m.PfnToPage(first + i);
            if (head + i - pfn < 1UL << order)
            {
                _m.FreePages(page, 0);
            }
            else
            {
                _pages[head + i] = new PageBlock(page, 0, false);
            }
        }
    }

    private void FreeBlock(PageBlock block) => _m.FreePages(block.Page, block.Order);

    /// <summary>A page allocation held back until it is known whether it is a slab page.</summary>
    /// <remarks>Line and the kernel's decisions: KernelRefill 1 refilled, 0 served from the list, -1 not a pcp decision;
    /// Steals: the kernel's fallback steals for it (aligned runs correct Kmem's buddy lists after its decision).</remarks>
    internal record struct PendingPage(ulong Pfn, int Order, Gfp Gfp, int Node, long Seq, int SlabAllocs,
        long Line = 0, sbyte KernelRefill = -1, bool KernelSteal = false, bool KernelOwnership = false,
        int ModelBefore = -1, int ModelFf = -1, int Phase = 0, KernelSteal[]? Steals = null);

    /// <summary>Kmem's block for a trace frame.</summary>
    private readonly record struct PageBlock(Page Page, int Order, bool Compound);
}
