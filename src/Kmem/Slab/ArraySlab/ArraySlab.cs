// SLAB (mm/slab.c, Linux 6.1, CONFIG_NUMA, no DEBUG). The class is ArraySlab, after the array caches that set
// mm/slab.c apart from SLUB and SLOB, because "Slab" is already the layer, its namespace and the word for a
// slab page. Per-CPU array caches of free object
// pointers in front of per-node slab lists (full, partial, free) and a per-node shared array.
// Alloc pops the CPU's array; an empty array is refilled by cache_alloc_refill (shared array,
// then batchcount objects from partial/free slabs, then a new slab from cache_grow_begin). Free
// pushes onto the array; a full array is flushed by cache_flusharray (into the shared array, else
// free_block back to the slabs, which frees empty slabs above the node's free_limit). cache_reap
// drains part of idle arrays and surplus free slabs; shrink and destroy drain everything.
// Each slab keeps its free object indices in a one-byte freelist_idx_t array in real memory (inside
// a free object, at the slab's end, or in a kmalloc'd block, as the kernel places it).
// init_on_alloc and init_on_free zero an object's object_size bytes when it is handed out and when it is
// freed (bulk calls included), except in caches with a constructor or SLAB_TYPESAFE_BY_RCU; with
// init_on_free no free object holds a freelist.
// Kmem addition: SLAB without DEBUG cannot see a double free cheaply; Kmem keeps an allocation map per
// slab (a byte per object, set while the caller holds the object) as it does for SLUB, so double,
// foreign and wrong-cache frees are refused with a report and no state changes.
// Lock order: slab_mutex → cpu array lock → node list_lock. A slab's active count, freelist bytes and
// list membership change only under its node's list_lock (or while the slab is private to its creator).
// A retune (slabinfo_write) publishes new CPU arrays and retires the old ones under their locks; whoever
// locks a retired array moves on to its successor.
// Not modelled: alien caches (frees of remote-node objects go straight to their node, as with
// noaliencache), pfmemalloc slabs, CONFIG_SLAB_FREELIST_RANDOM (objects leave a new slab in index order).
using System.Runtime.CompilerServices;
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>The SLAB allocator of one machine (mm/slab.c): every cache, the kmalloc caches, the array caches.</summary>
internal sealed unsafe partial class ArraySlab : SlabPageBackend
{
    /// <summary>BATCHREFILL_LIMIT: an untouched array refills at most this many objects at once.</summary>
    private const int BatchRefillLimit = 16;
    /// <summary>REAPTIMEOUT_NODE / REAPTIMEOUT_AC: a node's lists are reaped on every second reap tick.</summary>
    public const long ReapNodeTicks = 2;
    /// <summary>No object holds the freelist (OBJFREELIST_SLAB slab that is full).</summary>
    private const uint NoHolder = 0xFF;
    private const int MapChunkShift = 14;
    private const Gfp GfpReclaimMask = Gfp.Reclaim | Gfp.High | Gfp.Io | Gfp.Fs | Gfp.NoWarn | Gfp.RetryMayfail | Gfp.NoFail
        | Gfp.NoRetry | Gfp.Memalloc | Gfp.NoMemalloc | Gfp.AtomicBit;
    private const Gfp GfpConstraintMask = Gfp.Hardwall | Gfp.ThisNode;

    /// <summary>slab_max_order: 1 on machines with more than 32 MiB of RAM, else 0.</summary>
    private readonly int _slabMaxOrder;
    /// <summary>Allocation maps of slabs (1 = the caller holds the object), by head pfn, in chunks of
    /// 2^<see cref="MapChunkShift"/> frames made when a slab first lands in them.</summary>
    private readonly byte[]?[]?[] _allocMap;
    /// <summary>Reap ticks so far (each <see cref="CacheReap"/> is one tick of REAPTIMEOUT_AC).</summary>
    private long _reapTicks;

    public ArraySlab(PageAllocator pa, KernelLog log, Action<KernelBugException> bug, FaultAttr failslab)
        : base(pa, log, bug, failslab, s_sizeIndex)
    {
        _slabMaxOrder = pa.TotalRamPages > (32L << 20) >> PhysMem.PageShift ? 1 : 0;
        _allocMap = new byte[]?[]?[(_mem.LowmemPfns >> MapChunkShift) + 1];
        CreateKmallocCaches(KmallocShiftLow, IndexNode, SlabFlags.HwcacheAlign);
        Fast = new ArraySlabFastPath(this, _cpus);
        _mem.Lifetime.OnShutdown(Fast.ShutDown);
    }

    /// <inheritdoc/>
    public override SlabAllocator Kind => SlabAllocator.Slab;

    /// <summary>slab_max_order in use.</summary>
    public int SlabMaxOrder => _slabMaxOrder;

    // ───────────────────────────── cache creation and teardown ─────────────────────────────

    /// <inheritdoc/>
    public override KmemCache? CreateCache(string name, uint size, uint align, SlabFlags flags, Action<nint>? ctor) =>
        CreateCache(name, size, align, flags, ctor, isKmalloc: false);

    /// <summary>kmem_cache_create: calculate_alignment (create_boot_cache's for kmalloc caches), the geometry of
    /// __kmem_cache_create, then enable_cpucache. Null when the arguments are invalid or no slab order fits an
    /// object.</summary>
    private KmemCache? CreateCache(string name, uint size, uint align, SlabFlags flags, Action<nint>? ctor, bool isKmalloc)
    {
        lock (_slabMutex)
        {
            const SlabFlags permitted = SlabFlags.HwcacheAlign | SlabFlags.CacheDma | SlabFlags.CacheDma32 | SlabFlags.ReclaimAccount
                | SlabFlags.Panic | SlabFlags.NoMerge | SlabFlags.Account | SlabFlags.TypesafeByRcu;
            // set_objfreelist_slab_cache: neither a constructed object nor one an RCU reader may still look at can
            // hold the freelist while free, nor, with init_on_free, any object (the indices would reach a user).
            bool keepObjects = ctor is not null || (flags & SlabFlags.TypesafeByRcu) != 0 || InitOnFree;
            if (!ValidCreateArgs(name, size, align, flags, permitted)
                || SlabGeometry.Calculate(size, KmemCache.CalculateAlignment(flags, align, size), flags, keepObjects, _slabMaxOrder, KmallocFor) is not { } g)
            {
                return CreateFailed(name, flags);
            }
            int limit = SlabGeometry.DefaultLimit(g.Size);
            var state = new ArraySlabCache(g, limit, (limit + 1) / 2, SlabGeometry.DefaultShared(g.Size, _cpus.Count),
                _cpus.Count, _cpus.NodeOf, _pa.Nodes.Length);
            var s = new KmemCache(NextCacheId(), name, size, g.Size, g.Align, g.Order, g.Num, flags, ctor, isKmalloc, state);
            SetupInitHooks(s);
            Register(s);
            return s;
        }
    }

    /// <summary>kmalloc_slab(bytes, 0) as calculate_slab_order asks it: the kmalloc cache's stride and whether
    /// it keeps its own freelists off-slab; null while that cache does not exist yet.</summary>
    private (uint Size, bool OffSlab)? KmallocFor(uint bytes)
    {
        var table = _kmallocCaches[(int)KmallocType.Normal];
        return table is not null && table[KmallocIndex(bytes)] is { } c
            ? (c.Size, State(c).Geometry.Mode == SlabFreelistMode.OffSlab)
            : null;
    }

    /// <summary>__kmem_cache_shutdown: a full shrink; true when no slab with objects is left (SLAB lists no
    /// objects, unlike SLUB).</summary>
    private protected override bool Shutdown(KmemCache s) => Shrink(s) == 0;

    /// <summary>__kmem_cache_shrink: every CPU's array and every shared array back to the slabs, every free
    /// slab back to the page allocator. Returns 1 when slabs with objects remain, else 0.</summary>
    public override int Shrink(KmemCache s)
    {
        var st = State(s);
        DrainCpuCaches(s, st);
        int ret = 0;
        foreach (var n in st.Nodes)
        {
            DrainFreelist(s, st, n, int.MaxValue);
            lock (n.ListLock)
            {
                ret |= n.Full.IsEmpty && n.Partial.IsEmpty ? 0 : 1;
            }
        }
        return ret;
    }

    /// <summary>free_block of every object in CPU <paramref name="cpu"/>'s array, which the caller has locked, to
    /// the CPU's node; slabs left empty are added to <paramref name="list"/> for the caller to destroy.</summary>
    private void FreeCpuArray(KmemCache s, ArraySlabCache st, ArrayCache ac, int cpu, ref List<uint>? list)
    {
        if (ac.Avail > 0)
        {
            int nid = _cpus.NodeOf[cpu];
            lock (st.Nodes[nid].ListLock)
            {
                FreeBlock(s, st, ac.Entry.AsSpan(0, ac.Avail), nid, ref list);
            }
            ac.Avail = 0;
        }
    }

    /// <summary>drain_cpu_caches: every CPU's array (under its lock), then every node's shared array.</summary>
    private void DrainCpuCaches(KmemCache s, ArraySlabCache st)
    {
        for (int cpu = 0; cpu < st.Cpu.Length; cpu++)
        {
            List<uint>? list = null;
            var ac = LockCpuCache(st, cpu);
            try
            {
                FreeCpuArray(s, st, ac, cpu, ref list);
            }
            finally
            {
                ac.Unlock();
            }
            SlabsDestroy(s, st, list);
        }
        for (int nid = 0; nid < st.Nodes.Length; nid++)
        {
            var n = st.Nodes[nid];
            List<uint>? list = null;
            lock (n.ListLock)
            {
                if (n.Shared is { Avail: > 0 } sh)
                {
                    FreeBlock(s, st, sh.Entry.AsSpan(0, sh.Avail), nid, ref list);
                    sh.Avail = 0;
                }
            }
            SlabsDestroy(s, st, list);
        }
    }

    /// <summary>drain_freelist: up to <paramref name="tofree"/> free slabs (the oldest first) go back to the
    /// page allocator. Returns how many did.</summary>
    private int DrainFreelist(KmemCache s, ArraySlabCache st, ArraySlabNode n, int tofree)
    {
        int freed = 0;
        while (freed < tofree)
        {
            uint pfn;
            lock (n.ListLock)
            {
                pfn = n.Free.Tail;
                if (pfn == PhysMem.NoPfn)
                {
                    break;
                }
                n.Free.Remove(_mem, pfn);
                n.FreeSlabs--;
                n.TotalSlabs--;
                n.FreeObjects -= st.Geometry.Num;
            }
            SlabDestroy(s, st, pfn);
            freed++;
        }
        return freed;
    }

    // ───────────────────────────── allocation ─────────────────────────────

    /// <summary>slab_alloc_node after slab_pre_alloc_hook: from the CPU's array (refilled when empty), or from a
    /// node's lists for a remote node; 0 when no slab can be had.</summary>
    private protected override nint AllocObject(KmemCache s, Gfp gfp, int node)
    {
        var st = State(s);
        int cpu = _cpus.Current;
        int local = _cpus.NodeOf[cpu];
        nint obj;
        if (node < 0 || node == local)
        {
            var ac = LockCpuCache(st, cpu);
            if (ac.Avail > 0)
            {
                obj = ac.PopAndUnlock();
            }
            else
            {
                obj = CacheAllocRefill(s, st, ac, local, gfp);
                if (obj == 0)
                {
                    // The local node may be out of memory: ____cache_alloc_node knows how to look elsewhere.
                    obj = CacheAllocNode(s, st, gfp, local);
                }
            }
        }
        else
        {
            obj = CacheAllocNode(s, st, gfp, node);
        }
        EnsureFastPath();
        return obj == 0 ? 0 : Allocated(s, obj, gfp);
    }

    /// <summary>cache_alloc_refill, entered with the CPU's array locked and empty; returns an object (or 0)
    /// with the lock released.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private nint CacheAllocRefill(KmemCache s, ArraySlabCache st, ArrayCache ac, int nid, Gfp gfp)
    {
        int batchcount = ac.BatchCount;
        if (!ac.Touched && batchcount > BatchRefillLimit)
        {
            // Little recent activity: a partial refill, against refill bouncing.
            batchcount = BatchRefillLimit;
        }
        var n = st.Nodes[nid];
        try
        {
            RefillFromNode(s, st, ac, n, batchcount);
        }
        catch
        {
            ac.Unlock(); // a bug reported under the array lock (OnBug.Throw) must not leave it held
            throw;
        }
        if (ac.Avail == 0)
        {
            // direct_grow: no lock is held while the page allocator works.
            ac.Unlock();
            uint slab = CacheGrowBegin(s, st, ExactNode(gfp), nid);
            int cpu = _cpus.Current;
            ac = LockCpuCache(st, cpu);
            if (slab != PhysMem.NoPfn && _cpus.NodeOf[cpu] != NodeOf(slab))
            {
                // The thread moved to a CPU of another node meanwhile: keep that CPU's array local.
                ac.Unlock();
                nint one = SlabGetObj(s, st, slab);
                CacheGrowEnd(st, slab);
                return one;
            }
            try
            {
                if (ac.Avail == 0 && slab != PhysMem.NoPfn)
                {
                    // A retune while the lock was dropped may have put a smaller array in place.
                    AllocBlock(s, st, ac, slab, Math.Min(batchcount, ac.Limit));
                }
            }
            catch
            {
                ac.Unlock();
                throw;
            }
            CacheGrowEnd(st, slab);
            if (ac.Avail == 0)
            {
                ac.Unlock();
                return 0;
            }
        }
        return ac.PopAndUnlock();
    }

    /// <summary>cache_alloc_refill's first half (the CPU's array locked): a batch from the node's shared array,
    /// else from its partial and free slabs.</summary>
    private void RefillFromNode(KmemCache s, ArraySlabCache st, ArrayCache ac, ArraySlabNode n, int batchcount)
    {
        if (Volatile.Read(ref n.FreeObjects) != 0 || n.Shared is { Avail: > 0 })
        {
            lock (n.ListLock)
            {
                if (n.Shared is { } shared && ac.TransferFrom(shared, batchcount) > 0)
                {
                    shared.Touched = true;
                }
                else
                {
                    while (batchcount > 0)
                    {
                        uint slab = n.GetFirstSlab();
                        if (slab == PhysMem.NoPfn)
                        {
                            break;
                        }
                        int before = _mem.Frame(slab).Aux;
                        batchcount = AllocBlock(s, st, ac, slab, batchcount);
                        FixupSlabList(st, n, slab, before);
                    }
                    n.FreeObjects -= ac.Avail;
                }
            }
        }
    }

    /// <summary>alloc_block: objects from one slab onto the array until the slab or the batch runs out;
    /// returns what is left of the batch.</summary>
    private int AllocBlock(KmemCache s, ArraySlabCache st, ArrayCache ac, uint slab, int batchcount)
    {
        int num = st.Geometry.Num;
        while (_mem.Frame(slab).Aux < num && batchcount-- > 0)
        {
            ac.Entry[ac.Avail++] = SlabGetObj(s, st, slab);
        }
        return batchcount;
    }

    /// <summary>fixup_slab_list (list_lock held): a slab that had <paramref name="before"/> objects in use moves
    /// to slabs_full (dropping an object-held freelist) or slabs_partial.</summary>
    private void FixupSlabList(ArraySlabCache st, ArraySlabNode n, uint slab, int before)
    {
        int num = st.Geometry.Num;
        n.ListFor(before, num).Remove(_mem, slab);
        ref PageFrame f = ref _mem.Frame(slab);
        if (f.Aux == num)
        {
            n.Full.AddHead(_mem, slab);
            if (st.Geometry.Mode == SlabFreelistMode.ObjFreelist)
            {
                f.Private = WithHolder(f.Private, NoHolder);
            }
        }
        else
        {
            n.Partial.AddHead(_mem, slab);
        }
    }

    /// <summary>____cache_alloc_node: one object from a node's lists, else from a new slab on that node, else
    /// (fallback_alloc) from any node.</summary>
    private nint CacheAllocNode(KmemCache s, ArraySlabCache st, Gfp gfp, int nid)
    {
        var n = st.Nodes[nid];
        lock (n.ListLock)
        {
            uint slab = n.GetFirstSlab();
            if (slab != PhysMem.NoPfn)
            {
                int before = _mem.Frame(slab).Aux;
                nint obj = SlabGetObj(s, st, slab);
                n.FreeObjects--;
                FixupSlabList(st, n, slab, before);
                return obj;
            }
        }
        uint grown = CacheGrowBegin(s, st, ExactNode(gfp), nid);
        nint got = grown == PhysMem.NoPfn ? 0 : SlabGetObj(s, st, grown);
        CacheGrowEnd(st, grown);
        return got != 0 ? got : FallbackAlloc(s, st, gfp);
    }

    /// <summary>fallback_alloc: objects already free on any node, else a slab wherever the page allocator
    /// finds one with the caller's full gfp (reclaim allowed); nothing with __GFP_THISNODE.</summary>
    private nint FallbackAlloc(KmemCache s, ArraySlabCache st, Gfp gfp)
    {
        if ((gfp & Gfp.ThisNode) != 0)
        {
            return 0;
        }
        int local = _cpus.NodeOf[_cpus.Current];
        while (true)
        {
            for (int i = 0; i < st.Nodes.Length; i++)
            {
                int nid = (local + i) % st.Nodes.Length;
                if (Volatile.Read(ref st.Nodes[nid].FreeObjects) != 0 && CacheAllocNode(s, st, ExactNode(gfp), nid) is var obj and not 0)
                {
                    return obj;
                }
            }
            uint slab = CacheGrowBegin(s, st, gfp, local);
            if (slab == PhysMem.NoPfn)
            {
                return 0;
            }
            CacheGrowEnd(st, slab);
            // Another thread may take the new slab's objects first; then look again.
            nint got = CacheAllocNode(s, st, ExactNode(gfp), NodeOf(slab));
            if (got != 0)
            {
                return got;
            }
        }
    }

    /// <summary>gfp_exact_node: this node only, quietly, without reclaim.</summary>
    private static Gfp ExactNode(Gfp gfp) => (gfp | Gfp.ThisNode | Gfp.NoWarn) & ~(Gfp.Reclaim | Gfp.NoFail);

    /// <summary>cache_grow_begin: pages for a new slab (kmem_getpages), its colour, its freelist index array and
    /// its objects (constructed, indices in order). Returns the private, unlinked slab's head pfn, or NoPfn.</summary>
    private uint CacheGrowBegin(KmemCache s, ArraySlabCache st, Gfp gfp, int nid)
    {
        if ((gfp & GfpSlabBugMask) != 0)
        {
            gfp = KmallocFixFlags(gfp);
        }
        var g = st.Geometry;
        Gfp local = gfp & (GfpConstraintMask | GfpReclaimMask);
        var page = _pa.AllocPages(local | s.AllocFlags, g.Order, nid);
        if (page.IsNull)
        {
            // slab_out_of_memory prints only with DEBUG.
            return PhysMem.NoPfn;
        }
        uint pfn = page.RawPfn;
        _observer?.NewSlab(s, pfn, g.Order);
        var n = st.Nodes[NodeOf(pfn)];
        // colour_next advances before use and wraps at the colour count.
        uint colourOffset = g.Colour == 0 ? 0 : Interlocked.Increment(ref n.ColourNext) % (uint)g.Colour * g.ColourOff;
        nint start = _mem.PageAddress(pfn);
        nint sMem = start + (nint)colourOffset;
        nint freelist;
        uint holder = NoHolder;
        switch (g.Mode)
        {
            case SlabFreelistMode.ObjFreelist:
                holder = (uint)g.Num - 1;
                freelist = sMem + (nint)(holder * g.Size);
                break;
            case SlabFreelistMode.OffSlab:
                freelist = Kmalloc((nuint)g.Num, local & ~GfpConstraintMask, NodeOf(pfn));
                if (freelist == 0)
                {
                    _pa.FreePages(page, g.Order);
                    return PhysMem.NoPfn;
                }
                st.OffSlabFreelists[pfn] = freelist;
                break;
            default:
                freelist = start + (nint)(((long)PhysMem.PageSize << g.Order) - g.Num);
                break;
        }
        // cache_init_objs: constructors first (an object-held freelist never has one), then the indices.
        if (s.Ctor is { } ctor)
        {
            for (int i = 0; i < g.Num; i++)
            {
                ctor(sMem + (nint)((long)i * g.Size));
            }
        }
        var idx = new Span<byte>((void*)freelist, g.Num);
        for (int i = 0; i < g.Num; i++)
        {
            idx[i] = (byte)i;
        }
        var chunk = _allocMap[pfn >> MapChunkShift];
        if (chunk is null)
        {
            Interlocked.CompareExchange(ref _allocMap[pfn >> MapChunkShift], new byte[]?[1 << MapChunkShift], null);
            chunk = _allocMap[pfn >> MapChunkShift]!;
        }
        Volatile.Write(ref chunk[pfn & ((1 << MapChunkShift) - 1)], new byte[g.Num]);
        ref PageFrame f = ref _mem.Frame(pfn);
        f.Private = MakePrivate(s.Id, colourOffset, holder);
        f.Aux = 0;
        f.Next = f.Prev = PhysMem.NoPfn;
        f.Flags |= PageFlags.Slab;
        AccountSlabPages(s.Flags, pfn, 1L << g.Order);
        return pfn;
    }

    /// <summary>cache_grow_end: a new slab joins its node's lists (free, or partial/full when objects were
    /// already taken from it) and its free objects are counted.</summary>
    private void CacheGrowEnd(ArraySlabCache st, uint slab)
    {
        if (slab == PhysMem.NoPfn)
        {
            return;
        }
        var n = st.Nodes[NodeOf(slab)];
        int num = st.Geometry.Num;
        lock (n.ListLock)
        {
            ref PageFrame f = ref _mem.Frame(slab);
            n.TotalSlabs++;
            if (f.Aux == 0)
            {
                n.Free.AddTail(_mem, slab);
                n.FreeSlabs++;
            }
            else if (f.Aux == num)
            {
                n.Full.AddHead(_mem, slab);
                if (st.Geometry.Mode == SlabFreelistMode.ObjFreelist)
                {
                    f.Private = WithHolder(f.Private, NoHolder);
                }
            }
            else
            {
                n.Partial.AddHead(_mem, slab);
            }
            n.FreeObjects += num - f.Aux;
        }
    }

    /// <summary>slab_get_obj (list_lock held, or the slab private): the object whose index is at position
    /// active of the freelist.</summary>
    private nint SlabGetObj(KmemCache s, ArraySlabCache st, uint slab)
    {
        ref PageFrame f = ref _mem.Frame(slab);
        byte idx = *(byte*)(Freelist(st, slab, f.Private) + f.Aux);
        f.Aux++;
        return SMem(slab, f.Private) + (nint)((long)idx * s.Size);
    }

    /// <summary>slab_put_obj (list_lock held): the object's index goes to position active − 1 of the freelist;
    /// a full object-freelist slab makes this object the freelist's home.</summary>
    private void SlabPutObj(KmemCache s, ArraySlabCache st, uint slab, nint obj)
    {
        ref PageFrame f = ref _mem.Frame(slab);
        uint idx = ObjIndex(s, slab, obj);
        f.Aux--;
        if (st.Geometry.Mode == SlabFreelistMode.ObjFreelist && Holder(f.Private) == NoHolder)
        {
            f.Private = WithHolder(f.Private, idx);
        }
        *(byte*)(Freelist(st, slab, f.Private) + f.Aux) = (byte)idx;
    }
}
