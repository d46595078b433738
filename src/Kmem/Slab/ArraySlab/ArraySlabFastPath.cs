// SLAB's allocation and free fast paths as Machine's public entry points take them, before and instead of
// entering the machine's lifetime (Physical/MachineLifetime.cs): a pop from or a push onto the current CPU's
// array cache (mm/slab.c ____cache_alloc and ___cache_free when the array has an object or room), under the
// array's own lock as on the guarded path. What they leave out is the lifetime scope (a thread-static slot and
// two reference stores with GC write barriers per call) and the virtual calls between the facade and the
// array: the thread's SlabThreadMarker (SlabThreadMarker.cs, the same marker SLUB's magazines use) stands for
// the scope. An unpinned thread gets its marker on its first guarded call; pinned threads (trace replay,
// per-CPU tests) and everything beyond the plain pop or push (an empty or full array, failslab armed,
// init_on_free, an object of a remote node, a pointer that is not an allocated object of a live cache, a
// disposed machine) return false with nothing changed, and the caller takes the guarded path, which does the
// whole work, reports misuse and throws ObjectDisposedException. The array caches, their limits, the shared
// arrays, cache_reap, shrink and drain are the guarded path's, unchanged: the fast paths add no cache of their own.
// Locking: the marker (InCall) is stored before Dead is read and cleared after the object is initialised; the
// CPU array's spin lock as in ArraySlab.cs; nothing here sleeps or calls out, so Shutdown's wait is short.
using System.Runtime.CompilerServices;

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
        nint obj = Volatile.Read(ref m.Dead) == 0 ? slab.AllocFast(s, gfp, cpu) : 0;
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
        bool done = Volatile.Read(ref m.Dead) == 0 && slab.TryFreeFast(p, expected, cpu);
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

    /// <summary>____cache_alloc's hit: an object from CPU <paramref name="cpu"/>'s array (the caller's), 0 when it is empty.</summary>
    internal nint AllocFast(KmemCache s, Gfp gfp, int cpu)
    {
        var ac = LockCpuCache(State(s), cpu);
        if (ac.Avail == 0)
        {
            ac.Unlock();
            return 0;
        }
        nint obj = Allocated(s, ac.PopAndUnlock(), gfp);
        VmBug.On(!IsObjectOf(obj, s)); // the object handed out lies in a slab of its cache
        return obj;
    }

    /// <summary>slab_post_alloc_hook: the object is marked held in its slab's allocation map, and zeroed for
    /// __GFP_ZERO or init_on_alloc (slab_want_init_on_alloc), object_size bytes.</summary>
    private nint Allocated(KmemCache s, nint obj, Gfp gfp)
    {
        uint head = HeadPfn(_mem.VirtToPfn(obj));
        Volatile.Write(ref AllocMap(head)![ObjIndex(s, head, obj)], 1);
        if ((gfp & Gfp.Zero) != 0 || s.WantInitOnAlloc)
        {
            new Span<byte>((void*)obj, (int)s.ObjectSize).Clear();
        }
        return obj;
    }

    /// <summary>___cache_free's plain case: an allocated object of a live cache (of <paramref name="expected"/> when
    /// given) on the node of CPU <paramref name="cpu"/> (the caller's) goes onto that CPU's array when it has room.
    /// False, with nothing changed, for anything else: the guarded path then frees it or reports the misuse.</summary>
    internal bool TryFreeFast(nint p, KmemCache? expected, int cpu)
    {
        if (Classify(p, out uint head, out var s) != PtrKind.Slab || (expected is not null && !ReferenceEquals(s, expected)) || s!.WantInitOnFree)
        {
            return false;
        }
        var st = State(s);
        if (st.Nodes.Length > 1 && NodeOf(head) != _cpus.NodeOf[cpu])
        {
            return false;
        }
        nint sMem = SMem(head, _mem.Frame(head).Private);
        nuint off = (nuint)(p - sMem);
        uint idx = s.IndexOf(off);
        var map = AllocMap(head);
        if (p < sMem || idx >= (uint)st.Geometry.Num || off != (nuint)idx * s.Size || map is null)
        {
            return false;
        }
        var ac = LockCpuCache(st, cpu);
        ref byte held = ref map[idx];
        if (ac.Avail >= ac.Limit || held == 0)
        {
            // A full array is flushed by the guarded path; a free object is reported there.
            ac.Unlock();
            return false;
        }
        // A plain check and store under the array's lock, as SLUB's magazine push makes them: a double free
        // racing on two CPUs' arrays at the same moment can slip past both, which the guarded path's exchange
        // would catch; a double free made after the first one returned is always caught.
        held = 0;
        ac.Entry[ac.Avail++] = p;
        ac.Unlock();
        return true;
    }
}
