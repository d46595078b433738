// The kmalloc caches of SLUB and SLAB (mm/slab_common.c create_kmalloc_caches, kmalloc_slab,
// kmalloc_large; include/linux/slab.h kmalloc_index, kmalloc_type; 6.1): kmalloc_caches[type][index]
// for the types normal, cg, rcl and dma (the last only where the preset has ZONE_DMA) and the sizes
// 2^KMALLOC_SHIFT_LOW … 8 KiB plus 96 and 192; size_index picks the cache for sizes up to 192 and the
// size's power of two above; larger requests go to the page allocator as compound pages counted as
// unreclaimable slab. What differs between the two backends is a parameter, not a second copy: SLUB's
// KMALLOC_SHIFT_LOW is 3 and its caches carry SLAB_KMALLOC; SLAB's is 5, its caches carry
// ARCH_KMALLOC_FLAGS (SLAB_HWCACHE_ALIGN) and kmem_cache_init makes kmalloc-128 first (INDEX_NODE).
// SLOB has no kmalloc caches. The table is filled at boot, before the machine is shared, and read-only
// afterwards: the fast path reads it without a lock.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Kmem.Physical;

namespace Kmem.Slab;

internal abstract partial class SlabPageBackend
{
    /// <summary>enum kmalloc_cache_type (6.1 with ZONE_DMA and MEMCG_KMEM), in creation order.</summary>
    public enum KmallocType
    {
        /// <summary>kmalloc-N.</summary>
        Normal,
        /// <summary>kmalloc-cg-N (__GFP_ACCOUNT).</summary>
        Cgroup,
        /// <summary>kmalloc-rcl-N (__GFP_RECLAIMABLE).</summary>
        Reclaim,
        /// <summary>dma-kmalloc-N (__GFP_DMA).</summary>
        Dma,
    }

    /// <summary>kmalloc_caches[type][index], filled at boot (indices up to KMALLOC_SHIFT_HIGH) and read-only
    /// afterwards.</summary>
    private protected readonly KmemCache?[][] _kmallocCaches = new KmemCache?[4][];

    /// <summary>Whether the dma-kmalloc-* caches exist (the preset has ZONE_DMA).</summary>
    private protected bool _hasDmaKmalloc;

    /// <summary>kmalloc_caches[type][index].</summary>
    public KmemCache? KmallocCache(KmallocType type, int index) => _kmallocCaches[(int)type][index];

    /// <summary>kmalloc_size: the size of kmalloc index <paramref name="index"/> (1 = 96, 2 = 192, else 2^index).</summary>
    public static uint KmallocSize(int index) => index switch { 1 => 96, 2 => 192, _ => 1u << index };

    /// <summary>kmalloc_info[index].name[type]: kmalloc-N, kmalloc-cg-N, kmalloc-rcl-N, dma-kmalloc-N (sizes
    /// from 1024 with a k suffix).</summary>
    private protected static string KmallocName(int index, KmallocType type)
    {
        uint size = KmallocSize(index);
        string sz = size >= 1024 ? $"{size >> 10}k" : size.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return type switch
        {
            KmallocType.Reclaim => "kmalloc-rcl-" + sz,
            KmallocType.Cgroup => "kmalloc-cg-" + sz,
            KmallocType.Dma => "dma-kmalloc-" + sz,
            _ => "kmalloc-" + sz,
        };
    }

    /// <summary>new_kmalloc_cache's flags by type.</summary>
    private protected static SlabFlags KmallocFlags(KmallocType type) => type switch
    {
        KmallocType.Reclaim => SlabFlags.ReclaimAccount,
        KmallocType.Cgroup => SlabFlags.Account,
        KmallocType.Dma => SlabFlags.CacheDma,
        _ => SlabFlags.None,
    };

    /// <summary>kmalloc_type: DMA beats RECLAIMABLE beats ACCOUNT.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public KmallocType TypeOf(Gfp gfp)
    {
        if ((gfp & (Gfp.Dma | Gfp.Reclaimable | Gfp.Account)) == 0)
        {
            return KmallocType.Normal;
        }
        if ((gfp & Gfp.Dma) != 0 && _hasDmaKmalloc)
        {
            return KmallocType.Dma;
        }
        return (gfp & Gfp.Reclaimable) != 0 ? KmallocType.Reclaim : KmallocType.Cgroup;
    }

    private readonly byte[] _sizeIndex = sizeIndex.Length == 24 ? sizeIndex
        : throw new ArgumentException("size_index has an entry per 8 bytes up to 192", nameof(sizeIndex));

    /// <summary>kmalloc_index via kmalloc_slab: the size index for 1 ≤ size ≤ 8 KiB.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private protected int KmallocIndex(nuint size) =>
        size <= 192 ? _sizeIndex[(int)((size - 1) / 8)] : System.Numerics.BitOperations.Log2((uint)size - 1) + 1;

    /// <summary>kmalloc_slab: the cache for a size of 1 .. KMALLOC_MAX_CACHE_SIZE.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal KmemCache KmallocSlab(nuint size, Gfp gfp) => _kmallocCaches[(int)TypeOf(gfp)][KmallocIndex(size)]!;

    /// <summary>kmalloc_caches[KMALLOC_NORMAL][kmalloc_index(size)] by (size - 1) / 8 for every size up to
    /// KMALLOC_MAX_CACHE_SIZE: the fast paths' size lookup in one load. No 8-byte step straddles a power of two,
    /// so each step has one cache. Filled with the caches at boot, read-only afterwards.</summary>
    private readonly KmemCache?[] _kmallocNormalBySize = new KmemCache?[KmallocMaxCacheSize / 8];

    /// <summary><see cref="KmallocSlab"/> for the fast paths: one load for the normal type.</summary>
    /// <param name="size">1 .. KMALLOC_MAX_CACHE_SIZE (the caller has checked it).</param>
    /// <param name="gfp">The allocation's flags.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal KmemCache KmallocSlabFast(nuint size, Gfp gfp)
    {
        if ((gfp & (Gfp.Dma | Gfp.Reclaimable | Gfp.Account)) != 0)
        {
            return KmallocSlab(size, gfp);
        }
        // (size - 1) / 8 < KmallocMaxCacheSize / 8 by the precondition: no bounds check needed.
        return Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_kmallocNormalBySize), (nint)((size - 1) >> 3))!;
    }

    /// <summary>The backend's kmem_cache_create for a kmalloc cache (create_boot_cache): never merged, and
    /// allowed SLAB_KMALLOC.</summary>
    private protected abstract KmemCache? CreateKmallocCache(string name, uint size, uint align, SlabFlags flags);

    /// <summary>create_kmalloc_caches (and SLAB's kmem_cache_init before it): <paramref name="firstIndex"/> of
    /// the normal type first when it is not 0, then type by type the sizes 2^<paramref name="shiftLow"/> … 8k
    /// with 96 after 64 and 192 after 128; a cache that exists already is not made again.</summary>
    /// <param name="shiftLow">KMALLOC_SHIFT_LOW: 3 for SLUB, 5 for SLAB.</param>
    /// <param name="firstIndex">The index made before the others (SLAB's INDEX_NODE), or 0 for none.</param>
    /// <param name="archFlags">Flags every kmalloc cache gets beside its type's (SLAB_KMALLOC for SLUB,
    /// ARCH_KMALLOC_FLAGS for SLAB).</param>
    private protected void CreateKmallocCaches(int shiftLow, int firstIndex, SlabFlags archFlags)
    {
        _hasDmaKmalloc = _pa.Arch.HasZone(ZoneType.Dma);
        for (int type = 0; type < 4; type++)
        {
            _kmallocCaches[type] = new KmemCache?[KmallocShiftHigh + 1];
        }
        if (firstIndex != 0)
        {
            NewKmallocCache(firstIndex, KmallocType.Normal, archFlags);
        }
        for (int type = 0; type < 4; type++)
        {
            if (type == (int)KmallocType.Dma && !_hasDmaKmalloc)
            {
                continue;
            }
            for (int i = shiftLow; i <= KmallocShiftHigh; i++)
            {
                NewKmallocCache(i, (KmallocType)type, archFlags);
                if (i == 6)
                {
                    NewKmallocCache(1, (KmallocType)type, archFlags);
                }
                if (i == 7)
                {
                    NewKmallocCache(2, (KmallocType)type, archFlags);
                }
            }
        }
        for (int i = 0; i < _kmallocNormalBySize.Length; i++)
        {
            _kmallocNormalBySize[i] = _kmallocCaches[(int)KmallocType.Normal][KmallocIndex((nuint)(i + 1) * 8)];
        }
    }

    /// <summary>new_kmalloc_cache: kmalloc_caches[type][index], unless it exists.</summary>
    private void NewKmallocCache(int index, KmallocType type, SlabFlags archFlags)
    {
        if (_kmallocCaches[(int)type][index] is not null)
        {
            return;
        }
        // create_boot_cache: ARCH_KMALLOC_MINALIGN (8), or a power-of-two size's own alignment.
        uint size = KmallocSize(index);
        uint align = (size & (size - 1)) == 0 ? Math.Max(8u, size) : 8u;
        _kmallocCaches[(int)type][index] = CreateKmallocCache(KmallocName(index, type), size, align,
            KmallocFlags(type) | archFlags | SlabFlags.Panic);
    }

    /// <summary>kmalloc_large_node: a compound page block counted in NR_SLAB_UNRECLAIMABLE_B. A size above
    /// KMALLOC_MAX_SIZE asks for an order of MAX_ORDER or more, which the page allocator refuses with its
    /// warning.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private protected nint KmallocLarge(nuint size, Gfp gfp, int node)
    {
        int order = PhysMem.GetOrder(size);
        if ((gfp & GfpSlabBugMask) != 0)
        {
            gfp = KmallocFixFlags(gfp);
        }
        var page = _pa.AllocPages(gfp | Gfp.Comp, order, node);
        if (page.IsNull)
        {
            return 0;
        }
        _mem.Frame(page.RawPfn).Flags |= PageFlags.LargeKmalloc;
        Interlocked.Add(ref _pa.ZoneOf(page.RawPfn).Node.NrSlabUnreclaimable, 1L << order);
        return _mem.PageAddress(page.RawPfn);
    }

    /// <summary>free_large_kmalloc: the block of a large kmalloc (head frame <paramref name="head"/>) goes back.</summary>
    private protected void FreeLargeKmalloc(uint head)
    {
        ref PageFrame f = ref _mem.Frame(head);
        int order = f.Order;
        f.Flags &= ~PageFlags.LargeKmalloc;
        Interlocked.Add(ref _pa.ZoneOf(head).Node.NrSlabUnreclaimable, -(1L << order));
        _pa.FreePages(new Page(head), order);
    }
}
