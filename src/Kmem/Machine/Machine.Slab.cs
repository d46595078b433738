// The slab layer's public face on Machine: kmem_cache_* and kmalloc under their
// C# names (include/linux/slab.h, mm/slab_common.c, mm/util.c). Everything
// forwards to the machine's slab allocator (SlabBackend: SLUB, SLAB or SLOB as
// booted); the helpers built on kmalloc/ksize/kfree (krealloc, kmemdup, …) live here once.
// Lifetime: every member enters _life, except that kmalloc, kfree, kmem_cache_alloc and kmem_cache_free first
// try their backend's fast path (SLUB's magazines, Slab/Slub/SlubFastPath.cs; SLAB's array caches,
// Slab/ArraySlab/ArraySlabFastPath.cs), which is guarded by the thread's marker (Slab/SlabThreadMarker.cs) that
// Shutdown waits for; whatever it cannot serve goes through the guarded path.
using System.Runtime.CompilerServices;
using Kmem.Slab;

namespace Kmem;

public sealed partial class Machine
{
    /// <summary>ZERO_SIZE_PTR: what <see cref="Kmalloc"/> returns for a size of 0 (never dereference it).</summary>
    public const nint ZeroSizePtr = SlabBackend.ZeroSizePtr;

    /// <summary>KMALLOC_MAX_CACHE_SIZE with SLUB: the largest size served by a kmalloc cache (8 KiB); larger
    /// blocks come straight from the page allocator.</summary>
    public const uint KmallocMaxCacheSize = SlabBackend.KmallocMaxCacheSize;

    /// <summary>KMALLOC_MAX_SIZE: the largest size kmalloc can return (4 MiB).</summary>
    public const nuint KmallocMaxSize = SlabBackend.KmallocMaxSize;

    /// <summary>SLUB's fast paths when SLUB is the slab layer, else null: the entry points reach them with one load.</summary>
    private readonly SlubFastPath? _slubFast;

    /// <summary>SLAB's fast paths when SLAB is the slab layer, else null.</summary>
    private readonly ArraySlabFastPath? _arrayFast;

    private SlabBackend SlabOrThrow
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => SlabLayer ?? ThrowNoSlab();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private SlabBackend ThrowNoSlab() =>
        throw new InvalidOperationException($"the {Options.Slab} backend is not part of this build; boot with Slab = SlabAllocator.Slub");

    /// <summary>The slab caches, oldest first (what /proc/slabinfo lists, newest first).</summary>
    public IReadOnlyList<KmemCache> SlabCaches { get { using var _ = _life.Enter(); return SlabOrThrow.Caches; } }

    /// <summary>kmem_cache_create: a cache of objects of <paramref name="size"/> bytes.</summary>
    /// <param name="name">The cache's name (/proc/slabinfo).</param>
    /// <param name="size">Object size, 1 .. INT_MAX.</param>
    /// <param name="align">Required alignment, 0 or a power of two.</param>
    /// <param name="flags">SLAB_* flags; a bit that is not a member of <see cref="SlabFlags"/> makes creation fail.</param>
    /// <param name="ctor">Called once on each object when its slab is created (not on every allocation);
    /// objects must be returned in the constructed state. Puts the free pointer after the object.</param>
    /// <returns>The cache, or null when the arguments are invalid (logged).</returns>
    /// <exception cref="InvalidOperationException">Creation failed with <see cref="SlabFlags.Panic"/>.</exception>
    public KmemCache? KmemCacheCreate(string name, uint size, uint align, SlabFlags flags, Action<nint>? ctor) { using var _ = _life.Enter(); return SlabOrThrow.CreateCache(name, size, align, flags, ctor); }

    /// <summary>kmem_cache_alloc: an object of <paramref name="s"/>.</summary>
    /// <returns>The object's direct-map address, or 0 when no slab page can be had (logged unless
    /// <see cref="Gfp.NoWarn"/>). With <see cref="Gfp.Zero"/> the object is zeroed.</returns>
    /// <remarks>Never sleeps here: the page allocator is asked with the caller's reclaim bits.</remarks>
    public nint KmemCacheAlloc(KmemCache s, Gfp gfp)
    {
        nint p = _slubFast is { } fast ? fast.Alloc(CheckCache(s), gfp) : 0;
        return p != 0 ? p : KmemCacheAllocSlow(s, gfp);
    }

    // What SLUB's fast paths leave stays out of line: SLAB's fast paths (Slab/ArraySlab/ArraySlabFastPath.cs), and
    // apart from them the guarded path, whose lifetime scope holds references; inlined, it would make every fast
    // call of either zero a stack frame and save registers for it.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private nint KmemCacheAllocSlow(KmemCache s, Gfp gfp)
    {
        nint p = _arrayFast is { } fast ? fast.Alloc(CheckCache(s), gfp) : 0;
        return p != 0 ? p : KmemCacheAllocGuarded(s, gfp);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private nint KmemCacheAllocGuarded(KmemCache s, Gfp gfp) { using var _ = _life.Enter(); return SlabOrThrow.Alloc(CheckCache(s), gfp, -1); }

    /// <summary>kmem_cache_alloc_node: like <see cref="KmemCacheAlloc"/> with an object from node
    /// <paramref name="node"/> (-1 for any).</summary>
    /// <returns>The object, or 0.</returns>
    public nint KmemCacheAllocNode(KmemCache s, Gfp gfp, int node) { using var _ = _life.Enter(); return SlabOrThrow.Alloc(CheckCache(s), gfp, CheckNode(node)); }

    /// <summary>kmem_cache_zalloc: a zeroed object, or 0.</summary>
    public nint KmemCacheZalloc(KmemCache s, Gfp gfp) { using var _ = _life.Enter(); return SlabOrThrow.Alloc(CheckCache(s), gfp | Gfp.Zero, -1); }

    /// <summary>kmem_cache_free: gives an object back to its cache.</summary>
    /// <exception cref="SlabBugException">The pointer is not an allocated object of <paramref name="s"/> (double
    /// free, wrong cache, not an object's start, not a slab pointer); nothing changes (with
    /// <see cref="OnBug.Report"/> the report is logged instead).</exception>
    public void KmemCacheFree(KmemCache s, nint p)
    {
        if (_slubFast is not { } fast || !fast.Free(p, CheckCache(s)))
        {
            KmemCacheFreeSlow(s, p);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void KmemCacheFreeSlow(KmemCache s, nint p)
    {
        if (_arrayFast is not { } fast || !fast.TryFree(p, CheckCache(s)))
        {
            KmemCacheFreeGuarded(s, p);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void KmemCacheFreeGuarded(KmemCache s, nint p) { using var _ = _life.Enter(); SlabOrThrow.CacheFree(CheckCache(s), p); }

    /// <summary>kmem_cache_alloc_bulk: fills <paramref name="p"/> with objects; failslab is consulted once for
    /// the whole call, as the kernel's slab_pre_alloc_hook is.</summary>
    /// <returns>The number of objects, <c>p.Length</c>, or 0 when any allocation failed (the objects already
    /// taken are given back, as the kernel does).</returns>
    public int KmemCacheAllocBulk(KmemCache s, Gfp gfp, Span<nint> p)
    {
        using var _ = _life.Enter();
        var slab = SlabOrThrow;
        CheckCache(s);
        return slab.AllocBulk(s, gfp, p);
    }

    /// <summary>kmem_cache_free_bulk: gives every object of <paramref name="p"/> back.</summary>
    /// <exception cref="SlabBugException">As <see cref="KmemCacheFree"/>, for the first bad pointer; the ones
    /// before it are freed.</exception>
    public void KmemCacheFreeBulk(KmemCache s, ReadOnlySpan<nint> p)
    {
        using var _ = _life.Enter();
        var slab = SlabOrThrow;
        CheckCache(s);
        foreach (nint obj in p)
        {
            slab.CacheFree(s, obj);
        }
    }

    /// <summary>kmem_cache_shrink: every CPU's slabs of the cache go back to the node lists and every empty
    /// slab to the page allocator.</summary>
    /// <returns>1 when slabs remain (objects are in use), else 0.</returns>
    public int KmemCacheShrink(KmemCache s) { using var _ = _life.Enter(); return SlabOrThrow.Shrink(CheckCache(s)); }

    /// <summary>kmem_cache_destroy: releases an empty cache. A cache that still has objects is kept, and
    /// the kernel's "Objects remaining … on __kmem_cache_shutdown()" and "Slab cache still has objects"
    /// lines are logged. A null cache is ignored.</summary>
    /// <param name="s">The cache.</param>
    /// <param name="caller">The calling method, named in the warning as the kernel names its caller; filled in
    /// by the compiler.</param>
    public void KmemCacheDestroy(KmemCache? s, [CallerMemberName] string caller = "")
    {
        using var _ = _life.Enter();
        if (s is not null)
        {
            SlabOrThrow.Destroy(s, caller);
        }
    }

    /// <summary>kmalloc: <paramref name="size"/> bytes from the kmalloc cache the size and gfp select, or
    /// from the page allocator above <see cref="KmallocMaxCacheSize"/>.</summary>
    /// <returns>The address; <see cref="ZeroSizePtr"/> for size 0; 0 on failure (above
    /// <see cref="KmallocMaxSize"/> always, with the page allocator's warning).</returns>
    /// <remarks>The cache: dma-kmalloc-* for <see cref="Gfp.Dma"/>, else kmalloc-rcl-* for
    /// <see cref="Gfp.Reclaimable"/>, else kmalloc-cg-* for <see cref="Gfp.Account"/>, else kmalloc-*.</remarks>
    public nint Kmalloc(nuint size, Gfp gfp)
    {
        nint p = _slubFast is { } fast ? fast.Kmalloc(size, gfp) : 0;
        return p != 0 ? p : KmallocSlow(size, gfp);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private nint KmallocSlow(nuint size, Gfp gfp)
    {
        nint p = _arrayFast is { } fast ? fast.Kmalloc(size, gfp) : 0;
        return p != 0 ? p : KmallocGuarded(size, gfp);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private nint KmallocGuarded(nuint size, Gfp gfp) { using var _ = _life.Enter(); return SlabOrThrow.Kmalloc(size, gfp, -1); }

    /// <summary>kzalloc: zeroed <see cref="Kmalloc"/>.</summary>
    /// <returns>The address, <see cref="ZeroSizePtr"/>, or 0.</returns>
    public nint Kzalloc(nuint size, Gfp gfp) { using var _ = _life.Enter(); return SlabOrThrow.Kmalloc(size, gfp | Gfp.Zero, -1); }

    /// <summary>kmalloc_node: <see cref="Kmalloc"/> from node <paramref name="node"/> (-1 for any).</summary>
    /// <returns>The address, <see cref="ZeroSizePtr"/>, or 0.</returns>
    public nint KmallocNode(nuint size, Gfp gfp, int node) { using var _ = _life.Enter(); return SlabOrThrow.Kmalloc(size, gfp, CheckNode(node)); }

    /// <summary>kmalloc_array: <paramref name="n"/> × <paramref name="size"/> bytes.</summary>
    /// <returns>The address, or 0 when the product overflows or the allocation fails.</returns>
    public nint KmallocArray(nuint n, nuint size, Gfp gfp)
    {
        using var _ = _life.Enter();
        nuint bytes;
        try
        {
            bytes = checked(n * size);
        }
        catch (OverflowException)
        {
            return 0;
        }
        return SlabOrThrow.Kmalloc(bytes, gfp, -1);
    }

    /// <summary>kcalloc: zeroed <see cref="KmallocArray"/>.</summary>
    /// <returns>The address, or 0 on overflow or failure.</returns>
    public nint Kcalloc(nuint n, nuint size, Gfp gfp) { using var _ = _life.Enter(); return KmallocArray(n, size, gfp | Gfp.Zero); }

    /// <summary>krealloc: resizes a kmalloc'd block, keeping its content up to the smaller size. The block
    /// is kept when it is already big enough (ksize); otherwise a new one is allocated, the content copied
    /// and the old one freed.</summary>
    /// <returns>The (possibly moved) block; <see cref="ZeroSizePtr"/> for a new size of 0 (the block is
    /// freed); 0 on failure, leaving the old block untouched.</returns>
    public unsafe nint Krealloc(nint p, nuint newSize, Gfp gfp)
    {
        using var _ = _life.Enter();
        var slab = SlabOrThrow;
        if (newSize == 0)
        {
            slab.Kfree(p, "krealloc");
            return ZeroSizePtr;
        }
        nuint ks = slab.Ksize(p);
        if (ks >= newSize)
        {
            if ((gfp & Gfp.Zero) != 0)
            {
                new Span<byte>((void*)(p + (nint)newSize), (int)(ks - newSize)).Clear();
            }
            return p;
        }
        nint ret = slab.Kmalloc(newSize, gfp, -1);
        if (ret != 0 && ks != 0)
        {
            Buffer.MemoryCopy((void*)p, (void*)ret, (long)newSize, (long)ks);
            slab.Kfree(p, "krealloc");
        }
        return ret;
    }

    /// <summary>ksize: the usable size of a kmalloc'd block (at least what was asked); 0 for 0 and
    /// <see cref="ZeroSizePtr"/>.</summary>
    public nuint Ksize(nint p) { using var _ = _life.Enter(); return SlabOrThrow.Ksize(p); }

    /// <summary>kfree: frees a block from <see cref="Kmalloc"/> (or an object of any cache); 0 and
    /// <see cref="ZeroSizePtr"/> are ignored.</summary>
    /// <exception cref="SlabBugException">Double free, or a pointer that is not a kmalloc'd block; nothing
    /// changes (with <see cref="OnBug.Report"/> the report is logged instead).</exception>
    public void Kfree(nint p)
    {
        if (_slubFast is not { } fast || !fast.Free(p, null))
        {
            KfreeSlow(p);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void KfreeSlow(nint p)
    {
        if (_arrayFast is not { } fast || !fast.TryFree(p, null))
        {
            KfreeGuarded(p);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void KfreeGuarded(nint p) { using var _ = _life.Enter(); SlabOrThrow.Kfree(p); }

    /// <summary>kfree_sensitive: zeroes the whole block (ksize bytes) before freeing it.</summary>
    public unsafe void KfreeSensitive(nint p)
    {
        using var _ = _life.Enter();
        var slab = SlabOrThrow;
        nuint ks = slab.Ksize(p);
        if (ks != 0)
        {
            new Span<byte>((void*)p, (int)ks).Clear();
        }
        slab.Kfree(p, "kfree_sensitive");
    }

    /// <summary>kmemdup: a kmalloc'd copy of <paramref name="src"/>.</summary>
    /// <returns>The copy, or 0 on failure (<see cref="ZeroSizePtr"/> for an empty source).</returns>
    public unsafe nint Kmemdup(ReadOnlySpan<byte> src, Gfp gfp)
    {
        using var _ = _life.Enter();
        nint p = SlabOrThrow.Kmalloc((nuint)src.Length, gfp, -1);
        if (p != 0 && !src.IsEmpty)
        {
            src.CopyTo(new Span<byte>((void*)p, src.Length));
        }
        return p;
    }

    /// <summary>kmemdup: a kmalloc'd copy of <paramref name="len"/> bytes at <paramref name="src"/>.</summary>
    /// <returns>The copy, or 0 on failure.</returns>
    public unsafe nint Kmemdup(nint src, nuint len, Gfp gfp) { using var _ = _life.Enter(); return Kmemdup(new ReadOnlySpan<byte>((void*)src, checked((int)len)), gfp); }

    /// <summary>PageSlab: whether the frame belongs to a slab (for a frame of a multi-page slab, its head).</summary>
    public bool PageSlab(Page page)
    {
        using var _ = _life.Enter();
        ulong pfn = PageToPfn(page);
        if (page.IsNull || pfn >= MaxPfn)
        {
            return false;
        }
        ref var f = ref _mem.Frame((uint)pfn);
        uint head = (f.Flags & Physical.PageFlags.Tail) != 0 ? (uint)f.Private : (uint)pfn;
        return (_mem.Frame(head).Flags & Physical.PageFlags.Slab) != 0;
    }

    /// <summary>A span over an object's <see cref="KmemCache.ObjectSize"/> bytes.</summary>
    public static unsafe Span<byte> ObjectSpan(KmemCache s, nint p)
    {
        ArgumentNullException.ThrowIfNull(s);
        return new Span<byte>((void*)p, (int)s.ObjectSize);
    }

    private static KmemCache CheckCache(KmemCache s)
    {
        ArgumentNullException.ThrowIfNull(s);
        return s.ThrowIfDestroyed();
    }

    private int CheckNode(int node) => node >= -1 && node < NrNodes ? node
        : throw new ArgumentOutOfRangeException(nameof(node), node, $"node {node} does not exist: the machine has nodes 0..{NrNodes - 1}");
}
