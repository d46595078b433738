// Page reclaim (mm/vmscan.c): LRU aging by the accessed bit, shrink_node over
// the four lists in the proportions get_scan_count gives (VmscanBalance.cs:
// anon_cost/file_cost, cache_trim_mode, file_is_tiny, swappiness; anon only
// while swap has free slots), shrink_inactive_list/shrink_folio_list with
// folio_check_references' look-twice rule (swap out anon pages, write back then
// drop dirty file pages, drop clean ones), shrink_active_list (deactivation,
// only of the lists prepare_scan_count allows), and try_to_free_pages, the
// direct reclaim the page allocator calls; shrink_slab is Shrinkers.cs, kswapd
// Kswapd.cs.
// An anonymous page written to swap takes two scans, as in 6.1: the first unmaps
// it and starts its write with PG_reclaim set and keeps it (under writeback, back
// on the inactive list); the write completes after the batch (VmscanWriteback.cs:
// folio_end_writeback, folio_rotate_reclaimable moves it to the inactive tail,
// pgrotated), and the next scan finds it clean, unmapped and in the swap cache,
// and frees it.
// Simplifications, knowingly: file pages are written synchronously and freed in
// the same pass (no flusher threads), so both kswapd and direct reclaim with
// __GFP_FS write dirty file pages back; there is no multi-gen LRU and no
// workingset refault detection.
// Locking: a reclaim pass holds the four owner locks (ReclaimLocks, in the order
// of LockOrder.cs), since it moves pages between the LRU, page tables, the swap
// cache and the page cache; it never allocates. A thread in reclaim is marked
// PF_MEMALLOC (MmCurrent.Memalloc) so that an allocation made from a shrinker
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
    /// <summary>The lruvec's reclaim costs, taken by prepare_scan_count.</summary>
    public long AnonCost, FileCost;
    /// <summary>may_deactivate: DEACTIVATE_ANON (1), DEACTIVATE_FILE (2).</summary>
    public int MayDeactivate;
    /// <summary>Enough inactive file pages that are not thrashing: scan file only.</summary>
    public bool CacheTrimMode;
    /// <summary>The node is almost out of file pages: scan anon only.</summary>
    public bool FileIsTiny;
    /// <summary>!may_swap: kswapd reclaiming only for a watermark boost leaves anon pages alone.</summary>
    public bool NoSwap;
    /// <summary>A zone had enough free pages for the costly order's compaction (compaction_ready): reclaim stops.</summary>
    public bool CompactionReady;
}

/// <summary>What shrink_folio_list does with a page (enum folio_references, reduced).</summary>
internal enum PageRef
{
    Reclaim,
    Keep,
    Activate,
}

/// <summary>Page reclaim of one machine: it owns nothing but its tunables and counters; the pages it scans
/// belong to the LRU, the tasks, the page cache and swap.</summary>
internal sealed partial class Vmscan(PhysMem mem, PageAllocator pa, Lruvecs lru, UserMemory memory, Filemap filemap, Swapfile swap,
    Shrinkers shrinkers, VmEvents events, ReclaimLocks locks)
{
    /// <summary>SWAP_CLUSTER_MAX: pages reclaimed per batch.</summary>
    public const int SwapClusterMax = 32;
    /// <summary>DEF_PRIORITY: the first scan priority (scan lru_size >> 12).</summary>
    public const int DefPriority = 12;
    /// <summary>MAX_RECLAIM_RETRIES.</summary>
    public const int MaxReclaimRetries = 16;

    private readonly PhysMem _mem = mem;
    private readonly PageAllocator _pa = pa;
    private readonly Lruvecs _lru = lru;
    private readonly UserMemory _memory = memory;
    private readonly Filemap _filemap = filemap;
    private readonly Swapfile _swap = swap;
    private readonly Shrinkers _shrinkers = shrinkers;
    private readonly VmEvents _events = events;
    private readonly ReclaimLocks _locks = locks;

    /// <summary>vm.swappiness (0..200, default 60).</summary>
    public int Swappiness { get; set; } = 60;


    /// <summary>try_to_free_pages: direct reclaim for an allocation; returns the pages freed.</summary>
    public long TryToFreePages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest)
    {
        if (MmCurrent.Memalloc)
        {
            return 0;
        }
        var sc = new ScanControl
        {
            Gfp = gfp, Order = order, ReclaimIdx = highest, NrToReclaim = SwapClusterMax, // whatever the order
        };
        MmCurrent.Memalloc = true;
        try
        {
            using (_locks.EnterAll())
            {
                Allocstall[(int)highest]++;
                if (TracedReclaim?.Invoke() is long traced and >= 0)
                {
                    return traced;
                }
                return DoTryToFreePages(zonelist, ref sc);
            }
        }
        finally
        {
            MmCurrent.Memalloc = false;
        }
    }

    /// <summary>allocstall_*, by the request's highest zone.</summary>
    public readonly long[] Allocstall = new long[(int)ZoneType.Device + 1];

    /// <summary>do_try_to_free_pages with shrink_zones: priorities 12 down to 0, each node of the zonelist shrunk once
    /// a pass, until enough is freed; for a costly order a zone with room to compact in is left alone and ends the
    /// reclaim (compaction_ready), which then counts as progress.</summary>
    private long DoTryToFreePages(Zone[] zonelist, ref ScanControl sc)
    {
        for (sc.Priority = DefPriority; sc.Priority >= 0; sc.Priority--)
        {
            Node? last = null;
            foreach (var zone in zonelist)
            {
                if (zone.Type > sc.ReclaimIdx || !zone.IsManaged)
                {
                    continue;
                }
                if (sc.Order > PerCpuPages.CostlyOrder && CompactionReady(zone, sc))
                {
                    sc.CompactionReady = true;
                    continue;
                }
                if (zone.Node == last)
                {
                    continue;
                }
                last = zone.Node;
                ShrinkNodeAndSlab(zone.Node, ref sc);
            }
            if (sc.NrReclaimed >= sc.NrToReclaim || sc.CompactionReady)
            {
                break;
            }
        }
        return sc.NrReclaimed > 0 ? sc.NrReclaimed : sc.CompactionReady ? 1 : 0;
    }

    /// <summary>shrink_node: the node's lists and its shrinkers, once more while reclaim for a high order should go
    /// on (should_continue_reclaim); progress revives a dormant kswapd.</summary>
    public void ShrinkNodeAndSlab(Node node, ref ScanControl sc)
    {
        var vec = _lru.OfNode(node.Id);
        long reclaimed;
        do
        {
            long before = sc.NrReclaimed;
            ShrinkNode(vec, ref sc);
            sc.NrReclaimed += _shrinkers.ShrinkSlab(sc.Gfp, node.Id, sc.Priority);
            reclaimed = sc.NrReclaimed - before;
            if (reclaimed > 0)
            {
                vec.KswapdFailures = 0;
            }
        }
        while (ShouldContinueReclaim(node, reclaimed, sc));
    }

    /// <summary>compaction_suitable, for reclaim's look at whether compaction could go ahead (set by the layer
    /// that owns compaction).</summary>
    public Func<Zone, int, ZoneType, CompactResult> CompactionSuitable { get; set; } = (_, _, _) => CompactResult.Skipped;

    /// <summary>compaction_ready: the allocation would succeed already, or compaction can go ahead and the zone is
    /// above its high watermark by the compaction gap (twice the request).</summary>
    private bool CompactionReady(Zone zone, in ScanControl sc) => CompactionSuitable(zone, sc.Order, sc.ReclaimIdx) switch
    {
        CompactResult.Success => true,
        CompactResult.Skipped => false,
        _ => zone.WatermarkOkSafe(0, zone.WmarkPages(Zone.WmarkHigh) + Compaction.CompactGap(sc.Order), sc.ReclaimIdx),
    };

    /// <summary>should_continue_reclaim: in reclaim for compaction (a costly order, or any high order below priority
    /// 10), another pass while the last one freed something, no zone up to the request's could compact or allocate
    /// yet, and the inactive lists hold more than the compaction gap.</summary>
    private bool ShouldContinueReclaim(Node node, long reclaimed, in ScanControl sc)
    {
        bool inReclaimCompaction = sc.Order > 0 && (sc.Order > PerCpuPages.CostlyOrder || sc.Priority < DefPriority - 2);
        if (!inReclaimCompaction || reclaimed == 0)
        {
            return false;
        }
        foreach (var zone in node.Zones)
        {
            if (zone.Type <= sc.ReclaimIdx && zone.IsManaged
                && CompactionSuitable(zone, sc.Order, sc.ReclaimIdx) is CompactResult.Success or CompactResult.Continue)
            {
                return false;
            }
        }
        var vec = _lru.OfNode(node.Id);
        long inactive = vec.Count[(int)LruList.InactiveFile] + (_swap.CanSwap ? vec.Count[(int)LruList.InactiveAnon] : 0);
        return inactive > Compaction.CompactGap(sc.Order);
    }

    /// <summary>isolate_lru_folios: up to <paramref name="n"/> pages from the tail of <paramref name="lru"/> that
    /// the request may use (zone ≤ reclaim_idx); the others go back to the head and count as pgskip.
    /// <paramref name="scanned"/> is every page taken off the list, skipped ones too (total_scan), which is what
    /// 6.1 counts as scanned (pgscan_*, pgrefill).</summary>
    private List<uint> IsolateLruPages(Lruvec vec, LruList lru, long n, ref ScanControl sc, out long scanned)
    {
        var taken = new List<uint>();
        long skipped = 0;
        long budget = vec.Count[(int)lru];
        while (taken.Count < n && budget-- > 0)
        {
            uint pfn = vec.Lists[(int)lru].Tail;
            if (pfn == PhysMem.NoPfn)
            {
                break;
            }
            _lru.RemoveFromList(pfn, lru);
            if (_pa.ZoneOf(pfn).Type > sc.ReclaimIdx)
            {
                _lru.AddToList(pfn, lru, head: true);
                Pgskip[(int)_pa.ZoneOf(pfn).Type]++;
                skipped++;
                continue;
            }
            _mem.Frame(pfn).Flags &= ~PageFlags.Lru;
            taken.Add(pfn);
        }
        scanned = taken.Count + skipped;
        return taken;
    }

    /// <summary>pgskip_*, by zone type.</summary>
    public readonly long[] Pgskip = new long[(int)ZoneType.Device + 1];

    /// <summary>shrink_active_list: every scanned page's accessed bits are cleared (folio_referenced) and the page
    /// goes to the inactive list marked workingset. 6.1 keeps a referenced page active only when a VM_EXEC file
    /// mapping referenced it; Kmem maps no file into a task, so none qualifies.</summary>
    private void ShrinkActiveList(Lruvec vec, LruList lru, long n, ref ScanControl sc)
    {
        var pages = IsolateLruPages(vec, lru, n, ref sc, out long scanned);
        _events.Stats.Pgrefill += scanned;
        foreach (uint pfn in pages)
        {
            _memory.TestClearYoung(pfn);
            ref PageFrame f = ref _mem.Frame(pfn);
            f.Flags &= ~PageFlags.Active;
            f.Flags |= PageFlags.Workingset;
            _lru.Putback(pfn);
            _events.Stats.Pgdeactivate++;
        }
    }

    /// <summary>shrink_inactive_list: try to free each scanned page (shrink_folio_list).</summary>
    private void ShrinkInactiveList(Lruvec vec, LruList lru, long n, ref ScanControl sc)
    {
        var pages = IsolateLruPages(vec, lru, n, ref sc, out long scanned);
        bool anon = lru == LruList.InactiveAnon;
        sc.NrScanned += scanned;
        if (sc.Kswapd)
        {
            _events.Stats.PgscanKswapd += scanned;
        }
        else
        {
            _events.Stats.PgscanDirect += scanned;
        }
        if (anon)
        {
            _events.Stats.PgscanAnon += scanned;
        }
        else
        {
            _events.Stats.PgscanFile += scanned;
        }
        long stolen = 0;
        long written = _events.Stats.NrVmscanWrite;
        foreach (uint pfn in pages)
        {
            switch (ShrinkPage(pfn, anon, ref sc))
            {
                case PageRef.Reclaim:
                    stolen++;
                    break;
                case PageRef.Activate:
                    if ((_mem.Frame(pfn).Flags & PageFlags.SwapCache) != 0 && _swap.VmSwapFull)
                    {
                        // activate_locked: a page staying in memory gives its swap slot back when swap is tight.
                        _swap.DeleteFromSwapCache(pfn);
                        _mem.Frame(pfn).Flags |= PageFlags.Dirty;
                    }
                    _mem.Frame(pfn).Flags |= PageFlags.Active;
                    _lru.Putback(pfn);
                    _events.Stats.Pgactivate++;
                    break;
                default:
                    _lru.Putback(pfn);
                    break;
            }
        }
        // The swap writes this batch started complete now, with the pages back on their list.
        EndWritebacks();
        sc.NrReclaimed += stolen;
        // lru_note_cost: the pages this batch had to write out are the list's reclaim cost.
        LruNoteCost(vec, file: !anon, _events.Stats.NrVmscanWrite - written);
        if (sc.Kswapd)
        {
            _events.Stats.PgstealKswapd += stolen;
        }
        else
        {
            _events.Stats.PgstealDirect += stolen;
        }
        if (anon)
        {
            _events.Stats.PgstealAnon += stolen;
        }
        else
        {
            _events.Stats.PgstealFile += stolen;
        }
    }

    /// <summary>shrink_folio_list for one isolated page: check references, then swap out (anon), write back
    /// (dirty file), and free. Returns what to do with a page that stays.</summary>
    private PageRef ShrinkPage(uint pfn, bool anon, ref ScanControl sc)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        bool referencedPtes = anon && _memory.TestClearYoung(pfn);
        bool referencedPage = (f.Flags & PageFlags.Referenced) != 0;
        f.Flags &= ~PageFlags.Referenced;
        // folio_check_references: a mapped page starts with the reference of its fault, so it must be seen used
        // twice: a young PTE marks it referenced and keeps it on the inactive list, a second one activates it.
        if (referencedPtes)
        {
            f.Flags |= PageFlags.Referenced;
            return referencedPage ? PageRef.Activate : PageRef.Keep;
        }
        if (!anon)
        {
            return _filemap.ShrinkFilePage(pfn, referencedPage, sc.Gfp);
        }
        return PageoutAnon(pfn, ref sc);
    }

    /// <summary>shrink_folio_list for an isolated anonymous page whose references were checked: add it to swap, unmap
    /// it, and free it if it is clean; a dirty one is written out with PG_reclaim set and kept until its write
    /// completes (<paramref name="sync"/>: completed at once and freed, for a page reclaimed as the trace shows).</summary>
    private PageRef PageoutAnon(uint pfn, ref ScanControl sc, bool sync = false)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        if ((f.Flags & PageFlags.SwapCache) == 0)
        {
            // add_to_swap needs I/O: GFP_NOIO never swaps.
            if ((sc.Gfp & Gfp.Io) == 0)
            {
                return PageRef.Keep;
            }
            ulong entry = _swap.GetSwapPage();
            if (entry == 0)
            {
                return PageRef.Activate;
            }
            _swap.SwapCacheAdd(entry, pfn);
            f.Flags |= PageFlags.Dirty;
        }
        ulong swapEntry = f.Private;
        if (f.MapCount > 0)
        {
            _memory.TryToUnmap(pfn, swapEntry);
        }
        if ((f.Flags & PageFlags.Dirty) != 0)
        {
            // pageout to swap: allowed with __GFP_IO for a swap-cache page (may_enter_fs). The write is started
            // and the page kept: it is freed by a later scan, once the write has completed.
            StartWriteback(pfn, swapEntry);
            if (!sync)
            {
                return PageRef.Keep;
            }
            EndWriteback(pfn);
        }
        _swap.DeleteFromSwapCache(pfn);
        _lru.LruDelIsolated(pfn);
        _pa.FreePages(new Page(pfn), 0);
        return PageRef.Reclaim;
    }
}
