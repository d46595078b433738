// What the three slab allocators of Linux 6.1 (SLUB, SLAB, SLOB) share behind one API
// (mm/slab_common.c): the registry of caches by id (a slab page names its cache by id in
// its frame), cache creation's argument checks and failure messages, the destroy warning,
// gfp fix-up, the slab counters of a node, kernel-style addresses and bug reports, and the machine's RCU
// (Rcu/RcuState.cs), whose only user is the slab layer.
// The registry is changed under SlabMutex (slab_mutex) and read without it: ids are
// published with Volatile writes, and a destroyed cache's id is reused only after its
// slabs are gone. Each backend owns its own locking below that.
using Kmem.PageAlloc;
using Kmem.Physical;
using Kmem.Rcu;

namespace Kmem.Slab;

/// <summary>Figures of one cache, as /proc/slabinfo shows them.</summary>
/// <param name="ActiveObjs">Objects counted in use.</param>
/// <param name="NumObjs">Objects in all slabs.</param>
/// <param name="ActiveSlabs">Slabs with at least one object in use (SLUB: all slabs).</param>
/// <param name="NumSlabs">All slabs.</param>
/// <param name="Limit">SLAB's per-CPU array limit (0 elsewhere).</param>
/// <param name="BatchCount">SLAB's batchcount (0 elsewhere).</param>
/// <param name="SharedFactor">SLAB's shared factor (0 elsewhere).</param>
/// <param name="SharedAvail">SLAB's objects in the shared arrays (0 elsewhere).</param>
internal readonly record struct SlabCacheStats(long ActiveObjs, long NumObjs, long ActiveSlabs, long NumSlabs,
    int Limit = 0, int BatchCount = 0, int SharedFactor = 0, long SharedAvail = 0);

/// <summary>A slab allocator of one machine: every cache, kmalloc, and the reports.</summary>
internal abstract class SlabBackend
{
    /// <summary>ZERO_SIZE_PTR.</summary>
    public const nint ZeroSizePtr = 16;
    /// <summary>KMALLOC_SHIFT_HIGH (6.1, SLUB and SLAB alike): the largest kmalloc cache is 2^13 = 8 KiB.</summary>
    public const int KmallocShiftHigh = PhysMem.PageShift + 1;
    /// <summary>KMALLOC_MAX_CACHE_SIZE: larger kmalloc requests go to the page allocator.</summary>
    public const uint KmallocMaxCacheSize = 1u << KmallocShiftHigh;
    /// <summary>KMALLOC_MAX_SIZE: the largest size kmalloc can return (4 MiB, an order MAX_ORDER - 1 block).</summary>
    public const nuint KmallocMaxSize = (nuint)1 << (Arch.MaxOrder + PhysMem.PageShift - 1);
    /// <summary>GFP_SLAB_BUG_MASK: bits a slab allocation must not carry (fixed up with a warning).</summary>
    private protected const Gfp GfpSlabBugMask = Gfp.Dma32 | Gfp.HighMem | (Gfp)~((1u << 27) - 1);

    private protected readonly PageAllocator _pa;
    /// <summary>The observer of new and freed slabs given at boot, or null.</summary>
    private protected readonly ISlabObserver? _observer;
    private protected readonly PhysMem _mem;
    private protected readonly CpuTopology _cpus;
    private protected readonly KernelLog _log;
    private protected readonly Action<KernelBugException> _bug;
    /// <summary>slab_mutex: cache creation, destruction and the registry.</summary>
    private protected readonly Lock _slabMutex = new();
    private readonly List<KmemCache> _caches = [];
    private KmemCache?[] _byId = new KmemCache?[64];

    private protected SlabBackend(PageAllocator pa, KernelLog log, Action<KernelBugException> bug, int? seed = null)
    {
        _pa = pa;
        _observer = pa.Options.SlabObserver;
        _mem = pa.Mem;
        _cpus = pa.Cpus;
        _log = log;
        _bug = bug;
        _rng = new Random(seed ?? pa.Options.Seed ?? 0);
        InitOnAlloc = pa.Options.InitOnAlloc;
        InitOnFree = pa.Options.InitOnFree;
        Nomerge = pa.Options.SlubNomerge;
        pa.DrainCaches = DrainForPressure;
        Rcu = new RcuState(() => _mem.IsDisposed);
        Rcu.Kfree.SetChannel(KfreeRcuBatches.SlabChannel, p => Kfree(p, "kfree_rcu"));
    }

    /// <summary>The page allocator's slow path under pressure: what threads cache beyond the kernel's per-CPU
    /// structures goes back to the slabs, and the slabs emptied so to the page allocator (flush_all and
    /// kmem_cache_shrink of each cache concerned). Returns the slab pages given back; 0 when nothing is held.</summary>
    private protected virtual long DrainForPressure() => 0;

    /// <summary>Slab pages of every node (NR_SLAB_RECLAIMABLE_B + NR_SLAB_UNRECLAIMABLE_B, in pages).</summary>
    private protected long SlabPages()
    {
        long pages = 0;
        foreach (var node in _pa.Nodes)
        {
            pages += Volatile.Read(ref node.NrSlabReclaimable) + Volatile.Read(ref node.NrSlabUnreclaimable);
        }
        return pages;
    }

    /// <summary>The slab layer's own random source (hardening secrets, freelist order), used under
    /// <see cref="_rngLock"/> only.</summary>
    private protected readonly Random _rng;
    private protected readonly Lock _rngLock = new();

    /// <summary>init_on_alloc.</summary>
    public bool InitOnAlloc { get; }

    /// <summary>init_on_free.</summary>
    public bool InitOnFree { get; }

    /// <summary>slab_nomerge.</summary>
    public bool Nomerge { get; }

    /// <summary>Which allocator this is.</summary>
    public abstract SlabAllocator Kind { get; }

    /// <summary>Every live cache, oldest first (slab_caches in creation order).</summary>
    public KmemCache[] Caches
    {
        get
        {
            lock (_slabMutex)
            {
                return [.. _caches];
            }
        }
    }

    /// <summary>kmem_cache_create: null when the arguments are invalid (logged).</summary>
    public abstract KmemCache? CreateCache(string name, uint size, uint align, SlabFlags flags, Action<nint>? ctor);

    /// <summary>kmem_cache_alloc_node: an object, or 0.</summary>
    public abstract nint Alloc(KmemCache s, Gfp gfp, int node);

    /// <summary>kmem_cache_free: the object must be an allocated object of <paramref name="s"/>; otherwise
    /// the misuse is reported and nothing changes.</summary>
    public abstract void CacheFree(KmemCache s, nint p);

    /// <summary>kmem_cache_shrink: 1 when slabs remain, else 0.</summary>
    public abstract int Shrink(KmemCache s);

    /// <summary>kmem_cache_destroy: whether the cache was released. An alias goes and leaves the cache to its
    /// other users; a cache that still has objects after __kmem_cache_shutdown is kept and the kernel's warning
    /// logged (SLOB in 6.1 cannot see remaining objects and destroys the cache anyway; Kmem can, so every
    /// backend keeps it).</summary>
    public bool Destroy(KmemCache s, string caller)
    {
        lock (_slabMutex)
        {
            if (s.IsDestroyed)
            {
                return true;
            }
            if (s.RefCount > 1)
            {
                s.DropAlias();
                return false;
            }
            if (!Shutdown(s))
            {
                WarnDestroyBusy(s, caller);
                return false;
            }
            Unregister(s);
            return true;
        }
    }

    /// <summary>__kmem_cache_shutdown (called under <see cref="_slabMutex"/>): gives back every free object and
    /// empty slab the backend holds; true when no object of the cache remains in use.</summary>
    private protected abstract bool Shutdown(KmemCache s);

    /// <summary>__kmalloc_node: ZERO_SIZE_PTR for 0, else a block of at least <paramref name="size"/>, or 0.</summary>
    public abstract nint Kmalloc(nuint size, Gfp gfp, int node);

    /// <summary>kfree: 0 and ZERO_SIZE_PTR are ignored; a bad pointer is reported, nothing changes.</summary>
    public abstract void Kfree(nint p, string caller = "kfree");

    /// <summary>__ksize: the usable size of a kmalloc'd block; 0 for 0 and ZERO_SIZE_PTR.</summary>
    public abstract nuint Ksize(nint p);

    /// <summary>The slabinfo figures of a cache.</summary>
    public abstract SlabCacheStats Stats(KmemCache s);

    /// <summary>Checks every cache's internal consistency; an empty list when all is well.</summary>
    public abstract List<string> ValidateAll();

    /// <summary>cache_reap, once on every CPU (SLAB only; SLUB and SLOB have no periodic reaping): returns the
    /// pages given back to the page allocator.</summary>
    public virtual long CacheReap() => 0;

    /// <summary>slabinfo_write: retunes a cache from a "name limit batchcount shared" line (SLAB only).</summary>
    /// <exception cref="InvalidOperationException">This allocator has no tunables: its /proc/slabinfo is read-only.</exception>
    public virtual void SlabinfoWrite(string line) =>
        throw new InvalidOperationException($"{Kind} has no tunables: /proc/slabinfo is read-only (slabinfo_write: -EIO)");

    // ───────────────────────────── the cache registry ─────────────────────────────

    /// <summary>The id a new cache gets (call under <see cref="_slabMutex"/>): the lowest free one.</summary>
    private protected int NextCacheId()
    {
        for (int i = 0; i < _byId.Length; i++)
        {
            if (_byId[i] is null)
            {
                return i;
            }
        }
        return _byId.Length;
    }

    /// <summary>Publishes a new cache (call under <see cref="_slabMutex"/>).</summary>
    private protected void Register(KmemCache s)
    {
        if (s.Id >= _byId.Length)
        {
            var grown = new KmemCache?[Math.Max(_byId.Length * 2, s.Id + 1)];
            _byId.CopyTo(grown, 0);
            Volatile.Write(ref _byId, grown);
        }
        Volatile.Write(ref _byId[s.Id], s);
        _caches.Add(s);
    }

    /// <summary>Retires a destroyed cache (call under <see cref="_slabMutex"/>, its slabs all gone).</summary>
    private protected void Unregister(KmemCache s)
    {
        s.IsDestroyed = true;
        _caches.Remove(s);
        Volatile.Write(ref _byId[s.Id], null);
    }

    /// <summary>The cache of an id, or null.</summary>
    internal KmemCache? CacheById(int id)
    {
        var byId = Volatile.Read(ref _byId);
        return (uint)id < (uint)byId.Length ? byId[id] : null;
    }

    /// <summary>kmem_cache_create's checks: a name, a size of 1..INT_MAX, a power-of-two alignment and
    /// only the flags in <paramref name="permitted"/> (call under <see cref="_slabMutex"/>).</summary>
    private protected static bool ValidCreateArgs(string name, uint size, uint align, SlabFlags flags, SlabFlags permitted) =>
        !string.IsNullOrEmpty(name) && size >= 1 && size <= int.MaxValue - 64 && (align & (align - 1)) == 0 && (flags & ~permitted) == 0;

    /// <summary>A failed creation: panic with SLAB_PANIC, else the kernel's message and null.</summary>
    private protected KmemCache? CreateFailed(string name, SlabFlags flags)
    {
        if ((flags & SlabFlags.Panic) != 0)
        {
            throw new InvalidOperationException($"Kernel panic - not syncing: kmem_cache_create_usercopy: Failed to create slab '{name}'. Error -22");
        }
        _log.Printk($"kmem_cache_create_usercopy({name}) failed with error -22");
        return null;
    }

    /// <summary>kmem_cache_destroy's warning for a cache that still has objects.</summary>
    private protected void WarnDestroyBusy(KmemCache s, string caller)
    {
        _log.Printk("------------[ cut here ]------------");
        _log.Printk($"kmem_cache_destroy {s.Name}: Slab cache still has objects when called from {caller}");
        _log.Printk($"WARNING: CPU: {_cpus.Current} at mm/slab_common.c kmem_cache_destroy");
    }

    // ───────────────────────────── merging (find_mergeable) ─────────────────────────────

    /// <summary>SLAB_NEVER_MERGE (6.1), with SLAB_NO_MERGE of later kernels.</summary>
    public const SlabFlags NeverMerge = SlabFlags.RedZone | SlabFlags.Poison | SlabFlags.StoreUser | SlabFlags.Trace
        | SlabFlags.TypesafeByRcu | SlabFlags.Failslab | SlabFlags.NoMerge;

    /// <summary>SLAB_MERGE_SAME: flags that two merged caches must agree on.</summary>
    public const SlabFlags MergeSame = SlabFlags.ReclaimAccount | SlabFlags.CacheDma | SlabFlags.CacheDma32 | SlabFlags.Account;

    /// <summary>slab_unmergeable: slab_nomerge, a never-merge flag, a constructor, or a cache that refuses
    /// aliases (the kmalloc caches, whose whole object is a usercopy region).</summary>
    internal bool SlabUnmergeable(KmemCache s) =>
        Nomerge || (s.Flags & NeverMerge) != 0 || s.Ctor is not null || s.IsKmalloc || s.RefCount < 0;

    /// <summary>find_mergeable (call under <see cref="_slabMutex"/>): the newest cache a new one of this size,
    /// alignment and flags can share: big enough, at most a word bigger, aligned alike, the same
    /// SLAB_MERGE_SAME flags. <paramref name="debugFlags"/> are the flags with slub_debug's added.</summary>
    private protected KmemCache? FindMergeable(uint size, uint align, SlabFlags debugFlags, Action<nint>? ctor)
    {
        if (Nomerge || ctor is not null || (debugFlags & NeverMerge) != 0)
        {
            return null;
        }
        size = (size + 7) & ~7u;
        align = KmemCache.CalculateAlignment(debugFlags, align, size);
        size = (size + align - 1) / align * align;
        for (int i = _caches.Count - 1; i >= 0; i--)
        {
            var s = _caches[i];
            if (SlabUnmergeable(s) || size > s.Size || (debugFlags & MergeSame) != (s.Flags & MergeSame)
                || (s.Size & ~(align - 1)) != s.Size || s.Size - size >= 8)
            {
                continue;
            }
            if (Kind == SlabAllocator.Slab && (align > s.Align || s.Align % align != 0))
            {
                continue;
            }
            return s;
        }
        return null;
    }

    /// <summary>__kmem_cache_alias (call under <see cref="_slabMutex"/>): the existing cache, with one more
    /// reference and <paramref name="name"/> among its aliases, grown to clear a whole <paramref name="size"/>
    /// object on zeroing; null when no cache fits.</summary>
    private protected KmemCache? CacheAlias(string name, uint size, uint align, SlabFlags debugFlags, Action<nint>? ctor)
    {
        var s = FindMergeable(size, align, debugFlags, ctor);
        if (s is null)
        {
            return null;
        }
        s.AddAlias(name);
        s.ObjectSize = Math.Max(s.ObjectSize, size);
        s.Inuse = Math.Max(s.Inuse, (size + 7) & ~7u);
        return s;
    }

    // ───────────────────────────── allocation hooks ─────────────────────────────

    /// <summary>kmem_cache_alloc_bulk: fills <paramref name="p"/>; 0 (everything given back) when any
    /// allocation fails. SLOB has no slab_pre_alloc_hook (no failslab); SLUB and SLAB consult it once per
    /// call (SlabPageBackend).</summary>
    public virtual int AllocBulk(KmemCache s, Gfp gfp, Span<nint> p) => AllocEach(s, gfp, p, Alloc);

    /// <summary>Fills <paramref name="p"/> with objects from <paramref name="alloc"/>; at the first failure gives
    /// back what it had and returns 0.</summary>
    private protected int AllocEach(KmemCache s, Gfp gfp, Span<nint> p, Func<KmemCache, Gfp, int, nint> alloc)
    {
        for (int i = 0; i < p.Length; i++)
        {
            p[i] = alloc(s, gfp, -1);
            if (p[i] == 0)
            {
                for (int j = 0; j < i; j++)
                {
                    CacheFree(s, p[j]);
                    p[j] = 0;
                }
                return 0;
            }
        }
        return p.Length;
    }

    /// <summary>Sets the cache's init_on_alloc / init_on_free decisions (slab_want_init_on_alloc without
    /// __GFP_ZERO, slab_want_init_on_free): not for caches with a constructor, poisoning or
    /// SLAB_TYPESAFE_BY_RCU.</summary>
    private protected void SetupInitHooks(KmemCache s)
    {
        bool exempt = s.Ctor is not null || (s.Flags & (SlabFlags.TypesafeByRcu | SlabFlags.Poison)) != 0;
        s.WantInitOnAlloc = InitOnAlloc && !exempt;
        s.WantInitOnFree = InitOnFree && !exempt;
        s.AllocHook = s.WantInitOnAlloc || s.WantInitOnFree;
    }

    // ───────────────────────────── RCU ─────────────────────────────

    /// <summary>The machine's RCU (grace periods, callbacks, kvfree_rcu's batches): the slab layer is its
    /// only user, for SLAB_TYPESAFE_BY_RCU and kfree_rcu, so it lives here.</summary>
    public RcuState Rcu { get; }

    /// <summary>call_rcu: <paramref name="callback"/> runs after a grace period, at the next processing point
    /// (never here: callers hold their locks).</summary>
    private protected void CallRcu(Action callback) => Rcu.CallRcu(callback);

    /// <summary>Objects waiting for a grace period.</summary>
    public long RcuPending => Rcu.Pending;

    /// <summary>synchronize_rcu + rcu_barrier: waits for the readers inside a section now, then runs every
    /// callback queued before the call; returns the objects freed.</summary>
    public long SynchronizeRcu() => Rcu.Barrier();

    // ───────────────────────────── shared helpers ─────────────────────────────

    /// <summary>kmalloc_fix_flags: drops the bits a slab allocation must not carry, with the kernel's warning.</summary>
    private protected Gfp KmallocFixFlags(Gfp flags)
    {
        Gfp invalid = flags & GfpSlabBugMask;
        flags &= ~GfpSlabBugMask;
        _log.Printk($"Unexpected gfp: 0x{(uint)invalid:x} ({GfpFlags.Format(invalid)}). Fixing up to gfp: 0x{(uint)flags:x} ({GfpFlags.Format(flags)}). Fix your code!");
        return flags;
    }

    /// <summary>NR_SLAB_RECLAIMABLE_B / NR_SLAB_UNRECLAIMABLE_B of the frame's node, in pages.</summary>
    private protected void AccountSlabPages(SlabFlags flags, uint pfn, long pages)
    {
        var node = _pa.ZoneOf(pfn).Node;
        if ((flags & SlabFlags.ReclaimAccount) != 0)
        {
            Interlocked.Add(ref node.NrSlabReclaimable, pages);
        }
        else
        {
            Interlocked.Add(ref node.NrSlabUnreclaimable, pages);
        }
    }

    /// <summary>The head frame of the compound page <paramref name="pfn"/> is in (itself when not a tail).</summary>
    internal uint HeadPfn(uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        return (f.Flags & PageFlags.Tail) != 0 ? (uint)f.Private : pfn;
    }

    /// <summary>The node of a frame.</summary>
    internal int NodeOf(uint pfn) => _pa.ZoneOf(pfn).Node.Id;

    /// <summary>Whether the machine's memory is gone (the arena was released): nothing may be freed into it.</summary>
    public bool IsMemoryGone => _mem.IsDisposed;

    /// <summary>The kernel-style address of a direct-map pointer: PAGE_OFFSET plus its physical offset.</summary>
    public ulong KernelAddress(nint p)
    {
        nuint off = (nuint)(p - _mem.DirectMapBase);
        return off < (nuint)_mem.LowmemPfns << PhysMem.PageShift ? _pa.Arch.PageOffset + off : (ulong)p;
    }

    /// <summary>slab_err/object_err: the kernel's report for a bad free, through the machine's bug policy.</summary>
    /// <param name="s">The cache, or null when the pointer names none.</param>
    /// <param name="obj">The pointer.</param>
    /// <param name="what">What is wrong ("Object already free", …).</param>
    /// <param name="caller">The API function the pointer was given to.</param>
    /// <param name="offset">The pointer's offset in its slab, when known.</param>
    public void Report(KmemCache? s, nint obj, string what, string caller, long offset = 0)
    {
        string name = s?.Name ?? "(none)";
        string report = s is null
            ? $"{caller}: {what} 0x{KernelAddress(obj):x}"
            : new string('=', 77) + "\n"
                + $"BUG {name} (Not tainted): {what}\n"
                + new string('-', 77) + "\n\n"
                + $"Object 0x{KernelAddress(obj):x} @offset={offset} in {caller}";
        _bug(new SlabBugException(report, KernelAddress(obj), name));
    }

    /// <summary>print_tracking of an object for reports ("" when the cache keeps no tracks).</summary>
    private protected virtual string TrackingOf(KmemCache owner, nint p) => "";

    /// <summary>cache_from_obj's complaint: an object of <paramref name="owner"/> given to <paramref name="s"/>.</summary>
    private protected void ReportWrongCache(KmemCache s, KmemCache? owner, nint p)
    {
        string report = $"kmem_cache_free: Wrong slab cache. {s.Name} but object is from {owner?.Name ?? "(none)"}\n"
            + $"object 0x{KernelAddress(p):x}";
        if (owner is not null && TrackingOf(owner, p) is { Length: > 0 } tracking)
        {
            report += "\n" + tracking.TrimEnd('\n');
        }
        _bug(new SlabBugException(report, KernelAddress(p), s.Name));
    }
}
