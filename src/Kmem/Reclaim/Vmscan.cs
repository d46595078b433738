// Page reclaim (mm/vmscan.c): LRU aging by the accessed bit, shrink_node over
// the four lists in the proportions get_scan_count gives (vm.swappiness; anon
// only while swap has room), shrink_inactive_list/shrink_folio_list (swap out
// anon pages, write back then drop dirty file pages, drop clean ones),
// shrink_active_list (deactivation), shrink_slab, and try_to_free_pages, the
// direct reclaim the page allocator calls.
// Simplifications, knowingly: pages are written synchronously and freed in the
// same pass (no PG_reclaim second pass, no flusher threads), so both kswapd and
// direct reclaim with __GFP_FS write dirty file pages back; there is no
// multi-gen LRU and no workingset refault detection.
// Locking: everything under MmState.Lock; reclaim never allocates. A thread in
// reclaim is marked (PF_MEMALLOC) so that an allocation made from a shrinker
// callback does not recurse into reclaim.
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Reclaim;

/// <summary>struct scan_control.</summary>
internal struct ScanControl
{
    public Gfp Gfp;
    public int Order;
    public ZoneType ReclaimIdx;
    public long NrToReclaim;
    public long NrReclaimed;
    public long NrScanned;
    public int Priority;
    public bool Kswapd;
}

internal sealed partial class MmState
{
    [ThreadStatic]
    private static bool t_memalloc;

    private enum PageRef
    {
        Reclaim,
        Keep,
        Activate,
    }

    /// <summary>try_to_free_pages: direct reclaim for an allocation; returns the pages freed.</summary>
    public long TryToFreePages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest)
    {
        if (t_memalloc || IsDisposed)
        {
            return 0;
        }
        var sc = new ScanControl
        {
            Gfp = gfp, Order = order, ReclaimIdx = highest, NrToReclaim = Math.Max(SwapClusterMax, 1L << order),
        };
        t_memalloc = true;
        try
        {
            lock (Lock)
            {
                CountAllocstall(highest);
                return DoTryToFreePages(zonelist, ref sc);
            }
        }
        finally
        {
            t_memalloc = false;
        }
    }

    /// <summary>allocstall_*, by the request's highest zone.</summary>
    public readonly long[] Allocstall = new long[(int)ZoneType.Device + 1];

    private void CountAllocstall(ZoneType highest) => Allocstall[(int)highest]++;

    /// <summary>do_try_to_free_pages: priorities 12 down to 0 over the zonelist's nodes until enough is freed.</summary>
    private long DoTryToFreePages(Zone[] zonelist, ref ScanControl sc)
    {
        var idx = sc.ReclaimIdx;
        var nodes = zonelist.Where(z => z.Type <= idx).Select(z => z.Node).Distinct().ToArray();
        for (sc.Priority = DefPriority; sc.Priority >= 0; sc.Priority--)
        {
            foreach (var node in nodes)
            {
                long before = sc.NrReclaimed;
                ShrinkNode(_lruvecs[node.Id], ref sc);
                sc.NrReclaimed += ShrinkSlab(sc.Gfp, node.Id, sc.Priority);
                if (sc.NrReclaimed > before)
                {
                    _lruvecs[node.Id].KswapdFailures = 0;
                }
            }
            if (sc.NrReclaimed >= sc.NrToReclaim)
            {
                break;
            }
        }
        return sc.NrReclaimed;
    }

    /// <summary>inactive_is_low: inactive × int_sqrt(10 × GiB of the pair) &lt; active (ratio 1 below 1 GiB).</summary>
    private static bool InactiveIsLow(Lruvec vec, LruList inactive)
    {
        long inact = vec.Count[(int)inactive], act = vec.Count[(int)inactive + 1];
        long gb = (inact + act) >> (30 - PhysMem.PageShift);
        long ratio = gb > 0 ? (long)Math.Sqrt(10 * gb) : 1;
        return inact * ratio < act;
    }

    /// <summary>shrink_node / shrink_lruvec: scan each list by get_scan_count's share, in batches of 32.</summary>
    private void ShrinkNode(Lruvec vec, ref ScanControl sc)
    {
        var nr = new long[4];
        // get_scan_count: anon only if swap has room; otherwise file only.
        long anonPrio = CanSwap ? Swappiness : 0;
        long filePrio = CanSwap ? 200 - Swappiness : 1;
        long denom = anonPrio + filePrio;
        for (int l = 0; l < 4; l++)
        {
            long size = vec.Count[l];
            long scan = size >> sc.Priority;
            if (scan == 0 && sc.Priority == 0)
            {
                scan = size;
            }
            nr[l] = scan * (l < 2 ? anonPrio : filePrio) / Math.Max(denom, 1);
            if (nr[l] == 0 && size > 0 && (l < 2 ? anonPrio : filePrio) > 0 && sc.Priority <= 1)
            {
                nr[l] = Math.Min(size, SwapClusterMax);
            }
        }
        while (nr[0] + nr[1] + nr[2] + nr[3] > 0)
        {
            for (int l = 0; l < 4; l++)
            {
                if (nr[l] == 0)
                {
                    continue;
                }
                long batch = Math.Min(nr[l], SwapClusterMax);
                nr[l] -= batch;
                var lru = (LruList)l;
                if (((int)lru & 1) != 0)
                {
                    if (InactiveIsLow(vec, lru - 1))
                    {
                        ShrinkActiveList(vec, lru, batch, ref sc);
                    }
                }
                else
                {
                    ShrinkInactiveList(vec, lru, batch, ref sc);
                }
            }
            if (!sc.Kswapd && sc.NrReclaimed >= sc.NrToReclaim)
            {
                break;
            }
        }
        // age_active_anon: keep the inactive anon list filled while swap is usable.
        if (CanSwap && InactiveIsLow(vec, LruList.InactiveAnon))
        {
            ShrinkActiveList(vec, LruList.ActiveAnon, SwapClusterMax, ref sc);
        }
    }

    /// <summary>isolate_lru_pages: up to <paramref name="n"/> pages from the tail of <paramref name="lru"/> that
    /// the request may use (zone ≤ reclaim_idx); the others go back to the head and count as pgskip.</summary>
    private List<uint> IsolateLruPages(Lruvec vec, LruList lru, long n, ref ScanControl sc)
    {
        var taken = new List<uint>();
        long budget = vec.Count[(int)lru];
        while (taken.Count < n && budget-- > 0)
        {
            uint pfn = vec.Lists[(int)lru].Tail;
            if (pfn == PhysMem.NoPfn)
            {
                break;
            }
            RemoveFromList(pfn, lru);
            if (_pa.ZoneOf(pfn).Type > sc.ReclaimIdx)
            {
                AddToList(pfn, lru, head: true);
                Pgskip[(int)_pa.ZoneOf(pfn).Type]++;
                continue;
            }
            _mem.Frame(pfn).Flags &= ~PageFlags.Lru;
            taken.Add(pfn);
        }
        return taken;
    }

    /// <summary>pgskip_*, by zone type.</summary>
    public readonly long[] Pgskip = new long[(int)ZoneType.Device + 1];

    /// <summary>putback: back on the list its flags name.</summary>
    private void Putback(uint pfn, bool head = true)
    {
        _mem.Frame(pfn).Flags |= PageFlags.Lru;
        AddToList(pfn, ListOf(pfn), head);
    }

    /// <summary>shrink_active_list: every scanned page goes to the inactive list (its accessed bit is cleared
    /// on the way); a page referenced again while inactive will be activated from there.</summary>
    private void ShrinkActiveList(Lruvec vec, LruList lru, long n, ref ScanControl sc)
    {
        var pages = IsolateLruPages(vec, lru, n, ref sc);
        Stats.Pgrefill += pages.Count;
        foreach (uint pfn in pages)
        {
            TestClearYoung(pfn);
            ref PageFrame f = ref _mem.Frame(pfn);
            f.Flags &= ~(PageFlags.Active | PageFlags.Referenced);
            f.Flags |= PageFlags.Workingset;
            Putback(pfn);
            Stats.Pgdeactivate++;
        }
    }

    /// <summary>shrink_inactive_list: try to free each scanned page (shrink_folio_list).</summary>
    private void ShrinkInactiveList(Lruvec vec, LruList lru, long n, ref ScanControl sc)
    {
        var pages = IsolateLruPages(vec, lru, n, ref sc);
        bool anon = lru == LruList.InactiveAnon;
        long scanned = pages.Count;
        sc.NrScanned += scanned;
        if (sc.Kswapd)
        {
            Stats.PgscanKswapd += scanned;
        }
        else
        {
            Stats.PgscanDirect += scanned;
        }
        if (anon)
        {
            Stats.PgscanAnon += scanned;
        }
        else
        {
            Stats.PgscanFile += scanned;
        }
        long stolen = 0;
        foreach (uint pfn in pages)
        {
            switch (ShrinkPage(pfn, anon, ref sc))
            {
                case PageRef.Reclaim:
                    stolen++;
                    break;
                case PageRef.Activate:
                    if ((_mem.Frame(pfn).Flags & PageFlags.SwapCache) != 0 && VmSwapFull)
                    {
                        // activate_locked: a page staying in memory gives its swap slot back when swap is tight.
                        DeleteFromSwapCache(pfn);
                        _mem.Frame(pfn).Flags |= PageFlags.Dirty;
                    }
                    _mem.Frame(pfn).Flags |= PageFlags.Active;
                    Putback(pfn);
                    Stats.Pgactivate++;
                    break;
                default:
                    Putback(pfn);
                    break;
            }
        }
        sc.NrReclaimed += stolen;
        if (sc.Kswapd)
        {
            Stats.PgstealKswapd += stolen;
        }
        else
        {
            Stats.PgstealDirect += stolen;
        }
        if (anon)
        {
            Stats.PgstealAnon += stolen;
        }
        else
        {
            Stats.PgstealFile += stolen;
        }
    }

    /// <summary>folio_referenced for an anonymous page: test and clear the accessed bit of the one PTE that
    /// maps it. Returns whether it was set.</summary>
    private unsafe bool TestClearYoung(uint pfn)
    {
        if (OwnerOf(pfn) is not TaskStruct t)
        {
            return false;
        }
        ulong* pte = Walk(t, IndexOf(pfn), out _);
        if (pte is null || (*pte & PtePresent) == 0 || PtePfn(*pte) != pfn || (*pte & PteAccessed) == 0)
        {
            return false;
        }
        *pte &= ~PteAccessed;
        return true;
    }

    /// <summary>shrink_folio_list for one isolated page: check references, then swap out (anon), write back
    /// (dirty file), and free. Returns what to do with a page that stays.</summary>
    private PageRef ShrinkPage(uint pfn, bool anon, ref ScanControl sc)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        bool referencedPtes = anon && TestClearYoung(pfn);
        bool referencedPage = (f.Flags & PageFlags.Referenced) != 0;
        f.Flags &= ~PageFlags.Referenced;
        // folio_check_references.
        if (referencedPtes)
        {
            return PageRef.Activate;
        }
        if (!anon)
        {
            return ShrinkFilePage(pfn, referencedPage, ref sc);
        }
        if ((f.Flags & PageFlags.SwapCache) == 0)
        {
            // add_to_swap needs I/O: GFP_NOIO never swaps.
            if ((sc.Gfp & Gfp.Io) == 0)
            {
                return PageRef.Keep;
            }
            ulong entry = GetSwapPage();
            if (entry == 0)
            {
                return PageRef.Activate;
            }
            SwapCacheAdd(entry, pfn);
            f.Flags |= PageFlags.Dirty;
        }
        var t = (TaskStruct)OwnerOf(pfn)!;
        ulong swapEntry = f.Private;
        unsafe
        {
            // try_to_unmap: the PTE's dirty bit moves to the page, the PTE becomes the swap entry.
            ulong* pte = Walk(t, IndexOf(pfn), out _);
            if ((*pte & PteDirty) != 0)
            {
                f.Flags |= PageFlags.Dirty;
            }
            SwapDuplicate(swapEntry);
            *pte = swapEntry;
        }
        t.Rss--;
        t.SwapEnts++;
        NrAnonPages--;
        if ((f.Flags & PageFlags.Dirty) != 0)
        {
            // pageout to swap: allowed with __GFP_IO for a swap-cache page (may_enter_fs).
            f.Flags |= PageFlags.Writeback;
            NrWriteback++;
            SwapWritePage(swapEntry, pfn);
            NrWriteback--;
            f.Flags &= ~(PageFlags.Writeback | PageFlags.Dirty);
        }
        DeleteFromSwapCache(pfn);
        LruDelIsolated(pfn);
        FreeUserPage(pfn);
        return PageRef.Reclaim;
    }

    /// <summary>Clears this layer's state of a page already off its list (isolated) before it is freed.</summary>
    private void LruDelIsolated(uint pfn)
    {
        _mem.Frame(pfn).Flags &= ~PageFlags.Lru;
        LruDel(pfn);
    }

    /// <summary>ShrinkSlab: do_shrink_slab for every registered shrinker; returns the pages that came back to
    /// the free lists meanwhile (the kernel's reclaim_state->reclaimed_slab).</summary>
    private long ShrinkSlab(Gfp gfp, int nid, int priority)
    {
        long before = _pa.NrFreePages;
        foreach (var s in _shrinkers.ToArray())
        {
            DoShrinkSlab(s, gfp, nid, priority);
        }
        return Math.Max(0, _pa.NrFreePages - before);
    }

    private long DoShrinkSlab(Shrinker s, Gfp gfp, int nid, int priority)
    {
        var ctl = new ShrinkControl { Gfp = gfp, Nid = nid };
        long freeable = s.CountObjects(ctl);
        if (freeable == 0 || freeable == Shrinker.Empty)
        {
            return 0;
        }
        long nr = Interlocked.Exchange(ref s.NrDeferred, 0);
        long delta = s.Seeks > 0 ? (freeable >> priority) * 4 / s.Seeks : freeable / 2;
        long totalScan = (nr >> priority) + delta;
        totalScan = Math.Min(totalScan, 2 * freeable);
        long batch = s.Batch > 0 ? s.Batch : Shrinker.DefaultBatch;
        long freed = 0, scanned = 0;
        while (totalScan >= batch || totalScan >= freeable)
        {
            long n = Math.Min(batch, totalScan);
            ctl.NrToScan = n;
            ctl.NrScanned = n;
            long ret = s.ScanObjects(ctl);
            if (ret == Shrinker.Stop)
            {
                break;
            }
            freed += ret;
            Stats.SlabsScanned += ctl.NrScanned;
            totalScan -= ctl.NrScanned;
            scanned += ctl.NrScanned;
            if (ctl.NrScanned <= 0)
            {
                break;
            }
        }
        long next = Math.Max(nr + delta - scanned, 0);
        next = Math.Min(next, 2 * freeable);
        Interlocked.Add(ref s.NrDeferred, next);
        return freed;
    }

    private readonly List<Shrinker> _shrinkers = [];

    public void RegisterShrinker(Shrinker s)
    {
        ArgumentNullException.ThrowIfNull(s);
        if (s.Seeks < 0 || s.Batch < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(s), $"shrinker {s.Name}: seeks and batch must not be negative");
        }
        lock (Lock)
        {
            if (_shrinkers.Contains(s))
            {
                throw new InvalidOperationException($"shrinker {s.Name} is already registered");
            }
            _shrinkers.Add(s);
        }
    }

    public void UnregisterShrinker(Shrinker s)
    {
        lock (Lock)
        {
            if (!_shrinkers.Remove(s))
            {
                throw new InvalidOperationException($"shrinker {s.Name} is not registered");
            }
        }
    }

    /// <summary>drop_slab: shrink every shrinker at priority 0 until a round frees (almost) nothing.</summary>
    public void DropSlab()
    {
        lock (Lock)
        {
            int shift = 0;
            long freed;
            do
            {
                freed = 0;
                foreach (var node in _pa.Nodes)
                {
                    foreach (var s in _shrinkers.ToArray())
                    {
                        freed += DoShrinkSlab(s, Gfp.Kernel, node.Id, 0);
                    }
                }
            }
            while ((freed >> shift++) > 1 && shift < 64);
            Stats.DropSlab++;
        }
    }
}
