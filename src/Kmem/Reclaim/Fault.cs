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
        lock (Lock)
        {
            ThrowIfDead(t);
            if (length > 0 && !Covered(t, vaddr, (ulong)length))
            {
                throw new SegmentationFaultException(t, FirstUncovered(t, vaddr, (ulong)length));
            }
        }
        int done = 0;
        while (done < length)
        {
            ulong va = vaddr + (ulong)done;
            int offset = (int)(va & (PhysMem.PageSize - 1));
            int chunk = Math.Min(length - done, PhysMem.PageSize - offset);
            MmCurrent.Task = t;
            uint pfn;
            bool locked;
            try
            {
                pfn = FaultIn(t, va & ~(ulong)(PhysMem.PageSize - 1), write, out locked);
            }
            finally
            {
                MmCurrent.Task = null;
            }
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
                        if (!spare.IsNull && IsTableSpare(spare))
                        {
                            InstallTable(t, va, missing, spare.RawPfn);
                            spare = Page.Null;
                            continue;
                        }
                        Lock.Exit();
                        holding = false;
                        FreeSpare(ref spare);
                        spare = _pa.AllocPages(Gfp.KernelAccount | Gfp.Zero, 0, -1);
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
}
