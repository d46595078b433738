// What SLUB and SLAB share (mm/slab.h slab_pre_alloc_hook, mm/slab_common.c kmalloc_slab,
// kfree, kmem_cache_free's cache_from_obj, __ksize; 6.1): failslab before every allocation
// (CONFIG_FAILSLAB depends on SLAB || SLUB), once for a bulk call; both pick a kmalloc cache by the size_index table up to
// 192 bytes and by the size's power of two above; both keep objects in slab pages whose
// head frame names the cache by id and carries PG_slab, and both send kmalloc above 8 KiB
// to the page allocator as compound pages. So a pointer is classified from its frame
// alone (slab object, large kmalloc, or neither), and only the object checks and the
// free itself are the backend's. SLOB has no slab-page cache ids and no such pointers: it stays a
// direct SlabBackend. No locking of its own: classification reads the frame as the
// kernel's virt_to_folio does; the backend's FreeObject takes its locks.
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>A slab allocator whose slab pages name their cache in the head frame (SLUB, SLAB).</summary>
/// <param name="pa">The machine's page allocator.</param>
/// <param name="log">The kernel log reports go to.</param>
/// <param name="bug">What a report does after logging (throw, or nothing).</param>
/// <param name="failslab">failslab (mm/failslab.c): the fault-injection attribute every allocation consults.</param>
/// <param name="sizeIndex">size_index: the kmalloc index for sizes 1..192 in steps of 8 (1 = the 96 cache,
/// 2 = the 192 one), as the backend's smallest kmalloc cache sets it up.</param>
/// <param name="seed">Seed of the randomness (freelist order, fault injection); null for the default.</param>
internal abstract partial class SlabPageBackend(PageAllocator pa, KernelLog log, Action<KernelBugException> bug, FaultAttr failslab,
    byte[] sizeIndex, int? seed = null)
    : SlabBackend(pa, log, bug, seed)
{
    /// <summary>failslab (mm/failslab.c): the fault-injection attribute every slab allocation consults (the
    /// machine's /sys/kernel/debug/failslab).</summary>
    internal readonly FaultAttr Failslab = failslab;

    /// <summary>should_failslab (mm/failslab.c, 6.1), for SLUB's and SLAB's allocation paths: never for
    /// __GFP_NOFAIL; with ignore-gfp-wait never for an allocation that may reclaim directly; with cache-filter
    /// only for caches with SLAB_FAILSLAB; otherwise should_fail with the object size (silently for
    /// __GFP_NOWARN). Callers test <c>Failslab.Enabled</c> first.</summary>
    internal bool ShouldFailslab(KmemCache s, Gfp gfp)
    {
        var attr = Failslab;
        if ((gfp & Gfp.NoFail) != 0)
        {
            return false;
        }
        if (attr.IgnoreGfpWait && (gfp & Gfp.DirectReclaim) != 0)
        {
            return false;
        }
        if (attr.CacheFilter && (s.Flags & SlabFlags.Failslab) == 0)
        {
            return false;
        }
        return attr.ShouldFailEx(s.ObjectSize, (gfp & Gfp.NoWarn) != 0 ? FaultFlags.NoWarn : FaultFlags.None);
    }

    /// <summary>What a pointer handed back to the allocator is.</summary>
    private protected enum PtrKind
    {
        /// <summary>Outside the direct map, or in a frame that is neither a live slab nor a large kmalloc.</summary>
        Invalid,
        /// <summary>The head frame of a compound page: a large kmalloc when the pointer is its start.</summary>
        Large,
        /// <summary>In a slab of a live cache.</summary>
        Slab,
    }

    /// <summary>slab_alloc_node after slab_pre_alloc_hook: the backend's allocation of one object, or 0 when
    /// no slab can be had.</summary>
    private protected abstract nint AllocObject(KmemCache s, Gfp gfp, int node);

    /// <summary>slab_alloc_node: slab_pre_alloc_hook's should_failslab, then the backend's allocation.</summary>
    public sealed override nint Alloc(KmemCache s, Gfp gfp, int node)
    {
        nint p = Failslab.Enabled && ShouldFailslab(s, gfp) ? 0 : AllocObject(s, gfp, node);
        VmBug.On(p != 0 && !IsObjectOf(p, s)); // the object handed out lies in a slab of its cache
        return p;
    }

    /// <summary>Whether <paramref name="p"/> lies in a live slab of <paramref name="s"/> (the DebugVm checks).</summary>
    internal bool IsObjectOf(nint p, KmemCache s) =>
        Classify(p, out _, out var owner) == PtrKind.Slab && ReferenceEquals(owner, s);

    /// <summary>kmem_cache_alloc_bulk: one slab_pre_alloc_hook (failslab) for the call, then the objects; 0
    /// (everything given back) when any allocation fails.</summary>
    public sealed override int AllocBulk(KmemCache s, Gfp gfp, Span<nint> p) =>
        p.IsEmpty || (Failslab.Enabled && ShouldFailslab(s, gfp)) ? 0 : AllocEach(s, gfp, p, AllocObject);

    /// <summary>The checks before the free of an object of <paramref name="s"/> in the slab whose head is
    /// <paramref name="head"/>, and the free: a pointer that is not an allocated object's start is reported
    /// (naming the cache and address) and nothing changes.</summary>
    private protected abstract void FreeObject(KmemCache s, uint head, nint p, string caller);

    /// <summary>slab_ksize: the usable size of an object of <paramref name="s"/>.</summary>
    private protected abstract nuint ObjectKsize(KmemCache s);

    /// <summary>virt_to_folio and folio_test_slab: for a slab, its head pfn and cache (slab->slab_cache, read
    /// from the cache id in the head frame).</summary>
    private protected PtrKind Classify(nint p, out uint head, out KmemCache? cache)
    {
        cache = null;
        head = _mem.VirtToPfn(p);
        if (head == PhysMem.NoPfn)
        {
            return PtrKind.Invalid;
        }
        head = HeadPfn(head);
        ref PageFrame f = ref _mem.Frame(head);
        if ((f.Flags & PageFlags.Slab) != 0)
        {
            cache = CacheById(SlabPage.CacheId(f.Private));
            return cache is null ? PtrKind.Invalid : PtrKind.Slab;
        }
        return (f.Flags & PageFlags.Head) != 0 && f.RefCount > 0 ? PtrKind.Large : PtrKind.Invalid;
    }

    /// <summary>kfree: 0 and ZERO_SIZE_PTR are ignored; a slab object goes back to its cache, a large
    /// kmalloc to the page allocator; anything else is reported.</summary>
    public override void Kfree(nint p, string caller = "kfree")
    {
        if ((nuint)p <= (nuint)ZeroSizePtr)
        {
            return;
        }
        switch (Classify(p, out uint head, out var s))
        {
            case PtrKind.Slab:
                FreeObject(s!, head, p, caller);
                return;
            case PtrKind.Large when p == _mem.PageAddress(head):
                FreeLargeKmalloc(head);
                return;
            default:
                Report(null, p, "Freeing invalid pointer", caller);
                return;
        }
    }

    /// <summary>kmem_cache_free: the object must belong to <paramref name="s"/> (cache_from_obj).</summary>
    public override void CacheFree(KmemCache s, nint p)
    {
        switch (Classify(p, out uint head, out var owner))
        {
            case PtrKind.Slab when ReferenceEquals(owner, s):
                FreeObject(s, head, p, "kmem_cache_free");
                return;
            case PtrKind.Slab:
                ReportWrongCache(s, owner, p);
                return;
            default:
                uint pfn = _mem.VirtToPfn(p);
                Report(s, p, "Freeing invalid pointer", "kmem_cache_free", pfn == PhysMem.NoPfn ? 0 : (long)(p - _mem.PageAddress(HeadPfn(pfn))));
                return;
        }
    }

    /// <summary>__ksize: the usable size of a kmalloc'd block (slab_ksize for a slab object, the whole block
    /// for a large one); 0 for 0 and ZERO_SIZE_PTR.</summary>
    public override nuint Ksize(nint p)
    {
        if ((nuint)p <= (nuint)ZeroSizePtr)
        {
            return 0;
        }
        switch (Classify(p, out uint head, out var s))
        {
            case PtrKind.Slab:
                return ObjectKsize(s!);
            case PtrKind.Large:
                return (nuint)PhysMem.PageSize << _mem.Frame(head).Order;
            default:
                Report(null, p, "ksize of invalid pointer", "ksize");
                return 0;
        }
    }
}
