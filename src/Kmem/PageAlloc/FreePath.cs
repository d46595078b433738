// The free paths of mm/page_alloc.c: __free_pages (drop a reference, free on
// the last), free_unref_page (order 0..3 and THP onto this CPU's list, spilling
// a batch back to the buddy lists above pcp->high), __free_pages_ok (straight
// to the buddy lists), free_pcppages_bulk and drain_all_pages, plus the
// reference helpers (get_page, put_page, split_page).
// Every check that can refuse a free runs before any state changes, so a
// refused free (a BadPageStateException, or a report with OnBug.Report) leaves
// the allocator exactly as it was.
// Locking: pcp lock (try-lock) → zone->lock.
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed partial class PageAllocator
{
    /// <summary>__free_pages: drop the caller's reference; the last one frees the block. If another
    /// reference keeps the first page of a non-compound block alive, the rest is freed now and the first
    /// page stays as an order-0 page, which that reference's put_page frees.</summary>
    public void FreePages(Page page, int order)
    {
        if (!CheckFree(page, order))
        {
            return;
        }
        uint pfn = page.RawPfn;
        ref PageFrame f = ref _mem.Frame(pfn);
        if (order > 0 && (f.Flags & PageFlags.Head) == 0 && Volatile.Read(ref f.RefCount) > 1)
        {
            // Recorded before our reference goes, while it still keeps the page allocated; a last free of
            // the whole block below uses the order argument, not this field.
            f.Order = 0;
        }
        int refs = Interlocked.Decrement(ref f.RefCount);
        if (refs == 0)
        {
            FreeThePage(pfn, order);
        }
        else if (refs < 0)
        {
            // Two racing frees of the last reference: undo ours and report it.
            Interlocked.Increment(ref f.RefCount);
            _reports.BadPage(pfn, "VM_BUG_ON_PAGE(page_ref_count(page) == 0)");
        }
        else if ((f.Flags & PageFlags.Head) == 0)
        {
            while (order-- > 0)
            {
                FreeThePage(pfn + (1u << order), order);
            }
        }
    }

    /// <summary>get_page: one more reference to an allocated page (the compound head for a tail).</summary>
    public void GetPage(Page page)
    {
        uint pfn = CompoundHead(CheckPfn(page));
        ref PageFrame f = ref _mem.Frame(pfn);
        if (Volatile.Read(ref f.RefCount) <= 0 || (f.Flags & (PageFlags.NoMap | PageFlags.Reserved)) == PageFlags.NoMap)
        {
            _reports.BadPage(pfn, "VM_BUG_ON_PAGE(page_ref_count(page) <= 0)");
            return;
        }
        Interlocked.Increment(ref f.RefCount);
    }

    /// <summary>put_page: drop a reference; the last one frees the page (a compound page whole).</summary>
    public void PutPage(Page page)
    {
        uint head = CompoundHead(CheckPfn(page));
        ref PageFrame f = ref _mem.Frame(head);
        FreePages(new Page(head), (f.Flags & PageFlags.Head) != 0 ? f.Order : 0);
    }

    /// <summary>page_ref_count.</summary>
    public int PageRefCount(Page page) => Volatile.Read(ref _mem.Frame(CheckPfn(page)).RefCount);

    /// <summary>split_page: a non-compound block of 2^order becomes 2^order order-0 pages, each with its
    /// own reference, to be freed one by one.</summary>
    public void SplitPage(Page page, int order)
    {
        uint pfn = CheckPfn(page);
        ref PageFrame f = ref _mem.Frame(pfn);
        if ((f.Flags & PageFlags.Head) != 0 || f.RefCount <= 0 || f.Order != order)
        {
            _reports.BadPage(pfn, (f.Flags & PageFlags.Head) != 0 ? "VM_BUG_ON_PAGE(PageCompound(page))"
                : f.RefCount <= 0 ? "VM_BUG_ON_PAGE(!page_count(page))"
                : $"split_page order {order} of a page allocated with order {f.Order}");
            return;
        }
        for (uint i = 0; i < 1u << order; i++)
        {
            ref PageFrame s = ref _mem.Frame(pfn + i);
            s.Order = 0;
            s.RefCount = 1;
        }
    }

    /// <summary>The page's pfn, or an exception for Page.Null (whose raw pfn wraps to uint.MaxValue) and
    /// for a pfn beyond the machine.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint CheckPfn(Page page)
    {
        uint pfn = page.RawPfn;
        if (pfn >= _mem.MaxPfn)
        {
            ThrowBadPfn(page);
        }
        return pfn;
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowBadPfn(Page page) => throw (page.IsNull
        ? new ArgumentException("NULL page", nameof(page))
        : new ArgumentOutOfRangeException(nameof(page), $"pfn 0x{page.RawPfn:x} is beyond max_pfn 0x{_mem.MaxPfn:x}: not a page of this machine"));

    private uint CompoundHead(uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        return (f.Flags & PageFlags.Tail) != 0 ? (uint)f.Private : pfn;
    }

    /// <summary>The checks of free_pages_prepare and put_page_testzero, made before anything changes.
    /// Returns false (after the report) when the free must be refused.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool CheckFree(Page page, int order)
    {
        uint pfn = CheckPfn(page);
        ref PageFrame f = ref _mem.Frame(pfn);
        // The common case in one test: the only reference to a clean, non-compound page of this order.
        if (f.RefCount == 1 && f.Order == order && (f.Flags & (PageFlags.CheckAtFree | PageFlags.Head | PageFlags.NoMap)) == 0
            && f.MapCount == 0 && (uint)order < Arch.MaxOrder)
        {
            return true;
        }
        return CheckFreeSlow(pfn, order);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool CheckFreeSlow(uint pfn, int order)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        string? reason = null;
        if ((uint)order >= Arch.MaxOrder)
        {
            reason = $"free of order {order} >= MAX_ORDER";
        }
        else if ((f.Flags & PageFlags.NoMap) != 0)
        {
            reason = "not RAM (a hole in the memory map)";
        }
        else if (Volatile.Read(ref f.RefCount) <= 0)
        {
            reason = "VM_BUG_ON_PAGE(page_ref_count(page) == 0)";
        }
        else if ((f.Flags & PageFlags.Head) != 0 && f.Order != order)
        {
            reason = "VM_BUG_ON_PAGE(compound && compound_order(page) != order)";
        }
        else if ((f.Flags & PageFlags.Head) == 0 && f.Order != order && (f.Flags & PageFlags.Reserved) == 0)
        {
            reason = $"freed with order {order}, allocated with order {f.Order}";
        }
        else if (Volatile.Read(ref f.RefCount) == 1)
        {
            // The last reference: the page must be clean to go back (free_page_is_bad).
            if (f.MapCount != 0)
            {
                reason = "nonzero mapcount";
            }
            else if ((f.Flags & PageFlags.CheckAtFree) != 0)
            {
                reason = "PAGE_FLAGS_CHECK_AT_FREE flag(s) set";
            }
        }
        if (reason is null)
        {
            return true;
        }
        _reports.BadPage(pfn, reason);
        return false;
    }

    /// <summary>free_the_page.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FreeThePage(uint pfn, int order)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        if ((f.Flags & PageFlags.Head) != 0)
        {
            for (uint i = 1; i < 1u << order; i++)
            {
                ref PageFrame t = ref _mem.Frame(pfn + i);
                t.Flags = PageFlags.None;
                t.Private = 0;
            }
        }
        f.Flags = PageFlags.None;
        f.Private = 0;
        if (Options.InitOnFree)
        {
            // free_pages_prepare with init_on_free: the block is cleared before anyone can reuse it.
            _mem.ZeroFrames(pfn, 1 << order);
        }
        if (PcpAllowedOrder(order))
        {
            FreeUnrefPage(pfn, order);
        }
        else
        {
            FreePagesOk(pfn, order);
        }
    }

    /// <summary>__free_pages_ok: straight back to the buddy lists.</summary>
    private void FreePagesOk(uint pfn, int order)
    {
        var zone = ZoneOf(pfn);
        lock (zone.Lock)
        {
            zone.FreeOnePage(pfn, order, (int)_mem.PageblockMigratetype(pfn), toTail: false);
            zone.Counters.Stats.PgFree += 1L << order;
        }
    }

    /// <summary>free_unref_page: onto this CPU's list for the page's pageblock type (HighAtomic pages ride
    /// the Movable list but remember their type); to the buddy lists when the CPU's lists are busy, where a
    /// HighAtomic page goes back as Movable, as the kernel frees it.</summary>
    private void FreeUnrefPage(uint pfn, int order)
    {
        int mt = (int)_mem.PageblockMigratetype(pfn);
        var zone = ZoneOf(pfn);
        if (mt == (int)MigrateType.Isolate)
        {
            lock (zone.Lock)
            {
                zone.FreeOnePage(pfn, order, mt, toTail: false);
                zone.Counters.Stats.PgFree += 1L << order;
            }
            return;
        }
        ref PageFrame f = ref _mem.Frame(pfn);
        f.MigrateType = (byte)mt;
        int listMt = mt >= Zone.PcpTypes ? (int)MigrateType.Movable : mt;
        var pcp = zone.Pcp[_cpus.Current];
        VmBug.LockdepAssertNotHeld(zone.Lock); // order: pcp lock → zone->lock
        if (pcp.TryLock())
        {
            // A VM_BUG_ON report thrown while spilling to the buddy lists must not leave the list locked.
            try
            {
                FreeUnrefPageCommit(zone, pcp, pfn, listMt, order);
            }
            finally
            {
                pcp.Unlock();
            }
        }
        else
        {
            lock (zone.Lock)
            {
                zone.FreeOnePage(pfn, order, listMt, toTail: false);
                zone.Counters.Stats.PgFree += 1L << order;
            }
        }
    }

    /// <summary>free_unref_page_commit: push, and spill nr_pcp_free pages back to the buddy lists once the
    /// list reaches nr_pcp_high (at once, all of it, for high orders freed without allocating).</summary>
    private void FreeUnrefPageCommit(Zone zone, PerCpuPages pcp, uint pfn, int mt, int order)
    {
        pcp.Stats.PgFree += 1L << order;
        int pindex = PerCpuPages.OrderToPindex(mt, order);
        _mem.Frame(pfn).Flags = PageFlags.Pcp;
        pcp.Lists[pindex].AddHead(_mem, pfn);
        pcp.Count += 1 << order;
        bool freeHigh = pcp.FreeFactor != 0 && order > 0 && order <= PerCpuPages.CostlyOrder;
        int high = pcp.NrPcpHigh(zone.ReclaimActive, freeHigh);
        if (pcp.Count >= high)
        {
            FreePcppagesBulk(zone, NrPcpFree(pcp, high, pcp.Batch, freeHigh), pcp, pindex);
        }
    }

    /// <summary>nr_pcp_free: a batch, doubled for each free without an allocation between, kept within
    /// [batch, high - batch].</summary>
    private static int NrPcpFree(PerCpuPages pcp, int high, int batch, bool freeHigh)
    {
        if (freeHigh)
        {
            return pcp.Count;
        }
        if (high < batch)
        {
            return 1;
        }
        int minNr = batch, maxNr = high - batch;
        batch <<= pcp.FreeFactor;
        if (batch < maxNr)
        {
            pcp.FreeFactor++;
        }
        return Math.Clamp(batch, minNr, maxNr);
    }

    /// <summary>free_pcppages_bulk: return <paramref name="count"/> pages from the lists' tails, round-robin
    /// across lists starting after <paramref name="pindex"/>, to the buddy lists. Caller holds the pcp lock.</summary>
    private void FreePcppagesBulk(Zone zone, int count, PerCpuPages pcp, int pindex)
    {
        int minPindex = 0, maxPindex = PerCpuPages.NrPcpLists - 1;
        count = Math.Min(pcp.Count, count);
        int countBefore = pcp.Count;
        pindex--;
        lock (zone.Lock)
        {
            while (count > 0)
            {
                while (true)
                {
                    if (++pindex > maxPindex)
                    {
                        pindex = minPindex;
                    }
                    if (!pcp.Lists[pindex].IsEmpty)
                    {
                        break;
                    }
                    if (pindex == maxPindex)
                    {
                        maxPindex--;
                    }
                    if (pindex == minPindex)
                    {
                        minPindex++;
                    }
                }
                int order = PerCpuPages.PindexToOrder(pindex, _mem.PageblockOrder);
                int nrPages = 1 << order;
                ref PfnList list = ref pcp.Lists[pindex];
                do
                {
                    uint pfn = list.Tail;
                    list.Remove(_mem, pfn);
                    ref PageFrame f = ref _mem.Frame(pfn);
                    f.Flags = PageFlags.None;
                    count -= nrPages;
                    pcp.Count -= nrPages;
                    zone.FreeOnePage(pfn, order, f.MigrateType, toTail: false);
                    zone.Counters.Stats.PcpDrain++;
                }
                while (count > 0 && !list.IsEmpty);
            }
        }
        if (Observer is { } observer && countBefore != pcp.Count)
        {
            observer.PcpDrain(zone.Index, Array.IndexOf(zone.Pcp, pcp), countBefore - pcp.Count);
        }
    }

    /// <summary>drain_all_pages: every CPU's lists of every zone back to the buddy lists.</summary>
    public void DrainAllPages()
    {
        foreach (var zone in Zones)
        {
            foreach (var pcp in zone.Pcp)
            {
                DrainPagesZone(zone, pcp);
            }
        }
    }

    /// <summary>drain_local_pages for one zone: the calling CPU's lists of <paramref name="zone"/> back to the buddy
    /// lists (compaction's flush once its migrate scanner left a block it migrated from).</summary>
    public void DrainLocalPages(Zone zone) => DrainPagesZone(zone, zone.Pcp[_cpus.Current]);

    // drain_pages_zone: one CPU's lists of one zone.
    private void DrainPagesZone(Zone zone, PerCpuPages pcp)
    {
        if (Volatile.Read(ref pcp.Count) == 0)
        {
            return;
        }
        VmBug.LockdepAssertNotHeld(zone.Lock); // order: pcp lock → zone->lock
        pcp.LockSpin();
        try
        {
            FreePcppagesBulk(zone, pcp.Count, pcp, 0); // nothing when another drain emptied it meanwhile
        }
        finally
        {
            // A VM_BUG_ON report thrown from the bulk free must not leave the CPU's list locked.
            pcp.Unlock();
        }
    }
}
