// The per-CPU and per-node halves of a SLUB cache (struct kmem_cache_cpu,
// struct kmem_cache_node) and the slab state kept in struct page (SlabPage).
// Lock order: cpu lock → node list_lock → slab lock (PG_locked bit spin lock).
// A cpu lock guards that CPU's Freelist, Slab and Partial; list_lock guards
// Partial/NrPartial of its node and every frozen↔unfrozen change of a slab that
// is or was on it; the slab lock guards a slab's freelist, inuse and frozen bit.
// The cpu lock also orders the allocation-map bytes of objects that move between
// the cpu freelist and their users (see Slub.cs): the fast paths take no other
// atomic than this lock.
using System.Runtime.CompilerServices;
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>kmem_cache_cpu: one CPU's slab, its lockless-in-the-kernel freelist, and its partial slabs.</summary>
/// <remarks>Two threads can hold one CPU id, so a spin lock stands in for the kernel's local_lock and
/// cmpxchg_double on (freelist, tid).</remarks>
internal sealed class KmemCacheCpu
{
    private int _lock;
    /// <summary>c->freelist: the next free object of <see cref="Slab"/>, a chain through the objects.</summary>
    public nint Freelist;
    /// <summary>c->slab: the head pfn of the cpu slab, or NoPfn.</summary>
    public uint Slab = PhysMem.NoPfn;
    /// <summary>c->partial: frozen slabs with free objects, linked through struct page.</summary>
    public PfnList Partial = PfnList.Empty;
    /// <summary>Slabs on <see cref="Partial"/> (slab->slabs of the first one in the kernel).</summary>
    public int PartialSlabs;
#pragma warning disable CS0169, IDE0051 // padding against false sharing with the next CPU's state
    private readonly long _pad0, _pad1, _pad2, _pad3, _pad4, _pad5, _pad6;
#pragma warning restore CS0169, IDE0051

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Lock() => SpinLockWord.Acquire(ref _lock);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Unlock() => SpinLockWord.Release(ref _lock);

    /// <summary>Takes the cpu slab and its freelist off this CPU, to be deactivated once the lock is released
    /// (the caller holds it).</summary>
    public (uint Slab, nint Freelist) DetachSlab()
    {
        var taken = (Slab, Freelist);
        Slab = PhysMem.NoPfn;
        Freelist = 0;
        return taken;
    }
}

/// <summary>kmem_cache_node: one node's partial slabs and slab counts.</summary>
internal sealed class KmemCacheNode
{
    /// <summary>n->list_lock.</summary>
    public readonly Lock ListLock = new();
    /// <summary>n->partial: unfrozen slabs with both free and used objects (or empty, up to min_partial).</summary>
    public PfnList Partial = PfnList.Empty;
    /// <summary>n->nr_partial.</summary>
    public int NrPartial;
    /// <summary>n->nr_slabs (atomic).</summary>
    public long NrSlabs;
    /// <summary>n->total_objects (atomic).</summary>
    public long TotalObjects;
}

/// <summary>
/// The slab fields of struct page, on the slab's first frame: Private holds the freelist head (an object
/// index, 16 bits), the slab's object count (16 bits), the frozen bit (bit 32) and the cache id (bits
/// 40-63); Aux holds inuse; Next/Prev link the slab on a partial list; PG_slab marks the frame and PG_locked
/// is the slab lock. The free chain itself lives in the free objects, as real pointers.
/// </summary>
internal static class SlabPage
{
    public const uint NoObject = 0xFFFF;
    private const ulong FrozenBit = 1UL << 32;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Make(int cacheId, int objects, uint freeIdx, bool frozen) =>
        ((ulong)(uint)cacheId << 40) | (frozen ? FrozenBit : 0) | ((ulong)(uint)objects << 16) | freeIdx;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int CacheId(ulong p) => (int)(p >> 40);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Objects(ulong p) => (int)((p >> 16) & 0xFFFF);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint FreeIdx(ulong p) => (uint)(p & 0xFFFF);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Frozen(ulong p) => (p & FrozenBit) != 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong WithFreeIdx(ulong p, uint idx) => (p & ~0xFFFFUL) | idx;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong WithFrozen(ulong p, bool frozen) => frozen ? p | FrozenBit : p & ~FrozenBit;

    /// <summary>slab_lock: a bit spin lock on PG_locked, as the kernel's fallback for cmpxchg_double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Lock(ref PageFrame f)
    {
        if ((Interlocked.Or(ref Unsafe.As<PageFlags, uint>(ref f.Flags), (uint)PageFlags.Locked) & (uint)PageFlags.Locked) != 0)
        {
            LockContended(ref f);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LockContended(ref PageFrame f)
    {
        var spin = new SpinWait();
        while ((Interlocked.Or(ref Unsafe.As<PageFlags, uint>(ref f.Flags), (uint)PageFlags.Locked) & (uint)PageFlags.Locked) != 0)
        {
            spin.SpinOnce();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Unlock(ref PageFrame f) =>
        Interlocked.And(ref Unsafe.As<PageFlags, uint>(ref f.Flags), ~(uint)PageFlags.Locked);

    /// <summary>get_freelist's page half: takes a frozen slab's free list for the cpu (every object counted in
    /// use) and returns its first index; <see cref="NoObject"/> when it is empty, and the slab is then
    /// unfrozen (full, on no list).</summary>
    public static uint TakeFreelist(ref PageFrame f)
    {
        Lock(ref f);
        ulong p = f.Private;
        uint idx = FreeIdx(p);
        if (idx == NoObject)
        {
            f.Private = WithFrozen(p, false);
        }
        else
        {
            f.Private = WithFreeIdx(p, NoObject);
            f.Aux = (ushort)Objects(p);
        }
        Unlock(ref f);
        return idx;
    }
}
