// SLAB's free side (mm/slab.c, 6.1; ArraySlab is mm/slab.c's SLAB, named after its array caches because
// "Slab" is already the layer and the word for a slab page): ___cache_free onto the CPU's array,
// cache_flusharray into the shared array or free_block back to the slabs, slab destruction, and the
// fields a slab keeps in its head frame (cache id, colour offset, the object holding an OBJFREELIST
// freelist) with the freelist_idx_t array they locate.
// Lock order as in ArraySlab.cs: cpu array lock → node list_lock.
using System.Runtime.CompilerServices;
using Kmem.Physical;

namespace Kmem.Slab;

internal sealed unsafe partial class ArraySlab
{
    // ───────────────────────────── free ─────────────────────────────

    /// <summary>___cache_free after the checks: onto the CPU's array (flushing a full one first); an object of
    /// a remote node goes straight back to its node (no alien caches).</summary>
    private void CacheFreeObj(KmemCache s, ArraySlabCache st, uint slab, nint obj)
    {
        EnsureFastPath();
        int cpu = _cpus.Current;
        int local = _cpus.NodeOf[cpu];
        List<uint>? list = null;
        if (st.Nodes.Length > 1 && NodeOf(slab) is var slabNode && slabNode != local)
        {
            lock (st.Nodes[slabNode].ListLock)
            {
                FreeBlock(s, st, new ReadOnlySpan<nint>(in obj), slabNode, ref list);
            }
            SlabsDestroy(s, st, list);
            return;
        }
        var ac = LockCpuCache(st, cpu);
        try
        {
            if (ac.Avail >= ac.Limit)
            {
                CacheFlusharray(s, st, ac, local, ref list);
            }
            ac.Entry[ac.Avail++] = obj;
        }
        finally
        {
            // A bug reported while flushing (OnBug.Throw) must not leave the CPU's array locked.
            ac.Unlock();
        }
        if (list is not null)
        {
            SlabsDestroy(s, st, list);
        }
    }

    /// <summary>cache_flusharray (array lock held): batchcount of the oldest objects into the shared array
    /// while it has room, else back to their slabs.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void CacheFlusharray(KmemCache s, ArraySlabCache st, ArrayCache ac, int nid, ref List<uint>? list)
    {
        int batchcount = ac.BatchCount;
        var n = st.Nodes[nid];
        lock (n.ListLock)
        {
            if (n.Shared is { } shared && shared.Limit - shared.Avail is var max and > 0)
            {
                batchcount = Math.Min(batchcount, max);
                Array.Copy(ac.Entry, 0, shared.Entry, shared.Avail, batchcount);
                shared.Avail += batchcount;
            }
            else
            {
                FreeBlock(s, st, ac.Entry.AsSpan(0, batchcount), nid, ref list);
            }
        }
        ac.Avail -= batchcount;
        Array.Copy(ac.Entry, batchcount, ac.Entry, 0, ac.Avail);
    }

    /// <summary>free_block (list_lock held): objects back into their slabs, which move to slabs_free (at the
    /// head) or the tail of slabs_partial; then free slabs beyond free_limit are detached onto
    /// <paramref name="list"/> for the caller to destroy outside the lock.</summary>
    private void FreeBlock(KmemCache s, ArraySlabCache st, ReadOnlySpan<nint> objs, int nid, ref List<uint>? list)
    {
        var n = st.Nodes[nid];
        int num = st.Geometry.Num;
        n.FreeObjects += objs.Length;
        foreach (nint obj in objs)
        {
            uint slab = HeadPfn(_mem.VirtToPfn(obj));
            n.ListFor(_mem.Frame(slab).Aux, num).Remove(_mem, slab);
            SlabPutObj(s, st, slab, obj);
            if (_mem.Frame(slab).Aux == 0)
            {
                n.Free.AddHead(_mem, slab);
                n.FreeSlabs++;
            }
            else
            {
                // The tail of the partial list: the most time for its other objects to come back too.
                n.Partial.AddTail(_mem, slab);
            }
        }
        while (n.FreeObjects > n.FreeLimit && !n.Free.IsEmpty)
        {
            n.FreeObjects -= num;
            uint slab = n.Free.Tail;
            n.Free.Remove(_mem, slab);
            n.FreeSlabs--;
            n.TotalSlabs--;
            (list ??= []).Add(slab);
        }
    }

    /// <summary>slabs_destroy: every detached slab goes back to the page allocator.</summary>
    private void SlabsDestroy(KmemCache s, ArraySlabCache st, List<uint>? list)
    {
        if (list is null)
        {
            return;
        }
        foreach (uint pfn in list)
        {
            SlabDestroy(s, st, pfn);
        }
    }

    /// <summary>slab_destroy / kmem_freepages: the slab's pages go back (counters, PG_slab and the allocation map
    /// cleared), then an off-slab freelist is kfree'd. For a SLAB_TYPESAFE_BY_RCU cache the pages go back only
    /// after a grace period (call_rcu(kmem_rcu_free)): until then they stay readable and counted as slab.</summary>
    private void SlabDestroy(KmemCache s, ArraySlabCache st, uint pfn)
    {
        var g = st.Geometry;
        nint offSlab = 0;
        if (g.Mode == SlabFreelistMode.OffSlab)
        {
            st.OffSlabFreelists.TryRemove(pfn, out offSlab);
        }
        ref PageFrame f = ref _mem.Frame(pfn);
        _allocMap[pfn >> MapChunkShift]![pfn & ((1 << MapChunkShift) - 1)] = null;
        f.Private = 0;
        f.Aux = 0;
        f.Flags &= ~PageFlags.Slab;
        Interlocked.Add(ref _pagesFreed, 1L << g.Order);
        SlabFlags flags = s.Flags;
        int order = g.Order;
        if ((flags & SlabFlags.TypesafeByRcu) != 0)
        {
            CallRcu(() => KmemFreepages(flags, pfn, order));
        }
        else
        {
            KmemFreepages(flags, pfn, order);
        }
        if (offSlab != 0)
        {
            Kfree(offSlab, "slab_destroy");
        }
    }

    /// <summary>kmem_freepages' last step: unaccount the pages and give them back.</summary>
    private void KmemFreepages(SlabFlags flags, uint pfn, int order)
    {
        AccountSlabPages(flags, pfn, -(1L << order));
        _observer?.SlabFreed(pfn, order);
        _pa.FreePages(new Page(pfn), order);
    }

    private long _pagesFreed;

    /// <summary>Pages given back by slab destruction since boot (for reap and shrink accounting).</summary>
    private long PagesFreed => Volatile.Read(ref _pagesFreed);

    /// <summary>The CPU's array cache, locked; one a retune has retired is passed over for its successor.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ArrayCache LockCpuCache(ArraySlabCache st, int cpu)
    {
        var ac = Volatile.Read(ref st.Cpu)[cpu];
        ac.Lock();
        return ac.Retired ? LockCpuCacheRetired(st, cpu, ac) : ac;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ArrayCache LockCpuCacheRetired(ArraySlabCache st, int cpu, ArrayCache ac)
    {
        while (ac.Retired)
        {
            ac.Unlock();
            ac = Volatile.Read(ref st.Cpu)[cpu];
            ac.Lock();
        }
        return ac;
    }

    // ───────────────────────────── slab page fields ─────────────────────────────

    /// <summary>The slab fields of the head frame's Private: the cache id in bits 40-63 (as SlabPage.CacheId
    /// reads it), the index of the object holding an OBJFREELIST freelist in bits 32-39 (0xFF: none), the colour
    /// offset of the first object (s_mem) in bits 0-31. Aux holds active; Next/Prev link the slab on a list.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong MakePrivate(int cacheId, uint colourOffset, uint holder) =>
        ((ulong)(uint)cacheId << 40) | ((ulong)holder << 32) | colourOffset;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint Holder(ulong p) => (uint)(p >> 32) & 0xFF;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong WithHolder(ulong p, uint holder) => (p & ~(0xFFUL << 32)) | ((ulong)holder << 32);

    /// <summary>s_mem: the first object of the slab.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal nint SMem(uint slab, ulong p) => _mem.PageAddress(slab) + (nint)(uint)p;

    /// <summary>slab->freelist: where the slab's index array is (0 for a full object-freelist slab).</summary>
    internal nint Freelist(ArraySlabCache st, uint slab, ulong p)
    {
        var g = st.Geometry;
        return g.Mode switch
        {
            SlabFreelistMode.ObjFreelist => Holder(p) == NoHolder ? 0 : SMem(slab, p) + (nint)(Holder(p) * g.Size),
            SlabFreelistMode.OffSlab => st.OffSlabFreelists[slab],
            _ => _mem.PageAddress(slab) + (nint)(((long)PhysMem.PageSize << g.Order) - g.Num),
        };
    }

    /// <summary>obj_to_index for an object known to be in the slab.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal uint ObjIndex(KmemCache s, uint slab, nint obj) => s.IndexOf((nuint)(obj - SMem(slab, _mem.Frame(slab).Private)));

    /// <summary>The allocation map of the slab at <paramref name="pfn"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal byte[]? AllocMap(uint pfn) => _allocMap[pfn >> MapChunkShift]?[pfn & ((1 << MapChunkShift) - 1)];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ArraySlabCache State(KmemCache s) => (ArraySlabCache)s.BackendState!;
}
