// The page-fault path (mm/memory.c handle_mm_fault, do_anonymous_page,
// do_swap_page, __pte_alloc; mm/oom_kill.c pagefault_out_of_memory): a task's
// Read and Write fault pages in one at a time, making missing tables, zeroed
// anonymous pages, or reading a swapped-out page back (from the swap cache when
// it is still there), and copy through kmap_local.
// Locking: UserMemory.Lock around every walk and change, then Swapfile.Lock and
// Lruvecs.Lock inside it as the swap cache and the LRU are touched (the order
// of LockOrder.cs). A fault returns with UserMemory.Lock held so that the page
// cannot be reclaimed before the copy; tables and pages are allocated with it
// dropped and the walk redone.
using Kmem.Physical;

namespace Kmem.Reclaim;

internal sealed unsafe partial class UserMemory
{
    /// <summary>Faults in and copies one access, page by page.</summary>
    public void Access(TaskStruct t, ulong vaddr, Span<byte> readInto, ReadOnlySpan<byte> writeFrom, bool write)
    {
        int length = write ? writeFrom.Length : readInto.Length;
        ThrowIfNotMapped(t, vaddr, (ulong)length);
        int done = 0;
        while (done < length)
        {
            ulong va = vaddr + (ulong)done;
            int offset = (int)(va & (PhysMem.PageSize - 1));
            int chunk = Math.Min(length - done, PhysMem.PageSize - offset);
            uint pfn = FaultInAs(t, va & ~(ulong)(PhysMem.PageSize - 1), write, out bool locked);
            try
            {
                if (write)
                {
                    _highmem.MemcpyToPage(pfn, offset, writeFrom.Slice(done, chunk));
                }
                else
                {
                    _highmem.MemcpyFromPage(readInto.Slice(done, chunk), pfn, offset);
                }
            }
            finally
            {
                if (locked)
                {
                    Lock.Exit();
                }
            }
            done += chunk;
        }
    }

    /// <summary>madvise(MADV_POPULATE_READ/WRITE): faults in every page of [vaddr, vaddr + length) as an access
    /// would, copying nothing, so a page no one has written costs no host memory.</summary>
    public void Populate(TaskStruct t, ulong vaddr, ulong length, bool write)
    {
        ThrowIfNotMapped(t, vaddr, length);
        ulong end = vaddr + length;
        for (ulong va = vaddr & ~(ulong)(PhysMem.PageSize - 1); va < end; va += PhysMem.PageSize)
        {
            FaultInAs(t, va, write, out bool locked);
            if (locked)
            {
                Lock.Exit();
            }
        }
    }

    // An access's check before any fault: the task is alive and the whole range mapped.
    private void ThrowIfNotMapped(TaskStruct t, ulong vaddr, ulong length)
    {
        lock (Lock)
        {
            ThrowIfDead(t);
            if (length > 0 && !Covered(t, vaddr, length))
            {
                throw new SegmentationFaultException(t, FirstUncovered(t, vaddr, length));
            }
        }
    }

    // FaultIn in the task's context (current->mm for the allocations it makes).
    private uint FaultInAs(TaskStruct t, ulong va, bool write, out bool locked)
    {
        MmCurrent.Task = t;
        try
        {
            return FaultIn(t, va, write, out locked);
        }
        finally
        {
            MmCurrent.Task = null;
        }
    }

    private static bool Covered(TaskStruct t, ulong start, ulong length)
    {
        ulong end = start + length;
        ulong at = start;
        foreach (var v in t.Vmas)
        {
            if (v.End <= at)
            {
                continue;
            }
            if (v.Start > at)
            {
                return false;
            }
            at = v.End;
            if (at >= end)
            {
                return true;
            }
        }
        return false;
    }

    private static ulong FirstUncovered(TaskStruct t, ulong start, ulong length)
    {
        for (ulong va = start; va < start + length; va = (va & ~(ulong)(PhysMem.PageSize - 1)) + PhysMem.PageSize)
        {
            if (!Covered(t, va, 1))
            {
                return va;
            }
        }
        return start;
    }

    /// <summary>
    /// handle_mm_fault for one page: returns its pfn with Lock held (the caller copies, then exits the lock),
    /// after setting the accessed bit (and dirty for a write). Allocates missing tables and the page with the
    /// lock dropped; a swap entry is read back (do_swap_page), from the swap cache when the page is still there.
    /// </summary>
    private uint FaultIn(TaskStruct t, ulong va, bool write, out bool locked)
    {
        Page spare = Page.Null;
        try
        {
            while (true)
            {
                Lock.Enter();
                bool holding = true;
                try
                {
                    ThrowIfDead(t);
                    ulong* pte = Walk(t, va, out int missing);
                    if (pte is null)
                    {
                        // A table frame in HighMem (HIGHPTE) can only be a PTE table.
                        if (!spare.IsNull && IsTableSpare(spare) && (missing == 1 || _mem.PageAddress(spare.RawPfn) != 0))
                        {
                            InstallTable(t, va, missing, spare.RawPfn);
                            spare = Page.Null;
                            continue;
                        }
                        Lock.Exit();
                        holding = false;
                        FreeSpare(ref spare);
                        spare = AllocTablePage(t, missing);
                        if (spare.IsNull)
                        {
                            PagefaultOutOfMemory(t);
                        }
                        _mem.Frame(spare.RawPfn).Flags |= PageFlags.Table;
                        continue;
                    }
                    ulong e = *pte;
                    if ((e & PtePresent) != 0)
                    {
                        *pte = e | PteAccessed | (write ? PteDirty : 0);
                        locked = true;
                        holding = false;
                        return PtePfn(e);
                    }
                    if (PteIsSwap(e) && _swap.LookupSwapCache(e) is var cached && cached != PhysMem.NoPfn)
                    {
                        // do_swap_page: the page is still in the swap cache (reclaim wrote it out and has not yet
                        // freed it): mapped again from there, nothing read.
                        MapSwapPage(t, va, pte, e, cached, write, major: false);
                        continue;
                    }
                    if (!spare.IsNull && !IsTableSpare(spare))
                    {
                        uint pfn = spare.RawPfn;
                        spare = Page.Null;
                        if (PteIsSwap(e))
                        {
                            _swap.SwapReadPage(e, pfn);
                            _swap.SwapCacheAdd(e, pfn);
                            _lru.LruAdd(pfn, anon: true);
                            MapSwapPage(t, va, pte, e, pfn, write, major: true);
                        }
                        else
                        {
                            // do_anonymous_page: a zeroed page, mapped writable; dirty from the start, since
                            // its contents exist nowhere else.
                            _mem.Frame(pfn).Flags |= PageFlags.Dirty;
                            _mem.Frame(pfn).MapCount = 1;
                            _lru.SetOwner(pfn, t, va);
                            _lru.LruAdd(pfn, anon: true);
                            *pte = ((ulong)pfn << PhysMem.PageShift) | TableEntryBits;
                            t.Rss++;
                            NrAnonPages++;
                            _events.Stats.Pgfault++;
                        }
                        continue;
                    }
                    Lock.Exit();
                    holding = false;
                    FreeSpare(ref spare);
                    // alloc_zeroed_user_highpage_movable, or the swap-in page (read over, so not zeroed).
                    spare = _pa.AllocPages(PteIsSwap(e) ? Gfp.HighUserMovable : Gfp.HighUserMovable | Gfp.Zero, 0, -1);
                    if (spare.IsNull)
                    {
                        PagefaultOutOfMemory(t);
                    }
                }
                finally
                {
                    if (holding)
                    {
                        Lock.Exit();
                    }
                }
            }
        }
        finally
        {
            FreeSpare(ref spare);
        }
    }

    private bool IsTableSpare(Page p) => (_mem.Frame(p.RawPfn).Flags & PageFlags.Table) != 0;

    /// <summary>Where a trace replay hands over the frame of a page table the traced kernel allocated for the same
    /// fault (GFP_PGTABLE_USER, or with __GFP_HIGHMEM for a PTE table under CONFIG_HIGHPTE), so the replay does not
    /// allocate a second table on top of the kernel's; called with the task (null for a new task's PGD) and whether
    /// the table is a HIGHPTE one, returns Page.Null to let the allocator give one. Replaying thread only.</summary>
    public Func<TaskStruct?, bool, Page>? TablePageSource;

    /// <summary>Where a trace replay takes back a table frame its <see cref="TablePageSource"/> lent from frames it set
    /// aside (returns true), instead of the page allocator. Replaying thread only.</summary>
    public Func<uint, bool>? TablePageReturn;

    // A table's frame is freed: to the replay that lent it, or to the page allocator.
    private void FreeTableFrame(uint pfn)
    {
        if (TablePageReturn?.Invoke(pfn) != true)
        {
            _pa.FreePages(new Page(pfn), 0);
        }
    }

    /// <summary>A zeroed frame for a page table of <paramref name="t"/> at <paramref name="level"/> (4 the PGD:
    /// pgd_alloc; 3 a PUD table … 1 a PTE table: __pte_alloc, whose __userpte_alloc_gfp adds __GFP_HIGHMEM under
    /// CONFIG_HIGHPTE).</summary>
    private Page AllocTablePage(TaskStruct? t, int level)
    {
        bool highPte = level == 1 && _highPte;
        var p = TablePageSource?.Invoke(t, highPte) ?? Page.Null;
        if (p.IsNull)
        {
            return _pa.AllocPages(highPte ? Gfp.PgtableUser | Gfp.HighMem : Gfp.PgtableUser, 0, -1);
        }
        _highmem.ClearHighpage(p.RawPfn); // outside Lock: through kmap_local, not the table window
        return p;
    }

    /// <summary>For a trace replay whose kernel freed a frame it handed over through <see cref="TablePageSource"/>:
    /// free_pgtables for that table of <paramref name="t"/> when it maps nothing (with the empty tables below it);
    /// else, given a frame in <paramref name="replacement"/>, the table's entries move there and the frame is freed
    /// all the same (always for its PGD). Returns false when neither happened (no table of t any more, or nowhere
    /// to move).</summary>
    public bool ReleaseTable(TaskStruct t, uint pfn, Func<Page> replacement)
    {
        lock (Lock)
        {
            if (t.HasExited)
            {
                return false;
            }
            if (pfn != t.PgdPfn)
            {
                return ReleaseTable(t, t.PgdPfn, 3, pfn, replacement) == 1;
            }
            var to = replacement();
            if (to.IsNull)
            {
                return false;
            }
            MoveTable(pfn, to);
            t.PgdPfn = to.RawPfn;
            return true;
        }
    }

    // The table at from moves to the frame to; from is freed.
    private void MoveTable(uint from, Page to)
    {
        new Span<ulong>(TableEntry(from, 0), 512).CopyTo(new Span<ulong>(TableEntry(to.RawPfn, 0), 512));
        _mem.Frame(to.RawPfn).Flags |= PageFlags.Table;
        _mem.Frame(from).Flags &= ~PageFlags.Table;
        FreeTableFrame(from);
    }

    // 1: found and freed, 0: found and kept, -1: not below this table. level: that of the tables this one's
    // entries point to (3 PUD, 2 PMD, 1 PTE).
    private int ReleaseTable(TaskStruct t, uint table, int level, uint pfn, Func<Page> replacement)
    {
        for (int i = 0; i < 512; i++)
        {
            ulong* e = TableEntry(table, i);
            if ((*e & PtePresent) == 0)
            {
                continue;
            }
            uint child = PtePfn(*e);
            if (child == pfn)
            {
                if (FreeEmptyTables(t, child, level))
                {
                    FreeTablePage(t, child, level);
                    *e = 0;
                    return 1;
                }
                var to = replacement();
                if (to.IsNull)
                {
                    return 0;
                }
                *e = ((ulong)to.RawPfn << PhysMem.PageShift) | (*e & ~PtePfnMask);
                MoveTable(child, to);
                return 1;
            }
            int below = level > 1 ? ReleaseTable(t, child, level - 1, pfn, replacement) : -1;
            if (below >= 0)
            {
                return below;
            }
        }
        return -1;
    }

    private void FreeSpare(ref Page spare)
    {
        if (!spare.IsNull)
        {
            _mem.Frame(spare.RawPfn).Flags &= ~PageFlags.Table;
            _pa.FreePages(spare, 0);
            spare = Page.Null;
        }
    }

    /// <summary>pagefault_out_of_memory: the allocator gave up even after the OOM killer; the faulting task dies.</summary>
    private void PagefaultOutOfMemory(TaskStruct t)
    {
        lock (Lock)
        {
            if (!t.HasExited)
            {
                _log.Printk($"Out of memory: task {t.Pid} ({t.Comm}) could not fault in a page and is killed");
                t.IsKilled = true;
                ExitMm(t);
            }
        }
        throw new TaskKilledException(t);
    }

    /// <summary>Installs a zeroed table frame at the missing level (under Lock).</summary>
    private void InstallTable(TaskStruct t, ulong va, int missing, uint tablePfn)
    {
        uint table = t.PgdPfn;
        for (int level = 3; level > missing; level--)
        {
            table = PtePfn(*TableEntry(table, IndexAt(va, level)));
        }
        *TableEntry(table, IndexAt(va, missing)) = ((ulong)tablePfn << PhysMem.PageShift) | TableEntryBits;
        t.PgtablePages++;
        if (missing <= 2)
        {
            NrPageTable++;
        }
    }

    /// <summary>Maps a swap-cache page at the PTE holding swap entry <paramref name="entry"/> (do_swap_page).
    /// A write fault takes the page out of the swap cache and frees the slot: the copy on swap is stale.</summary>
    private void MapSwapPage(TaskStruct t, ulong va, ulong* pte, ulong entry, uint pfn, bool write, bool major)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        f.MapCount = 1;
        _lru.SetOwner(pfn, t, va);
        *pte = ((ulong)pfn << PhysMem.PageShift) | PtePresent | PteRw | PteUser | PteAccessed;
        t.SwapEnts--;
        t.Rss++;
        NrAnonPages++;
        _swap.SwapFree(entry);
        _events.Stats.Pgfault++;
        if (major)
        {
            _events.Stats.Pgmajfault++;
        }
        // A write makes the copy on swap stale; and with swap more than half full (vm_swap_full) the slot is
        // worth more free than as a cache of a page now in memory.
        if (write || _swap.VmSwapFull)
        {
            _swap.DeleteFromSwapCache(pfn);
            f.Flags |= PageFlags.Dirty;
        }
    }

    /// <summary>free_swap_and_cache's __try_to_reclaim_swap (TTRS_UNMAPPED): a page still in the swap cache for an entry
    /// no PTE holds any more (written out by reclaim, not yet freed by its second scan) leaves the cache, its LRU
    /// list and memory. Never under writeback here: writes complete within the reclaim pass that started them.</summary>
    private void FreeSwapCachePage(ulong entry)
    {
        uint pfn = _swap.LookupSwapCache(entry);
        if (pfn == PhysMem.NoPfn || _swap.SwapCount(entry) != 0)
        {
            return;
        }
        _swap.DeleteFromSwapCache(pfn);
        _lru.LruDel(pfn);
        _pa.FreePages(new Page(pfn), 0);
    }
}
