// Thread magazines in front of SLUB's per-CPU slabs: unpinned threads keep freed objects
// per cache, pinned threads see SLUB exactly, and flush_all (shrink, destroy) empties
// every thread's magazine, even while its owner keeps working.
namespace Kmem.Tests.Slab;

public class SlubMagazineTests
{
    private static long MemFree(Machine m) => long.Parse(m.Proc.Meminfo().Split('\n')[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[1],
        System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void AnUnpinnedThreadGetsItsLastFreedObjectBackWithoutTheCpuSlab()
    {
        using var m = KmemCacheTests.Boot();
        var s = m.KmemCacheCreate("mag", 64, 0, SlabFlags.None, null)!;
        nint a = m.KmemCacheAlloc(s, Gfp.Kernel);
        nint b = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, a);
        Assert.Equal(a, m.KmemCacheAlloc(s, Gfp.Kernel));
        Assert.NotEqual(a, b);
        SlabPropertyTests.Validate(m);
        m.KmemCacheFree(s, a);
        m.KmemCacheFree(s, b);
        SlabPropertyTests.Validate(m);
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
        Assert.False(m.Log.Contains("still has objects"));
    }

    [Fact]
    public void AnObjectInAMagazineCannotBeFreedAgainFromAPinnedThread()
    {
        using var m = KmemCacheTests.Boot();
        var s = m.KmemCacheCreate("mag-df", 64, 0, SlabFlags.None, null)!;
        nint a = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, a);
        var e = Assert.Throws<SlabBugException>(() =>
        {
            using var cpu = m.OnCpu(1);
            m.KmemCacheFree(s, a);
        });
        Assert.Contains("Object already free", e.Message, StringComparison.Ordinal);
        // And from the owner itself.
        Assert.Throws<SlabBugException>(() => m.KmemCacheFree(s, a));
        SlabPropertyTests.Validate(m);
        Assert.Equal(a, m.KmemCacheAlloc(s, Gfp.Kernel));
        m.KmemCacheFree(s, a);
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
    }

    /// <summary>An object a magazine handed out keeps its allocation byte HeldByMagazine: it is the object's tag that
    /// says whether a magazine still holds it. A free anywhere (a pinned thread, another thread's magazine) of an
    /// object handed out is a free; of one back in a magazine, a double free; and whatever the object holds, even
    /// its own tag's neighbour values, it is not taken for one in a magazine.</summary>
    [Fact]
    public unsafe void AnObjectHandedOutByAMagazineIsFreedAnywhereOnceAndOnlyOnce()
    {
        using var m = KmemCacheTests.Boot();
        var s = m.KmemCacheCreate("mag-out", 64, 0, SlabFlags.None, null)!;
        nint warm = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, warm); // into this thread's magazine
        nint a = m.KmemCacheAlloc(s, Gfp.Kernel);
        Assert.Equal(warm, a); // handed out by the magazine
        new Span<byte>((void*)a, 64).Fill(0xff);
        // A pinned thread frees it through the slab: a free, not a double free.
        using (m.OnCpu(1))
        {
            m.KmemCacheFree(s, a);
        }
        SlabPropertyTests.Validate(m);
        Assert.Throws<SlabBugException>(() => m.KmemCacheFree(s, a)); // now free in the slab
        // Another thread's magazine takes an object this thread's magazine handed out, once.
        nint b = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, b);
        b = m.KmemCacheAlloc(s, Gfp.Kernel);
        Exception? second = null;
        var t = new Thread(() =>
        {
            m.KmemCacheFree(s, b);
            try
            {
                m.KmemCacheFree(s, b);
            }
            catch (SlabBugException ex)
            {
                second = ex;
            }
        });
        t.Start();
        t.Join();
        Assert.Contains("Object already free", second?.Message ?? "", StringComparison.Ordinal);
        Assert.Throws<SlabBugException>(() => m.KmemCacheFree(s, b)); // and from this thread, which never held it back
        SlabPropertyTests.Validate(m);
        // Objects whose words are zeros, ones or another object's address are allocated all the same.
        var held = Enumerable.Range(0, 50).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToArray();
        for (int i = 0; i < held.Length; i++)
        {
            new Span<nint>((void*)held[i], 8).Fill(i % 3 == 0 ? 0 : i % 3 == 1 ? -1 : held[(i + 1) % held.Length]);
        }
        foreach (nint p in held)
        {
            m.KmemCacheFree(s, p);
        }
        SlabPropertyTests.Validate(m);
        m.KmemCacheDestroy(s);
        Assert.False(m.Log.Contains("still has objects"));
    }

    [Theory]
    [InlineData(64)]
    [InlineData(1024)] // kmalloc-1k slabs are order 3: most objects lie in tail frames
    public void KfreeThroughAMagazineRefusesWhatTheCheckedPathRefuses(int size)
    {
        using var m = KmemCacheTests.Boot(onBug: OnBug.Report);
        var objects = Enumerable.Range(0, 40).Select(_ => m.Kmalloc((nuint)size, Gfp.Kernel)).ToArray();
        m.Kfree(objects[5] + 8);
        Assert.True(m.Log.Contains("Invalid object pointer"));
        foreach (nint p in objects)
        {
            m.Kfree(p);
        }
        SlabPropertyTests.Validate(m);
        int before = m.Log.Lines.Count(l => l.Contains("Object already free", StringComparison.Ordinal));
        foreach (nint p in objects)
        {
            m.Kfree(p);
        }
        Assert.Equal(before + objects.Length, m.Log.Lines.Count(l => l.Contains("Object already free", StringComparison.Ordinal)));
        SlabPropertyTests.Validate(m);
        // Every object comes back, each once.
        var again = Enumerable.Range(0, 40).Select(_ => m.Kmalloc((nuint)size, Gfp.Kernel)).ToArray();
        Assert.Equal(objects.Length, again.Distinct().Count());
        Assert.Empty(again.Except(objects));
        foreach (nint p in again)
        {
            m.Kfree(p);
        }
        SlabPropertyTests.Validate(m);
    }

    [Fact]
    public void ShrinkEmptiesTheMagazinesOfOtherThreadsAndEveryPageComesBack()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 3 });
        m.DrainAllPages();
        long freeBefore = MemFree(m);
        var s = m.KmemCacheCreate("mag-shrink", 200, 0, SlabFlags.None, null)!;
        // Objects allocated here are freed on two other threads, which keep them in their magazines.
        var objs = new nint[3000];
        for (int i = 0; i < objs.Length; i++)
        {
            objs[i] = m.KmemCacheAlloc(s, Gfp.Kernel);
        }
        var threads = Enumerable.Range(0, 2).Select(t => new Thread(() =>
        {
            for (int i = t; i < objs.Length; i += 2)
            {
                m.KmemCacheFree(s, objs[i]);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        SlabPropertyTests.Validate(m);
        Assert.Equal(0, m.KmemCacheShrink(s));
        SlabPropertyTests.Validate(m);
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
        foreach (var c in m.SlabCaches)
        {
            m.KmemCacheShrink(c);
        }
        m.DrainAllPages();
        Assert.Equal(freeBefore, MemFree(m));
    }

    [Fact]
    public unsafe void ShrinkingWhileOwnersAllocateAndFreeLosesNothing()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 5 });
        var s = m.KmemCacheCreate("mag-race", 96, 0, SlabFlags.None, null)!;
        using var stop = new CancellationTokenSource();
        Exception? failure = null;
        var workers = Enumerable.Range(0, 2).Select(t => new Thread(() =>
        {
            try
            {
                var rng = new Random(t);
                var live = new List<nint>();
                long rounds = 0;
                while (!stop.IsCancellationRequested || rounds < 20_000)
                {
                    rounds++;
                    if (live.Count < 200 && (live.Count == 0 || rng.Next(2) == 0))
                    {
                        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
                        Assert.NotEqual(0, p);
                        *(long*)p = p ^ t;
                        live.Add(p);
                    }
                    else
                    {
                        int i = rng.Next(live.Count);
                        Assert.Equal(live[i] ^ t, *(long*)live[i]);
                        m.KmemCacheFree(s, live[i]);
                        live[i] = live[^1];
                        live.RemoveAt(live.Count - 1);
                    }
                }
                foreach (nint p in live)
                {
                    m.KmemCacheFree(s, p);
                }
            }
            catch (Exception e)
            {
                failure = e;
            }
        })).ToArray();
        Array.ForEach(workers, w => w.Start());
        for (int i = 0; i < 50; i++)
        {
            m.KmemCacheShrink(s);
        }
        stop.Cancel();
        Assert.All(workers, w => Assert.True(w.Join(TimeSpan.FromMinutes(1))));
        Assert.Null(failure);
        SlabPropertyTests.Validate(m);
        Assert.Equal(0, m.KmemCacheShrink(s));
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
    }

    [Fact]
    public void AMagazineGrowsWithTheWorkingSetUpToItsCachesRoomAndTheThreadBudget()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 9, SlubThreadCache = "1M" });
        var slub = (Kmem.Slab.Slub)m.SlabLayer!;
        Assert.Equal(1L << 20, slub.ThreadBudgetBytes);
        var s = m.KmemCacheCreate("mag-grow", 64, 0, SlabFlags.None, null)!;
        long bound = (long)s.MagazineLimit * m.NrCpus;
        Assert.Equal(bound, s.MagazineRoom);
        var objs = new nint[1000];
        for (int i = 0; i < objs.Length; i++)
        {
            objs[i] = m.KmemCacheAlloc(s, Gfp.Kernel);
        }
        foreach (nint p in objs)
        {
            m.KmemCacheFree(s, p);
        }
        // The magazine grew from its limit to the cache's whole machine-wide room; full, it gives half back.
        Assert.Equal(bound, slub.ThreadCaches.Single(tc => tc.Thread == Thread.CurrentThread).ByCacheId[s.Id]!.Capacity);
        Assert.InRange(slub.MagazineObjects(s), bound / 2, bound);
        Assert.Equal(0, s.MagazineRoom);
        SlabPropertyTests.Validate(m);
        // Every magazine stays within its room and the thread budget.
        var big = m.KmemCacheCreate("mag-budget", 2048, 0, SlabFlags.None, null)!;
        var many = Enumerable.Range(0, 2000).Select(_ => m.KmemCacheAlloc(big, Gfp.Kernel)).ToList();
        many.ForEach(p => m.KmemCacheFree(big, p));
        Assert.InRange(slub.MagazineObjects(big) * 2048 + (bound * 64), 1, slub.ThreadBudgetBytes);
        SlabPropertyTests.Validate(m);
        Assert.Equal(0, m.KmemCacheShrink(s));
        Assert.Equal(0, slub.MagazineObjects(s));
        m.KmemCacheDestroy(s);
        m.KmemCacheDestroy(big);
        Assert.True(s.IsDestroyed);
    }

    [Fact]
    public void ThreadCacheZeroMakesEveryThreadUseTheCpuSlab()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", SlubThreadCache = "0" });
        var slub = (Kmem.Slab.Slub)m.SlabLayer!;
        var s = m.KmemCacheCreate("no-mag", 64, 0, SlabFlags.None, null)!;
        nint a = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, a);
        Assert.Equal(0, slub.MagazineObjects(s));
        Assert.Equal(0, slub.MagazineObjects(m.SlabCaches.First(c => c.Name == "kmalloc-64")));
        m.KmemCacheDestroy(s);
    }

    [Fact]
    public void TheDefaultBudgetIsASixtyFourthOfMemoryWithinFourAndSixtyFourMegabytes()
    {
        using var small = Machine.Boot(new MachineOptions { Memory = "128M" });
        using var mid = Machine.Boot(new MachineOptions { Memory = "1G" });
        Assert.Equal(4L << 20, ((Kmem.Slab.Slub)small.SlabLayer!).ThreadBudgetBytes);
        Assert.Equal(16L << 20, ((Kmem.Slab.Slub)mid.SlabLayer!).ThreadBudgetBytes);
    }

    [Theory]
    [InlineData("12Q", "is not a size")]
    [InlineData("2G", "more than the machine's memory")]
    public void ABadThreadCacheOptionIsNamed(string value, string why)
    {
        var e = Assert.Throws<MachineOptionException>(() => Machine.Boot(new MachineOptions { Memory = "256M", SlubThreadCache = value }));
        Assert.Equal("SlubThreadCache", e.Option);
        Assert.Contains(why, e.Message, StringComparison.Ordinal);
    }
}
