// SLUB's allocation and free fast paths as Machine's public entry points take them, before and instead of
// entering the machine's lifetime (Physical/MachineLifetime.cs): a pop from or a push onto the calling
// thread's magazine (SlubMagazines.cs). The lifetime guard costs a thread-static read and two reference
// stores per call; here it rides on the thread's SlubThreadCache, which the fast path reads anyway: InCall is
// set while the call runs, and the machine's disposed flag is read after it, so Shutdown (which sets the flag,
// runs the process-wide barrier and then waits until no thread cache is InCall, WaitForFastPaths) either waits
// for the call or the call sees the flag and leaves through the guarded path, which throws
// ObjectDisposedException. This is the asymmetric Dekker protocol of MachineLifetime, with an int store
// instead of a reference store (no GC write barrier) and no second thread-static read. Anything beyond the
// plain pop or push (an empty or full magazine, a pinned thread, failslab armed, a pointer that is not a
// magazine object of a live cache, a double free) returns false with nothing changed, and the caller takes
// the guarded path, which does the whole work and reports misuse. Nothing here sleeps, takes a lock or
// calls out, so Shutdown's wait for InCall is short and cannot wait for itself.
// Benchmarks only: KMEM_BENCH_UNGUARDED=1 in the environment leaves the InCall handshake out (an A/B switch for
// LifetimeGuardBenchmarks; a machine used that way must not be disposed while other threads call it).
using System.Runtime.CompilerServices;
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>The magazine fast paths of one SLUB instance, guarded by the thread cache's InCall marker.</summary>
internal sealed unsafe class SlubFastPath(Slub slub, CpuTopology cpus, MachineLifetime life)
{
    /// <summary>The A/B switch of LifetimeGuardBenchmarks: no lifetime handshake on the fast paths.</summary>
    internal static readonly bool Unguarded = Environment.GetEnvironmentVariable("KMEM_BENCH_UNGUARDED") == "1";

    /// <summary>kmalloc's fast path: an object of the kmalloc cache for <paramref name="size"/> from the thread's magazine.</summary>
    /// <returns>False when the guarded path must serve the call (size 0 or above the kmalloc caches included).</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryKmalloc(nuint size, Gfp gfp, out nint obj)
    {
        if (size - 1 >= SlabBackend.KmallocMaxCacheSize)
        {
            obj = 0;
            return false;
        }
        return TryAlloc(slub.KmallocSlab(size, gfp), gfp, out obj);
    }

    /// <summary>kmem_cache_alloc's fast path: a pop from the thread's magazine of <paramref name="s"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryAlloc(KmemCache s, Gfp gfp, out nint obj)
    {
        obj = 0;
        if (slub.Failslab.Enabled || cpus.UnpinnedThreadCache(out _) is not { } o)
        {
            return false;
        }
        var tc = Unsafe.As<SlubThreadCache>(o);
        var byId = tc.ByCacheId;
        if ((uint)s.Id >= (uint)byId.Length || byId[s.Id] is not { } mag || !ReferenceEquals(mag.Cache, s) || !Enter(tc))
        {
            return false;
        }
        Volatile.Write(ref mag.Busy, 1);
        if (mag.Attention || mag.Count == 0)
        {
            Volatile.Write(ref mag.Busy, 0);
            Leave(tc);
            return false;
        }
        ref var e = ref mag.Entries[--mag.Count];
        *e.Allocated = 1;
        obj = e.Obj;
        Volatile.Write(ref mag.Busy, 0);
        slub.PostAlloc(s, obj, gfp);
        Leave(tc);
        return true;
    }

    /// <summary>kfree's (<paramref name="expected"/> null) and kmem_cache_free's fast path: a push onto the
    /// thread's magazine.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryFree(nint p, KmemCache? expected)
    {
        if (cpus.UnpinnedThreadCache(out _) is not { } o)
        {
            return false;
        }
        var tc = Unsafe.As<SlubThreadCache>(o);
        if (!Enter(tc))
        {
            return false;
        }
        bool done = slub.TryMagazineFree(p, expected, tc, fastOnly: true);
        Leave(tc);
        return done;
    }

    /// <summary>Marks the thread in a call, then checks the machine is live (the order Shutdown relies on).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Enter(SlubThreadCache tc)
    {
        if (Unguarded)
        {
            return true;
        }
        Volatile.Write(ref tc.InCall, 1);
        if (life.IsDisposed)
        {
            Volatile.Write(ref tc.InCall, 0);
            return false;
        }
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Leave(SlubThreadCache tc)
    {
        if (!Unguarded)
        {
            Volatile.Write(ref tc.InCall, 0);
        }
    }
}
