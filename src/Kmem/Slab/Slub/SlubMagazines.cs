// Thread magazines in front of SLUB's per-CPU slabs (ARCHITECTURE.md, decision 5).
// The kernel's fast path is a per-CPU freelist changed with a cmpxchg that no
// other CPU races; a .NET thread cannot own a CPU id, so the per-CPU slab needs a
// lock and costs two atomics per pair. An unpinned thread therefore keeps, per
// cache, a magazine of free objects it alone touches (SLAB's array_cache idea):
// alloc pops, free pushes, and only an empty or a full magazine goes to the
// per-CPU slab, half a magazine at a time: a refill takes the cpu freelist under one
// cpu lock, slab after slab (___slab_alloc installs the next), and a flush gives each
// slab its objects back as one detached freelist (SlubFreeBulk.cs). Pinned threads (trace
// replay, per-CPU tests) stand for a CPU and bypass magazines, so they see SLUB
// exactly. Objects in a magazine count as allocated to SLUB, as the kernel counts
// the objects of per-CPU slabs as active in slabinfo. Their allocation byte is
// HeldByMagazine from the refill that takes them from their slab to the flush that
// gives them back, whoever holds them meanwhile, and a word of the object (its free
// pointer's) tells which: its MagazineTag while a magazine holds it, written by the
// push and cleared by the pop. So a pop and a push write only the object, which its holder owns, and
// not the slab's allocation map, whose bytes two threads' objects share: writing it
// on every operation made each of two threads' operations on objects of one slab a
// cache-line transfer (a two-thread larson cost more than twice one thread's). A
// second free of an object in a magazine is still "Object already free"; the tag
// is only trusted beside the byte, and user data matches it by a 2^-64 chance.
// Bound: magazines are bounded as per-CPU caches are, machine-wide. Each cache has
// a room of MagazineLimit (SLAB's array-cache limit for the size) times the CPU
// count objects of capacity; a magazine takes its capacity from that room when it
// starts or grows (tcmalloc's slow start, within ThreadBudgetBytes per thread) and
// gives it back when its thread is reaped. A thread that finds no room keeps a
// magazine of capacity 0 and works on the per-CPU slab, and asks the magazines that
// grew beyond one CPU's share (MagazineLimit) to give the excess back at their next
// slow path; a magazine that gave back grows no more, so each thread that came
// too late gets a CPU's share as soon as the others' slow paths run (per-CPU caches
// are bounded per CPU: one thread may not hold what another CPU's share would be).
// A starved thread also takes the room of magazines whose owners stay idle (the thread
// that set the machine up, a worker gone on to other caches): every 256 of its slow
// paths it marks the magazines holding capacity, owners clear the mark at their next
// operation, and those still marked a millisecond later are emptied and give all their
// capacity back (SlubMagazineDepot.ReclaimIdleLocked). Threads that exited are
// reaped without their help: their magazines go back to the slabs when a new thread
// starts one, on a starved slow path, at shrink and destroy (flush_all), and when
// the page allocator's slow path drains the caches under pressure (DrainForPressure).
// Locking: the owner thread works on its magazine with plain memory operations
// between Busy = 1 and Busy = 0; a thread that must empty other threads'
// magazines (kmem_cache_shrink, kmem_cache_destroy, pressure: flush_all) sets Steal,
// runs a process-wide barrier (the asymmetric half of Dekker's protocol), waits for
// Busy = 0 and takes the objects; an owner that sees Steal goes to the per-CPU slab
// instead. Why this holds under the .NET memory model: the owner's Busy = 1 is a
// volatile write and its read of Steal a volatile read; the process-wide barrier acts
// as a full fence at some point of the owner's program order, so either the owner's
// Busy = 1 precedes that point (the stealer then reads Busy = 1 and waits), or the
// stealer's Steal = 1 precedes it (the owner then reads Steal = 1 and keeps off the
// magazine). What the model leaves open is the owner's store moving past its own
// later load, by the CPU (x64's store buffer) or by the JIT. The barrier itself
// drains the store buffers (membarrier / FlushProcessWriteBuffers), and the JIT does
// not reorder volatile accesses with each other, which is why both are volatile
// (a plain store, as before, could legally sink below the load). A full fence on the
// owner's side (Interlocked.Exchange) would settle it without relying on the JIT,
// at the price of a locked instruction on every operation (about a third of the
// pair); ShrinkingWhileOwnersAllocateAndFreeLosesNothing and the steal stress test
// check it. Stealers and reapers serialise on _magazineLock; the thread table is
// copy-on-write under it. Debugging caches and fault injection set MagazineLimit to 0.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>One thread's free objects of one cache.</summary>
internal sealed class Magazine
{
    /// <summary>A free object and its allocation byte. The byte lies in its slab's pinned allocation map,
    /// which lives as long as the slab, and the slab lives while the object is out of it (in a magazine).
    /// No managed reference, so a push stores without a GC write barrier.</summary>
    public unsafe struct Entry
    {
        public nint Obj;
        public byte* Allocated;
    }

    /// <summary>The fields written on every operation, a cache line away from anything else: two threads'
    /// magazines are often allocated side by side, and sharing a line would make every pair of theirs a
    /// cache-line transfer.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 2 * CacheLine)]
    private struct HotFields
    {
        [FieldOffset(CacheLine)] public int Count;
        [FieldOffset(CacheLine + 4)] public int Steal;
        [FieldOffset(CacheLine + 8)] public int Trim;
    }

    private const int CacheLine = 64;

    private HotFields _hot;

    /// <summary>Unused entries after the last one: the arrays of two threads' magazines are often allocated
    /// side by side, and the entries each thread writes must not share a cache line (4 × 16 bytes).</summary>
    public const int EntriesPad = 4;

    public readonly KmemCache Cache;
    public readonly SlubThreadCache Owner;
    /// <summary>The objects, <see cref="Capacity"/> of them at most, then <see cref="EntriesPad"/> unused.</summary>
    public Entry[] Entries;

    /// <summary>How many objects the magazine may hold.</summary>
    public int Capacity => Entries.Length == 0 ? 0 : Entries.Length - EntriesPad;

    /// <summary>An entry array of <paramref name="capacity"/> objects and the padding.</summary>
    public static Entry[] NewEntries(int capacity) => capacity == 0 ? [] : new Entry[capacity + EntriesPad];
    /// <summary>Objects in <see cref="Entries"/>.</summary>
    public ref int Count => ref _hot.Count;
    /// <summary>1 while the owner works on the magazine: its thread's marker (SlubThreadCache.InCall), which is set
    /// while the thread works on any of its magazines, so that the free fast path's lifetime marker and the steal
    /// handshake's are one store.</summary>
    public ref int Busy => ref Owner.InCall;
    /// <summary>1 while another thread empties it.</summary>
    public ref int Steal => ref _hot.Steal;
    /// <summary>1 when a thread found no room in the cache while this magazine holds more than one CPU's share
    /// (<see cref="KmemCache.MagazineLimit"/>): the owner's next operation leaves the fast path and gives the
    /// excess back.</summary>
    public ref int Trim => ref _hot.Trim;
    /// <summary>Steal or Trim: the owner must leave the fast path (one read of the hot line).</summary>
    public bool Attention => (Volatile.Read(ref _hot.Steal) | _hot.Trim) != 0;
    /// <summary>Set once the magazine gave capacity back: it grows no more beyond one CPU's share.</summary>
    public bool Trimmed;

    public Magazine(KmemCache cache, SlubThreadCache owner, int capacity)
    {
        Cache = cache;
        Owner = owner;
        Entries = NewEntries(capacity);
    }
}

/// <summary>A thread's magazines of one machine, by cache id; its InCall (SlabThreadMarker) is every magazine's
/// Busy and the free fast path's lifetime marker (SlubFastPath.cs). Never nested: a thread clears it before
/// anything that could reach another magazine.</summary>
internal sealed class SlubThreadCache(Thread thread) : SlabThreadMarker(thread)
{
    public Magazine?[] ByCacheId = new Magazine?[64];
    /// <summary>Counts the slow paths of capacity-0 magazines that found no room, so that a starved thread looks for
    /// the room of exited threads and idle magazines now and then (SlubMagazineDepot.TryGrow).</summary>
    public int StarvedSlowPaths;
    /// <summary>Σ capacity × object size over the thread's magazines; changed only when one grows.</summary>
    public long CapacityBytes;
}

internal sealed unsafe partial class Slub
{
    /// <summary>The allocation byte of an object in the magazines' keeping: in a thread magazine (its
    /// <see cref="TagWord"/> holds its <see cref="MagazineTag"/>), or handed out from one (any other value there).</summary>
    internal const byte HeldByMagazine = 2;

    // Mixed into the tags, so that an object's data matches its tag only by a 2^-64 chance.
    private readonly ulong _magazineKey = (ulong)Random.Shared.NextInt64() | 1;

    /// <summary>Where a magazine keeps an object's tag: the word of its free pointer (s->offset), which a free may
    /// clobber in the kernel too (outside the object for caches with a constructor or SLAB_TYPESAFE_BY_RCU).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong* TagWord(KmemCache s, nint obj) => (ulong*)(obj + (nint)s.Offset);

    /// <summary>The word a magazine writes into each object it holds (<see cref="TagWord"/>), and the pop clears: the
    /// object's address mixed with a per-machine key.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ulong MagazineTag(nint obj) => (ulong)obj ^ _magazineKey;

    /// <summary>Takes the top object out of <paramref name="mag"/> (which holds one): its tag goes, its byte stays
    /// HeldByMagazine. The magazine fast path (SlubFastPath.Pop) does the same inline.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static nint PopFromMagazine(Magazine mag, KmemCache s)
    {
        nint obj = mag.Entries[--mag.Count].Obj;
        if (!SlubFastPath.NoFreeCheck)
        {
            *TagWord(s, obj) = 0;
        }
        return obj;
    }

    /// <summary>Whether an object whose allocation byte is <paramref name="allocated"/> sits in a thread magazine.</summary>
    internal bool InMagazine(KmemCache s, nint obj, byte allocated) => allocated == HeldByMagazine && *TagWord(s, obj) == MagazineTag(obj);

    /// <summary>For a free to the slab itself (do_slab_free): an object handed out from a magazine is allocated, as one
    /// from the slab is; one still in a magazine stays marked (its free is a double free).</summary>
    internal void LeaveMagazines(KmemCache s, nint obj, ref byte allocated)
    {
        if (allocated == HeldByMagazine && *TagWord(s, obj) != MagazineTag(obj))
        {
            allocated = 1;
        }
    }

    /// <summary>How much a thread's magazines may grow to hold, in bytes of objects (MachineOptions.SlubThreadCache).</summary>
    internal long ThreadBudgetBytes { get; }
    /// <summary>The most objects one magazine may grow to.</summary>
    internal const int MaxMagazine = 8192;

    /// <summary>How many free objects a thread starts keeping per cache: SLAB's enable_cpucache limits by object
    /// size, within the thread budget (0: no magazine).</summary>
    private int MagazineLimitFor(uint size)
    {
        int limit = size > 128 * 1024 ? 0 : size > PhysMem.PageSize ? 8 : size > 1024 ? 24 : size > 256 ? 54 : 120;
        return (int)Math.Min(limit, ThreadBudgetBytes / size);
    }

    /// <summary>The calling thread's magazine of <paramref name="s"/>, or null when the thread is pinned or the
    /// cache keeps none.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Magazine? MagazineOf(KmemCache s)
    {
        if (_cpus.UnpinnedThreadCache(out bool pinned) is object o)
        {
            var byId = Unsafe.As<SlubThreadCache>(o).ByCacheId;
            if ((uint)s.Id < (uint)byId.Length && byId[s.Id] is { } mag && ReferenceEquals(mag.Cache, s))
            {
                return mag;
            }
        }
        return pinned || s.MagazineLimit == 0 ? null : _depot.NewMagazine(s);
    }

    /// <summary>Pops an object from the thread's magazine, refilling it from the per-CPU slab when empty.</summary>
    /// <returns>The object, or 0 when no slab can be had.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private nint MagazineAlloc(Magazine mag, KmemCache s, Gfp gfp)
    {
        Volatile.Write(ref mag.Busy, 1);
        if (!mag.Attention && mag.Count > 0)
        {
            nint obj = PopFromMagazine(mag, s);
            Volatile.Write(ref mag.Busy, 0);
            return obj;
        }
        return _depot.Refill(mag, s, gfp);
    }

    /// <summary>kfree's and kmem_cache_free's fast path for an unpinned thread: a slab object of a cache the thread keeps a magazine
    /// of goes onto that magazine. It reads the frame, the thread's magazine and the allocation byte, and not
    /// the cache table: the magazine names its cache, which owns the slab while it is alive, since live caches
    /// have distinct ids. False, with nothing changed, sends the pointer down the checked path, which
    /// also reports misuse (a double free, a pointer inside an object, an object of another cache than
    /// <paramref name="expected"/> for kmem_cache_free).</summary>
    /// <param name="p">The pointer.</param>
    /// <param name="expected">kmem_cache_free's cache, or null for kfree.</param>
    /// <param name="tc">The calling thread's magazines (SlubThreadCache), or null when it has none here.</param>
    /// <param name="fastOnly">The free fast path (the caller holds the thread's marker): false, changing nothing, where
    /// the push would take a slow path (a full magazine).</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryMagazineFree(nint p, KmemCache? expected, object? tc, bool fastOnly = false)
    {
        var mem = _mem;
        // VirtToPfn without its NoPfn sentinel: the direct map covers the lowmem frames.
        nuint rel = (nuint)(p - mem.DirectMapBase);
        if (rel >> PhysMem.PageShift >= mem.LowmemPfns || tc is null)
        {
            return false;
        }
        ref PageFrame f = ref mem.DirectMapHead(rel, out uint pfn);
        ulong priv = f.Private;
        var byId = Unsafe.As<SlubThreadCache>(tc).ByCacheId;
        int id = SlabPage.CacheId(priv);
        if ((f.Flags & PageFlags.Slab) == 0 || (uint)id >= (uint)byId.Length || byId[id] is not { } mag)
        {
            return false;
        }
        KmemCache s = mag.Cache;
        // The head of a frame of the direct map is in the direct map: no lowmem check (PageAddress's) needed.
        nuint off = rel - ((nuint)pfn << PhysMem.PageShift);
        uint idx = s.IndexOf(off);
        if ((expected is not null && !ReferenceEquals(s, expected)) || s.IsDestroyed || off - (nuint)idx * s.Size != s.RedLeftPad || idx >= (uint)SlabPage.Objects(priv))
        {
            return false;
        }
        return MagazineFree(mag, s, pfn, p, SlubFastPath.AllocByteOfSlab(_allocBits, pfn, idx), fastOnly);
    }

    /// <summary>Pushes a freed allocated object onto the thread's magazine, emptying half of a
    /// full one into the slabs first. With fastOnly (the free fast path) the caller has set the thread's marker
    /// (Busy) and clears it, and a push that needs a slow path returns false instead.</summary>
    /// <returns>False, changing nothing, when the object is not allocated (a double free).</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool MagazineFree(Magazine mag, KmemCache s, uint pfn, nint obj, byte* allocated, bool fastOnly = false)
    {
        if (!fastOnly)
        {
            Volatile.Write(ref mag.Busy, 1);
        }
        // Count and Entries are read after Steal (a volatile read). Count + EntriesPad below the array's length is
        // Count below Capacity (an empty array has no capacity) and bounds the store for the JIT.
        int n;
        Magazine.Entry[] entries;
        if (!mag.Attention && (uint)((n = mag.Count) + Magazine.EntriesPad) < (uint)(entries = mag.Entries).Length)
        {
            if (!SlubFastPath.NoFreeCheck)
            {
                // Allocated: handed out from a magazine (its tag cleared), or from the slab (byte 1, which joins the
                // magazines' keeping, the only write to the map here). Anything else is not allocated.
                byte b = *allocated;
                ulong* tag = TagWord(s, obj);
                if (b == HeldByMagazine ? *tag == MagazineTag(obj) : b != 1)
                {
                    if (!fastOnly)
                    {
                        Volatile.Write(ref mag.Busy, 0);
                    }
                    return false;
                }
                if (b != HeldByMagazine)
                {
                    *allocated = HeldByMagazine;
                }
                *tag = MagazineTag(obj);
            }
            Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(entries), n) = new Magazine.Entry { Obj = obj, Allocated = allocated };
            mag.Count = n + 1;
            if (!fastOnly)
            {
                Volatile.Write(ref mag.Busy, 0);
            }
            return true;
        }
        if (fastOnly)
        {
            return false;
        }
        return _depot.FreeSlow(mag, s, pfn, obj, allocated);
    }

    /// <summary>Gives magazine objects back to their slabs, one detached freelist per slab (SlubFreeBulk).</summary>
    internal void Drain(KmemCache s, Span<Magazine.Entry> entries) => _depot.FreeBulk(s, entries);

    /// <summary>Objects of <paramref name="s"/> held in thread magazines (a racy sum, for reports).</summary>
    public long MagazineObjects(KmemCache s) => _depot.MagazineObjects(s);

    /// <summary>The threads' magazines not yet reaped (for the checker and the tests).</summary>
    internal IReadOnlyList<SlubThreadCache> ThreadCaches => _depot.ThreadCaches;

    /// <summary>Reaps the threads that have exited (their magazines go back to the slabs); true when any was.</summary>
    internal bool ReapDeadThreads() => _depot.ReapDeadThreads();
}
