// Thread magazines in front of SLUB's per-CPU slabs (ARCHITECTURE.md, decision 5).
// The kernel's fast path is a per-CPU freelist changed with a cmpxchg that no
// other CPU races; a .NET thread cannot own a CPU id, so the per-CPU slab needs a
// lock and costs two atomics per pair. An unpinned thread therefore keeps, per
// cache, a magazine of free objects it alone touches (SLAB's array_cache idea):
// alloc pops, free pushes, and only an empty or a full magazine goes to the
// per-CPU slab, half a magazine at a time under one cpu lock. A magazine starts at
// SLAB's per-CPU limit for its object size and doubles when it overflows while the
// thread's magazines stay within ThreadBudgetBytes of capacity (tcmalloc's slow
// start), so a thread whose working set of a size is large stops paying for the slab
// paths; the budget bounds what a thread can keep. Pinned threads (trace
// replay, per-CPU tests) stand for a CPU and bypass magazines, so they see SLUB
// exactly. Objects in a magazine count as allocated to SLUB (as objects free in a
// cpu slab count as active in slabinfo); their allocation byte is HeldByMagazine,
// so a second free of one is still "Object already free".
// Locking: the owner thread works on its magazine with plain memory operations
// between Busy = 1 and Busy = 0; a thread that must empty other threads'
// magazines (kmem_cache_shrink, kmem_cache_destroy: flush_all) sets Steal, makes
// every thread's earlier stores visible (a process-wide barrier, the asymmetric
// half of Dekker's protocol), waits for Busy = 0 and takes the objects; an owner
// that sees Steal goes to the per-CPU slab instead. Stealers serialise on
// _magazineLock. Debugging caches and fault injection set MagazineLimit to 0.
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
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

    public readonly KmemCache Cache;
    public readonly SlubThreadCache Owner;
    public Entry[] Entries;
    public int Count;
    /// <summary>1 while the owner works on the magazine.</summary>
    public int Busy;
    /// <summary>1 while another thread empties it.</summary>
    public int Steal;

    public Magazine(KmemCache cache, SlubThreadCache owner)
    {
        Cache = cache;
        Owner = owner;
        Entries = new Entry[cache.MagazineLimit];
    }
}

/// <summary>A thread's magazines of one machine, by cache id.</summary>
internal sealed class SlubThreadCache
{
    public Magazine?[] ByCacheId = new Magazine?[64];
    /// <summary>Σ capacity × object size over the thread's magazines; changed only when one grows.</summary>
    public long CapacityBytes;
}

internal sealed unsafe partial class Slub
{
    /// <summary>The allocation byte of an object sitting in a thread magazine.</summary>
    internal const byte HeldByMagazine = 2;
    /// <summary>How much a thread's magazines may grow to hold, in bytes of objects (MachineOptions.SlubThreadCache).</summary>
    internal long ThreadBudgetBytes { get; }
    /// <summary>The most objects one magazine may grow to.</summary>
    private const int MaxMagazine = 8192;

    private readonly ConcurrentDictionary<int, SlubThreadCache> _threadCaches = new();

    /// <summary>The live threads' magazines (for the checker).</summary>
    internal ICollection<SlubThreadCache> ThreadCaches => _threadCaches.Values;
    private readonly Lock _magazineLock = new();

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
        return pinned || s.MagazineLimit == 0 ? null : NewMagazine(s);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private Magazine? NewMagazine(KmemCache s)
    {
        if (_cpus.IsPinned || s.IsDestroyed)
        {
            return null;
        }
        var tc = _threadCaches.GetOrAdd(Environment.CurrentManagedThreadId, static _ => new SlubThreadCache());
        _cpus.SetThreadCache(tc);
        lock (_magazineLock)
        {
            if (s.Id >= tc.ByCacheId.Length)
            {
                var grown = new Magazine?[Math.Max(tc.ByCacheId.Length * 2, s.Id + 1)];
                tc.ByCacheId.CopyTo(grown, 0);
                tc.ByCacheId = grown;
            }
            // A magazine of a destroyed cache whose id was reused was emptied by its destroy.
            if (tc.ByCacheId[s.Id] is not { } mag || !ReferenceEquals(mag.Cache, s))
            {
                tc.ByCacheId[s.Id] = mag = new Magazine(s, tc);
                Interlocked.Add(ref tc.CapacityBytes, (long)s.MagazineLimit * s.Size);
            }
            return mag;
        }
    }

    /// <summary>Pops an object from the thread's magazine, refilling it from the per-CPU slab when empty.</summary>
    /// <returns>The object, or 0 when no slab can be had.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private nint MagazineAlloc(Magazine mag, KmemCache s, Gfp gfp)
    {
        mag.Busy = 1;
        if (Volatile.Read(ref mag.Steal) == 0 && mag.Count > 0)
        {
            ref var e = ref mag.Entries[--mag.Count];
            *e.Allocated = 1;
            nint obj = e.Obj;
            Volatile.Write(ref mag.Busy, 0);
            return obj;
        }
        return MagazineRefill(mag, s, gfp);
    }

    /// <summary>Fills half the magazine from the per-CPU slab under one cpu lock and returns one more object;
    /// entered with Busy set, leaves it clear.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private nint MagazineRefill(Magazine mag, KmemCache s, Gfp gfp)
    {
        if (Volatile.Read(ref mag.Steal) != 0)
        {
            Volatile.Write(ref mag.Busy, 0);
            return CpuAlloc(s, gfp, -1);
        }
        int want = (mag.Entries.Length + 1) / 2;
        var c = s.CpuSlab[_cpus.Current];
        c.Lock();
        while (mag.Count < want)
        {
            nint obj = c.Freelist;
            if (obj == 0)
            {
                break;
            }
            uint slab = c.Slab;
            c.Freelist = GetFreepointer(s, obj);
            byte* allocated = AllocByte(slab, s.IndexOf((nuint)(obj - _mem.PageAddress(slab))));
            *allocated = HeldByMagazine;
            mag.Entries[mag.Count++] = new Magazine.Entry { Obj = obj, Allocated = allocated };
        }
        c.Unlock();
        Volatile.Write(ref mag.Busy, 0);
        // The last object comes the ordinary way: from the cpu freelist, or the slow path for a new slab.
        return CpuAlloc(s, gfp, -1);
    }

    /// <summary>kfree's and kmem_cache_free's fast path for an unpinned thread: a slab object of a cache the thread keeps a magazine
    /// of goes onto that magazine. It reads the frame, the thread's magazine and the allocation byte, and not
    /// the cache table: the magazine names its cache, which owns the slab while it is alive, since live caches
    /// have distinct ids. False, with nothing changed, sends the pointer down the checked path, which
    /// also reports misuse (a double free, a pointer inside an object, an object of another cache than
    /// <paramref name="expected"/> for kmem_cache_free).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryMagazineFree(nint p, KmemCache? expected)
    {
        var mem = _mem;
        uint pfn = mem.VirtToPfn(p);
        if (pfn == PhysMem.NoPfn || _cpus.UnpinnedThreadCache(out _) is not { } tc)
        {
            return false;
        }
        ref PageFrame f = ref mem.Frame(pfn);
        if ((f.Flags & PageFlags.Tail) != 0)
        {
            pfn = (uint)f.Private;
            f = ref mem.Frame(pfn);
        }
        ulong priv = f.Private;
        var byId = Unsafe.As<SlubThreadCache>(tc).ByCacheId;
        int id = SlabPage.CacheId(priv);
        if ((f.Flags & PageFlags.Slab) == 0 || (uint)id >= (uint)byId.Length || byId[id] is not { } mag)
        {
            return false;
        }
        KmemCache s = mag.Cache;
        nuint off = (nuint)(p - mem.PageAddress(pfn));
        uint idx = s.IndexOf(off);
        if ((expected is not null && !ReferenceEquals(s, expected)) || s.IsDestroyed || off - (nuint)idx * s.Size != s.RedLeftPad || idx >= (uint)SlabPage.Objects(priv))
        {
            return false;
        }
        return MagazineFree(mag, s, pfn, p, AllocByte(pfn, idx));
    }

    /// <summary>Pushes a freed object whose allocation byte is 1 onto the thread's magazine, emptying half of a
    /// full one into the slabs first.</summary>
    /// <returns>False, changing nothing, when the object is not allocated (a double free).</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool MagazineFree(Magazine mag, KmemCache s, uint pfn, nint obj, byte* allocated)
    {
        mag.Busy = 1;
        if (Volatile.Read(ref mag.Steal) == 0 && (uint)mag.Count < (uint)mag.Entries.Length)
        {
            if (*allocated != 1)
            {
                Volatile.Write(ref mag.Busy, 0);
                return false;
            }
            *allocated = HeldByMagazine;
            mag.Entries[mag.Count++] = new Magazine.Entry { Obj = obj, Allocated = allocated };
            Volatile.Write(ref mag.Busy, 0);
            return true;
        }
        return MagazineFreeSlow(mag, s, pfn, obj, allocated);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool MagazineFreeSlow(Magazine mag, KmemCache s, uint pfn, nint obj, byte* allocated)
    {
        if (Volatile.Read(ref mag.Steal) != 0)
        {
            Volatile.Write(ref mag.Busy, 0);
            return DoSlabFree(s, pfn, obj, ref *allocated);
        }
        int cap = mag.Entries.Length;
        long more = (long)cap * s.Size;
        if (cap < MaxMagazine && Volatile.Read(ref mag.Owner.CapacityBytes) + more <= ThreadBudgetBytes)
        {
            // Overflowing with room in the budget: the thread's working set of this size is larger, keep it.
            Array.Resize(ref mag.Entries, cap * 2);
            Interlocked.Add(ref mag.Owner.CapacityBytes, more);
            Volatile.Write(ref mag.Busy, 0);
            return MagazineFree(mag, s, pfn, obj, allocated);
        }
        // Full: the older half goes back to the slabs; the newest objects stay hot in the magazine.
        int half = cap / 2;
        Drain(s, mag.Entries.AsSpan(0, half));
        mag.Entries.AsSpan(half, mag.Count - half).CopyTo(mag.Entries);
        mag.Count -= half;
        Volatile.Write(ref mag.Busy, 0);
        return MagazineFree(mag, s, pfn, obj, allocated);
    }

    /// <summary>Gives magazine objects back to their slabs.</summary>
    private void Drain(KmemCache s, Span<Magazine.Entry> entries)
    {
        foreach (ref var e in entries)
        {
            uint pfn = HeadPfn(_mem.VirtToPfn(e.Obj));
            *e.Allocated = 1;
            DoSlabFree(s, pfn, e.Obj, ref *e.Allocated);
        }
        entries.Clear();
    }

    /// <summary>flush_all's part for magazines: every thread's magazine of <paramref name="s"/> is emptied into
    /// the slabs, waiting for owners that are in the middle of an operation.</summary>
    private void StealMagazines(KmemCache s)
    {
        lock (_magazineLock)
        {
            var mags = new List<Magazine>();
            foreach (var tc in _threadCaches.Values)
            {
                if ((uint)s.Id < (uint)tc.ByCacheId.Length && tc.ByCacheId[s.Id] is { } mag && ReferenceEquals(mag.Cache, s))
                {
                    Volatile.Write(ref mag.Steal, 1);
                    mags.Add(mag);
                }
            }
            if (mags.Count == 0)
            {
                return;
            }
            // Owners store Busy = 1 and then read Steal without a fence of their own: this barrier makes any
            // such store visible before Busy is read below, so an owner either is seen busy or sees Steal.
            Interlocked.MemoryBarrierProcessWide();
            foreach (var mag in mags)
            {
                var spin = new SpinWait();
                while (Volatile.Read(ref mag.Busy) != 0)
                {
                    spin.SpinOnce();
                }
                Drain(s, mag.Entries.AsSpan(0, mag.Count));
                mag.Count = 0;
                Volatile.Write(ref mag.Steal, 0);
            }
        }
    }

    /// <summary>Objects of <paramref name="s"/> held in thread magazines (a racy sum, for reports).</summary>
    public long MagazineObjects(KmemCache s)
    {
        long n = 0;
        foreach (var tc in _threadCaches.Values)
        {
            var byId = tc.ByCacheId;
            if ((uint)s.Id < (uint)byId.Length && byId[s.Id] is { } mag && ReferenceEquals(mag.Cache, s))
            {
                n += Volatile.Read(ref mag.Count);
            }
        }
        return n;
    }
}
