// The SLAB allocator's per-cache state (ArraySlab*: mm/slab.c, named after its array caches because "Slab" is
// already the layer's name) (struct kmem_cache of include/linux/slab_def.h, struct
// array_cache and struct kmem_cache_node of mm/slab.c, 6.1) and the geometry __kmem_cache_create
// computes: the object stride, the slab order and objects per slab (calculate_slab_order over
// cache_estimate), where the freelist index array lives (inside a free object, off the slab in a
// kmalloc'd block, or at the slab's end) and the colours; then enable_cpucache's tunables.
// Invariants: Size % Align == 0, Size >= 16 (SLAB_OBJ_MIN_SIZE), 1 <= Num <= 255 (one-byte
// freelist_idx_t with 4 KiB pages), ColourOff % Align == 0, Num * Size + Colour * ColourOff <= slab bytes.
// Locking: an ArrayCache is guarded by its own spin lock (two threads can hold one CPU id), or, while it is
// biased to a thread, by that thread's fast-path marker (below); a node's lists, counters and shared array by
// the node's ListLock. Order: cpu lock → list_lock.
// Bias: an atomic exchange costs more than the rest of a SLAB fast path, and the kernel's array needs none (it
// disables interrupts on its own CPU). A thread whose fast paths took an array's lock many times in a row owns
// the array: its fast paths then use it with no lock word, between the marker's InCall store and clear. Anyone
// else who locks it revokes the bias first: clears the owner, runs a process-wide barrier and waits for the
// owner's InCall to clear (the asymmetric Dekker protocol of SlabThreadMarker), so the owner's next fast path
// sees no bias and takes the lock. A fast path never waits (it tries the lock word once and leaves for the
// guarded path), so revokers, who wait for markers, cannot wait for each other. Each revocation doubles the
// streak the next grant needs, so two threads sharing a CPU settle on the lock.
using System.Runtime.CompilerServices;
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>Where a cache keeps the freelist index array of each slab (CFLGS_OBJFREELIST_SLAB, CFLGS_OFF_SLAB,
/// or neither).</summary>
internal enum SlabFreelistMode
{
    /// <summary>At the end of the slab (num bytes after the objects).</summary>
    OnSlab,
    /// <summary>OBJFREELIST_SLAB: inside one of the slab's free objects (the last to be handed out).</summary>
    ObjFreelist,
    /// <summary>OFF_SLAB: a kmalloc'd block of num bytes.</summary>
    OffSlab,
}

/// <summary>The geometry of a SLAB cache, as __kmem_cache_create computes it.</summary>
/// <param name="Size">The object stride (the objsize column of slabinfo).</param>
/// <param name="Align">The object alignment.</param>
/// <param name="Order">gfporder: each slab is 2^Order pages.</param>
/// <param name="Num">Objects per slab.</param>
/// <param name="Mode">Where the freelist index array lives.</param>
/// <param name="Colour">How many colours (cache-line offsets) the leftover space allows.</param>
/// <param name="ColourOff">The colour step: cache_line_size(), or the alignment when larger.</param>
internal readonly record struct SlabGeometry(uint Size, uint Align, int Order, int Num, SlabFreelistMode Mode, int Colour, uint ColourOff)
{
    /// <summary>SLAB_OBJ_MIN_SIZE: min(KMALLOC_MIN_SIZE, 16) = 16 with KMALLOC_MIN_SIZE 32.</summary>
    public const uint ObjMinSize = 16;
    /// <summary>SLAB_OBJ_MAX_NUM: a one-byte freelist_idx_t (FREELIST_BYTE_INDEX, since PAGE_SIZE &gt;&gt; 8 &lt;= 16).</summary>
    public const int ObjMaxNum = 255;
    /// <summary>KMALLOC_MAX_ORDER: the highest slab order tried (MAX_ORDER - 1).</summary>
    public const int MaxOrder = Arch.MaxOrder - 1;

    /// <summary>cache_estimate: objects and leftover bytes in a slab of <paramref name="order"/>; an on-slab
    /// freelist costs one byte per object.</summary>
    public static int CacheEstimate(int order, uint size, SlabFreelistMode mode, out long leftOver)
    {
        long slab = (long)PhysMem.PageSize << order;
        long per = mode == SlabFreelistMode.OnSlab ? size + 1 : size;
        leftOver = slab % per;
        return (int)(slab / per);
    }

    /// <summary>__kmem_cache_create's geometry for an object of <paramref name="objectSize"/> bytes; null when
    /// no slab order up to KMALLOC_MAX_ORDER holds one (-E2BIG).</summary>
    /// <param name="objectSize">The object size.</param>
    /// <param name="align">The alignment calculate_alignment gave.</param>
    /// <param name="flags">The cache's flags.</param>
    /// <param name="hasCtor">Whether free objects must keep their content: a constructor or SLAB_TYPESAFE_BY_RCU (no
    /// freelist inside objects then).</param>
    /// <param name="slabMaxOrder">slab_max_order: 1 above 32 MiB of RAM, else 0.</param>
    /// <param name="kmallocFor">kmalloc_slab for an off-slab freelist of that many bytes: the cache's size and
    /// whether that cache is itself off-slab, or null while it does not exist yet.</param>
    public static SlabGeometry? Calculate(uint objectSize, uint align, SlabFlags flags, bool hasCtor, int slabMaxOrder,
        Func<uint, (uint Size, bool OffSlab)?> kmallocFor)
    {
        // BYTES_PER_WORD rounding, then the alignment; tiny objects grow so that 255 indices always suffice.
        uint ralign = Math.Max(8u, align);
        uint colourOff = Math.Max(KmemCache.CacheLineSize, ralign);
        uint size = AlignUp(AlignUp(objectSize, 8), ralign);
        if (size < ObjMinSize)
        {
            size = AlignUp(ObjMinSize, ralign);
        }
        // set_objfreelist_slab_cache, then set_off_slab_cache, then set_on_slab_cache.
        if (!hasCtor)
        {
            var g = CalculateSlabOrder(size, flags, SlabFreelistMode.ObjFreelist, slabMaxOrder, kmallocFor, out long left);
            if (g is { } o && o.Num <= objectSize)
            {
                return new SlabGeometry(size, ralign, o.Order, o.Num, SlabFreelistMode.ObjFreelist, (int)(left / colourOff), colourOff);
            }
        }
        {
            var g = CalculateSlabOrder(size, flags, SlabFreelistMode.OffSlab, slabMaxOrder, kmallocFor, out long left);
            // When the leftover could hold the index array, it goes on the slab instead (less colouring).
            if (g is { } o && left < o.Num)
            {
                return new SlabGeometry(size, ralign, o.Order, o.Num, SlabFreelistMode.OffSlab, (int)(left / colourOff), colourOff);
            }
        }
        {
            var g = CalculateSlabOrder(size, flags, SlabFreelistMode.OnSlab, slabMaxOrder, kmallocFor, out long left);
            if (g is { } o)
            {
                return new SlabGeometry(size, ralign, o.Order, o.Num, SlabFreelistMode.OnSlab, (int)(left / colourOff), colourOff);
            }
        }
        return null;
    }

    /// <summary>calculate_slab_order: the first order with objects whose leftover is at most 1/8 of the slab,
    /// stopping at slab_max_order (or at the first fit for SLAB_RECLAIM_ACCOUNT); null when nothing fits.</summary>
    private static (int Order, int Num)? CalculateSlabOrder(uint size, SlabFlags flags, SlabFreelistMode mode, int slabMaxOrder,
        Func<uint, (uint Size, bool OffSlab)?> kmallocFor, out long leftOver)
    {
        (int Order, int Num)? found = null;
        leftOver = 0;
        for (int order = 0; order <= MaxOrder; order++)
        {
            int num = CacheEstimate(order, size, mode, out long remainder);
            if (num == 0)
            {
                continue;
            }
            if (num > ObjMaxNum)
            {
                break;
            }
            if (mode == SlabFreelistMode.OffSlab)
            {
                // The index array comes from kmalloc: it must not be off-slab itself (no recursion in
                // cache_grow_begin) and must cost less than half an object.
                uint freelistSize = (uint)num;
                long freelistCacheSize;
                if (freelistSize > SlabBackend.KmallocMaxCacheSize)
                {
                    freelistCacheSize = (long)PhysMem.PageSize << PhysMem.GetOrder(freelistSize);
                }
                else
                {
                    if (kmallocFor(freelistSize) is not { } fc || fc.OffSlab)
                    {
                        continue;
                    }
                    freelistCacheSize = fc.Size;
                }
                if (freelistCacheSize > size / 2)
                {
                    continue;
                }
            }
            found = (order, num);
            leftOver = remainder;
            if ((flags & SlabFlags.ReclaimAccount) != 0 || order >= slabMaxOrder || remainder * 8 <= (long)PhysMem.PageSize << order)
            {
                break;
            }
        }
        return found;
    }

    /// <summary>enable_cpucache's limit: 1 above 128 KiB, 8 above a page, 24 above 1 KiB, 54 above 256 B, else 120.</summary>
    public static int DefaultLimit(uint size) => size > 131072 ? 1 : size > PhysMem.PageSize ? 8 : size > 1024 ? 24 : size > 256 ? 54 : 120;

    /// <summary>enable_cpucache's shared factor: 8 for objects up to a page on a machine with more than one CPU.</summary>
    public static int DefaultShared(uint size, int nrCpus) => size <= PhysMem.PageSize && nrCpus > 1 ? 8 : 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint AlignUp(uint x, uint a) => (x + a - 1) / a * a;
}

/// <summary>struct array_cache: a LIFO stack of free object pointers (a CPU's, or a node's shared one).</summary>
/// <remarks>A CPU's array is guarded by its spin lock (<see cref="Lock"/>) or its bias to one thread (the file's
/// header), standing in for the kernel's disabled interrupts; a shared array by its node's list_lock.</remarks>
internal sealed class ArrayCache
{
    /// <summary>The streak of fast-path locks by one thread that first makes it the array's owner.</summary>
    internal const int BiasStreak = 64;

    /// <summary>The longest streak a grant needs after revocations.</summary>
    private const int BiasStreakMax = 1 << 16;

    private int _lock;
    /// <summary>The thread whose fast paths use the array without its lock word; null when none. Set under the lock
    /// word by that thread's fast path, cleared by a revoker holding the lock word.</summary>
    private SlabThreadMarker? _owner;
    /// <summary>The thread of the current streak of fast-path locks, and its length (under the lock word).</summary>
    private SlabThreadMarker? _streakOf;
    private int _streak;
    private int _streakNeeded = BiasStreak;
    /// <summary>avail: objects in <see cref="Entry"/>[0 .. Avail).</summary>
    public int Avail;
    /// <summary>limit: the most objects the array holds.</summary>
    public readonly int Limit;
    /// <summary>batchcount: objects moved at once to or from the node lists.</summary>
    public readonly int BatchCount;
    /// <summary>touched: allocated from since the last reap (a touched array is not drained).</summary>
    public bool Touched;
    /// <summary>Replaced by a retune (slabinfo_write) and emptied: whoever locks it must take the CPU's new array.</summary>
    public bool Retired;
    /// <summary>entry[]: the objects, the most recently freed last.</summary>
    public readonly nint[] Entry;
#pragma warning disable CS0169, IDE0051 // padding against false sharing with the next CPU's array
    private readonly long _pad0, _pad1, _pad2, _pad3, _pad4, _pad5;
#pragma warning restore CS0169, IDE0051

    public ArrayCache(int limit, int batchCount)
    {
        Limit = limit;
        BatchCount = batchCount;
        Entry = new nint[limit];
    }

    /// <summary>Takes the lock word, then, unless the caller is the array's owner, revokes the bias.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Lock()
    {
        SpinLockWord.Acquire(ref _lock);
        if (_owner is { } owner)
        {
            RevokeBias(owner);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Unlock() => SpinLockWord.Release(ref _lock);

    /// <summary>The thread whose fast paths use the array without its lock (for the tests).</summary>
    internal SlabThreadMarker? Owner => Volatile.Read(ref _owner);

    /// <summary>Whether the array is biased to <paramref name="m"/>, whose fast path (InCall set) may then use it with
    /// no lock word.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsBiasedTo(SlabThreadMarker m) => ReferenceEquals(Volatile.Read(ref _owner), m);

    /// <summary>A fast path's lock of an array not biased to it: one try of the lock word. False, holding nothing,
    /// when the guarded path must take the array: another thread owns it or holds its lock, or a retune retired it.</summary>
    public bool TryLockFast()
    {
        if (Interlocked.CompareExchange(ref _lock, 1, 0) != 0)
        {
            return false;
        }
        if (_owner is not null || Retired)
        {
            Unlock();
            return false;
        }
        return true;
    }

    /// <summary>The unlock of <see cref="TryLockFast"/>: the lock counts toward <paramref name="m"/>'s streak, which
    /// at its end makes <paramref name="m"/> the owner.</summary>
    public void UnlockFast(SlabThreadMarker m)
    {
        if (!ReferenceEquals(_streakOf, m))
        {
            _streakOf = m;
            _streak = 0;
        }
        if (++_streak >= _streakNeeded)
        {
            // Published by the unlock's release store; the owner's own fast paths read it after their InCall store.
            _owner = m;
            _streakOf = null;
        }
        Unlock();
    }

    /// <summary>Pops the newest object of an array that has one, which counts as touched (lock or bias held).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Pop()
    {
        Touched = true;
        return Entry[--Avail];
    }

    /// <summary>Takes the array from its owner (lock word held): nothing to do for the owner's own guarded path;
    /// else the owner is cleared, a process-wide barrier makes its fast paths see that or makes their InCall
    /// visible here, and a fast path in progress is waited for.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void RevokeBias(SlabThreadMarker owner)
    {
        if (ReferenceEquals(owner.Thread, Thread.CurrentThread))
        {
            return;
        }
        Volatile.Write(ref _owner, null);
        _streakOf = null;
        _streakNeeded = Math.Min(_streakNeeded * 2, BiasStreakMax);
        Interlocked.MemoryBarrierProcessWide();
        var spin = new SpinWait();
        while (Volatile.Read(ref owner.InCall) != 0 && owner.Thread.IsAlive)
        {
            spin.SpinOnce();
        }
    }

    /// <summary>Takes the newest object of a locked array that has one (the array counts as touched), then unlocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint PopAndUnlock()
    {
        nint obj = Pop();
        Unlock();
        return obj;
    }

    /// <summary>transfer_objects: up to <paramref name="max"/> objects from the top of <paramref name="from"/> onto this array
    /// (its lock or the node's list_lock held, as for both arrays).</summary>
    public int TransferFrom(ArrayCache from, int max)
    {
        int nr = Math.Min(Math.Min(from.Avail, max), Limit - Avail);
        if (nr <= 0)
        {
            return 0;
        }
        Array.Copy(from.Entry, from.Avail - nr, Entry, Avail, nr);
        from.Avail -= nr;
        Avail += nr;
        return nr;
    }
}

/// <summary>struct kmem_cache_node of SLAB: one node's slab lists, counts and shared array.</summary>
internal sealed class ArraySlabNode
{
    /// <summary>n->list_lock: the lists, the counters, the shared array and every slab's freelist and active count.</summary>
    public readonly Lock ListLock = new();
    /// <summary>slabs_full, slabs_partial, slabs_free (linked through struct page).</summary>
    public PfnList Full = PfnList.Empty, Partial = PfnList.Empty, Free = PfnList.Empty;
    /// <summary>total_slabs and free_slabs.</summary>
    public long TotalSlabs, FreeSlabs;
    /// <summary>free_objects: objects free in this node's slabs (not those in array caches).</summary>
    public long FreeObjects;
    /// <summary>free_limit: (1 + CPUs of the node) × batchcount + num; free slabs above it go back at once.</summary>
    public long FreeLimit;
    /// <summary>shared: the node's shared array, or null (one CPU, or objects above a page).</summary>
    public ArrayCache? Shared;
    /// <summary>colour_next: the colour of the next slab (incremented before use, modulo the colours).</summary>
    public uint ColourNext;
    /// <summary>free_touched: a slab was taken from slabs_free since the last reap.</summary>
    public bool FreeTouched;
    /// <summary>next_reap, in reap ticks (see ArraySlab.CacheReap).</summary>
    public long NextReap;

    /// <summary>get_first_slab (list_lock held): the first partial slab, else the first free one (marking the
    /// node's free list touched); it stays linked until ArraySlab.FixupSlabList.</summary>
    public uint GetFirstSlab()
    {
        uint slab = Partial.Head;
        if (slab == PhysMem.NoPfn)
        {
            FreeTouched = true;
            slab = Free.Head;
            if (slab != PhysMem.NoPfn)
            {
                FreeSlabs--;
            }
        }
        return slab;
    }

    /// <summary>The list a linked slab with <paramref name="active"/> objects in use is on.</summary>
    public ref PfnList ListFor(int active, int num)
    {
        if (active == 0)
        {
            return ref Free;
        }
        if (active == num)
        {
            return ref Full;
        }
        return ref Partial;
    }
}

/// <summary>The SLAB half of a <see cref="KmemCache"/> (KmemCache.BackendState): geometry, tunables, the
/// per-CPU arrays and the per-node lists.</summary>
internal sealed class ArraySlabCache
{
    public ArraySlabCache(SlabGeometry g, int limit, int batchCount, int shared, int nrCpus, int[] cpuNode, int nrNodes)
    {
        Geometry = g;
        Limit = limit;
        BatchCount = batchCount;
        SharedFactor = shared;
        Cpu = new ArrayCache[nrCpus];
        for (int i = 0; i < nrCpus; i++)
        {
            Cpu[i] = new ArrayCache(limit, batchCount);
        }
        Nodes = new ArraySlabNode[nrNodes];
        for (int nid = 0; nid < nrNodes; nid++)
        {
            int cpusOfNode = cpuNode.Count(n => n == nid);
            Nodes[nid] = new ArraySlabNode
            {
                FreeLimit = (1L + cpusOfNode) * batchCount + g.Num,
                // A shared array of shared × batchcount entries (its own batchcount is never used).
                Shared = shared > 0 ? new ArrayCache(shared * batchCount, 0) : null,
                NextReap = ArraySlab.ReapNodeTicks,
            };
        }
    }

    /// <summary>The geometry.</summary>
    public readonly SlabGeometry Geometry;
    /// <summary>limit, batchcount and shared of the cache (the slabinfo tunables; changed under slab_mutex).</summary>
    public int Limit, BatchCount, SharedFactor;
    /// <summary>cpu_cache: one array per CPU; a retune publishes a new set (read it with Volatile.Read).</summary>
    public ArrayCache[] Cpu;
    /// <summary>node[]: one per node.</summary>
    public readonly ArraySlabNode[] Nodes;
    /// <summary>Off-slab freelists by head pfn (slab->freelist for OFF_SLAB caches).</summary>
    public readonly System.Collections.Concurrent.ConcurrentDictionary<uint, nint> OffSlabFreelists = new();
}
