// kmalloc over SLAB (mm/slab_common.c, include/linux/slab.h, mm/slab.c kmem_cache_init, 6.1; ArraySlab is
// mm/slab.c's allocator, named after its array caches since "Slab" is the layer's own name):
// KMALLOC_SHIFT_LOW is 5, so the caches are kmalloc-32 … kmalloc-8k plus 96 and 192, each type
// (normal, cg, rcl, dma) chosen by gfp as for SLUB; since 6.1 SLAB, like SLUB, sends requests above
// KMALLOC_MAX_CACHE_SIZE (8 KiB, an order-1 page) to the page allocator (kmalloc_large); the older
// kmalloc-16k … kmalloc-4M caches are gone. Every kmalloc cache is created with SLAB_HWCACHE_ALIGN
// (ARCH_KMALLOC_FLAGS) and power-of-two sizes are naturally aligned, so kmalloc-96 has a 128-byte
// stride. The size_index entries below 32 bytes point at kmalloc-32. kmalloc-128 comes first, as
// the cache of struct kmem_cache_node (INDEX_NODE). ksize is the object size (slab_ksize without SLUB).

namespace Kmem.Slab;

internal sealed unsafe partial class ArraySlab
{
    /// <summary>KMALLOC_SHIFT_LOW: the smallest kmalloc cache is 2^5 = 32 bytes (KMALLOC_MIN_SIZE).</summary>
    public const int KmallocShiftLow = 5;
    /// <summary>INDEX_NODE: kmalloc_index(sizeof(struct kmem_cache_node)) = kmalloc-128 (120 bytes on x86-64).</summary>
    private const int IndexNode = 7;

    /// <summary>size_index after setup_kmalloc_cache_index_table with KMALLOC_MIN_SIZE 32: sizes 1..192 in
    /// steps of 8 (1 = the 96 cache, 2 = the 192 one; 1..24 go to kmalloc-32).</summary>
    private static readonly byte[] s_sizeIndex = [5, 5, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2];

    /// <inheritdoc/>
    private protected override KmemCache? CreateKmallocCache(string name, uint size, uint align, SlabFlags flags) =>
        CreateCache(name, size, align, flags, null, isKmalloc: true);

    /// <summary>__kmalloc_node: ZERO_SIZE_PTR for 0, a kmalloc cache up to 8 KiB, kmalloc_large above.</summary>
    public override nint Kmalloc(nuint size, Gfp gfp, int node)
    {
        if (size <= KmallocMaxCacheSize)
        {
            return size == 0 ? ZeroSizePtr : Alloc(KmallocSlab(size, gfp), gfp, node);
        }
        return KmallocLarge(size, gfp, node);
    }

    /// <inheritdoc/>
    private protected override nuint ObjectKsize(KmemCache s) => s.ObjectSize;

    /// <summary>The checks before ___cache_free: the pointer must be the start of an object of
    /// <paramref name="s"/> that the caller holds. A failing check is reported (naming the address and the
    /// cache) and nothing changes.</summary>
    private protected override void FreeObject(KmemCache s, uint slab, nint obj, string caller)
    {
        var st = State(s);
        nint start = _mem.PageAddress(slab);
        nint sMem = SMem(slab, _mem.Frame(slab).Private);
        nuint off = (nuint)(obj - sMem);
        var map = AllocMap(slab);
        if (obj < sMem || off >= (nuint)((long)st.Geometry.Num * s.Size) || off % s.Size != 0 || map is null)
        {
            Report(s, obj, $"Invalid object pointer 0x{KernelAddress(obj):x}", caller, obj - start);
            return;
        }
        if (Interlocked.Exchange(ref map[s.IndexOf(off)], 0) == 0)
        {
            Report(s, obj, "Object already free", caller, obj - start);
            return;
        }
        if (s.WantInitOnFree)
        {
            // __cache_free: init_on_free wipes object_size bytes before the object joins the CPU's array.
            new Span<byte>((void*)obj, (int)s.ObjectSize).Clear();
        }
        CacheFreeObj(s, st, slab, obj);
    }
}
