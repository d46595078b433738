// struct kmem_cache (include/linux/slub_def.h) and the geometry that
// mm/slub.c's kmem_cache_open computes: object layout with the free pointer
// (calculate_sizes), slab order (calculate_order), min_partial and cpu_partial.
// Invariants: Size >= ObjectSize, Size % Align == 0, Offset + 8 <= Size, and a
// slab of 2^Order pages holds ObjectsPerSlab = (PAGE_SIZE << Order) / Size objects.
// Objects are found by index with a precomputed reciprocal of Size (obj_to_index).
// Immutable after creation except the per-CPU and per-node state, each under its own lock.
using System.Numerics;
using System.Runtime.CompilerServices;
using Kmem.Physical;
using Kmem.Slab;

namespace Kmem;

/// <summary>A slab cache (struct kmem_cache): objects of one size, handed out from slabs of pages.</summary>
/// <remarks>Create one with <see cref="Machine.KmemCacheCreate"/>. The object layout and slab geometry
/// are those of the machine's slab allocator in Linux 6.1 (SLUB's without debugging by default).</remarks>
public sealed class KmemCache
{
    /// <summary>slub_max_order: PAGE_ALLOC_COSTLY_ORDER.</summary>
    internal const int SlubMaxOrder = 3;
    /// <summary>MAX_OBJS_PER_PAGE.</summary>
    internal const int MaxObjsPerPage = 32767;
    /// <summary>cache_line_size() on x86.</summary>
    internal const uint CacheLineSize = 64;

    internal KmemCache(int id, string name, uint objectSize, uint align, SlabFlags flags, Action<nint>? ctor,
        int nrCpus, int nrNodes, int maxOrder, bool isKmalloc)
    {
        Id = id;
        Name = name;
        ObjectSize = objectSize;
        Flags = flags;
        Ctor = ctor;
        IsKmalloc = isKmalloc;
        Align = CalculateAlignment(flags, align, objectSize);
        // calculate_sizes: round to a word; the free pointer goes after the object when a constructor
        // must keep the object's contents intact, otherwise in the middle of the object (aligned down to a
        // word), where a small overflow of the previous object is less likely to reach it.
        uint size = AlignUp(objectSize, 8);
        if (ctor is not null)
        {
            Offset = size;
            size += 8;
        }
        else
        {
            Offset = objectSize / 2 / 8 * 8;
        }
        Size = AlignUp(size, Align);
        Reciprocal = ulong.MaxValue / Size + 1;
        Order = CalculateOrder(Size, nrCpus, maxOrder);
        if (Order >= 0)
        {
            ObjectsPerSlab = OrderObjects(Order, Size);
            MinOrder = Machine.GetOrder(Size);
            MinObjects = OrderObjects(MinOrder, Size);
        }
        MinPartial = Math.Clamp(BitOperations.Log2(Size) / 2, 5, 10);
        CpuPartial = Size >= PhysMem.PageSize ? 6u : Size >= 1024 ? 24u : Size >= 256 ? 52u : 120u;
        CpuPartialSlabs = ObjectsPerSlab == 0 ? 0 : (uint)((CpuPartial * 2 + ObjectsPerSlab - 1) / ObjectsPerSlab);
        AllocFlags = SlabAllocFlags(flags, Order);
        CpuSlab = new KmemCacheCpu[nrCpus];
        for (int i = 0; i < nrCpus; i++)
        {
            CpuSlab[i] = new KmemCacheCpu();
        }
        Nodes = new KmemCacheNode[nrNodes];
        for (int i = 0; i < nrNodes; i++)
        {
            Nodes[i] = new KmemCacheNode();
        }
    }

    /// <summary>A cache of the SLAB or SLOB backend, whose geometry that backend computed; its per-CPU and
    /// per-node state is the backend's <paramref name="backendState"/>.</summary>
    internal KmemCache(int id, string name, uint objectSize, uint size, uint align, int order, int objectsPerSlab,
        SlabFlags flags, Action<nint>? ctor, bool isKmalloc, object backendState)
    {
        Id = id;
        Name = name;
        ObjectSize = objectSize;
        Size = size;
        Align = align;
        Order = MinOrder = order;
        ObjectsPerSlab = MinObjects = objectsPerSlab;
        Flags = flags;
        Ctor = ctor;
        IsKmalloc = isKmalloc;
        Reciprocal = ulong.MaxValue / Math.Max(size, 1) + 1;
        AllocFlags = SlabAllocFlags(flags, order);
        CpuSlab = [];
        Nodes = [];
        BackendState = backendState;
    }

    /// <summary>The cache's name, as /proc/slabinfo shows it.</summary>
    public string Name { get; }

    /// <summary>object_size: the size the cache was created with.</summary>
    public uint ObjectSize { get; }

    /// <summary>size: the stride between objects in a slab, including alignment and an out-of-object free
    /// pointer (the objsize column of /proc/slabinfo).</summary>
    public uint Size { get; }

    /// <summary>align: the alignment of every object.</summary>
    public uint Align { get; }

    /// <summary>offset: where the free pointer sits in a free object.</summary>
    public uint Offset { get; }

    /// <summary>The slab order (oo): each slab is 2^Order pages.</summary>
    public int Order { get; }

    /// <summary>Objects in a slab of <see cref="Order"/> (oo_objects).</summary>
    public int ObjectsPerSlab { get; }

    /// <summary>s->min: the smallest order that holds one object, tried when <see cref="Order"/> fails.</summary>
    public int MinOrder { get; }

    /// <summary>Objects in a slab of <see cref="MinOrder"/>.</summary>
    public int MinObjects { get; }

    /// <summary>min_partial: empty slabs kept on a node's partial list before they go back to the page
    /// allocator.</summary>
    public int MinPartial { get; }

    /// <summary>cpu_partial: free objects a CPU may keep in its partial slabs (set_cpu_partial).</summary>
    public uint CpuPartial { get; }

    /// <summary>cpu_partial_slabs: the same limit in slabs, DIV_ROUND_UP(cpu_partial * 2, objects per slab).</summary>
    public uint CpuPartialSlabs { get; }

    /// <summary>The flags the cache was created with.</summary>
    public SlabFlags Flags { get; }

    /// <summary>Whether the cache has been destroyed.</summary>
    public bool IsDestroyed { get; internal set; }

    internal int Id { get; }
    /// <summary>reciprocal_size: ceil(2^64 / Size), so that an offset n below 2^32 gives n / Size as the high
    /// half of n * Reciprocal (exact because n * Size &lt; 2^64).</summary>
    internal readonly ulong Reciprocal;
    internal Action<nint>? Ctor { get; }
    internal bool IsKmalloc { get; }
    /// <summary>allocflags: GFP bits every slab page of the cache is allocated with.</summary>
    internal Gfp AllocFlags { get; }
    /// <summary>kmem_cache_cpu, one per CPU (SLUB; empty for the other backends).</summary>
    internal KmemCacheCpu[] CpuSlab { get; }
    /// <summary>kmem_cache_node, one per node (SLUB; empty for the other backends).</summary>
    internal KmemCacheNode[] Nodes { get; }
    /// <summary>SLUB: the free objects a thread keeps in its magazine of this cache (0: none, every operation
    /// goes to the per-CPU slab).</summary>
    internal int MagazineLimit { get; set; }
    /// <summary>The SLAB or SLOB backend's own state of the cache; null for SLUB.</summary>
    internal object? BackendState { get; }

    /// <inheritdoc/>
    public override string ToString() => Name;

    /// <summary>The GFP bits of a cache's slab pages: its zone, __GFP_RECLAIMABLE for SLAB_RECLAIM_ACCOUNT,
    /// __GFP_COMP above order 0.</summary>
    internal static Gfp SlabAllocFlags(SlabFlags flags, int order)
    {
        Gfp gfp = (flags & SlabFlags.CacheDma) != 0 ? Gfp.Dma : (flags & SlabFlags.CacheDma32) != 0 ? Gfp.Dma32 : 0;
        if ((flags & SlabFlags.ReclaimAccount) != 0)
        {
            gfp |= Gfp.Reclaimable;
        }
        return order > 0 ? gfp | Gfp.Comp : gfp;
    }

    /// <summary>calculate_alignment.</summary>
    internal static uint CalculateAlignment(SlabFlags flags, uint align, uint size)
    {
        if ((flags & SlabFlags.HwcacheAlign) != 0)
        {
            uint ralign = CacheLineSize;
            while (size <= ralign / 2)
            {
                ralign /= 2;
            }
            align = Math.Max(align, ralign);
        }
        // ARCH_SLAB_MINALIGN is 8 on x86, and the result is a multiple of the word size.
        return AlignUp(Math.Max(align, 8u), 8);
    }

    /// <summary>order_objects.</summary>
    internal static int OrderObjects(int order, uint size) => (int)(((ulong)PhysMem.PageSize << order) / size);

    /// <summary>calc_slab_order: the lowest order from the one that holds min_objects whose leftover is at
    /// most 1/fraction of the slab.</summary>
    internal static int CalcSlabOrder(uint size, uint minObjects, int maxOrder, uint fraction)
    {
        const int minOrder = 0; // slub_min_order
        if (OrderObjects(minOrder, size) > MaxObjsPerPage)
        {
            return Machine.GetOrder((nuint)size * MaxObjsPerPage) - 1;
        }
        int order = Math.Max(minOrder, Machine.GetOrder((nuint)minObjects * size));
        for (; order <= maxOrder; order++)
        {
            ulong slabSize = (ulong)PhysMem.PageSize << order;
            if (slabSize % size <= slabSize / fraction)
            {
                break;
            }
        }
        return order;
    }

    /// <summary>calculate_order (6.1): the most objects per slab the CPU count asks for, at the smallest
    /// waste, within slub_max_order; -1 when no order below MAX_ORDER fits an object.</summary>
    internal static int CalculateOrder(uint size, int nrCpus, int maxOrder)
    {
        uint minObjects = 4 * (uint)(BitOperations.Log2((uint)nrCpus) + 2); // 4 * (fls(nr_cpus) + 1)
        uint maxObjects = (uint)OrderObjects(SlubMaxOrder, size);
        minObjects = Math.Min(minObjects, maxObjects);
        while (minObjects > 1)
        {
            for (uint fraction = 16; fraction >= 4; fraction /= 2)
            {
                int order = CalcSlabOrder(size, minObjects, SlubMaxOrder, fraction);
                if (order <= SlubMaxOrder)
                {
                    return order;
                }
            }
            minObjects--;
        }
        int o = CalcSlabOrder(size, 1, SlubMaxOrder, 1);
        if (o <= SlubMaxOrder)
        {
            return o;
        }
        o = CalcSlabOrder(size, 1, maxOrder, 1);
        return o < maxOrder ? o : -1;
    }

    /// <summary>obj_to_index: <paramref name="offset"/> (below 2^32) divided by <see cref="Size"/>, by multiplication.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal uint IndexOf(nuint offset) => (uint)Math.BigMul((ulong)offset, Reciprocal, out _);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint AlignUp(uint x, uint a) => (x + a - 1) / a * a;
}
