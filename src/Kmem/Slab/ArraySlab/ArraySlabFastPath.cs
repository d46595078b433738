// SLAB's allocation and free fast paths as Machine's public entry points take them, before and instead of
// entering the machine's lifetime (Physical/MachineLifetime.cs): a pop from or a push onto the current CPU's
// array cache (mm/slab.c ____cache_alloc and ___cache_free when the array has an object or room), under the
// array's own lock as on the guarded path, or with no lock word at all when the array is biased to the calling
// thread (ArrayCache in ArraySlabCache.cs). What they leave out is the lifetime scope (a thread-static slot and
// two reference stores with GC write barriers per call) and the virtual calls between the facade and the
// array: the thread's SlabThreadMarker (SlabThreadMarker.cs, the same marker SLUB's magazines use) stands for
// the scope. An unpinned thread gets its marker on its first guarded call; pinned threads (trace replay,
// per-CPU tests) and everything beyond the plain pop or push (an empty or full array, failslab armed,
// init_on_free, an object of a remote node, a pointer that is not an allocated object of a live cache, a
// disposed machine) return false with nothing changed, and the caller takes the guarded path, which does the
// whole work, reports misuse and throws ObjectDisposedException. The array caches, their limits, the shared
// arrays, cache_reap, shrink and drain are the guarded path's, unchanged: the fast paths add no cache of their own.
// Locking: the marker (InCall) is stored before Dead and the array's owner are read and cleared after the object
// is initialised; the CPU array's lock word is only tried, never waited for (a thread in a fast path must not
// wait: revokers of a bias wait for its marker); nothing here sleeps or calls out, so Shutdown's and revokers'
// waits are short.
using System.Runtime.CompilerServices;
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>The array-cache fast paths of one SLAB instance, guarded by the thread's marker.</summary>
internal sealed class ArraySlabFastPath(ArraySlab slab, CpuTopology cpus)
{
    private readonly Lock _lock = new();
    /// <summary>The threads' markers; replaced whole under <see cref="_lock"/>.</summary>
    private SlabThreadMarker[] _markers = [];
    private bool _dead;

    /// <summary>The threads' markers not yet dropped (for the tests).</summary>
    internal IReadOnlyList<SlabThreadMarker> Markers => Volatile.Read(ref _markers);

    /// <summary>kmalloc's fast path: an object of the kmalloc cache for <paramref name="size"/> from the CPU's array.</summary>
    /// <returns>0 when the guarded path must serve the call (size 0 or above the kmalloc caches included).</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Kmalloc(nuint size, Gfp gfp) =>
        size - 1 >= SlabBackend.KmallocMaxCacheSize ? 0 : Alloc(slab.KmallocSlabFast(size, gfp), gfp);

    /// <summary>kmem_cache_alloc's fast path: a pop from the CPU's array of <paramref name="s"/>; 0 when the guarded
    /// path must serve the call.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Alloc(KmemCache s, Gfp gfp)
    {
        if (slab.Failslab.Enabled || cpus.UnpinnedThreadCacheOnCpu(out int cpu) is not { } o)
        {
            return 0;
        }
        var m = Unsafe.As<SlabThreadMarker>(o);
        Volatile.Write(ref m.InCall, 1);
        nint obj = Volatile.Read(ref m.Dead) == 0 ? slab.AllocFast(s, gfp, cpu, m) : 0;
        Volatile.Write(ref m.InCall, 0);
        return obj;
    }

    /// <summary>kfree's (<paramref name="expected"/> null) and kmem_cache_free's fast path: a push onto the CPU's array.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryFree(nint p, KmemCache? expected)
    {
        if (cpus.UnpinnedThreadCacheOnCpu(out int cpu) is not { } o)
        {
            return false;
        }
        var m = Unsafe.As<SlabThreadMarker>(o);
        // The marker first, then the check that the machine is live, then the struct page.
        Volatile.Write(ref m.InCall, 1);
        bool done = Volatile.Read(ref m.Dead) == 0 && slab.TryFreeFast(p, expected, cpu, m);
        Volatile.Write(ref m.InCall, 0);
        return done;
    }

    /// <summary>Gives the calling thread its marker (called from the guarded path, inside the lifetime scope, when
    /// the thread is unpinned and has no thread cache object for this machine).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void Register()
    {
        var me = Thread.CurrentThread;
        lock (_lock)
        {
            if (_dead)
            {
                return;
            }
            var mine = SlabThreadMarker.Of(_markers, me);
            if (mine is null)
            {
                // A new thread: the markers of threads that exited go.
                mine = new SlabThreadMarker(me);
                Volatile.Write(ref _markers, [.. _markers.Where(m => m.Thread.IsAlive), mine]);
            }
            cpus.SetThreadCache(mine);
        }
    }

    /// <summary>Shutdown's part for the fast paths, after the disposed flag, its barrier and the wait for every scoped
    /// call: every marker gets Dead, and threads in the middle of a fast path are waited for. Markers are made only
    /// inside scoped calls, which Shutdown has waited for already, so the table read here is complete.</summary>
    public void ShutDown()
    {
        SlabThreadMarker[] all;
        lock (_lock)
        {
            _dead = true;
            all = _markers;
            foreach (var m in all)
            {
                Volatile.Write(ref m.Dead, 1);
            }
        }
        SlabThreadMarker.WaitForFastPaths(all);
    }
}

internal sealed unsafe partial class ArraySlab
{
    /// <summary>The fast paths Machine's kmalloc, kfree, kmem_cache_alloc and kmem_cache_free try first.</summary>
    internal ArraySlabFastPath Fast { get; }

    /// <summary>The guarded path's part for the fast paths: an unpinned thread without a marker gets one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void EnsureFastPath()
    {
        if (_cpus.UnpinnedThreadCache(out bool pinned) is null && !pinned)
        {
            Fast.Register();
        }
    }

    /// <summary>____cache_alloc's hit: an object from CPU <paramref name="cpu"/>'s array (the caller's), entered as
    /// <paramref name="m"/>'s fast path (biased to it, or under its lock word if that is free); 0 when it is empty or
    /// the guarded path must take it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal nint AllocFast(KmemCache s, Gfp gfp, int cpu, SlabThreadMarker m)
    {
        // A SLAB cache's backend state is always its ArraySlabCache: no cast check.
        var ac = Volatile.Read(ref Unsafe.As<ArraySlabCache>(s.BackendState)!.Cpu)[cpu];
        nint obj;
        if (ac.IsBiasedTo(m))
        {
            if (ac.Avail == 0)
            {
                return 0;
            }
            obj = ac.Pop();
        }
        else if ((obj = AllocLocked(ac, m)) == 0)
        {
            return 0;
        }
        obj = Allocated(s, obj, gfp);
        VmBug.On(!IsObjectOf(obj, s)); // the object handed out lies in a slab of its cache
        return obj;
    }

    /// <summary>The pop from an array not biased to the caller, under its lock word if that is free; 0 otherwise.
    /// Out of line, so that the biased path saves no registers for its calls.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static nint AllocLocked(ArrayCache ac, SlabThreadMarker m)
    {
        if (!ac.TryLockFast())
        {
            return 0;
        }
        nint obj = ac.Avail == 0 ? 0 : ac.Pop();
        ac.UnlockFast(m);
        return obj;
    }

    /// <summary>slab_post_alloc_hook: the object is marked held in its slab's allocation map, and zeroed for
    /// __GFP_ZERO or init_on_alloc (slab_want_init_on_alloc), object_size bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private nint Allocated(KmemCache s, nint obj, Gfp gfp)
    {
        // An array's object lies in a slab, and slabs are lowmem: the direct map's arithmetic needs no NoPfn check.
        nuint rel = (nuint)(obj - _mem.DirectMapBase);
        ref PageFrame f = ref _mem.DirectMapHead(rel, out uint head);
        // The offset from s_mem (the slab's start plus its colour offset, Private's low half).
        nuint off = rel - ((nuint)head << PhysMem.PageShift) - (uint)f.Private;
        AllocMap(head)![s.IndexOf(off)] = 1;
        if ((gfp & Gfp.Zero) != 0 || s.WantInitOnAlloc)
        {
            new Span<byte>((void*)obj, (int)s.ObjectSize).Clear();
        }
        return obj;
    }

    /// <summary>___cache_free's plain case: an allocated object of a live cache (of <paramref name="expected"/> when
    /// given) on the node of CPU <paramref name="cpu"/> (the caller's) goes onto that CPU's array when it has room.
    /// False, with nothing changed, for anything else: the guarded path then frees it or reports the misuse.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryFreeFast(nint p, KmemCache? expected, int cpu, SlabThreadMarker m)
    {
        // Classify with the direct map's arithmetic: slabs are lowmem, so anything outside it is for the guarded path.
        nuint rel = (nuint)(p - _mem.DirectMapBase);
        if (rel >> PhysMem.PageShift >= _mem.LowmemPfns)
        {
            return false;
        }
        ref PageFrame f = ref _mem.DirectMapHead(rel, out uint head);
        ulong priv = f.Private;
        if ((f.Flags & PageFlags.Slab) == 0 || CacheById(SlabPage.CacheId(priv)) is not { } s
            || (expected is not null && !ReferenceEquals(s, expected)) || s.WantInitOnFree)
        {
            return false;
        }
        // A SLAB cache's backend state is always its ArraySlabCache: no cast check.
        var st = Unsafe.As<ArraySlabCache>(s.BackendState)!;
        if (st.Nodes.Length > 1 && NodeOf(head) != _cpus.NodeOf[cpu])
        {
            return false;
        }
        // The offset from s_mem (the slab's start plus its colour offset, Private's low half).
        nuint fromSlab = rel - ((nuint)head << PhysMem.PageShift);
        nuint off = fromSlab - (uint)priv;
        uint idx = s.IndexOf(off);
        var map = AllocMap(head);
        if (fromSlab < (uint)priv || idx >= (uint)st.Geometry.Num || off != (nuint)idx * s.Size || map is null)
        {
            return false;
        }
        var ac = Volatile.Read(ref st.Cpu)[cpu];
        ref byte held = ref map[idx];
        if (!ac.IsBiasedTo(m))
        {
            return FreeLocked(ac, m, ref held, p);
        }
        if (ac.Avail >= ac.Limit || held == 0)
        {
            // A full array is flushed by the guarded path; a free object is reported there.
            return false;
        }
        // A plain check and store under the array's lock or bias, as SLUB's magazine push makes them: a double free
        // racing on two CPUs' arrays at the same moment can slip past both, which the guarded path's exchange
        // would catch; a double free made after the first one returned is always caught.
        held = 0;
        ac.Entry[ac.Avail++] = p;
        return true;
    }

    /// <summary>The push onto an array not biased to the caller, under its lock word if that is free.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool FreeLocked(ArrayCache ac, SlabThreadMarker m, ref byte held, nint p)
    {
        if (!ac.TryLockFast())
        {
            return false;
        }
        bool pushed = ac.Avail < ac.Limit && held != 0;
        if (pushed)
        {
            held = 0;
            ac.Entry[ac.Avail++] = p;
        }
        ac.UnlockFast(m);
        return pushed;
    }
}
