// kmalloc over SLUB (mm/slab_common.c, include/linux/slab.h, 6.1): the kmalloc
// caches by type (normal, cg, rcl, dma) and size index, the size_index table for
// sizes up to 192, kmalloc_large for more than 8 KiB (compound pages, counted as
// unreclaimable slab), and kfree's and kmem_cache_free's magazine fast path
// (the checked paths and ksize are SlabPageBackend's). The cache table is
// filled at boot and immutable afterwards.

namespace Kmem.Slab;

internal sealed unsafe partial class Slub
{
    /// <summary>size_index: kmalloc index for sizes 1..192 in steps of 8 (1 = the 96 cache, 2 = the 192 one).</summary>
    private static readonly byte[] s_sizeIndex = [3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2];

    /// <summary>create_kmalloc_caches: type by type, sizes 8 … 8k with 96 after 64 and 192 after 128.</summary>
    private void CreateKmallocCaches()
    {
        _hasDmaKmalloc = _pa.Arch.HasZone(ZoneType.Dma);
        for (int type = 0; type < 4; type++)
        {
            _kmallocCaches[type] = new KmemCache?[KmallocShiftHigh + 1];
            if (type == (int)KmallocType.Dma && !_hasDmaKmalloc)
            {
                continue;
            }
            for (int i = 3; i <= KmallocShiftHigh; i++)
            {
                NewKmallocCache(i, (KmallocType)type);
                if (i == 6)
                {
                    NewKmallocCache(1, (KmallocType)type);
                }
                if (i == 7)
                {
                    NewKmallocCache(2, (KmallocType)type);
                }
            }
        }
    }

    private void NewKmallocCache(int index, KmallocType type)
    {
        uint size = KmallocSize(index);
        // create_boot_cache: ARCH_KMALLOC_MINALIGN (8), or the size itself when it is a power of two.
        uint align = (size & (size - 1)) == 0 ? size : 8;
        _kmallocCaches[(int)type][index] = CreateCache(KmallocName(index, type), size, align,
            KmallocFlags(type) | SlabFlags.Panic | SlabFlags.Kmalloc, null, isKmalloc: true);
    }

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
        if (!TryMagazineFree(p, null))
        {
            base.Kfree(p, caller);
        }
    }

    /// <summary>kmem_cache_free: as <see cref="Kfree"/>, the magazine first when the object is of
    /// <paramref name="s"/>; everything else takes the checked path.</summary>
    public override void CacheFree(KmemCache s, nint p)
    {
        if (!TryMagazineFree(p, s))
        {
            base.CacheFree(s, p);
        }
    }

    /// <inheritdoc/>
    private protected override nuint ObjectKsize(KmemCache s) => SlabKsize(s);
}
