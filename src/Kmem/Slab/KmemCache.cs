// struct kmem_cache (include/linux/slub_def.h) and the geometry that
// mm/slub.c's kmem_cache_open computes: object layout with the free pointer
// (calculate_sizes), slab order (calculate_order), min_partial and cpu_partial.
// Invariants: Size >= ObjectSize, Size % Align == 0, Offset + 8 <= Size, and a
// slab of 2^Order pages holds ObjectsPerSlab = (PAGE_SIZE << Order) / Size objects.
// Objects are found by index with a precomputed reciprocal of Size (obj_to_index).
// Immutable after creation except the per-CPU and per-node state, each under its own lock, and
// min_partial / cpu_partial, which sysfs writes may change at any time (plain stores, read racily
// by the slab paths as the kernel reads them).
using System.Diagnostics.CodeAnalysis;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using Kmem.Physical;
using Kmem.Slab;

namespace Kmem;

/// <summary>A slab cache (struct kmem_cache): objects of one size, handed out from slabs of pages.</summary>
/// <remarks>Create one with <c>Machine.KmemCacheCreate</c>. The object layout and slab geometry
/// are those of the machine's slab allocator in Linux 6.1 (SLUB's without debugging by default).</remarks>
public sealed class KmemCache
{
    /// <summary>slub_max_order: PAGE_ALLOC_COSTLY_ORDER.</summary>
    internal const int SlubMaxOrder = 3;
    /// <summary>MAX_OBJS_PER_PAGE.</summary>
    internal const int MaxObjsPerPage = 32767;
    /// <summary>cache_line_size() on x86.</summary>
    internal const uint CacheLineSize = 64;

    /// <summary>sizeof(struct track) on 64-bit with CONFIG_STACKDEPOT (which SLUB_DEBUG selects): addr, a stack
    /// depot handle, cpu, pid and when.</summary>
    internal const uint TrackSize = 32;

    internal KmemCache(int id, string name, uint objectSize, uint align, SlabFlags flags, Action<nint>? ctor,
        int nrCpus, int nrNodes, int maxOrder, bool isKmalloc, bool disableHigherOrderDebug = false)
    {
        Id = id;
        Name = name;
        ObjectSize = objectSize;
        Ctor = ctor;
        IsKmalloc = isKmalloc;
        Align = CalculateAlignment(flags, align, objectSize);
        Flags = flags;
        CalculateSizes(nrCpus, maxOrder);
        if (disableHigherOrderDebug && (Flags & SlubDebugOption.MetadataFlags) != 0
            && PhysMem.GetOrder(Size) > PhysMem.GetOrder(ObjectSize))
        {
            // slub_debug=O: debugging metadata must not raise the cache's minimum order.
            Flags &= ~SlubDebugOption.MetadataFlags;
            CalculateSizes(nrCpus, maxOrder);
        }
        IsDebug = (Flags & SlubDebugOption.DebugFlags) != 0;
        MinPartial = Math.Clamp(BitOperations.Log2(Size) / 2, 5, 10);
        // set_cpu_partial: debug caches keep no cpu partial slabs.
        SetCpuPartial(IsDebug ? 0u : Size >= PhysMem.PageSize ? 6u : Size >= 1024 ? 24u : Size >= 256 ? 52u : 120u);
        AllocFlags = SlabAllocFlags(Flags, Order);
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

    /// <summary>slub_set_cpu_partial: the limit in objects, and in slabs assuming half-full ones.</summary>
    internal void SetCpuPartial(uint objects)
    {
        CpuPartial = objects;
        CpuPartialSlabs = ObjectsPerSlab == 0 ? 0 : (uint)((objects * 2L + ObjectsPerSlab - 1) / ObjectsPerSlab);
    }

    /// <summary>calculate_sizes (6.1): the object layout from the start of a slot: [left red zone (Z)]
    /// [object] [right red zone up to inuse (Z)] [free pointer, when it cannot live inside the object]
    /// [alloc track, free track (U)] [orig_size, kmalloc caches with U] [one word of padding (Z)] [padding to
    /// align]. Offsets below are from the object, which starts <see cref="RedLeftPad"/> bytes into its slot.</summary>
    private void CalculateSizes(int nrCpus, int maxOrder)
    {
        SlabFlags flags = Flags;
        uint size = AlignUp(ObjectSize, 8);
        // __OBJECT_POISON: only objects that nobody may touch while free are poisoned.
        ObjectPoison = (flags & SlabFlags.Poison) != 0 && (flags & SlabFlags.TypesafeByRcu) == 0 && Ctor is null;
        if ((flags & SlabFlags.RedZone) != 0 && size == ObjectSize)
        {
            // No slack after the object: one word of right red zone.
            size += 8;
        }
        Inuse = size;
        if ((flags & (SlabFlags.TypesafeByRcu | SlabFlags.Poison)) != 0
            || ((flags & SlabFlags.RedZone) != 0 && ObjectSize < 8) || Ctor is not null)
        {
            // The object's first words may not be overwritten while it is free: the free pointer goes after it.
            Offset = size;
            size += 8;
        }
        else
        {
            // In the middle of the object, away from small overflows of the neighbours.
            Offset = ObjectSize / 2 / 8 * 8;
        }
        if ((flags & SlabFlags.StoreUser) != 0)
        {
            size += 2 * TrackSize;
            if ((flags & SlabFlags.Kmalloc) != 0)
            {
                size += 4;
            }
        }
        RedLeftPad = 0;
        if ((flags & SlabFlags.RedZone) != 0)
        {
            // A word of empty padding, so that a write before the next object hits padding, not metadata.
            size += 8;
            RedLeftPad = AlignUp(8, Align);
            size += RedLeftPad;
        }
        Size = AlignUp(size, Align);
        Reciprocal = ulong.MaxValue / Size + 1;
        Order = CalculateOrder(Size, nrCpus, maxOrder);
        ObjectsPerSlab = 0;
        if (Order >= 0)
        {
            ObjectsPerSlab = OrderObjects(Order, Size);
            MinOrder = PhysMem.GetOrder(Size);
            MinObjects = OrderObjects(MinOrder, Size);
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
    public uint ObjectSize { get; internal set; }

    /// <summary>size: the stride between objects in a slab, including alignment and an out-of-object free
    /// pointer (the objsize column of /proc/slabinfo).</summary>
    public uint Size { get; private set; }

    /// <summary>align: the alignment of every object.</summary>
    public uint Align { get; }

    /// <summary>offset: where the free pointer sits in a free object.</summary>
    public uint Offset { get; private set; }

    /// <summary>inuse: the object and its right red zone, rounded to a word; metadata (the free pointer when it is
    /// outside the object, tracks) starts here (offsets from the object's start).</summary>
    public uint Inuse { get; internal set; }

    /// <summary>red_left_pad: the left red zone before each object (a word rounded up to <see cref="Align"/>; 0
    /// without <see cref="SlabFlags.RedZone"/>). Objects start this far into their slot.</summary>
    public uint RedLeftPad { get; private set; }

    /// <summary>The slab order (oo): each slab is 2^Order pages.</summary>
    public int Order { get; private set; }

    /// <summary>Objects in a slab of <see cref="Order"/> (oo_objects).</summary>
    public int ObjectsPerSlab { get; private set; }

    /// <summary>s->min: the smallest order that holds one object, tried when <see cref="Order"/> fails.</summary>
    public int MinOrder { get; private set; }

    /// <summary>Objects in a slab of <see cref="MinOrder"/>.</summary>
    public int MinObjects { get; private set; }

    /// <summary>min_partial: empty slabs kept on a node's partial list before they go back to the page
    /// allocator (writable through /sys/kernel/slab/&lt;cache&gt;/min_partial).</summary>
    public int MinPartial { get; internal set; }

    /// <summary>cpu_partial: free objects a CPU may keep in its partial slabs (set_cpu_partial).</summary>
    public uint CpuPartial { get; private set; }

    /// <summary>cpu_partial_slabs: the same limit in slabs, DIV_ROUND_UP(cpu_partial * 2, objects per slab).</summary>
    public uint CpuPartialSlabs { get; private set; }

    /// <summary>The cache's flags: those it was created with, plus the debug flags slub_debug gave it.</summary>
    public SlabFlags Flags { get; private set; }

    /// <summary>Whether the cache has debugging on (any of F, Z, P, U, T): it never uses the per-CPU fast paths.</summary>
    public bool IsDebug { get; }

    /// <summary>Whether the cache has been destroyed.</summary>
    public bool IsDestroyed { get; internal set; }

    /// <summary>The cache, for a call that may use it; a destroyed one is refused.</summary>
    /// <exception cref="ObjectDisposedException">The cache was destroyed.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal KmemCache ThrowIfDestroyed()
    {
        // The throw stays out of line: a method that throws is not inlined, and this check is on every
        // kmem_cache_alloc and kmem_cache_free.
        if (IsDestroyed)
        {
            ThrowDestroyed();
        }
        return this;
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowDestroyed() => throw new ObjectDisposedException(Name, $"kmem_cache {Name} was destroyed");

    internal int Id { get; }
    /// <summary>reciprocal_size: ceil(2^64 / Size), so that an offset n below 2^32 gives n / Size as the high
    /// half of n * Reciprocal (exact because n * Size &lt; 2^64).</summary>
    internal ulong Reciprocal;
    /// <summary>__OBJECT_POISON: free objects are filled with POISON_FREE.</summary>
    internal bool ObjectPoison;
    /// <summary>s->random (CONFIG_SLAB_FREELIST_HARDENED): XORed into every stored free pointer; 0 when off.</summary>
    internal nint FpRandom;
    /// <summary>All ones when free pointers are hardened, else 0: masks the byte-swapped slot address.</summary>
    internal nint FpSwabMask;
    /// <summary>s->random_seq (CONFIG_SLAB_FREELIST_RANDOM): a permutation of object offsets, or null.</summary>
    internal uint[]? RandomSeq;
    /// <summary>Allocation must run the post-alloc hook (init_on_alloc zeroing or init_on_free's free pointer
    /// wipe).</summary>
    internal bool AllocHook;
    /// <summary>slab_want_init_on_alloc without __GFP_ZERO.</summary>
    internal bool WantInitOnAlloc;
    /// <summary>slab_want_init_on_free.</summary>
    internal bool WantInitOnFree;
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
    /// <summary>SLUB: magazine capacity, in objects, that threads may still take for this cache: the machine-wide
    /// bound (<see cref="MagazineLimit"/> times the CPU count, as SLAB's array caches are bounded) less what
    /// live and not yet reaped threads hold. Changed atomically.</summary>
    internal int MagazineRoom;
    /// <summary>SLUB: when a starved thread last marked this cache's magazines to find the idle ones (a Stopwatch
    /// timestamp; 0 when no marks are outstanding). Written under the depot's magazine lock.</summary>
    internal long IdleProbeAt;
    /// <summary>The SLAB or SLOB backend's own state of the cache; null for SLUB.</summary>
    internal object? BackendState { get; }

    /// <summary>refcount: the users of the cache, the creator and one per alias (a merged kmem_cache_create);
    /// -1 for the kmalloc caches, which are never merged.</summary>
    public int RefCount
    {
        get
        {
            lock (_aliases)
            {
                return IsKmalloc ? -1 : 1 + _aliases.Count;
            }
        }
    }

    /// <summary>The names under which later kmem_cache_create calls were given this cache (merged caches),
    /// oldest first.</summary>
    public IReadOnlyList<string> Aliases
    {
        get
        {
            lock (_aliases)
            {
                return [.. _aliases];
            }
        }
    }

    private readonly List<string> _aliases = [];

    internal void AddAlias(string name)
    {
        lock (_aliases)
        {
            _aliases.Add(name);
        }
    }

    /// <summary>Drops the newest alias (a kmem_cache_destroy while others still use the cache).</summary>
    internal void DropAlias()
    {
        lock (_aliases)
        {
            _aliases.RemoveAt(_aliases.Count - 1);
        }
    }

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
            return PhysMem.GetOrder((nuint)size * MaxObjsPerPage) - 1;
        }
        int order = Math.Max(minOrder, PhysMem.GetOrder((nuint)minObjects * size));
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

    /// <summary>obj_to_index: <paramref name="offset"/> (below 2^32) divided by <see cref="Size"/>, by multiplication
    /// (BMI2's mulx where there is one: Math.BigMul's low half would be stored to the stack on the fast paths).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal uint IndexOf(nuint offset) =>
        Bmi2.X64.IsSupported ? (uint)Bmi2.X64.MultiplyNoFlags((ulong)offset, Reciprocal) : (uint)Math.BigMul((ulong)offset, Reciprocal, out _);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint AlignUp(uint x, uint a) => (x + a - 1) / a * a;
}
