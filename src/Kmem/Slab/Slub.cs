// SLUB (mm/slub.c, 6.1, no debugging): the alloc fast path (pop the cpu freelist) and ___slab_alloc
// (cpu slab → cpu partial → node partial → new slab); the free fast path (push on the cpu freelist)
// and __slab_free (full slab → cpu partial, empty slab → page allocator above min_partial).
// Lock order: slab_mutex → cpu lock → node list_lock → slab lock (PG_locked bit spin lock).
// Invariant: a handed-out object has its byte set in its slab's allocation map (one byte per object,
// side table by pfn in chunks where slabs have been): double and foreign frees are refused unchanged.
// A byte changes only with its object: the allocator sets it plainly while it holds the object alone
// (under the cpu lock on the fast path); a free of a cpu-slab object tests and clears it under that
// CPU's lock, every other free exchanges it atomically. Objects are located by reciprocal multiply.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
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
    private const int BitsChunkShift = 14;
    private readonly SlubDebugOption _slubDebug;
    private readonly bool _hardened;
    private readonly bool _randomFreelist;

    public Slub(PageAllocator pa, KernelLog log, Action<KernelBugException> bug, long threadCacheBytes, int? seed = null)
        : base(pa, log, bug, s_sizeIndex, seed)
    {
        ThreadBudgetBytes = threadCacheBytes;
        _slubDebug = pa.Options.SlubDebug is { } sd ? SlubDebugOption.Parse(sd) : SlubDebugOption.None;
        _hardened = pa.Options.SlabFreelistHardened;
        _randomFreelist = pa.Options.SlabFreelistRandom;
        _allocBits = new byte[]?[]?[(_mem.LowmemPfns >> BitsChunkShift) + 1];
        CreateKmallocCaches();
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
            Register(s);
            return s;
        }
    }

    /// <summary>kmem_cache_destroy: returns whether the cache was released; one with objects left is logged
    /// as the kernel does and kept.</summary>
    public override bool Destroy(KmemCache s, string caller)
    {
        lock (_slabMutex)
        {
            if (s.IsDestroyed)
            {
                return true;
            }
            if (s.RefCount > 1)
            {
                // An alias goes; the cache stays for its other users.
                s.DropAlias();
                return false;
            }
            FlushAllCpus(s);
            bool busy = false;
            for (int nid = 0; nid < s.Nodes.Length; nid++)
            {
                var n = s.Nodes[nid];
                FreePartial(s, n);
                busy |= Volatile.Read(ref n.NrSlabs) != 0;
            }
            if (busy)
            {
                WarnDestroyBusy(s, caller);
                return false;
            }
            Unregister(s);
            return true;
        }
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
                    ListSlabObjects(s, pfn);
                }
                pfn = next;
            }
        }
        foreach (uint pfn in discard)
        {
            DiscardSlab(s, pfn);
        }
    }

    private void ListSlabObjects(KmemCache s, uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        int objects = SlabPage.Objects(f.Private);
        uint freeIdx = SlabPage.FreeIdx(f.Private);
        nint fp = freeIdx == SlabPage.NoObject ? 0 : ObjectAt(s, pfn, freeIdx);
        _log.Printk(new string('=', 77));
        _log.Printk($"BUG {s.Name} (Not tainted): Objects remaining in {s.Name} on __kmem_cache_shutdown()");
        _log.Printk(new string('-', 77));
        _log.Printk("");
        string flags = (f.Flags & PageFlags.Head) != 0 ? "slab|head" : "slab";
        _log.Printk($"Slab 0x{KernelAddress(_mem.PageAddress(pfn)):x} objects={objects} used={f.Aux} fp=0x{(fp == 0 ? 0 : KernelAddress(fp)):x} "
            + $"flags=0x{(uint)(f.Flags & PageFlags.KernelMask):x}({flags})");
        var bits = AllocBits(pfn);
        for (int i = 0; i < objects; i++)
        {
            if (bits is not null && Volatile.Read(ref bits[i]) != 0)
            {
                _log.Printk($"Object 0x{KernelAddress(ObjectAt(s, pfn, (uint)i)):x} @offset={(long)i * s.Size + s.RedLeftPad}");
            }
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

    /// <summary>flush_all: deactivate every CPU's slab and unfreeze its partial slabs.</summary>
    private void FlushAllCpus(KmemCache s)
    {
        StealMagazines(s);
        foreach (var c in s.CpuSlab)
        {
            c.Lock();
            uint slab = c.Slab;
            nint freelist = c.Freelist;
            c.Slab = PhysMem.NoPfn;
            c.Freelist = 0;
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
            if (s.AllocHook)
            {
                PostAllocHook(s, obj, gfp);
            }
            else if ((gfp & Gfp.Zero) != 0)
            {
                new Span<byte>((void*)obj, (int)s.ObjectSize).Clear();
            }
        }
        return obj;
    }

    /// <summary>The per-CPU half of slab_alloc_node: pop the cpu freelist, else ___slab_alloc.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private nint CpuAlloc(KmemCache s, Gfp gfp, int node)
    {
        var c = s.CpuSlab[_cpus.Current];
        c.Lock();
        nint obj = c.Freelist;
        if (obj != 0 && node < 0)
        {
            // The cpu freelist holds objects of the cpu slab only.
            uint slab = c.Slab;
            c.Freelist = GetFreepointer(s, obj);
            AllocBits(slab)![s.IndexOf((nuint)(obj - _mem.PageAddress(slab)))] = 1;
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
    private void MarkAllocated(KmemCache s, nint obj)
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
            return DebugAlloc(s, gfp, node);
        }
        while (true)
        {
            if (c.Slab != PhysMem.NoPfn)
            {
                if (node >= 0 && NodeOf(c.Slab) != node)
                {
                    // node_match failed: give the slab back and look on the wanted node.
                    uint old = c.Slab;
                    nint oldFreelist = c.Freelist;
                    c.Slab = PhysMem.NoPfn;
                    c.Freelist = 0;
                    DeactivateSlab(s, old, oldFreelist);
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
                SlabOutOfMemory(s, gfp, node);
            }
            return 0;
        }
        c = s.CpuSlab[_cpus.Current];
        c.Lock();
        if (c.Slab != PhysMem.NoPfn)
        {
            // Another thread on this CPU installed a slab meanwhile: flush_slab, then take ours.
            DeactivateSlab(s, c.Slab, c.Freelist);
        }
        c.Slab = slab;
        c.Freelist = GetFreepointer(s, first);
        c.Unlock();
        return first;
    }

    private void SlabOutOfMemory(KmemCache s, Gfp gfp, int node)
    {
        _log.Printk($"SLUB: Unable to allocate memory on node {node}, gfp=0x{(uint)gfp:x}({GfpFlags.Format(gfp)})");
        _log.Printk($"  cache: {s.Name}, object size: {s.ObjectSize}, buffer size: {s.Size}, default order: {s.Order}, min order: {s.MinOrder}");
        for (int nid = 0; nid < s.Nodes.Length; nid++)
        {
            var n = s.Nodes[nid];
            long slabs = Volatile.Read(ref n.NrSlabs);
            long objs = Volatile.Read(ref n.TotalObjects);
            _log.Printk($"  node {nid}: slabs: {slabs}, objs: {objs}, free: {CountPartialFree(s, n)}");
        }
    }

    /// <summary>get_freelist: takes a frozen slab's freelist for the cpu; when it is empty the slab is
    /// unfrozen (full, on no list).</summary>
    private nint GetFreelist(KmemCache s, uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        SlabPage.Lock(ref f);
        ulong p = f.Private;
        uint idx = SlabPage.FreeIdx(p);
        if (idx == SlabPage.NoObject)
        {
            f.Private = SlabPage.WithFrozen(p, false);
            SlabPage.Unlock(ref f);
            return 0;
        }
        f.Private = SlabPage.WithFreeIdx(p, SlabPage.NoObject);
        f.Aux = (ushort)SlabPage.Objects(p);
        SlabPage.Unlock(ref f);
        return ObjectAt(s, pfn, idx);
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
    private uint NewSlab(KmemCache s, Gfp gfp, int node, out nint head)
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
            SetupSlabDebug(s, start, order);
        }
        nint first = start + (nint)s.RedLeftPad;
        if (s.RandomSeq is null || objects < 2)
        {
            var ctor = s.Ctor;
            for (int i = 0; i < objects; i++)
            {
                nint obj = first + (nint)((long)i * s.Size);
                SetupObject(s, obj, ctor);
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
        Volatile.Write(ref chunk[pfn & ((1 << BitsChunkShift) - 1)], GC.AllocateArray<byte>(objects, pinned: true));
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
    private void DiscardSlab(KmemCache s, uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        int objects = SlabPage.Objects(f.Private);
        int order = (f.Flags & PageFlags.Head) != 0 ? f.Order : 0;
        var n = s.Nodes[NodeOf(pfn)];
        Interlocked.Decrement(ref n.NrSlabs);
        Interlocked.Add(ref n.TotalObjects, -objects);
        _allocBits[pfn >> BitsChunkShift]![pfn & ((1 << BitsChunkShift) - 1)] = null;
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

    // ───────────────────────────── free ─────────────────────────────

    /// <summary>do_slab_free: onto the cpu freelist when the object is in the cpu slab (its allocation byte
    /// tested and cleared under the cpu lock), else its byte is exchanged and __slab_free runs. Returns false,
    /// changing nothing, when the object is already free.</summary>
    /// <remarks>The cpu slab is first read without the lock, as the kernel does: a slab seen as another's goes
    /// to __slab_free, which is right for any frozen slab (a remote free), so a stale read costs nothing.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool DoSlabFree(KmemCache s, uint pfn, nint obj, ref byte allocated)
    {
        var c = s.CpuSlab[_cpus.Current];
        if (Volatile.Read(ref c.Slab) != pfn)
        {
            return Interlocked.CompareExchange(ref allocated, 0, 1) == 1 && SlabFreeSlow(s, pfn, obj);
        }
        c.Lock();
        if (c.Slab == pfn)
        {
            if (allocated != 1)
            {
                c.Unlock();
                return false;
            }
            allocated = 0;
            if (s.WantInitOnFree)
            {
                InitObjectOnFree(s, obj);
            }
            SetFreepointer(s, obj, c.Freelist);
            c.Freelist = obj;
            c.Unlock();
            return true;
        }
        c.Unlock();
        return Interlocked.CompareExchange(ref allocated, 0, 1) == 1 && SlabFreeSlow(s, pfn, obj);
    }

    /// <summary>__slab_free; returns true. The node's list_lock is taken only when the slab may change lists:
    /// a free that leaves an unfrozen partial slab with objects in use needs the slab lock alone.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool SlabFreeSlow(KmemCache s, uint pfn, nint obj)
    {
        if (s.IsDebug)
        {
            DebugSlabFree(s, pfn, obj);
            return true;
        }
        if (s.WantInitOnFree)
        {
            InitObjectOnFree(s, obj);
        }
        ref PageFrame f = ref _mem.Frame(pfn);
        SlabPage.Lock(ref f);
        ulong p = f.Private;
        if (!SlabPage.Frozen(p) && SlabPage.FreeIdx(p) != SlabPage.NoObject && f.Aux > 1)
        {
            PushFree(s, ref f, pfn, obj, freeze: false);
            SlabPage.Unlock(ref f);
            return true;
        }
        if (SlabPage.Frozen(p) || SlabPage.FreeIdx(p) == SlabPage.NoObject)
        {
            // Frozen: a CPU owns it. Full and unfrozen: on no list; the freer freezes it for its cpu partial.
            bool toCpuPartial = !SlabPage.Frozen(p);
            PushFree(s, ref f, pfn, obj, toCpuPartial);
            SlabPage.Unlock(ref f);
            if (toCpuPartial)
            {
                PutCpuPartial(s, pfn);
            }
            return true;
        }
        SlabPage.Unlock(ref f);
        // On the node's partial list: list_lock first, then decide again.
        var n = s.Nodes[NodeOf(pfn)];
        bool discard = false, freeze = false;
        lock (n.ListLock)
        {
            SlabPage.Lock(ref f);
            p = f.Private;
            bool frozen = SlabPage.Frozen(p);
            freeze = !frozen && SlabPage.FreeIdx(p) == SlabPage.NoObject;
            PushFree(s, ref f, pfn, obj, freeze);
            if (!frozen && !freeze && f.Aux == 0 && n.NrPartial >= s.MinPartial)
            {
                RemovePartial(n, pfn);
                discard = true;
            }
            SlabPage.Unlock(ref f);
        }
        if (freeze)
        {
            PutCpuPartial(s, pfn);
        }
        else if (discard)
        {
            DiscardSlab(s, pfn);
        }
        return true;
    }

    /// <summary>Pushes an object onto a slab's freelist (slab lock held).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void PushFree(KmemCache s, ref PageFrame f, uint pfn, nint obj, bool freeze)
    {
        ulong p = f.Private;
        uint head = SlabPage.FreeIdx(p);
        SetFreepointer(s, obj, head == SlabPage.NoObject ? 0 : ObjectAt(s, pfn, head));
        uint idx = s.IndexOf((nuint)(obj - _mem.PageAddress(pfn)));
        p = SlabPage.WithFreeIdx(p, idx);
        f.Private = freeze ? SlabPage.WithFrozen(p, true) : p;
        f.Aux--;
    }

    /// <summary>put_cpu_partial (drain): a frozen slab onto this CPU's partial list; a full list is first
    /// unfrozen to the node lists.</summary>
    private void PutCpuPartial(KmemCache s, uint pfn)
    {
        var c = s.CpuSlab[_cpus.Current];
        PfnList toUnfreeze = PfnList.Empty;
        c.Lock();
        if (c.PartialSlabs >= s.CpuPartialSlabs)
        {
            toUnfreeze = c.Partial;
            c.Partial = PfnList.Empty;
            c.PartialSlabs = 0;
        }
        c.Partial.AddHead(_mem, pfn);
        c.PartialSlabs++;
        c.Unlock();
        UnfreezePartials(s, toUnfreeze);
    }

    /// <summary>__unfreeze_partials: each slab goes to its node's partial list, or back to the page
    /// allocator when empty and the node has min_partial slabs already.</summary>
    private void UnfreezePartials(KmemCache s, PfnList list)
    {
        List<uint>? discard = null;
        for (uint pfn = list.Head; pfn != PhysMem.NoPfn;)
        {
            uint next = _mem.Frame(pfn).Next;
            if (Unfreeze(s, pfn))
            {
                (discard ??= []).Add(pfn);
            }
            pfn = next;
        }
        if (discard is not null)
        {
            foreach (uint pfn in discard)
            {
                DiscardSlab(s, pfn);
            }
        }
    }

    /// <summary>deactivate_slab: the cpu freelist goes back into the slab, which is then unfrozen.</summary>
    private void DeactivateSlab(KmemCache s, uint pfn, nint freelist)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        if (freelist != 0)
        {
            SlabPage.Lock(ref f);
            while (freelist != 0)
            {
                nint next = GetFreepointer(s, freelist);
                PushFree(s, ref f, pfn, freelist, freeze: false);
                freelist = next;
            }
            SlabPage.Unlock(ref f);
        }
        if (Unfreeze(s, pfn))
        {
            DiscardSlab(s, pfn);
        }
    }

    /// <summary>Unfreezes a slab under its node's list_lock: a slab with free objects joins the partial list
    /// (unless it is empty and the node has enough), a full one joins no list. Returns true when the caller
    /// must discard it.</summary>
    private bool Unfreeze(KmemCache s, uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        var n = s.Nodes[NodeOf(pfn)];
        lock (n.ListLock)
        {
            SlabPage.Lock(ref f);
            ulong p = f.Private;
            f.Private = SlabPage.WithFrozen(p, false);
            bool hasFree = SlabPage.FreeIdx(p) != SlabPage.NoObject;
            bool empty = f.Aux == 0;
            SlabPage.Unlock(ref f);
            if (empty && n.NrPartial >= s.MinPartial)
            {
                return true;
            }
            if (hasFree)
            {
                f.Next = f.Prev = PhysMem.NoPfn;
                n.Partial.AddTail(_mem, pfn);
                n.NrPartial++;
            }
            return false;
        }
    }

    private void RemovePartial(KmemCacheNode n, uint pfn)
    {
        n.Partial.Remove(_mem, pfn);
        n.NrPartial--;
    }

    // ───────────────────────────── lookups and checks ─────────────────────────────

    /// <summary>get_slabinfo: every object not free on a node partial list counts as active (objects free
    /// in cpu slabs and cpu partial slabs too); each node's partial list is read under its list_lock.</summary>
    public override SlabCacheStats Stats(KmemCache s)
    {
        long slabs = 0, objs = 0, free = 0;
        foreach (var n in s.Nodes)
        {
            slabs += Volatile.Read(ref n.NrSlabs);
            objs += Volatile.Read(ref n.TotalObjects);
            free += CountPartialFree(s, n);
        }
        return new SlabCacheStats(objs - free, objs, slabs, slabs);
    }

    /// <summary>Free objects on a node's partial lists (count_partial with count_free).</summary>
    public long CountPartialFree(KmemCache s, KmemCacheNode n)
    {
        long free = 0;
        lock (n.ListLock)
        {
            for (uint pfn = n.Partial.Head; pfn != PhysMem.NoPfn; pfn = _mem.Frame(pfn).Next)
            {
                ref PageFrame f = ref _mem.Frame(pfn);
                free += SlabPage.Objects(f.Private) - f.Aux;
            }
        }
        return free;
    }

    /// <summary>The allocation map of the slab at <paramref name="pfn"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte[]? AllocBits(uint pfn) => _allocBits[pfn >> BitsChunkShift]?[pfn & ((1 << BitsChunkShift) - 1)];

    /// <summary>The allocation byte of object <paramref name="idx"/> of the live slab at <paramref name="pfn"/>
    /// (its map is pinned); the caller has checked the index against the slab's objects.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte* AllocByte(uint pfn, uint idx) =>
        (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(AllocBits(pfn)!)) + idx;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private nint ObjectAt(KmemCache s, uint pfn, uint idx) => _mem.PageAddress(pfn) + (nint)((long)idx * s.Size + s.RedLeftPad);

    /// <summary>The cache a slab page belongs to, or null (virt_to_slab → slab_cache).</summary>
    public KmemCache? CacheOfSlab(uint pfn) => CacheById(SlabPage.CacheId(_mem.Frame(pfn).Private));

    /// <summary>slab_free after the checks the kernel makes with debugging on: the pointer must be the start
    /// of an object of <paramref name="s"/> that is allocated. A failing check is reported (naming the
    /// address and the cache) and nothing changes.</summary>
    private protected override void FreeObject(KmemCache s, uint pfn, nint obj, string caller)
    {
        nint start = _mem.PageAddress(pfn);
        nuint off = (nuint)(obj - start);
        ulong priv = _mem.Frame(pfn).Private;
        // The offset lies inside the slab (below 2^32), so the reciprocal gives the exact quotient.
        uint idx = s.IndexOf(off);
        if (off - (nuint)idx * s.Size != s.RedLeftPad || idx >= (uint)SlabPage.Objects(priv))
        {
            ReportBadFree(s, pfn, obj, $"Invalid object pointer 0x{KernelAddress(obj):x}", caller, (long)off);
            return;
        }
        bool freed = MagazineOf(s) is { } mag ? MagazineFree(mag, s, pfn, obj, AllocByte(pfn, idx)) : DoSlabFree(s, pfn, obj, ref AllocBits(pfn)![idx]);
        if (!freed)
        {
            ReportBadFree(s, pfn, obj, "Object already free", caller, (long)off);
        }
    }
}
