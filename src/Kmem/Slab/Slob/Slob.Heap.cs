// SLOB's heap (mm/slob.c, 6.1): slob_alloc walks the free list chosen by the request's size (small,
// medium, large) for the first page with room, rotates the list to start there (next-fit), and falls back
// to a new order-0 page; slob_free gives a block back to its page, puts a page that regained room on its
// list and returns a page that became wholly free to the page allocator. Blocks of a page or more come
// straight from the page allocator (slob_new_pages). Kmem's side table of live blocks is updated here under
// slob_lock with the heap itself; SLAB_TYPESAFE_BY_RCU frees wait for a grace period (kmem_rcu_free).
// Locking as in Slob.cs: slob_lock for the lists, the pages' chains and the side table; pages come from and
// go back to the page allocator outside it.
using Kmem.Physical;
using static Kmem.Slab.SlobPage;

namespace Kmem.Slab;

internal sealed unsafe partial class Slob
{
    // ───────────────────────────── the heap: page lists ─────────────────────────────

    /// <summary>set_slob_page_free: list_add at the list's head.</summary>
    private void SetSlobPageFree(uint pfn, int list)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        _lists[list].AddHead(_mem, pfn);
        f.Private = (f.Private & 0xFFFF) | ((ulong)list << 16);
        f.Flags |= PageFlags.Private;
    }

    /// <summary>clear_slob_page_free.</summary>
    private void ClearSlobPageFree(uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        _lists[ListOf(ref f)].Remove(_mem, pfn);
        f.Flags &= ~PageFlags.Private;
    }

    /// <summary>list_rotate_to_front: the list starts at <paramref name="pfn"/>, the entries before it move
    /// behind the old tail in their order (the cyclic order is kept, as with the kernel's circular list).</summary>
    private void RotateToFront(ref PfnList list, uint pfn)
    {
        uint first = list.Head;
        if (first == pfn)
        {
            return;
        }
        uint lastBefore = _mem.Frame(pfn).Prev;
        _mem.Frame(list.Tail).Next = first;
        _mem.Frame(first).Prev = list.Tail;
        _mem.Frame(lastBefore).Next = PhysMem.NoPfn;
        _mem.Frame(pfn).Prev = PhysMem.NoPfn;
        list.Head = pfn;
        list.Tail = lastBefore;
    }

    /// <summary>slob_page_alloc: a block from the page <paramref name="pfn"/> (<see cref="SlobPage.Alloc"/>); a page
    /// left with no free unit leaves its list (<paramref name="removed"/>). Null when no block fits. Called under
    /// slob_lock.</summary>
    private short* SlobPageAlloc(uint pfn, int size, int align, int alignOffset, out bool removed)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        short* b = SlobPage.Alloc(ref f, (short*)_mem.PageAddress(pfn), size, align, alignOffset);
        removed = b != null && f.Aux == 0;
        if (removed)
        {
            ClearSlobPageFree(pfn);
        }
        return b;
    }

    /// <summary>slob_alloc: a block of <paramref name="size"/> bytes from the first page of the size's list
    /// (on <paramref name="node"/> when one is given) that fits it, the list then starting at that page; else
    /// from a new page. The block is recorded as live under the same lock, with <paramref name="owner"/> and
    /// the pointer handed out (the block plus <paramref name="alignOffset"/>); a kmalloc block gets its size
    /// header there too. Returns the pointer handed out, or 0.</summary>
    private nint SlobAlloc(int size, Gfp gfp, int align, int node, int alignOffset, int owner, nuint requested)
    {
        int list = ListIndex(size);
        int units = SlobUnits(size);
        short* b = null;
        lock (_slobLock)
        {
            ref PfnList head = ref _lists[list];
            for (uint pfn = head.Head; pfn != PhysMem.NoPfn; pfn = _mem.Frame(pfn).Next)
            {
                if ((node >= 0 && NodeOf(pfn) != node) || _mem.Frame(pfn).Aux < units)
                {
                    continue;
                }
                b = SlobPageAlloc(pfn, size, align, alignOffset, out bool removed);
                if (b == null)
                {
                    continue;
                }
                if (!removed)
                {
                    // Knuth's next fit: the next search starts at the page that just served.
                    RotateToFront(ref head, pfn);
                }
                Record(b, units, alignOffset, owner, requested);
                break;
            }
        }
        if (b == null)
        {
            var page = _pa.AllocPages(gfp & ~Gfp.Zero, 0, node);
            if (page.IsNull)
            {
                return 0;
            }
            uint pfn = page.RawPfn;
            AccountSlabPages(SlabFlags.None, pfn, 1);
            short* pageBase = (short*)_mem.PageAddress(pfn);
            lock (_slobLock)
            {
                ref PageFrame f = ref _mem.Frame(pfn);
                f.Flags |= PageFlags.Slab;
                f.Aux = UnitsPerPage;
                f.Private = 0;
                f.Next = f.Prev = PhysMem.NoPfn;
                SetSlob(pageBase, UnitsPerPage, pageBase + UnitsPerPage);
                SetSlobPageFree(pfn, list);
                _slobPages++;
                b = SlobPageAlloc(pfn, size, align, alignOffset, out _);
                if (b == null)
                {
                    throw new InvalidOperationException($"kernel BUG at mm/slob.c: a fresh page does not fit {size} bytes aligned to {align}");
                }
                Record(b, units, alignOffset, owner, requested);
            }
        }
        if ((gfp & Gfp.Zero) != 0)
        {
            // The header (if any) is already written; zero what the caller gets.
            new Span<byte>((byte*)b + alignOffset, size - alignOffset).Clear();
        }
        return (nint)b + alignOffset;
    }

    /// <summary>Enters a new block of a slob page in the side table and the counters (slob_lock held).</summary>
    private void Record(short* b, int units, int alignOffset, int owner, nuint requested)
    {
        nint p = (nint)b + alignOffset;
        var blk = new SlobBlock(owner, units, -1, requested);
        _live.Add(p, blk);
        if (owner == KmallocOwner)
        {
            *(uint*)b = (uint)requested;
        }
        Count(blk, 1);
    }

    /// <summary>Adds (<paramref name="sign"/> 1) or removes (-1) a block in its owner's figures (slob_lock held).</summary>
    private void Count(SlobBlock blk, int sign)
    {
        if (blk.Owner == KmallocOwner)
        {
            _kmallocBlocks += sign;
            _kmallocRequested += sign * (long)blk.Requested;
            _kmallocHeld += sign * blk.Held;
        }
        else if (CacheById(blk.Owner)?.BackendState is SlobCacheState st)
        {
            st.Objects += sign;
            st.Held += sign * blk.Held;
        }
        if (!blk.InPage)
        {
            _pageBlocks += sign;
            _pageBlockPages += sign * (1L << blk.Order);
        }
    }

    /// <summary>slob_free: puts a block back into its page's chain in address order, merging it with the
    /// free blocks it touches; a page that was full joins the list of the freed size; a page that becomes
    /// wholly free leaves its list and is returned for the caller to give back (NoPfn otherwise).
    /// Called under slob_lock.</summary>
    private uint SlobFree(short* b, int size)
    {
        uint pfn = _mem.VirtToPfn((nint)b);
        ref PageFrame f = ref _mem.Frame(pfn);
        short* pageBase = PageBase(b);
        int units = SlobUnits(size);
        if (f.Aux + units == UnitsPerPage)
        {
            if (SlobPageFree(ref f))
            {
                ClearSlobPageFree(pfn);
            }
            return pfn;
        }
        if (!SlobPageFree(ref f))
        {
            // The page was full: it becomes partially free with this block alone.
            f.Aux = (ushort)units;
            SetFreeOffset(ref f, b - pageBase);
            SetSlob(b, units, pageBase + UnitsPerPage);
            SetSlobPageFree(pfn, ListIndex(size));
            return PhysMem.NoPfn;
        }
        f.Aux += (ushort)units;
        short* first = pageBase + FreeOffset(ref f);
        if (b < first)
        {
            if (b + units == first)
            {
                units += Units(first);
                first = Next(first);
            }
            SetSlob(b, units, first);
            SetFreeOffset(ref f, b - pageBase);
        }
        else
        {
            short* prev = first;
            short* next = Next(prev);
            while (b > next)
            {
                prev = next;
                next = Next(prev);
            }
            if (!IsLast(prev) && b + units == next)
            {
                units += Units(next);
                SetSlob(b, units, Next(next));
            }
            else
            {
                SetSlob(b, units, next);
            }
            if (prev + Units(prev) == b)
            {
                units = Units(b) + Units(prev);
                SetSlob(prev, units, Next(b));
            }
            else
            {
                SetSlob(prev, Units(prev), b);
            }
        }
        return PhysMem.NoPfn;
    }

    /// <summary>The second half of slob_free for an emptied page: it stops being a slob page and goes back
    /// to the page allocator (outside slob_lock).</summary>
    private void ReleaseSlobPage(uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        f.Private = 0;
        f.Aux = 0;
        AccountSlabPages(SlabFlags.None, pfn, -1);
        _pa.FreePages(new Page(pfn), 0);
    }

    /// <summary>slob_new_pages: a block of 2^<paramref name="order"/> pages, counted as unreclaimable slab,
    /// recorded as live for <paramref name="owner"/>; 0 when the page allocator fails.</summary>
    private nint SlobNewPages(Gfp gfp, int order, int node, int owner, nuint requested)
    {
        var page = _pa.AllocPages(gfp, order, node);
        if (page.IsNull)
        {
            return 0;
        }
        uint pfn = page.RawPfn;
        AccountSlabPages(SlabFlags.None, pfn, 1L << order);
        nint p = _mem.PageAddress(pfn);
        var blk = new SlobBlock(owner, 0, order, requested);
        lock (_slobLock)
        {
            _live.Add(p, blk);
            Count(blk, 1);
        }
        return p;
    }

    /// <summary>slob_free_pages (the side table entry is already gone).</summary>
    private void SlobFreePages(nint p, int order)
    {
        uint pfn = _mem.VirtToPfn(p);
        AccountSlabPages(SlabFlags.None, pfn, -(1L << order));
        _pa.FreePages(new Page(pfn), order);
    }

    /// <summary>Frees a live block found in the side table (slob_lock held): a block in a slob page goes back
    /// into its chain (<paramref name="releasePfn"/> names a page that emptied), a block of pages is only
    /// unrecorded and its order returned in <paramref name="pagesOrder"/> (-1 otherwise) to be freed after
    /// the lock.</summary>
    private void FreeLocked(nint p, SlobBlock blk, int slobSize, out uint releasePfn, out int pagesOrder)
    {
        _live.Remove(p);
        Count(blk, -1);
        ReleaseLocked(p, blk, slobSize, out releasePfn, out pagesOrder);
    }

    /// <summary>The heap half of <see cref="FreeLocked"/>: the block's units go back to its page, or its pages
    /// are named for the caller to free (slob_lock held).</summary>
    private void ReleaseLocked(nint p, SlobBlock blk, int slobSize, out uint releasePfn, out int pagesOrder)
    {
        if (blk.InPage)
        {
            int header = blk.Owner == KmallocOwner ? MinAlign : 0;
            releasePfn = SlobFree((short*)(p - header), slobSize);
            pagesOrder = -1;
            if (releasePfn != PhysMem.NoPfn)
            {
                _mem.Frame(releasePfn).Flags &= ~PageFlags.Slab;
                _slobPages--;
            }
        }
        else
        {
            releasePfn = PhysMem.NoPfn;
            pagesOrder = blk.Order;
        }
    }

    /// <summary>Completes <see cref="FreeLocked"/> outside slob_lock.</summary>
    private void FinishFree(nint p, uint releasePfn, int pagesOrder)
    {
        if (releasePfn != PhysMem.NoPfn)
        {
            ReleaseSlobPage(releasePfn);
        }
        if (pagesOrder >= 0)
        {
            SlobFreePages(p, pagesOrder);
        }
    }

    /// <summary>kmem_rcu_free: after the grace period, an RCU cache's freed block goes back to the heap.</summary>
    private void KmemRcuFree(nint p, int slobSize)
    {
        uint releasePfn;
        int pagesOrder;
        lock (_slobLock)
        {
            if (!_rcuHeld.Remove(p, out var blk))
            {
                // Queued once per free, and the held block cannot be freed any other way: nothing to do.
                return;
            }
            ReleaseLocked(p, blk, slobSize, out releasePfn, out pagesOrder);
        }
        FinishFree(p, releasePfn, pagesOrder);
    }

    /// <summary>sizeof(struct slob_rcu): an rcu_head (two pointers) and an int, padded to a pointer.</summary>
    private uint SlobRcuSize => _pa.Arch.Preset == Preset.X64 ? 24u : 12u;
}
