// kmalloc over SLUB (mm/slab_common.c, include/linux/slab.h, 6.1): SLUB's size_index table
// (KMALLOC_SHIFT_LOW 3: sizes 1..8 and 9..16 have caches of their own), __kmalloc_node's inlined
// slab_alloc_node, and kfree's and kmem_cache_free's magazine fast path (the checked paths and ksize are
// SlabPageBackend's; the kmalloc cache table and kmalloc_large are KmallocCaches.cs's). The cache table is
// filled at boot and immutable afterwards.

namespace Kmem.Slab;

internal sealed unsafe partial class Slub
{
    /// <summary>size_index: kmalloc index for sizes 1..192 in steps of 8 (1 = the 96 cache, 2 = the 192 one).</summary>
    private static readonly byte[] s_sizeIndex = [3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2];

    /// <summary>KMALLOC_SHIFT_LOW: the smallest kmalloc cache is 2^3 = 8 bytes.</summary>
    public const int KmallocShiftLow = 3;

    /// <inheritdoc/>
    private protected override KmemCache? CreateKmallocCache(string name, uint size, uint align, SlabFlags flags) =>
        CreateCache(name, size, align, flags, null, isKmalloc: true);

    /// <summary>__kmalloc_node: ZERO_SIZE_PTR for 0, a kmalloc cache up to 8 KiB, kmalloc_large above.</summary>
    public override nint Kmalloc(nuint size, Gfp gfp, int node)
    {
        if (size <= KmallocMaxCacheSize)
        {
            if (size == 0)
            {
                return ZeroSizePtr;
            }
            // slab_alloc_node inlined here, the hot path: failslab, then the magazine or cpu slab.
            var s = KmallocSlab(size, gfp);
            return Failslab.Enabled && ShouldFailslab(s, gfp) ? 0 : SlabAllocNode(s, gfp, node);
        }
        return KmallocLarge(size, gfp, node);
    }

    /// <summary>kfree: an unpinned thread's object goes straight onto its magazine when it can; everything
    /// else takes the checked path (SlabPageBackend.Kfree).</summary>
    public override void Kfree(nint p, string caller = "kfree")
    {
        if (!TryMagazineFree(p, null, _cpus.UnpinnedThreadCache(out _)))
        {
            base.Kfree(p, caller);
        }
    }

    /// <summary>kmem_cache_free: as <see cref="Kfree"/>, the magazine first when the object is of
    /// <paramref name="s"/>; everything else takes the checked path.</summary>
    public override void CacheFree(KmemCache s, nint p)
    {
        if (!TryMagazineFree(p, s, _cpus.UnpinnedThreadCache(out _)))
        {
            base.CacheFree(s, p);
        }
    }

    /// <inheritdoc/>
    private protected override nuint ObjectKsize(KmemCache s) => SlubLayout.SlabKsize(s);
}
