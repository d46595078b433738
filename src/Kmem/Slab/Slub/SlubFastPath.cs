// SLUB's allocation and free fast paths as Machine's public entry points take them, before and instead of
// entering the machine's lifetime (Physical/MachineLifetime.cs): a pop from or a push onto the calling
// thread's magazine (SlubMagazines.cs). The lifetime guard rides on the store the fast paths make anyway for
// the steal handshake: the thread's marker (SlubThreadCache.InCall, which is every magazine's Busy).
// Allocation: the marker is set, then the magazine's Steal read (with Trim, one load of the line it works on):
// Shutdown (SlubMagazineDepot.ShutDownFastPaths) sets Steal on every magazine for good, runs a process-wide
// barrier and waits for the markers to clear, which is the steal handshake unchanged, so the guard adds
// nothing to the pop but holding the marker until the object is initialised (PostAlloc writes it). Free: the
// push finds its magazine through the object's struct page, which lies in memory Dispose unmaps, so after
// the marker it reads the thread cache's Dead flag (the marker's cache line), which Shutdown sets before its
// barrier: one load and compare. Both are the asymmetric Dekker protocol of MachineLifetime with int stores
// (no GC write barrier) on lines the thread alone writes. Anything beyond the plain pop or push (an empty or
// full magazine, a pinned thread, failslab armed, a pointer that is not a magazine object of a live cache, a
// double free, a disposed machine) returns false with nothing changed, and the caller takes the guarded path,
// which does the whole work, reports misuse and throws ObjectDisposedException. Nothing here sleeps, takes a
// lock or calls out, so the waits of stealers and Shutdown are short and cannot wait for themselves.
// Benchmarks only: KMEM_BENCH_UNGUARDED=1 in the environment leaves out the free side's Dead check and clears
// the marker before PostAlloc (an A/B switch for LifetimeGuardBenchmarks; a machine used that way must not be
// disposed while other threads call it).
// Benchmarks only: KMEM_BENCH_NO_FREE_CHECK=1 leaves out the double-free detection's work on the magazine paths
// (the pops' clearing of the object's magazine tag, the push's checks of the allocation byte and the tag and its
// store of the tag; an A/B switch for SafetyCostBenchmarks; the depot's refills, off the fast paths, still tag what
// they put in a magazine): objects that went through a magazine then keep their tag, so the guarded path of a
// machine used that way may report a correct free of one as a double free.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kmem.Slab;

/// <summary>The magazine fast paths of one SLUB instance, guarded by the thread's magazine marker (InCall).</summary>
internal sealed unsafe class SlubFastPath(Slub slub, CpuTopology cpus)
{
    /// <summary>The A/B switch of LifetimeGuardBenchmarks: no lifetime handshake on the fast paths.</summary>
    internal static readonly bool Unguarded = Environment.GetEnvironmentVariable("KMEM_BENCH_UNGUARDED") == "1";

    /// <summary>The A/B switch of SafetyCostBenchmarks: no double-free detection on the magazine paths.</summary>
    internal static readonly bool NoFreeCheck = Environment.GetEnvironmentVariable("KMEM_BENCH_NO_FREE_CHECK") == "1";

    /// <summary>kmalloc's fast path: an object of the kmalloc cache for <paramref name="size"/> from the thread's magazine.</summary>
    /// <returns>The object, or 0 when the guarded path must serve the call (size 0 or above the kmalloc caches included).</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Kmalloc(nuint size, Gfp gfp)
    {
        // The thread-local read first: it is a call, and little is live across it yet.
        var o = cpus.FastThreadCache();
        return o is null || size - 1 >= SlabBackend.KmallocMaxCacheSize ? 0 : Pop(Unsafe.As<SlubThreadCache>(o), slub.KmallocSlabFast(size, gfp), gfp);
    }

    /// <summary>kmem_cache_alloc's fast path: a pop from the thread's magazine of <paramref name="s"/>.</summary>
    /// <returns>The object, or 0 when the guarded path must serve the call.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Alloc(KmemCache s, Gfp gfp)
    {
        var o = cpus.FastThreadCache();
        return o is null ? 0 : Pop(Unsafe.As<SlubThreadCache>(o), s, gfp);
    }

    /// <summary>The pop from <paramref name="tc"/>'s magazine of <paramref name="s"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private nint Pop(SlubThreadCache tc, KmemCache s, Gfp gfp)
    {
        var byId = tc.ByCacheId;
        if ((uint)s.Id >= (uint)byId.Length || byId[s.Id] is not { } mag || !ReferenceEquals(mag.Cache, s) || slub.Failslab.Enabled)
        {
            return 0;
        }
        // The magazine's Busy (the thread's InCall): the steal handshake's marker and the lifetime's.
        Volatile.Write(ref tc.InCall, 1);
        // Count and Entries are read after Steal (a volatile read): a stealer may have changed them before it let
        // go. One unsigned compare covers an empty magazine (n = -1) and bounds the entry array for the JIT.
        int n;
        Magazine.Entry[] entries;
        if (mag.Attention || (uint)(n = mag.Count - 1) >= (uint)(entries = mag.Entries).Length)
        {
            Volatile.Write(ref tc.InCall, 0);
            return 0;
        }
        mag.Count = n;
        nint obj = entries[n].Obj;
        if (!NoFreeCheck)
        {
            *Slub.TagWord(s, obj) = 0; // out of the magazine: its tag goes, its byte stays HeldByMagazine
        }
        if (Unguarded)
        {
            Volatile.Write(ref tc.InCall, 0);
            slub.PostAlloc(s, obj, gfp);
            return obj;
        }
        slub.PostAlloc(s, obj, gfp);
        Volatile.Write(ref tc.InCall, 0);
        return obj;
    }

    /// <summary>kfree's (<paramref name="expected"/> null) and kmem_cache_free's fast path: a push onto the
    /// thread's magazine.</summary>
    /// <returns>False, with nothing changed, when the guarded path must serve the call.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Free(nint p, KmemCache? expected)
    {
        if (cpus.FastThreadCache() is not { } o)
        {
            return false;
        }
        var tc = Unsafe.As<SlubThreadCache>(o);
        // The thread's marker first (the magazine's Busy for the steal handshake, the in-call marker for Shutdown),
        // then the check that the machine is live, then the struct page.
        Volatile.Write(ref tc.InCall, 1);
        bool done = (Unguarded || Volatile.Read(ref tc.Dead) == 0) && slub.TryMagazineFree(p, expected, tc, fastOnly: true);
        Volatile.Write(ref tc.InCall, 0);
        return done;
    }

    /// <summary>Slub.AllocByte for a frame the caller found flagged Slab (so its allocation map exists, and the
    /// chunk of the map table, which is never dropped) in the direct map (so the chunk index is within the
    /// table): no bounds checks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static byte* AllocByteOfSlab(byte[]?[]?[] allocBits, uint pfn, uint idx)
    {
        var chunk = Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(allocBits), (nint)(pfn >> Slub.BitsChunkShift));
        var map = Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(chunk!), (nint)(pfn & ((1 << Slub.BitsChunkShift) - 1)));
        return (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(map!)) + idx;
    }
}
