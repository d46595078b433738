// The memory-pressure layer of one machine, assembled: it builds the owners
// (Lruvecs, Swapfile, Filemap, Dcache, UserMemory, Shrinkers, Vmscan, Compaction, OomKill,
// Kswapd, Kcompactd), each over the lower-layer objects it needs, and is the
// page allocator's IReclaimer (made by the allocator's constructor through the
// factory it is given: see PageAllocator.cs). It holds no state of its own but
// the disposed flag; the few operations that span owners are here: swapoff
// (the swap area's two ends around try_to_unuse over the tasks), drop_caches,
// the validator and shutdown. Machine.Reclaim.cs is its public face.
// Locking: each owner's lock, in the order of LockOrder.cs; nothing is held
// here across a call into an owner except where written (swapoff's end holds
// UserMemory.Lock, then Swapfile.Lock inside it).
using Kmem.Highmem;
using Kmem.PageAlloc;
using Kmem.Physical;
using Kmem.Slab;
using Kmem.Vmalloc;

namespace Kmem.Reclaim;

/// <summary>The reclaim layer of one machine: its owners, wired together.</summary>
internal sealed class MmLayer : IReclaimer, IDisposable
{
    private readonly PageAllocator _pa;
    private readonly Lruvecs _lru;
    private readonly Swapfile _swap;
    private readonly Filemap _filemap;
    private readonly UserMemory _memory;
    private readonly Shrinkers _shrinkers;
    private readonly Dcache _dcache;
    private readonly Vmscan _vmscan;
    private readonly Compaction _compaction;
    private readonly OomKill _oom;
    private readonly KswapdDaemon _kswapd;
    private readonly KcompactdDaemon _kcompactd;
    private readonly VmEvents _events = new();
    private readonly ReclaimLocks _locks;
    private int _disposed;

    /// <param name="options">Kswapd (background daemons at all) and Seed (with one, the daemons' work runs
    /// synchronously at defined points, so that runs repeat; without, on threads).</param>
    /// <param name="mem">Physical memory.</param>
    /// <param name="pa">The page allocator this layer reclaims for.</param>
    /// <param name="log">The kernel log (swapon, the OOM report).</param>
    /// <param name="highmem">The page-copy helpers (swap I/O, the page cache, migration, faults).</param>
    /// <param name="vmalloc">The vmalloc space, made on first use by its owner (X64's kernel stacks).</param>
    /// <param name="slab">The slab layer, made after this one (the dentry and inode caches of opened files).</param>
    public MmLayer(MachineOptions options, PhysMem mem, PageAllocator pa, KernelLog log, HighmemMaps highmem, Func<VmapSpace> vmalloc,
        Func<SlabBackend?> slab)
    {
        _pa = pa;
        _lru = new Lruvecs(mem, pa);
        _swap = new Swapfile(mem, highmem, log, _events);
        _shrinkers = new Shrinkers(pa, _events);
        _dcache = new Dcache(mem, pa, slab, _shrinkers);
        _filemap = new Filemap(mem, pa, _lru, highmem, _events, _dcache);
        _memory = new UserMemory(mem, pa, _lru, _swap, highmem, log, _events, options.Preset, options.HighPte ?? options.Preset != Preset.X64, vmalloc);
        _locks = new ReclaimLocks(_memory.Lock, _filemap.Lock, _swap.Lock, _lru.Lock);
        _vmscan = new Vmscan(mem, pa, _lru, _memory, _filemap, _swap, _shrinkers, _events, _locks);
        _compaction = new Compaction(mem, pa, _lru, _memory, _swap, highmem, _events, _locks);
        _oom = new OomKill(pa, _memory, _swap, log, _events);
        bool threaded = options.Seed is null;
        _kcompactd = new KcompactdDaemon(mem, pa, _compaction, _events, _locks, options.Kswapd, threaded);
        _kswapd = new KswapdDaemon(pa, _lru, _vmscan, _shrinkers, _kcompactd, _events, _locks, options.Kswapd, threaded);
        _compaction.KswapdIsRunning = _kswapd.IsRunning;
        _vmscan.CompactionSuitable = (zone, order, highest) => _compaction.CompactionSuitable(zone, order, highest);
    }

    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    // ---- IReclaimer: the page allocator's slow path ----

    public void WakeupKswapd(Zone zone, int order, ZoneType highest)
    {
        if (IsDisposed)
        {
            new NoReclaim().WakeupKswapd(zone, order, highest);
            return;
        }
        _kswapd.Wakeup(zone, order, highest);
    }

    public long TryToFreePages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest)
    {
        if (IsDisposed)
        {
            return 0;
        }
        long progress = _vmscan.TryToFreePages(gfp, order, zonelist, highest);
        // kfree_rcu_shrink_scan: frees whose grace period has ended go back now, without waiting for one.
        progress += RcuFlush?.Invoke(false) ?? 0;
        _kswapd.RunPending();
        return progress;
    }

    public CompactResult TryToCompactPages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest, CompactPriority prio)
    {
        if (IsDisposed)
        {
            return CompactResult.Skipped;
        }
        var result = _compaction.TryToCompactPages(gfp, order, zonelist, highest, prio);
        _kswapd.RunPending();
        return result;
    }

    public void CompactionDone(uint pfn, int order)
    {
        using (_locks.EnterAll())
        {
            _events.Stats.CompactStall++;
            if (pfn == PhysMem.NoPfn)
            {
                _events.Stats.CompactFail++;
                return;
            }
            _events.Stats.CompactSuccess++;
            _compaction.CompactionDeferReset(_pa.ZoneOf(pfn), order, allocSuccess: true);
        }
    }

    public long ZoneReclaimablePages(Zone zone)
    {
        long nr = _lru.ZoneLru[zone.Index, (int)LruList.InactiveFile] + _lru.ZoneLru[zone.Index, (int)LruList.ActiveFile];
        if (_swap.CanSwap)
        {
            nr += _lru.ZoneLru[zone.Index, (int)LruList.InactiveAnon] + _lru.ZoneLru[zone.Index, (int)LruList.ActiveAnon];
        }
        return nr;
    }

    public bool CompactionZonelistSuitable(int order, Zone[] zonelist, ZoneType highest) =>
        _compaction.CompactionZonelistSuitable(order, zonelist, highest, ZoneReclaimablePages);

    public bool OutOfMemory(Gfp gfp, int order)
    {
        if (IsDisposed)
        {
            return false;
        }
        // oom_notify_list: before a kill, wait for the frees held back by RCU readers (rcu_barrier); if any
        // memory came back, the allocation is retried instead.
        if ((RcuFlush?.Invoke(true) ?? 0) > 0)
        {
            return true;
        }
        bool freed = _oom.OutOfMemory(gfp, order);
        _kswapd.RunPending();
        return freed;
    }

    /// <summary>RCU's hook, set once at boot: runs the deferred frees whose grace period has ended (with true,
    /// waits for one first, as rcu_barrier) and returns how many objects were freed.</summary>
    public Func<bool, long>? RcuFlush { get; set; }

    // ---- Tasks, files, swap, shrinkers, tunables (Machine.Reclaim.cs) ----

    public TaskStruct? CreateTask(string name, short oomScoreAdj, bool ownStack = true)
    {
        var t = _memory.CreateTask(name, oomScoreAdj, ownStack);
        if (t is not null)
        {
            _kcompactd.Start();
        }
        return t;
    }

    /// <summary>The live tasks, oldest first, as a copy.</summary>
    public TaskStruct[] TasksSnapshot()
    {
        lock (_memory.Lock)
        {
            return [.. _memory.Tasks];
        }
    }

    public long OomScore(TaskStruct t) => _oom.OomScore(t);

    public CachedFile OpenFile(string path)
    {
        var f = _filemap.OpenFile(path);
        _kcompactd.Start();
        return f;
    }

    /// <summary>drop_caches: 1 drops clean page-cache pages, 2 shrinks the slab caches, 3 both.</summary>
    public void DropCaches(int mode)
    {
        if (mode is < 1 or > 3)
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "drop_caches takes 1 (page cache), 2 (slab) or 3 (both)");
        }
        if ((mode & 1) != 0)
        {
            _filemap.DropPagecache();
        }
        if ((mode & 2) != 0)
        {
            using (_locks.EnterAll())
            {
                _shrinkers.DropSlab();
            }
        }
    }

    public static void Mkswap(string path, long size, Random random) => Swapfile.Mkswap(path, size, random);

    public void Swapon(string path, int priority) => _swap.Swapon(path, priority);

    /// <summary>sys_swapoff: the area stops taking slots, every entry is faulted back in (try_to_unuse), then
    /// the area goes.</summary>
    public void Swapoff(string path)
    {
        var si = _swap.BeginSwapoff(path, _pa.NrFreePages);
        // set_current_oom_origin: a task running swapoff is the OOM killer's first choice while it pulls pages in.
        var cur = MmCurrent.Task;
        if (cur is not null)
        {
            cur.OomOrigin = true;
        }
        try
        {
            _memory.TryToUnuse(si.Type);
        }
        finally
        {
            if (cur is not null)
            {
                cur.OomOrigin = false;
            }
        }
        lock (_memory.Lock)
        {
            _swap.FinishSwapoff(si);
        }
    }

    public string ProcSwaps() => _swap.ProcSwaps();

    public void RegisterShrinker(Shrinker s) => _shrinkers.Register(s);

    /// <summary>Page reclaim (its scan balance, for observers and tests).</summary>
    public Vmscan Vmscan => _vmscan;

    /// <summary>The four owner locks, in order (LockOrder.cs).</summary>
    public ReclaimLocks Locks => _locks;

    /// <summary>The LRU lists and the owner of each user page (for observers and tests).</summary>
    public Lruvecs Lru => _lru;

    /// <summary>Memory compaction (its per-zone state, for observers and tests).</summary>
    public Compaction Compaction => _compaction;

    /// <summary>The dentry and inode caches of opened files.</summary>
    public Dcache Dcache => _dcache;

    /// <summary>folio_referenced's test and clear of the accessed bit of the PTE that maps user page
    /// <paramref name="pfn"/>; returns whether it was set. A trace replay clears it on its stand-in for a page the
    /// kernel's task wrote through a file (write() to tmpfs), which no page table references.</summary>
    public bool TestClearYoung(uint pfn)
    {
        using (_locks.EnterAll())
        {
            return _memory.TestClearYoung(pfn);
        }
    }

    public void UnregisterShrinker(Shrinker s) => _shrinkers.Unregister(s);

    public int Swappiness
    {
        get => _vmscan.Swappiness;
        set => _vmscan.Swappiness = value;
    }

    public int PanicOnOom
    {
        get => _oom.PanicOnOom;
        set => _oom.PanicOnOom = value;
    }

    public int ExtfragThreshold
    {
        get => _compaction.ExtfragThreshold;
        set => _compaction.ExtfragThreshold = value;
    }

    public int CompactionProactiveness
    {
        get => _compaction.CompactionProactiveness;
        set => _compaction.CompactionProactiveness = value;
    }

    public long CompactMemory() => _compaction.CompactMemory();

    // ---- kswapd, for observers ----

    public long KswapdRuns => _kswapd.Runs;

    /// <summary>kswapd's rounds for a zone below the node's highest managed zone, and the pages they scanned.</summary>
    public (long Runs, long Scanned) KswapdLowerZone => (_kswapd.LowerZoneRuns, _kswapd.LowerZoneScanned);

    public long KswapdBalancedRuns => _kswapd.BalancedRuns;

    public long KswapdWakeups => _kswapd.Wakeups;

    public bool KswapdIdle => _kswapd.Idle;

    /// <summary>kswapd_is_running for the node: woken and not yet run, or running.</summary>
    public bool KswapdIsRunning(Node node) => _kswapd.IsRunning(node);

    /// <summary>A replay aligned to a traced kernel (deferred kswapd): its kswapd is awake or back asleep as the
    /// trace shows, its work the trace's.</summary>
    public void KswapdSetAwake(int nid, bool awake) => _kswapd.SetAwake(nid, awake);

    public bool KswapdThreaded => _kswapd.Threaded;

    /// <summary>Synchronous kswapd: whether its work waits for <see cref="RunKswapd"/> (KswapdDaemon.Deferred).</summary>
    public bool KswapdDeferred
    {
        get => _kswapd.Deferred;
        set => _kswapd.Deferred = value;
    }

    /// <summary>Synchronous kswapd: whether a wakeup's work waits for <see cref="RunKswapd"/> (read without a lock).</summary>
    public bool KswapdHasPending => _kswapd.HasPending;

    /// <summary>Synchronous kswapd: runs its pending work now (KswapdDaemon.RunDeferred).</summary>
    public void RunKswapd() => _kswapd.RunDeferred();

    /// <summary>A trace replay's source of page-table frames (UserMemory.TablePageSource).</summary>
    public Func<TaskStruct?, bool, Page>? TablePageSource
    {
        get => _memory.TablePageSource;
        set => _memory.TablePageSource = value;
    }

    /// <summary>Where a trace replay takes back the table frames it lent (UserMemory.TablePageReturn).</summary>
    public Func<uint, bool>? TablePageReturn
    {
        get => _memory.TablePageReturn;
        set => _memory.TablePageReturn = value;
    }

    /// <summary>Frees a table frame of <paramref name="t"/>, moving what it maps to a replacement frame when it
    /// maps anything (UserMemory.ReleaseTable).</summary>
    public bool ReleaseTable(TaskStruct t, uint pfn, Func<Page> replacement) => _memory.ReleaseTable(t, pfn, replacement);

    // ---- The counters the reports read (Proc: meminfo, vmstat), without locks ----

    public ref ReclaimStats Stats => ref _events.Stats;

    public long[] Allocstall => _vmscan.Allocstall;

    public long[] Pgskip => _vmscan.Pgskip;

    public IReadOnlyList<Lruvec> Lruvecs => _lru.Vecs;

    public long[,] ZoneLru => _lru.ZoneLru;

    public ref long NrAnonPages => ref _memory.NrAnonPages;

    public ref long NrFilePages => ref _filemap.NrFilePages;

    public ref long NrSwapCache => ref _swap.NrSwapCache;

    public ref long NrDirty => ref _filemap.NrDirty;

    public ref long NrWriteback => ref _events.NrWriteback;

    public ref long NrPageTable => ref _memory.NrPageTable;

    public ref long NrKernelStackKb => ref _memory.NrKernelStackKb;

    public long CommittedPages => Volatile.Read(ref _memory.CommittedPages);

    public long TotalSwapPages => _swap.TotalSwapPages;

    public long NrSwapPages => _swap.NrSwapPages;

    /// <summary>The frames of a task's tables below its PGD, with their levels (UserMemory.PageTables).</summary>
    public List<(uint Pfn, int Level)> PageTables(TaskStruct t) => _memory.PageTables(t);

    /// <summary>Checks the LRU lists, every task's tables and counters and every file's cache against each other
    /// (with every owner lock held); throws on the first mismatch.</summary>
    public void Validate()
    {
        using (_locks.EnterAll())
        {
            _lru.Validate();
            _memory.Validate();
            _filemap.Validate();
        }
        _dcache.Validate();
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _memory.Shutdown();
        _kswapd.Dispose();
        _kcompactd.Dispose();
        _filemap.Dispose();
        _swap.Dispose();
    }

    /// <summary>The finalizer's part of <see cref="Dispose"/>: the daemons stopped and joined, nothing written back
    /// (the files and streams may be finalized already).</summary>
    public void StopDaemons()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _memory.Shutdown();
        _kswapd.Dispose();
        _kcompactd.Dispose();
    }
}
