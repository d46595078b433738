// SLUB (mm/slub.c, 6.1, no debugging): the alloc fast path (pop the cpu freelist) and ___slab_alloc
// (cpu slab → cpu partial → node partial → new slab); the free fast path (push on the cpu freelist)
// and __slab_free (full slab → cpu partial, empty slab → page allocator above min_partial).
// Lock order: slab_mutex → cpu lock → node list_lock → slab lock (PG_locked bit spin lock).
// Invariant: a handed-out object has its byte set in its slab's allocation map (one byte per object,
// side table by pfn in chunks where slabs have been): double and foreign frees are refused unchanged.
// A byte changes only with its object: the allocator sets it plainly while it holds the object alone
// (under the cpu lock on the fast path); a free of a cpu-slab object tests and clears it under that
// CPU's lock, every other free exchanges it atomically. Objects are located by reciprocal multiply.
// Off the fast paths Slub hands over to the classes it holds: SlubDebug (slub_debug's slow paths, checks
// and reports, which take slabs through NewSlab, PushFree, RemovePartial and DiscardSlab here) and
// SlubSysfs (the figures sysfs and slabinfo read); SlubLayout computes a slot's offsets.
using System.Runtime.CompilerServices;
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>The SLUB allocator of one machine: every cache, the kmalloc caches, and the slab paths.</summary>
internal sealed unsafe partial class Slub : SlabPageBackend
{
    /// <summary>Allocation maps of slabs (1 = allocated, a byte per object), by head pfn, in chunks of
    /// 2^<see cref="BitsChunkShift"/> frames made when a slab first lands in them: 8 bytes per frame of a chunk
    /// that has held a slab, nothing elsewhere.</summary>
    private readonly byte[]?[]?[] _allocBits;
    internal const int BitsChunkShift = 14;
    /// <summary>The maps of discarded slabs, for the next ones (pinned arrays are dear to make).</summary>
    private readonly SlubAllocMaps _allocMaps = new();
    private readonly SlubDebugOption _slubDebug;
    /// <summary>The alloc/free tracks' caller names and stack depot.</summary>
    private readonly SlubTracks _tracks;
    /// <summary>slub_debug's slow paths, checks and reports.</summary>
    private readonly SlubDebug _debug;
    /// <summary>The figures sysfs and slabinfo read.</summary>
    private readonly SlubSysfs _sysfs;
    private readonly bool _hardened;
    private readonly bool _randomFreelist;
    /// <summary>The threads' magazines, their machine-wide bound, reaping and stealing.</summary>
    private readonly SlubMagazineDepot _depot;
    /// <summary>The magazine fast paths Machine's entry points try before they enter the machine's lifetime.</summary>
    internal SlubFastPath Fast { get; }

    public Slub(PageAllocator pa, KernelLog log, Action<KernelBugException> bug, FaultAttr failslab, long threadCacheBytes, int? seed = null)
        : base(pa, log, bug, failslab, s_sizeIndex, seed)
    {
        ThreadBudgetBytes = threadCacheBytes;
        _depot = new SlubMagazineDepot(this, _cpus, _mem);
        Fast = new SlubFastPath(this, _cpus);
        _mem.Lifetime.OnShutdown(_depot.ShutDownFastPaths);
        _tracks = new SlubTracks(_cpus);
        _slubDebug = pa.Options.SlubDebug is { } sd ? SlubDebugOption.Parse(sd) : SlubDebugOption.None;
        _hardened = pa.Options.SlabFreelistHardened;
        _randomFreelist = pa.Options.SlabFreelistRandom;
        _debug = new SlubDebug(this, _mem, _cpus, log, bug, _tracks, _hardened);
        _sysfs = new SlubSysfs(this, _mem, _tracks, _slubDebug, _debug);
        _allocBits = new byte[]?[]?[(_mem.LowmemPfns >> BitsChunkShift) + 1];
        CreateKmallocCaches(KmallocShiftLow, firstIndex: 0, SlabFlags.Kmalloc);
    }

    // ───────────────────────────── cache creation and teardown ─────────────────────────────

    /// <inheritdoc/>
    public override SlabAllocator Kind => SlabAllocator.Slub;

    /// <inheritdoc/>
    public override KmemCache? CreateCache(string name, uint size, uint align, SlabFlags flags, Action<nint>? ctor) =>
        CreateCache(name, size, align, flags, ctor, isKmalloc: false);

    /// <summary>kmem_cache_create: an alias of a compatible cache (find_mergeable), or a new cache with the
    /// debug flags slub_debug gives its name; null when the size is invalid or no slab order fits it.</summary>
    public KmemCache? CreateCache(string name, uint size, uint align, SlabFlags flags, Action<nint>? ctor, bool isKmalloc)
    {
        lock (_slabMutex)
        {
            // Flags outside SLAB_FLAGS_PERMITTED are -EINVAL in the kernel; here, outside those this build implements.
            const SlabFlags permitted = SlabFlags.HwcacheAlign | SlabFlags.CacheDma | SlabFlags.CacheDma32 | SlabFlags.ReclaimAccount
                | SlabFlags.Panic | SlabFlags.NoMerge | SlabFlags.Account | SlabFlags.ConsistencyChecks | SlabFlags.RedZone
                | SlabFlags.Poison | SlabFlags.StoreUser | SlabFlags.Trace | SlabFlags.TypesafeByRcu | SlabFlags.Failslab;
            if (!ValidCreateArgs(name, size, align, flags, permitted | (isKmalloc ? SlabFlags.Kmalloc : 0)))
            {
                return CreateFailed(name, flags);
            }
            if (!isKmalloc && CacheAlias(name, size, align, _slubDebug.CacheFlags(name, flags), ctor) is { } alias)
            {
                return alias;
            }
            flags = _slubDebug.CacheFlags(name, flags);
            var s = new KmemCache(NextCacheId(), name, size, align, flags, ctor, _cpus.Count, _pa.Nodes.Length, Arch.MaxOrder, isKmalloc,
                _slubDebug.DisableHigherOrderDebug);
            // Debug caches take every object through the checks: no thread magazine in front of them.
            s.MagazineLimit = s.IsDebug ? 0 : MagazineLimitFor(s.Size);
            if (s.Order < 0 || s.ObjectsPerSlab < 1)
            {
                return CreateFailed(name, flags);
            }
            SetupCacheHardening(s);
            s.MagazineRoom = s.MagazineLimit * _cpus.Count;
            Register(s);
            return s;
        }
    }

    /// <summary>__kmem_cache_shutdown: flush_all, then free_partial on every node; true when no slab is left
    /// (partial slabs with objects are listed, as list_slab_objects does).</summary>
    private protected override bool Shutdown(KmemCache s)
    {
        FlushAllCpus(s);
        bool busy = false;
        for (int nid = 0; nid < s.Nodes.Length; nid++)
        {
            var n = s.Nodes[nid];
            FreePartial(s, n);
            busy |= Volatile.Read(ref n.NrSlabs) != 0;
        }
        return !busy;
    }

    /// <summary>free_partial: empty partial slabs go back; partial slabs with objects are listed as
    /// list_slab_objects does.</summary>
    private void FreePartial(KmemCache s, KmemCacheNode n)
    {
        var discard = new List<uint>();
        lock (n.ListLock)
        {
            for (uint pfn = n.Partial.Head; pfn != PhysMem.NoPfn;)
            {
                ref PageFrame f = ref _mem.Frame(pfn);
                uint next = f.Next;
                if (f.Aux == 0)
                {
                    RemovePartial(n, pfn);
                    discard.Add(pfn);
                }
                else
                {
                    _debug.ListSlabObjects(s, pfn);
                }
                pfn = next;
            }
        }
        foreach (uint pfn in discard)
        {
            DiscardSlab(s, pfn);
        }
    }

    /// <summary>kmem_cache_shrink: every CPU's slabs go back to the node lists and every empty slab to the
    /// page allocator. Returns 1 when slabs remain, as __kmem_cache_shrink does, else 0.</summary>
    public override int Shrink(KmemCache s)
    {
        FlushAllCpus(s);
        int ret = 0;
        foreach (var n in s.Nodes)
        {
            var discard = new List<uint>();
            lock (n.ListLock)
            {
                for (uint pfn = n.Partial.Head; pfn != PhysMem.NoPfn;)
                {
                    ref PageFrame f = ref _mem.Frame(pfn);
                    uint next = f.Next;
                    SlabPage.Lock(ref f);
                    bool empty = f.Aux == 0;
                    SlabPage.Unlock(ref f);
                    if (empty)
                    {
                        RemovePartial(n, pfn);
                        discard.Add(pfn);
                    }
                    pfn = next;
                }
            }
            foreach (uint pfn in discard)
            {
                DiscardSlab(s, pfn);
            }
            if (Volatile.Read(ref n.NrSlabs) != 0)
            {
                ret = 1;
            }
        }
        return ret;
    }

    /// <inheritdoc/>
    private protected override long DrainForPressure()
    {
        // A cache being created or destroyed elsewhere holds slab_mutex: its pages can wait for the next round.
        if (!_slabMutex.TryEnter())
        {
            return 0;
        }
        try
        {
            long before = SlabPages();
            foreach (var s in _depot.CachesHeld())
            {
                Shrink(s);
            }
            return before - SlabPages();
        }
        finally
        {
            _slabMutex.Exit();
        }
    }

    /// <summary>flush_all: deactivate every CPU's slab and unfreeze its partial slabs.</summary>
    internal void FlushAllCpus(KmemCache s)
    {
        _depot.StealMagazines(s);
        foreach (var c in s.CpuSlab)
        {
            c.Lock();
            var (slab, freelist) = c.DetachSlab();
            PfnList partial = c.Partial;
            c.Partial = PfnList.Empty;
            c.PartialSlabs = 0;
            c.Unlock();
            if (slab != PhysMem.NoPfn)
            {
                DeactivateSlab(s, slab, freelist);
            }
            UnfreezePartials(s, partial);
        }
    }

    // ───────────────────────────── allocation ─────────────────────────────

    /// <inheritdoc/>
    private protected override nint AllocObject(KmemCache s, Gfp gfp, int node) => SlabAllocNode(s, gfp, node);

    /// <summary>slab_alloc_node after slab_pre_alloc_hook: the thread magazine or the cpu slab, then
    /// slab_post_alloc_hook's zeroing.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private nint SlabAllocNode(KmemCache s, Gfp gfp, int node)
    {
        nint obj = node < 0 && MagazineOf(s) is { } mag ? MagazineAlloc(mag, s, gfp) : CpuAlloc(s, gfp, node);
        if (obj != 0)
        {
            PostAlloc(s, obj, gfp);
        }
        return obj;
    }

    /// <summary>slab_post_alloc_hook: the debugging hooks, or the zeroing <see cref="Gfp.Zero"/> asks for.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void PostAlloc(KmemCache s, nint obj, Gfp gfp)
    {
        VmBug.On(!IsObjectOf(obj, s)); // a magazine or freelist entry of another cache
        if (s.AllocHook)
        {
            SlubLayout.PostAllocHook(s, obj, gfp);
        }
        else if ((gfp & Gfp.Zero) != 0)
        {
            new Span<byte>((void*)obj, (int)s.ObjectSize).Clear();
        }
    }

    /// <summary>The per-CPU half of slab_alloc_node: pop the cpu freelist, else ___slab_alloc.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal nint CpuAlloc(KmemCache s, Gfp gfp, int node)
    {
        var c = s.CpuSlab[_cpus.Current];
        c.Lock();
        nint obj = c.Freelist;
        if (obj != 0 && node < 0)
        {
            // The cpu freelist holds objects of the cpu slab only: one outside it is a corrupt free pointer.
            uint slab = c.Slab;
            var bits = AllocBits(slab)!;
            nuint off = (nuint)(obj - _mem.PageAddress(slab));
            if (off >= (nuint)bits.Length * s.Size)
            {
                return CorruptCpuFreelist(s, c, obj, gfp, node);
            }
            c.Freelist = GetFreepointer(s, obj);
            bits[s.IndexOf(off)] = 1;
            c.Unlock();
            return obj;
        }
        obj = SlabAllocSlowpath(s, c, gfp, node);
        if (obj != 0)
        {
            MarkAllocated(s, obj);
        }
        return obj;
    }

    /// <summary>Sets an object's allocation byte; the caller holds the object alone.</summary>
    internal void MarkAllocated(KmemCache s, nint obj)
    {
        uint pfn = HeadPfn(_mem.VirtToPfn(obj));
        Volatile.Write(ref AllocBits(pfn)![s.IndexOf((nuint)(obj - _mem.PageAddress(pfn)))], 1);
    }

    /// <summary>___slab_alloc, entered with the cpu lock held; returns with it released.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private nint SlabAllocSlowpath(KmemCache s, KmemCacheCpu c, Gfp gfp, int node)
    {
        if (s.IsDebug)
        {
            c.Unlock();
            return _debug.Alloc(s, gfp, node);
        }
        while (true)
        {
            if (c.Slab != PhysMem.NoPfn)
            {
                if (node >= 0 && NodeOf(c.Slab) != node)
                {
                    // node_match failed: detach the slab under the lock and deactivate it outside, as 6.1 does
                    // (deactivate_slab can reach the page allocator, whose bug reports must find no cpu lock held),
                    // then look on the wanted node.
                    var (old, oldFreelist) = c.DetachSlab();
                    c.Unlock();
                    DeactivateSlab(s, old, oldFreelist);
                    c.Lock();
                    continue;
                }
                else
                {
                    nint obj = c.Freelist;
                    if (obj == 0)
                    {
                        obj = GetFreelist(s, c.Slab);
                    }
                    if (obj != 0)
                    {
                        c.Freelist = GetFreepointer(s, obj);
                        c.Unlock();
                        return obj;
                    }
                    // The slab is full and unfrozen now: it belongs to no list until an object comes back.
                    c.Slab = PhysMem.NoPfn;
                }
            }
            if (!c.Partial.IsEmpty && node < 0)
            {
                uint pfn = c.Partial.Head;
                c.Partial.Remove(_mem, pfn);
                c.PartialSlabs--;
                c.Slab = pfn;
                continue;
            }
            break;
        }
        nint got = GetPartial(s, c, node);
        if (got != 0)
        {
            c.Freelist = GetFreepointer(s, got);
            c.Unlock();
            return got;
        }
        c.Unlock();
        uint slab = NewSlab(s, gfp, node, out nint first);
        if (slab == PhysMem.NoPfn)
        {
            if ((gfp & Gfp.NoWarn) == 0)
            {
                _debug.SlabOutOfMemory(s, gfp, node);
            }
            return 0;
        }
        c = s.CpuSlab[_cpus.Current];
        c.Lock();
        while (c.Slab != PhysMem.NoPfn)
        {
            // Another thread on this CPU installed a slab meanwhile: flush it outside the lock, then take ours
            // (6.1's retry_load_slab).
            var (flush, flushFreelist) = c.DetachSlab();
            c.Unlock();
            DeactivateSlab(s, flush, flushFreelist);
            c.Lock();
        }
        c.Slab = slab;
        c.Freelist = GetFreepointer(s, first);
        c.Unlock();
        return first;
    }

    /// <summary>get_freelist: takes a frozen slab's freelist for the cpu; when it is empty the slab is
    /// unfrozen (full, on no list).</summary>
    private nint GetFreelist(KmemCache s, uint pfn)
    {
        uint idx = SlabPage.TakeFreelist(ref _mem.Frame(pfn));
        return idx == SlabPage.NoObject ? 0 : ObjectAt(s, pfn, idx);
    }

    /// <summary>get_partial / get_partial_node: the first partial slab of the node (the local one first)
    /// becomes the cpu slab and its freelist is returned; more are frozen onto the cpu partial list until
    /// it holds more than cpu_partial_slabs / 2. Called with the cpu lock held.</summary>
    private nint GetPartial(KmemCache s, KmemCacheCpu c, int node)
    {
        int local = node >= 0 ? node : _cpus.NodeOf[_cpus.Current];
        nint obj = GetPartialNode(s, c, s.Nodes[local]);
        if (obj != 0 || node >= 0)
        {
            return obj;
        }
        for (int nid = 0; nid < s.Nodes.Length && obj == 0; nid++)
        {
            if (nid != local)
            {
                obj = GetPartialNode(s, c, s.Nodes[nid]);
            }
        }
        return obj;
    }

    private nint GetPartialNode(KmemCache s, KmemCacheCpu c, KmemCacheNode n)
    {
        if (Volatile.Read(ref n.NrPartial) == 0)
        {
            return 0;
        }
        nint obj = 0;
        lock (n.ListLock)
        {
            while (!n.Partial.IsEmpty)
            {
                uint pfn = n.Partial.Head;
                RemovePartial(n, pfn);
                ref PageFrame f = ref _mem.Frame(pfn);
                SlabPage.Lock(ref f);
                ulong p = f.Private;
                if (obj == 0)
                {
                    // acquire_slab for the cpu: take the freelist, count every object as in use.
                    uint idx = SlabPage.FreeIdx(p);
                    f.Private = SlabPage.WithFrozen(SlabPage.WithFreeIdx(p, SlabPage.NoObject), true);
                    f.Aux = (ushort)SlabPage.Objects(p);
                    SlabPage.Unlock(ref f);
                    obj = ObjectAt(s, pfn, idx);
                    c.Slab = pfn;
                }
                else
                {
                    f.Private = SlabPage.WithFrozen(p, true);
                    SlabPage.Unlock(ref f);
                    c.Partial.AddHead(_mem, pfn);
                    c.PartialSlabs++;
                }
                if (s.CpuPartialSlabs == 0 || c.PartialSlabs > s.CpuPartialSlabs / 2)
                {
                    break;
                }
            }
        }
        return obj;
    }

    /// <summary>new_slab / allocate_slab: pages for a slab of the cache's order (the minimum order when
    /// that fails), objects chained in address order, constructors run. Returns the head pfn of a frozen
    /// slab whose objects all belong to the caller's cpu freelist, or NoPfn.</summary>
    internal uint NewSlab(KmemCache s, Gfp gfp, int node, out nint head)
    {
        const Gfp reclaimMask = Gfp.Reclaim | Gfp.High | Gfp.Io | Gfp.Fs | Gfp.NoWarn | Gfp.RetryMayfail | Gfp.NoFail
            | Gfp.NoRetry | Gfp.Memalloc | Gfp.NoMemalloc | Gfp.AtomicBit;
        const Gfp constraintMask = Gfp.Hardwall | Gfp.ThisNode;
        if ((gfp & GfpSlabBugMask) != 0)
        {
            gfp = KmallocFixFlags(gfp);
        }
        Gfp flags = (gfp & (reclaimMask | constraintMask)) | s.AllocFlags;
        Gfp allocGfp = (flags | Gfp.NoWarn | Gfp.NoRetry) & ~Gfp.NoFail;
        if ((allocGfp & Gfp.DirectReclaim) != 0 && s.Order > s.MinOrder)
        {
            allocGfp = (allocGfp | Gfp.NoMemalloc) & ~Gfp.Reclaim;
        }
        head = 0;
        int order = s.Order;
        int objects = s.ObjectsPerSlab;
        var page = _pa.AllocPages(allocGfp, order, node);
        if (page.IsNull)
        {
            order = s.MinOrder;
            objects = s.MinObjects;
            page = _pa.AllocPages(order > 0 ? flags : flags & ~Gfp.Comp, order, node);
            if (page.IsNull)
            {
                return PhysMem.NoPfn;
            }
        }
        uint pfn = page.RawPfn;
        _observer?.NewSlab(s, pfn, order);
        nint start = _mem.PageAddress(pfn);
        if (s.IsDebug)
        {
            SlubDebug.SetupSlabDebug(s, start, order);
        }
        nint first = start + (nint)s.RedLeftPad;
        if (s.RandomSeq is null || objects < 2)
        {
            var ctor = s.Ctor;
            for (int i = 0; i < objects; i++)
            {
                nint obj = first + (nint)((long)i * s.Size);
                SlubDebug.SetupObject(s, obj, ctor);
                SetFreepointer(s, obj, i + 1 < objects ? obj + (nint)s.Size : 0);
            }
        }
        else
        {
            first = ShuffleFreelist(s, first, objects);
        }
        var chunk = _allocBits[pfn >> BitsChunkShift];
        if (chunk is null)
        {
            // Racing creators of one chunk: the first wins, the others use its array.
            Interlocked.CompareExchange(ref _allocBits[pfn >> BitsChunkShift], new byte[]?[1 << BitsChunkShift], null);
            chunk = _allocBits[pfn >> BitsChunkShift]!;
        }
        // Pinned: thread magazines keep pointers to the bytes of objects they hold (SlubMagazines.cs).
        Volatile.Write(ref chunk[pfn & ((1 << BitsChunkShift) - 1)], _allocMaps.Rent(objects));
        ref PageFrame f = ref _mem.Frame(pfn);
        f.Private = SlabPage.Make(s.Id, objects, s.IsDebug ? s.IndexOf((nuint)(first - start)) : SlabPage.NoObject, frozen: !s.IsDebug);
        f.Aux = (ushort)(s.IsDebug ? 0 : objects);
        f.Next = f.Prev = PhysMem.NoPfn;
        f.Flags |= PageFlags.Slab;
        var n = s.Nodes[NodeOf(pfn)];
        Interlocked.Increment(ref n.NrSlabs);
        Interlocked.Add(ref n.TotalObjects, objects);
        AccountSlabPages(s.Flags, pfn, 1L << order);
        head = first;
        return pfn;
    }

    /// <summary>discard_slab / __free_slab: the slab's pages go back to the page allocator.</summary>
    internal void DiscardSlab(KmemCache s, uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        int objects = SlabPage.Objects(f.Private);
        int order = (f.Flags & PageFlags.Head) != 0 ? f.Order : 0;
        var n = s.Nodes[NodeOf(pfn)];
        Interlocked.Decrement(ref n.NrSlabs);
        Interlocked.Add(ref n.TotalObjects, -objects);
        ref byte[]? map = ref _allocBits[pfn >> BitsChunkShift]![pfn & ((1 << BitsChunkShift) - 1)];
        _allocMaps.Return(map!);
        map = null;
        f.Private = 0;
        f.Aux = 0;
        f.Flags &= ~(PageFlags.Slab | PageFlags.Locked);
        SlabFlags flags = s.Flags;
        if ((flags & SlabFlags.TypesafeByRcu) != 0)
        {
            // call_rcu(rcu_free_slab): the pages stay readable, and counted as slab, until a grace period ends.
            CallRcu(() => FreeSlabPages(flags, pfn, order));
            return;
        }
        FreeSlabPages(flags, pfn, order);
    }

    /// <summary>__free_slab's last step: unaccount the pages and give them back.</summary>
    private void FreeSlabPages(SlabFlags flags, uint pfn, int order)
    {
        AccountSlabPages(flags, pfn, -(1L << order));
        _observer?.SlabFreed(pfn, order);
        _pa.FreePages(new Page(pfn), order);
    }
}
