// The memory-pressure layer of one machine (mm/vmscan.c, mm/rmap.c,
// mm/memory.c, mm/swapfile.c, mm/filemap.c, mm/oom_kill.c, mm/compaction.c in
// one state object): tasks and their page tables, the page cache, the per-node
// LRU lists, swap areas, shrinkers, kswapd and kcompactd. It is the page
// allocator's IReclaimer. Split by concept into partial files: Fault.cs (page
// tables, demand paging), Vmscan.cs (LRU aging, shrink lists, direct reclaim),
// Kswapd.cs, Swap.cs, PageCache.cs, OomKill.cs, Compaction.cs.
// Reverse map: a user frame has one owner (no fork, no shared mappings): a task
// and the virtual page that maps it (anon), or a cached file and the index
// (page cache). _owner/_index are side tables indexed by pfn, valid while the
// frame has PG_lru.
// Locking: Lock (this layer's one lock: the kernel's mmap_lock, page-table
// locks, lru_lock and swap locks folded together) guards every table, list and
// counter here. It is taken before any page-allocator lock and never held while
// allocating: allocations that may reclaim happen outside it, then the state is
// re-checked under it (the allocator's direct reclaim takes it itself). It is
// reentrant, so a shrinker callback may call back into the machine.
// Invariants (Validate): every PG_lru frame is on exactly the list its flags
// name, the lists' counts equal their lengths, and each owner's counters (rss,
// swap entries, cached pages) equal what its tables hold.
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Reclaim;

/// <summary>The LRU list indices of a lruvec (enum lru_list).</summary>
internal enum LruList
{
    InactiveAnon = 0,
    ActiveAnon = 1,
    InactiveFile = 2,
    ActiveFile = 3,
}

/// <summary>The vm events and node counters this layer keeps (the /proc/vmstat names in comments).</summary>
internal struct ReclaimStats
{
    public long PgscanKswapd, PgscanDirect, PgscanAnon, PgscanFile;      // pgscan_*
    public long PgstealKswapd, PgstealDirect, PgstealAnon, PgstealFile;  // pgsteal_*
    public long Pgactivate, Pgdeactivate, Pgrefill, Pgfault, Pgmajfault;
    public long Pswpin, Pswpout, Pgpgin, Pgpgout;
    public long SlabsScanned, Pageoutrun, DropPagecache, DropSlab, OomKill;
    public long KswapdLowWmarkHitQuickly, KswapdHighWmarkHitQuickly;
    public long NrVmscanWrite, NrDirtied, NrWritten;
    public long PgmigrateSuccess, PgmigrateFail;
    public long CompactMigrateScanned, CompactFreeScanned, CompactIsolated, CompactStall, CompactFail,
        CompactSuccess, CompactDaemonWake, CompactDaemonMigrateScanned, CompactDaemonFreeScanned;
}

internal sealed partial class MmState : IReclaimer, IDisposable
{
    /// <summary>SWAP_CLUSTER_MAX: pages reclaimed per batch.</summary>
    public const int SwapClusterMax = 32;
    /// <summary>DEF_PRIORITY: the first scan priority (scan lru_size >> 12).</summary>
    public const int DefPriority = 12;
    /// <summary>MAX_RECLAIM_RETRIES.</summary>
    public const int MaxReclaimRetries = 16;

    private readonly Machine _m;
    private readonly PhysMem _mem;
    private readonly PageAllocator _pa;
    private object?[]? _owner;
    private ulong[]? _index;
    private readonly Lruvec[] _lruvecs;
    private readonly List<TaskStruct> _tasks = [];
    private int _nextPid = 1000;
    private bool _disposed;

    public MmState(Machine machine, PhysMem mem, PageAllocator pa)
    {
        _m = machine;
        _mem = mem;
        _pa = pa;
        _lruvecs = [.. pa.Nodes.Select(n => new Lruvec(n.Id, pa.Zones.Length))];
        ZoneLru = new long[pa.Zones.Length, 4];
    }

    /// <summary>This layer's lock (see the file header).</summary>
    public Lock Lock { get; } = new();
    public Machine Machine => _m;
    public PhysMem Mem => _mem;
    public PageAllocator Allocator => _pa;
    /// <summary>Events and counters; written under <see cref="Lock"/>, read without it.</summary>
    public ReclaimStats Stats;
    /// <summary>NR_ANON_MAPPED: anonymous pages mapped by tasks.</summary>
    public long NrAnonPages;
    /// <summary>NR_FILE_PAGES minus the swap cache: page-cache pages.</summary>
    public long NrFilePages;
    /// <summary>NR_SWAPCACHE.</summary>
    public long NrSwapCache;
    /// <summary>NR_FILE_DIRTY.</summary>
    public long NrDirty;
    /// <summary>NR_WRITEBACK: pages being written out right now.</summary>
    public long NrWriteback;
    /// <summary>NR_PAGETABLE: page-table pages of every task.</summary>
    public long NrPageTable;
    /// <summary>NR_KERNEL_STACK_KB.</summary>
    public long NrKernelStackKb;
    /// <summary>vm_committed_as: pages of every task's private anonymous mappings (accounted at mmap).</summary>
    public long CommittedPages;
    /// <summary>Per zone (by Zone.Index) and LRU list: pages (nr_zone_inactive_anon …).</summary>
    public long[,] ZoneLru { get; }
    /// <summary>vm.swappiness (0..200, default 60).</summary>
    public int Swappiness { get; set; } = 60;
    public IReadOnlyList<Lruvec> Lruvecs => _lruvecs;

    /// <summary>The live tasks, oldest first (for_each_process order).</summary>
    public List<TaskStruct> Tasks => _tasks;

    public int NextPid() => _nextPid++;

    /// <summary>The owner side tables, made on first use (a machine without tasks or files never pays).</summary>
    private void EnsureRmap()
    {
        if (_owner is null)
        {
            _owner = new object?[_mem.MaxPfn];
            _index = new ulong[_mem.MaxPfn];
        }
    }

    public object? OwnerOf(uint pfn) => _owner is { } o ? o[pfn] : null;

    public ulong IndexOf(uint pfn) => _index![pfn];

    public void SetOwner(uint pfn, object owner, ulong index)
    {
        EnsureRmap();
        _owner![pfn] = owner;
        _index![pfn] = index;
    }

    public void ClearOwner(uint pfn)
    {
        if (_owner is not null)
        {
            _owner[pfn] = null;
            _index![pfn] = 0;
        }
    }

    public Lruvec LruvecOf(uint pfn) => _lruvecs[_pa.ZoneOf(pfn).Node.Id];

    /// <summary>lru_cache_add: a new user page goes to the inactive list of its kind, at the head.</summary>
    public void LruAdd(uint pfn, bool anon)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        f.Flags |= PageFlags.Lru | (anon ? PageFlags.SwapBacked : 0);
        f.Flags &= ~PageFlags.Active;
        AddToList(pfn, anon ? LruList.InactiveAnon : LruList.InactiveFile, head: true);
    }

    /// <summary>The list a PG_lru frame is on, from its flags (folio_lru_list).</summary>
    public LruList ListOf(uint pfn)
    {
        var flags = _mem.Frame(pfn).Flags;
        int file = (flags & PageFlags.SwapBacked) == 0 ? 2 : 0;
        return (LruList)(file + ((flags & PageFlags.Active) != 0 ? 1 : 0));
    }

    public void AddToList(uint pfn, LruList lru, bool head)
    {
        var vec = LruvecOf(pfn);
        ref PfnList list = ref vec.Lists[(int)lru];
        if (head)
        {
            list.AddHead(_mem, pfn);
        }
        else
        {
            list.AddTail(_mem, pfn);
        }
        vec.Count[(int)lru]++;
        ZoneLru[_mem.ZoneIndexOf(pfn), (int)lru]++;
    }

    public void RemoveFromList(uint pfn, LruList lru)
    {
        var vec = LruvecOf(pfn);
        vec.Lists[(int)lru].Remove(_mem, pfn);
        vec.Count[(int)lru]--;
        ZoneLru[_mem.ZoneIndexOf(pfn), (int)lru]--;
    }

    /// <summary>Takes a user frame off its LRU list and clears this layer's flags, ready to be freed.</summary>
    public void LruDel(uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        if ((f.Flags & PageFlags.Lru) != 0)
        {
            RemoveFromList(pfn, ListOf(pfn));
        }
        f.Flags &= ~(PageFlags.Lru | PageFlags.Active | PageFlags.Referenced | PageFlags.SwapBacked | PageFlags.Dirty
            | PageFlags.Uptodate | PageFlags.Writeback | PageFlags.Reclaim | PageFlags.Workingset);
        f.MapCount = 0;
        f.Private = 0;
        ClearOwner(pfn);
    }

    /// <summary>Frees a user frame this layer owned (already off the LRU).</summary>
    public void FreeUserPage(uint pfn) => _pa.FreePages(new Page(pfn), 0);

    /// <summary>Moves a frame between lists (activate/deactivate), keeping the flags in step.</summary>
    public void MoveToList(uint pfn, LruList to, bool head = true)
    {
        RemoveFromList(pfn, ListOf(pfn));
        ref PageFrame f = ref _mem.Frame(pfn);
        if (((int)to & 1) != 0)
        {
            f.Flags |= PageFlags.Active;
        }
        else
        {
            f.Flags &= ~PageFlags.Active;
        }
        AddToList(pfn, to, head);
    }

    /// <summary>Checks every list against its count and every frame's flags; throws on the first mismatch.</summary>
    public void Validate()
    {
        lock (Lock)
        {
            foreach (var vec in _lruvecs)
            {
                for (int l = 0; l < 4; l++)
                {
                    long n = 0;
                    for (uint p = vec.Lists[l].Head; p != PhysMem.NoPfn; p = _mem.Frame(p).Next)
                    {
                        var f = _mem.Frame(p);
                        if ((f.Flags & PageFlags.Lru) == 0 || ListOf(p) != (LruList)l)
                        {
                            throw new InvalidOperationException($"pfn 0x{p:x} on LRU list {(LruList)l} has flags {f.Flags}");
                        }
                        n++;
                    }
                    if (n != vec.Count[l])
                    {
                        throw new InvalidOperationException($"node {vec.Nid} LRU list {(LruList)l}: count {vec.Count[l]}, length {n}");
                    }
                }
            }
            foreach (var t in _tasks)
            {
                ValidateTask(t);
            }
            foreach (var f in _files)
            {
                if (f.Pages.Count != f.CachedPages)
                {
                    throw new InvalidOperationException($"{f.Path}: {f.CachedPages} cached pages counted, {f.Pages.Count} held");
                }
            }
        }
    }

    public void Dispose()
    {
        lock (Lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
        }
        StopKswapd();
        StopKcompactd();
        lock (Lock)
        {
            foreach (var f in _files.ToArray())
            {
                f.DisposeHandle();
            }
            foreach (var s in _swaps)
            {
                s?.Dispose();
            }
        }
    }

    public bool IsDisposed => Volatile.Read(ref _disposed);
}

/// <summary>struct lruvec of one node: the four evictable LRU lists and their sizes.</summary>
internal sealed class Lruvec(int nid, int zones)
{
    public readonly int Nid = nid;
    public readonly PfnList[] Lists = [PfnList.Empty, PfnList.Empty, PfnList.Empty, PfnList.Empty];
    public readonly long[] Count = new long[4];
    /// <summary>kswapd_failures: balance_pgdat rounds without progress (kswapd stops trying at 16).</summary>
    public int KswapdFailures;
    public readonly int Zones = zones;
}
