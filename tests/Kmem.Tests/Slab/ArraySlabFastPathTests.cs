// SLAB's fast paths (Slab/ArraySlab/ArraySlabFastPath.cs): kmalloc, kfree, kmem_cache_alloc and kmem_cache_free
// of an unpinned thread pop and push the CPU's array without the lifetime scope. They must change nothing a
// pinned thread (the guarded path, the kernel's per-CPU code) would not: the same objects in the same order, the
// same slabinfo counts, misuse refused with nothing changed, zeroing as asked.
using Kmem.Slab;

namespace Kmem.Tests.Slab;

public class ArraySlabFastPathTests
{
    private static Machine Boot(OnBug onBug = OnBug.Throw) =>
        Machine.Boot(new MachineOptions { Memory = "128M", Cpus = 1, Seed = 1, OnBug = onBug, Slab = SlabAllocator.Slab });

    private static void OnThread(Action work)
    {
        Exception? thrown = null;
        var t = new Thread(() =>
        {
            try
            {
                work();
            }
            catch (Exception e)
            {
                thrown = e;
            }
        });
        t.Start();
        t.Join();
        Assert.Null(thrown);
    }

    /// <summary>The same random sequence of kmalloc/kmem_cache_alloc and frees (in another order than the allocations)
    /// on two machines of one CPU, one driven by a pinned thread (the guarded path only), one by an unpinned thread
    /// (the fast paths once it has its marker): every object (as a pfn and offset) and every slabinfo row agree,
    /// through refills, full arrays' flushes and the shared array.</summary>
    [Fact]
    public void UnpinnedFastPathsHandOutAndCountExactlyAsTheGuardedPathDoes()
    {
        var rng = new Random(7);
        var ops = new List<(bool Alloc, bool Kmalloc, int Victim)>();
        int held = 0;
        for (int step = 0; step < 4000; step++)
        {
            bool alloc = held == 0 || rng.Next(100) < (step < 2000 ? 65 : 35);
            ops.Add((alloc, rng.Next(2) == 0, alloc ? 0 : rng.Next(held)));
            held += alloc ? 1 : -1;
        }
        (List<string> Trace, bool Marked) Run(bool pin)
        {
            var trace = new List<string>();
            bool marked = false;
            OnThread(() =>
            {
                using var m = Boot();
                using var scope = pin ? m.OnCpu(0) : (IDisposable?)null;
                var s = m.KmemCacheCreate("fp", 200, 0, SlabFlags.None, null)!;
                var objs = new List<(nint P, bool Kmalloc)>();
                for (int i = 0; i < ops.Count; i++)
                {
                    var (alloc, kmalloc, victim) = ops[i];
                    if (alloc)
                    {
                        nint p = kmalloc ? m.Kmalloc(100, Gfp.Kernel) : m.KmemCacheAlloc(s, Gfp.Kernel);
                        objs.Add((p, kmalloc));
                        trace.Add($"{m.Mem.VirtToPfn(p)}+{p & 0xFFF}");
                    }
                    else
                    {
                        var (p, k) = objs[victim];
                        objs.RemoveAt(victim);
                        if (k)
                        {
                            m.Kfree(p);
                        }
                        else
                        {
                            m.KmemCacheFree(s, p);
                        }
                    }
                    if (i % 200 == 0)
                    {
                        trace.Add(string.Join(' ', ArraySlabTests.Row(m, "fp")) + " / " + string.Join(' ', ArraySlabTests.Row(m, "kmalloc-128")));
                    }
                }
                marked = ((ArraySlab)m.SlabLayer!).Fast.Markers.Any(t => t.Thread == Thread.CurrentThread);
                SlabPropertyTests.Validate(m);
            });
            return (trace, marked);
        }
        var guarded = Run(pin: true);
        var fast = Run(pin: false);
        Assert.False(guarded.Marked); // a pinned thread stands for its CPU: no fast path
        Assert.True(fast.Marked);
        Assert.Equal(guarded.Trace, fast.Trace);
    }

    /// <summary>Misuse on the fast path is refused by the guarded path's report with nothing changed: a double free
    /// (kfree and kmem_cache_free), a free through the wrong cache, a pointer inside an object.</summary>
    [Fact]
    public void MisuseOnTheFastPathIsReportedAndChangesNothing()
    {
        OnThread(() =>
        {
            using var m = Boot();
            var s = m.KmemCacheCreate("fp-misuse", 64, 0, SlabFlags.None, null)!;
            var other = m.KmemCacheCreate("fp-other", 64, 0, SlabFlags.None, null)!;
            m.Kfree(m.Kmalloc(64, Gfp.Kernel)); // the marker
            Assert.Contains(((ArraySlab)m.SlabLayer!).Fast.Markers, t => t.Thread == Thread.CurrentThread);
            nint p = m.Kmalloc(64, Gfp.Kernel);
            m.Kfree(p);
            Assert.Throws<SlabBugException>(() => m.Kfree(p));
            nint q = m.KmemCacheAlloc(s, Gfp.Kernel);
            Assert.Throws<SlabBugException>(() => m.KmemCacheFree(other, q));
            Assert.Throws<SlabBugException>(() => m.KmemCacheFree(s, q + 8));
            m.KmemCacheFree(s, q);
            Assert.Throws<SlabBugException>(() => m.KmemCacheFree(s, q));
            // Each object went onto the array once: the next two allocations are the object and another one.
            Assert.Equal(p, m.Kmalloc(64, Gfp.Kernel));
            Assert.NotEqual(p, m.Kmalloc(64, Gfp.Kernel));
            Assert.Equal(q, m.KmemCacheAlloc(s, Gfp.Kernel));
            Assert.NotEqual(q, m.KmemCacheAlloc(s, Gfp.Kernel));
            SlabPropertyTests.Validate(m);
        });
    }

    /// <summary>__GFP_ZERO on the fast path zeroes the object's object_size bytes, as the guarded path does.</summary>
    [Fact]
    public unsafe void ZeroedAllocationsOnTheFastPathAreZero()
    {
        OnThread(() =>
        {
            using var m = Boot();
            var s = m.KmemCacheCreate("fp-zero", 120, 0, SlabFlags.None, null)!;
            m.KmemCacheFree(s, m.KmemCacheAlloc(s, Gfp.Kernel)); // the marker
            nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
            new Span<byte>((void*)p, 120).Fill(0xA5);
            m.KmemCacheFree(s, p);
            Assert.Equal(p, m.KmemCacheAlloc(s, Gfp.Kernel | Gfp.Zero));
            Assert.True(new Span<byte>((void*)p, 120).IndexOfAnyExcept((byte)0) < 0);
            nint k = m.Kmalloc(64, Gfp.Kernel);
            new Span<byte>((void*)k, 64).Fill(0x5A);
            m.Kfree(k);
            Assert.Equal(k, m.Kzalloc(64, Gfp.Kernel));
            Assert.True(new Span<byte>((void*)k, 64).IndexOfAnyExcept((byte)0) < 0);
        });
    }

    /// <summary>An array a thread's fast paths lock again and again becomes biased to it (no lock word), and any other
    /// thread that locks it takes the bias back first; the next grant needs a streak twice as long. Objects stay
    /// where they were throughout.</summary>
    [Fact]
    public void AnArrayIsBiasedToTheThreadThatKeepsUsingItAndAnotherLockerRevokesTheBias()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("fp-bias", 64, 0, SlabFlags.None, null)!;
        var ac = ArraySlab.State(s).Cpu[0];
        using var revoked = new ManualResetEventSlim();
        using var pairsAgain = new ManualResetEventSlim();
        SlabThreadMarker? owner = null, afterFirstStreak = null, afterShortStreak = null;
        var user = new Thread(() =>
        {
            m.KmemCacheFree(s, m.KmemCacheAlloc(s, Gfp.Kernel)); // the marker (guarded path)
            for (int i = 0; i < ArrayCache.BiasStreak / 2; i++) // two locks a pair
            {
                m.KmemCacheFree(s, m.KmemCacheAlloc(s, Gfp.Kernel));
            }
            owner = ac.Owner;
            revoked.Set();
            pairsAgain.Wait();
            for (int i = 0; i < ArrayCache.BiasStreak / 2; i++) // two locks a pair
            {
                m.KmemCacheFree(s, m.KmemCacheAlloc(s, Gfp.Kernel));
            }
            afterShortStreak = ac.Owner;
            for (int i = 0; i < ArrayCache.BiasStreak / 2; i++) // two locks a pair
            {
                m.KmemCacheFree(s, m.KmemCacheAlloc(s, Gfp.Kernel));
            }
            afterFirstStreak = ac.Owner;
        });
        user.Start();
        revoked.Wait();
        Assert.NotNull(owner);
        Assert.Same(user, owner!.Thread);
        // Another thread's lock of the array (shrink takes every CPU's) revokes the bias; the array is intact.
        m.KmemCacheShrink(s);
        Assert.Null(ac.Owner);
        pairsAgain.Set();
        user.Join();
        Assert.Null(afterShortStreak); // one streak is no longer enough after a revocation
        Assert.Same(owner, afterFirstStreak);
        SlabPropertyTests.Validate(m);
    }

    /// <summary>A thread that allocates and frees on its biased arrays while another thread keeps locking them
    /// (cache_reap and shrink on every CPU's array) never gets an object twice, and every count adds up after.</summary>
    [Fact]
    public void ObjectsStayUniqueWhileAnotherThreadKeepsRevokingTheBias()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("fp-revoke", 96, 0, SlabFlags.None, null)!;
        int done = 0;
        Exception? failed = null;
        var user = new Thread(() =>
        {
            try
            {
                var rng = new Random(3);
                var live = new List<nint>();
                var set = new HashSet<nint>();
                for (int step = 0; step < 200_000; step++)
                {
                    if (live.Count == 0 || (live.Count < 300 && rng.Next(2) == 0))
                    {
                        nint p = rng.Next(2) == 0 ? m.KmemCacheAlloc(s, Gfp.Kernel) : m.Kmalloc(96, Gfp.Kernel);
                        Assert.True(set.Add(p), $"object 0x{p:x} handed out twice");
                        live.Add(p);
                    }
                    else
                    {
                        int i = rng.Next(live.Count);
                        nint p = live[i];
                        live[i] = live[^1];
                        live.RemoveAt(live.Count - 1);
                        set.Remove(p);
                        m.Kfree(p); // kfree takes kmem_cache objects too
                    }
                }
                foreach (nint p in live)
                {
                    m.Kfree(p);
                }
            }
            catch (Exception e)
            {
                failed = e;
            }
            Volatile.Write(ref done, 1);
        });
        user.Start();
        int rounds = 0;
        while (Volatile.Read(ref done) == 0)
        {
            m.CacheReap();
            m.KmemCacheShrink(s);
            rounds++;
        }
        user.Join();
        Assert.Null(failed);
        Assert.True(rounds > 0);
        SlabPropertyTests.Validate(m);
    }

    /// <summary>Markers of threads that exited go when a new thread registers.</summary>
    [Fact]
    public void MarkersOfExitedThreadsAreDropped()
    {
        using var m = Boot();
        var fast = ((ArraySlab)m.SlabLayer!).Fast;
        for (int i = 0; i < 5; i++)
        {
            OnThread(() => m.Kfree(m.Kmalloc(32, Gfp.Kernel)));
        }
        Assert.Single(fast.Markers);
        Assert.DoesNotContain(fast.Markers, t => t.Thread.IsAlive);
    }
}
