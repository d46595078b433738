// SLUB's free side (mm/slub.c, 6.1): do_slab_free's fast path onto the cpu freelist, __slab_free (a full
// slab goes to the cpu partial list, an empty one back to the page allocator above min_partial) of one
// object or of a detached freelist with its count (the magazines' bulk flush, SlubFreeBulk.cs),
// put_cpu_partial, unfreezing and deactivation; then the lookups the reports and sysfs read (the figures
// themselves are SlubSysfs's) and the checked free of a single object (FreeObject; its reports SlubDebug's).
// Lock order as in Slub.cs: cpu lock → node list_lock → slab lock. An object's allocation byte is
// tested and cleared under the cpu lock for a cpu-slab object, exchanged atomically otherwise.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Kmem.Physical;

namespace Kmem.Slab;

internal sealed unsafe partial class Slub
{
    // ───────────────────────────── free ─────────────────────────────

    /// <summary>do_slab_free: onto the cpu freelist when the object is in the cpu slab (its allocation byte
    /// tested and cleared under the cpu lock), else its byte is exchanged and __slab_free runs. Returns false,
    /// changing nothing, when the object is already free (or still in a thread magazine).</summary>
    /// <remarks>The cpu slab is first read without the lock, as the kernel does: a slab seen as another's goes
    /// to __slab_free, which is right for any frozen slab (a remote free), so a stale read costs nothing.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool DoSlabFree(KmemCache s, uint pfn, nint obj, ref byte allocated)
    {
        LeaveMagazines(s, obj, ref allocated); // an object a thread magazine handed out is allocated (SlubMagazines.cs)
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
                SlubLayout.InitObjectOnFree(s, obj);
            }
            SetFreepointer(s, obj, c.Freelist);
            c.Freelist = obj;
            c.Unlock();
            return true;
        }
        c.Unlock();
        return Interlocked.CompareExchange(ref allocated, 0, 1) == 1 && SlabFreeSlow(s, pfn, obj);
    }

    /// <summary>__slab_free of one object; returns true.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool SlabFreeSlow(KmemCache s, uint pfn, nint obj)
    {
        if (s.IsDebug)
        {
            _debug.SlabFree(s, pfn, obj);
            return true;
        }
        if (s.WantInitOnFree)
        {
            SlubLayout.InitObjectOnFree(s, obj);
        }
        SlabFreeChain(s, pfn, obj, obj, 1);
        return true;
    }

    /// <summary>__slab_free of a detached freelist: <paramref name="cnt"/> objects of the slab at <paramref name="pfn"/>
    /// chained from <paramref name="head"/> to <paramref name="tail"/> (kmem_cache_free_bulk's unit), their allocation
    /// bytes already cleared and init_on_free done. The node's list_lock is taken only when the slab may change lists:
    /// a free that leaves an unfrozen partial slab with objects in use needs the slab lock alone.</summary>
    internal void SlabFreeChain(KmemCache s, uint pfn, nint head, nint tail, int cnt)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        SlabPage.Lock(ref f);
        ulong p = f.Private;
        if (!SlabPage.Frozen(p) && SlabPage.FreeIdx(p) != SlabPage.NoObject && f.Aux > cnt)
        {
            PushFree(s, ref f, pfn, head, tail, cnt, freeze: false);
            SlabPage.Unlock(ref f);
            return;
        }
        if (SlabPage.Frozen(p) || SlabPage.FreeIdx(p) == SlabPage.NoObject)
        {
            // Frozen: a CPU owns it. Full and unfrozen: on no list; the freer freezes it for its cpu partial.
            bool toCpuPartial = !SlabPage.Frozen(p);
            PushFree(s, ref f, pfn, head, tail, cnt, toCpuPartial);
            SlabPage.Unlock(ref f);
            if (toCpuPartial)
            {
                PutCpuPartial(s, pfn);
            }
            return;
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
            PushFree(s, ref f, pfn, head, tail, cnt, freeze);
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
    }

    /// <summary>Pushes an object onto a slab's freelist (slab lock held).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void PushFree(KmemCache s, ref PageFrame f, uint pfn, nint obj, bool freeze) => PushFree(s, ref f, pfn, obj, obj, 1, freeze);

    /// <summary>Pushes a chain of <paramref name="cnt"/> objects, <paramref name="head"/> to <paramref name="tail"/>,
    /// onto a slab's freelist (slab lock held).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void PushFree(KmemCache s, ref PageFrame f, uint pfn, nint head, nint tail, int cnt, bool freeze)
    {
        ulong p = f.Private;
        uint prior = SlabPage.FreeIdx(p);
        SetFreepointer(s, tail, prior == SlabPage.NoObject ? 0 : ObjectAt(s, pfn, prior));
        uint idx = s.IndexOf((nuint)(head - _mem.PageAddress(pfn)));
        p = SlabPage.WithFreeIdx(p, idx);
        f.Private = freeze ? SlabPage.WithFrozen(p, true) : p;
        f.Aux = (ushort)(f.Aux - cnt);
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

    /// <summary>deactivate_slab: the cpu freelist goes back into the slab, which is then unfrozen; a slab with
    /// free objects joins the head of the node's partial list, its tail when other CPUs freed into it while
    /// it was frozen (DEACTIVATE_TO_TAIL: its objects are cache-cold).</summary>
    private void DeactivateSlab(KmemCache s, uint pfn, nint freelist)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        // Read without the slab lock, as 6.1 reads slab->freelist: a racing remote free only picks the end.
        bool remoteFrees = SlabPage.FreeIdx(Volatile.Read(ref f.Private)) != SlabPage.NoObject;
        if (freelist != 0)
        {
            SlabPage.Lock(ref f);
            try
            {
                while (freelist != 0)
                {
                    nint next = GetFreepointer(s, freelist);
                    PushFree(s, ref f, pfn, freelist, freeze: false);
                    freelist = next;
                }
            }
            finally
            {
                SlabPage.Unlock(ref f);
            }
        }
        if (Unfreeze(s, pfn, toTail: remoteFrees))
        {
            DiscardSlab(s, pfn);
        }
    }

    /// <summary>Unfreezes a slab under its node's list_lock: a slab with free objects joins the partial list
    /// at its tail (at its head for <paramref name="toTail"/> false), unless it is empty and the node has
    /// enough; a full one joins no list. Returns true when the caller must discard it.</summary>
    private bool Unfreeze(KmemCache s, uint pfn, bool toTail = true)
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
                if (toTail)
                {
                    n.Partial.AddTail(_mem, pfn);
                }
                else
                {
                    n.Partial.AddHead(_mem, pfn);
                }
                n.NrPartial++;
            }
            return false;
        }
    }

    internal void RemovePartial(KmemCacheNode n, uint pfn)
    {
        n.Partial.Remove(_mem, pfn);
        n.NrPartial--;
    }

    // ───────────────────────────── lookups and checks ─────────────────────────────

    /// <inheritdoc/>
    public override SlabCacheStats Stats(KmemCache s) => _sysfs.Stats(s);

    /// <summary>The sysfs and debugfs figures of the caches (/sys/kernel/slab, alloc_traces).</summary>
    internal SlubSysfs Sysfs => _sysfs;

    /// <summary>Checks every cache (SlubChecker); returns the violations. No cache may be in use meanwhile.</summary>
    public override List<string> ValidateAll() => new SlubChecker(this, _mem).ValidateAll();

    /// <inheritdoc/>
    private protected override string TrackingOf(KmemCache owner, nint p) => _debug.TrackingOf(owner, p);

    /// <summary>The allocation map of the slab at <paramref name="pfn"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal byte[]? AllocBits(uint pfn) => _allocBits[pfn >> BitsChunkShift]?[pfn & ((1 << BitsChunkShift) - 1)];

    /// <summary>A cpu freelist entry outside the cpu slab: a free pointer overwritten after free, decoded (the
    /// hardened freelist turns most such writes into impossible pointers). 6.1 checks free pointers only in debug
    /// caches and would crash on it; here the cpu slab is isolated (left frozen on no list, as its objects cannot
    /// be trusted), the cpu lock released before the report goes through the bug policy, and the allocation
    /// goes on from another slab.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private nint CorruptCpuFreelist(KmemCache s, KmemCacheCpu c, nint bad, Gfp gfp, int node)
    {
        _ = c.DetachSlab();
        c.Unlock();
        Report(s, bad, "Freepointer corrupt", "kmem_cache_alloc");
        return CpuAlloc(s, gfp, node);
    }

    /// <summary>The allocation byte of object <paramref name="idx"/> of the live slab at <paramref name="pfn"/>
    /// (its map is pinned); the caller has checked the index against the slab's objects.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal byte* AllocByte(uint pfn, uint idx) =>
        (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(AllocBits(pfn)!)) + idx;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal nint ObjectAt(KmemCache s, uint pfn, uint idx) => _mem.PageAddress(pfn) + (nint)((long)idx * s.Size + s.RedLeftPad);

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
            _debug.ReportBadFree(s, pfn, obj, $"Invalid object pointer 0x{KernelAddress(obj):x}", caller, (long)off);
            return;
        }
        bool freed = MagazineOf(s) is { } mag ? MagazineFree(mag, s, pfn, obj, AllocByte(pfn, idx)) : DoSlabFree(s, pfn, obj, ref AllocBits(pfn)![idx]);
        if (!freed)
        {
            _debug.ReportBadFree(s, pfn, obj, "Object already free", caller, (long)off);
        }
    }

    /// <summary>The checked free of an object a debug allocation hands back when its report throws.</summary>
    internal void FreeAfterFailedAlloc(KmemCache s, nint obj) => FreeObject(s, HeadPfn(_mem.VirtToPfn(obj)), obj, "kmem_cache_alloc");
}
