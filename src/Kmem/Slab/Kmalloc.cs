// kmalloc over SLUB (mm/slab_common.c, include/linux/slab.h, 6.1): the kmalloc
// caches by type (normal, cg, rcl, dma) and size index, the size_index table for
// sizes up to 192, kmalloc_large for more than 8 KiB (compound pages, counted as
// unreclaimable slab), and kfree/ksize, which tell slab objects from large
// allocations by PG_slab on the head frame. The cache table is filled at boot
// and immutable afterwards.
using System.Runtime.CompilerServices;
using Kmem.Physical;

namespace Kmem.Slab;

internal sealed unsafe partial class Slub
{
    /// <summary>size_index: kmalloc index for sizes 1..192 in steps of 8 (1 = the 96 cache, 2 = the 192 one).</summary>
    private static ReadOnlySpan<byte> SizeIndex => [3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2];

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

    /// <summary>kmalloc_index via kmalloc_slab: the size index for 1 ≤ size ≤ 8 KiB.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int KmallocIndex(nuint size) =>
        size <= 192 ? SizeIndex[(int)((size - 1) / 8)] : System.Numerics.BitOperations.Log2((uint)size - 1) + 1;

    /// <summary>kmalloc_slab: the cache for a size of 1 .. KMALLOC_MAX_CACHE_SIZE.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public KmemCache KmallocSlab(nuint size, Gfp gfp) => _kmallocCaches[(int)TypeOf(gfp)][KmallocIndex(size)]!;

    /// <summary>__kmalloc_node: ZERO_SIZE_PTR for 0, a kmalloc cache up to 8 KiB, kmalloc_large above.</summary>
    public override nint Kmalloc(nuint size, Gfp gfp, int node)
    {
        if (size <= KmallocMaxCacheSize)
        {
            return size == 0 ? ZeroSizePtr : Alloc(KmallocSlab(size, gfp), gfp, node);
        }
        return KmallocLarge(size, gfp, node);
    }

    /// <summary>kfree: 0 and ZERO_SIZE_PTR are ignored; a slab object goes back to its cache, a large
    /// kmalloc to the page allocator; anything else is reported.</summary>
    public override void Kfree(nint p, string caller = "kfree")
    {
        if ((nuint)p <= (nuint)ZeroSizePtr || TryMagazineKfree(p))
        {
            return;
        }
        switch (Classify(p, out uint head, out var s))
        {
            case PtrKind.Slab:
                Free(s!, head, p, caller);
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
        var kind = Classify(p, out uint head, out var owner);
        if (kind != PtrKind.Slab)
        {
            Report(s, p, "Freeing invalid pointer", "kmem_cache_free", ObjOffset(p));
            return;
        }
        if (!ReferenceEquals(owner, s))
        {
            ReportWrongCache(s, owner, p);
            return;
        }
        Free(s, head, p, "kmem_cache_free");
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
                return SlabKsize(s!);
            case PtrKind.Large:
                return (nuint)PhysMem.PageSize << _mem.Frame(head).Order;
            default:
                Report(null, p, "ksize of invalid pointer", "ksize");
                return 0;
        }
    }
}
