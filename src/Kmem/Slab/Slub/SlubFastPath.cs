// SLUB's allocation and free fast paths as Machine's public entry points take them, before and instead of
// entering the machine's lifetime (Physical/MachineLifetime.cs): a pop from or a push onto the calling
// thread's magazine (SlubMagazines.cs). The lifetime guard rides on stores and loads the fast paths make anyway.
// Allocation: the magazine's Busy = 1 is the in-call marker, and its read of Steal (with Trim, one load of the
// line it works on) is the check: Shutdown (SlubMagazineDepot.ShutDownFastPaths) sets Steal on every magazine for
// good, runs a process-wide barrier and waits for Busy = 0, which is the steal handshake unchanged, so the
// guard adds nothing to the pop; Busy is held until the object is initialised (PostAlloc writes it). Free: the
// push finds its magazine through the object's struct page, which lies in memory Dispose unmaps, so the thread
// cache's InCall = 1 comes first and its Dead flag (the same cache line) is read after it; Shutdown sets Dead
// before its barrier and then waits for InCall = 0. Both are the asymmetric Dekker protocol of
// MachineLifetime with int stores (no GC write barrier) on lines the thread alone writes. Anything beyond
// the plain pop or push (an empty or full magazine, a pinned thread, failslab armed, a pointer that is not a
// magazine object of a live cache, a double free, a disposed machine) returns false with nothing changed, and the
// caller takes the guarded path, which does the whole work, reports misuse and throws ObjectDisposedException.
// Nothing here sleeps, takes a lock or calls out, so Shutdown's waits are short and cannot wait for themselves.
// Benchmarks only: KMEM_BENCH_UNGUARDED=1 in the environment leaves the free side's InCall handshake out and
// clears Busy before PostAlloc (an A/B switch for LifetimeGuardBenchmarks; a machine used that way must not be
// disposed while other threads call it).
using System.Runtime.CompilerServices;

namespace Kmem.Slab;

/// <summary>The magazine fast paths of one SLUB instance, guarded by the magazine's Busy and the thread cache's InCall.</summary>
internal sealed unsafe class SlubFastPath(Slub slub, CpuTopology cpus)
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
        var byId = Unsafe.As<SlubThreadCache>(o).ByCacheId;
        if ((uint)s.Id >= (uint)byId.Length || byId[s.Id] is not { } mag || !ReferenceEquals(mag.Cache, s))
        {
            return false;
        }
        Volatile.Write(ref mag.Busy, 1);
        if (mag.Attention || mag.Count == 0)
        {
            Volatile.Write(ref mag.Busy, 0);
            return false;
        }
        ref var e = ref mag.Entries[--mag.Count];
        *e.Allocated = 1;
        obj = e.Obj;
        if (Unguarded)
        {
            Volatile.Write(ref mag.Busy, 0);
            slub.PostAlloc(s, obj, gfp);
            return true;
        }
        slub.PostAlloc(s, obj, gfp);
        Volatile.Write(ref mag.Busy, 0);
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
        if (Unguarded)
        {
            return slub.TryMagazineFree(p, expected, tc, fastOnly: true);
        }
        // Marks the thread in a call, then checks the machine is live (the order Shutdown relies on).
        Volatile.Write(ref tc.InCall, 1);
        bool done = Volatile.Read(ref tc.Dead) == 0 && slub.TryMagazineFree(p, expected, tc, fastOnly: true);
        Volatile.Write(ref tc.InCall, 0);
        return done;
    }
}
