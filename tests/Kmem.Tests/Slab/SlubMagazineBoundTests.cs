// Thread magazines are bounded as per-CPU caches are: what threads keep of a cache counts against a
// machine-wide room (SLAB's array-cache limit times the CPU count), threads that exit give their magazines
// back without their help, the page allocator's slow path drains them before reclaim and the OOM killer,
// and flush_all's steal handshake loses no object and hands none out twice while owners work.
using System.Collections.Concurrent;
using Kmem.Slab;

namespace Kmem.Tests.Slab;

public class SlubMagazineBoundTests
{
    private static Slub SlubOf(Machine m) => (Slub)m.SlabLayer!;

    /// <summary>Order-0 pages the machine hands out before it fails (given back afterwards).</summary>
    private static int ObtainablePages(Machine m)
    {
        var pages = new List<Page>();
        while (true)
        {
            var p = m.AllocPages(Gfp.Kernel | Gfp.NoWarn | Gfp.NoRetry, 0);
            if (p.IsNull)
            {
                break;
            }
            pages.Add(p);
        }
        foreach (var p in pages)
        {
            m.FreePages(p, 0);
        }
        return pages.Count;
    }

    private static MachineOptions Small(int seed) => new() { Memory = "128M", Cpus = 2, Seed = seed };

    private static void RunThreads(int count, Action<int> body, bool inTurn)
    {
        var threads = Enumerable.Range(0, count).Select(t => new Thread(() => body(t))).ToList();
        foreach (var t in threads)
        {
            t.Start();
            if (inTurn)
            {
                t.Join();
            }
        }
        threads.ForEach(t => t.Join());
    }

    [Fact]
    public void AfterTwentyFourThreadsExitAlmostEveryPageOfAFreshMachineCanBeHadAgain()
    {
        int fresh;
        using (var m0 = Machine.Boot(Small(1)))
        {
            fresh = ObtainablePages(m0);
        }
        using var m = Machine.Boot(Small(1));
        var sizes = new[] { 512, 1024, 2048, 4096, 8192 };
        RunThreads(24, t =>
        {
            var rng = new Random(t);
            var objs = new nint[600];
            for (int i = 0; i < objs.Length; i++)
            {
                objs[i] = m.Kmalloc((nuint)(sizes[rng.Next(sizes.Length)] - rng.Next(200)), Gfp.Kernel);
                Assert.NotEqual(0, objs[i]);
            }
            foreach (nint p in objs)
            {
                m.Kfree(p);
            }
        }, inTurn: false);
        // What the threads keep is bounded machine-wide, not per thread.
        foreach (var s in m.SlabCaches.Where(c => c.MagazineLimit > 0))
        {
            Assert.InRange(SlubOf(m).MagazineObjects(s), 0, (long)s.MagazineLimit * m.NrCpus);
        }
        int now = ObtainablePages(m);
        Assert.True(now >= fresh * 0.97, $"{now} pages obtainable after the threads exited, {fresh} on a fresh machine");
        // The exited threads were reaped by the drain: nothing of theirs is left.
        Assert.DoesNotContain(SlubOf(m).ThreadCaches, tc => !tc.Thread.IsAlive);
        SlabPropertyTests.Validate(m);
    }

    [Fact]
    public void TwentyThreadsInTurnLeaveNoMoreThanOneBoundOfObjectsCached()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 2 });
        var s = m.SlabCaches.Single(c => c.Name == "kmalloc-64");
        long activeBefore = m.SlabLayer!.Stats(s).ActiveObjs;
        RunThreads(20, _ =>
        {
            var objs = new nint[60_000];
            for (int i = 0; i < objs.Length; i++)
            {
                objs[i] = m.Kmalloc(64, Gfp.Kernel);
            }
            foreach (nint p in objs)
            {
                m.Kfree(p);
            }
        }, inTurn: true);
        long bound = (long)s.MagazineLimit * m.NrCpus;
        Assert.InRange(SlubOf(m).MagazineObjects(s), 0, bound);
        // Active objects as slabinfo counts them: the last thread's magazine, and the cpu slabs and cpu partial
        // slabs (whose free objects the kernel counts as active too); before the bound, 125,729.
        long active = m.SlabLayer.Stats(s).ActiveObjs;
        Assert.True(active - activeBefore <= bound + (8 * s.ObjectsPerSlab * m.NrCpus), $"{active - activeBefore} more active kmalloc-64 objects");
        // Each new thread reaped the one before: only the last is still listed, and the room adds up.
        Assert.True(SlubOf(m).ThreadCaches.Count(tc => !tc.Thread.IsAlive) <= 1);
        Assert.True(SlubOf(m).ReapDeadThreads());
        Assert.Equal(0, SlubOf(m).MagazineObjects(s));
        Assert.Equal(bound, s.MagazineRoom + SlubOf(m).ThreadCaches.Sum(tc => tc.ByCacheId.ElementAtOrDefault(s.Id) is { } mag && mag.Cache == s ? mag.Capacity : 0));
        SlabPropertyTests.Validate(m);
    }

    [Fact]
    public void ThreadsBeyondTheRoomWorkOnTheCpuSlabsAndGetRoomWhenOthersExit()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 4 });
        var s = m.KmemCacheCreate("bound", 256, 0, SlabFlags.None, null)!;
        int bound = s.MagazineLimit * m.NrCpus;
        using var release = new ManualResetEventSlim();
        using var ready = new CountdownEvent(3);
        var holders = Enumerable.Range(0, 3).Select(_ => new Thread(() =>
        {
            var objs = Enumerable.Range(0, 4 * s.MagazineLimit).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToList();
            objs.ForEach(p => m.KmemCacheFree(s, p));
            ready.Signal();
            release.Wait();
        })).ToList();
        holders.ForEach(t => t.Start());
        ready.Wait();
        // Three live threads, room for two magazines: the capacity handed out never exceeds the bound.
        Assert.Equal(0, s.MagazineRoom);
        Assert.InRange(SlubOf(m).MagazineObjects(s), 1, bound);
        var caps = SlubOf(m).ThreadCaches.Select(tc => tc.ByCacheId[s.Id]?.Capacity ?? 0).ToList();
        Assert.Equal(bound, caps.Sum());
        release.Set();
        holders.ForEach(t => t.Join());
        // A new thread finds the room again once the dead are reaped.
        int capacity = -1;
        var late = new Thread(() =>
        {
            m.KmemCacheFree(s, m.KmemCacheAlloc(s, Gfp.Kernel));
            capacity = SlubOf(m).ThreadCaches.Single(tc => tc.Thread == Thread.CurrentThread).ByCacheId[s.Id]!.Capacity;
        });
        late.Start();
        late.Join();
        Assert.Equal(s.MagazineLimit, capacity);
        Assert.Equal(0, m.KmemCacheShrink(s));
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
    }

    [Fact]
    public void AMagazineGrownBeyondOneCpusShareGivesTheExcessBackWhenAnotherThreadFindsNoRoom()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 5 });
        var s = m.KmemCacheCreate("trim", 256, 0, SlabFlags.None, null)!;
        int limit = s.MagazineLimit, bound = limit * m.NrCpus;
        Magazine MagazineOf(Thread t) => SlubOf(m).ThreadCaches.Single(tc => tc.Thread == t).ByCacheId[s.Id]!;
        void Churn(int n)
        {
            var objs = Enumerable.Range(0, n).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToList();
            objs.ForEach(p => m.KmemCacheFree(s, p));
        }
        // A thread alone grows its magazine over the whole room (both CPUs' shares).
        Churn(4 * limit);
        var mine = MagazineOf(Thread.CurrentThread);
        Assert.Equal(bound, mine.Capacity);
        Assert.Equal(0, s.MagazineRoom);
        // A second thread finds no room: it works on the cpu slabs and asks the grown magazine to trim.
        using var go = new SemaphoreSlim(0);
        using var done = new SemaphoreSlim(0);
        int lateCapacity = -1;
        var late = new Thread(() =>
        {
            Churn(limit);
            lateCapacity = MagazineOf(Thread.CurrentThread).Capacity;
            done.Release();
            go.Wait();
            Churn(limit);
            lateCapacity = MagazineOf(Thread.CurrentThread).Capacity;
            done.Release();
        });
        late.Start();
        done.Wait();
        Assert.Equal(0, lateCapacity);
        Assert.Equal(1, mine.Trim);
        // The owner's next slow path gives the excess back, and the magazine grows no more beyond one share.
        Churn(4 * limit);
        Assert.Equal(limit, mine.Capacity);
        Assert.True(mine.Trimmed);
        Assert.Equal(0, mine.Trim);
        Assert.InRange(mine.Count, 0, limit);
        go.Release();
        done.Wait();
        late.Join();
        Assert.Equal(limit, lateCapacity);
        Assert.Equal(0, s.MagazineRoom);
        Churn(4 * limit);
        Assert.Equal(limit, mine.Capacity);
        SlabPropertyTests.Validate(m);
        Assert.Equal(0, m.KmemCacheShrink(s));
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
    }

    [Fact]
    public void ThreadsThatFindNoRoomTakeItBackFromAMagazineWhoseOwnerIsIdle()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 9 });
        var s = m.KmemCacheCreate("idle-owner", 64, 0, SlabFlags.None, null)!;
        int limit = s.MagazineLimit, bound = limit * m.NrCpus;
        Magazine MagazineOf(Thread t) => SlubOf(m).ThreadCaches.Single(tc => tc.Thread == t).ByCacheId[s.Id]!;
        // The thread that sets the machine up grows its magazine over the whole room, then stays idle.
        var objs = Enumerable.Range(0, 4 * limit).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToList();
        objs.ForEach(p => m.KmemCacheFree(s, p));
        var setup = MagazineOf(Thread.CurrentThread);
        Assert.Equal(bound, setup.Capacity);
        Assert.Equal(0, s.MagazineRoom);
        // Two workers run pairs: both start starved (no room, nothing above one CPU's share to trim). Rounds of
        // pairs, each more than a starved thread's slow paths between two searches for room, with a pause
        // between them longer than the idle time: the idle magazine must be found by the second search.
        var capacities = new int[2];
        var starved = new int[2];
        Exception? failure = null;
        RunThreads(2, t =>
        {
            try
            {
                for (int round = 0; round < 200 && (round == 0 || MagazineOf(Thread.CurrentThread).Capacity == 0); round++)
                {
                    for (int i = 0; i < 300; i++)
                    {
                        m.KmemCacheFree(s, m.KmemCacheAlloc(s, Gfp.Kernel));
                    }
                    Thread.Sleep(2);
                }
                capacities[t] = MagazineOf(Thread.CurrentThread).Capacity;
                starved[t] = SlubOf(m).ThreadCaches.Single(tc => tc.Thread == Thread.CurrentThread).StarvedSlowPaths;
            }
            catch (Exception e)
            {
                failure = e;
            }
        }, inTurn: false);
        Assert.Null(failure);
        Assert.All(capacities, c => Assert.Equal(limit, c));
        // Each found room within a few rounds, not after hundreds of them on the locked cpu slab.
        Assert.All(starved, n => Assert.InRange(n, 0, 10 * 600));
        Assert.Equal(0, setup.Capacity);
        Assert.Equal(0, setup.Count);
        Assert.Equal(0, setup.Trim);
        // The setup thread comes back: its magazine is empty with no capacity, and works on; the bound holds.
        m.KmemCacheFree(s, m.KmemCacheAlloc(s, Gfp.Kernel));
        Assert.Equal(bound, s.MagazineRoom + SlubOf(m).ThreadCaches.Sum(tc => tc.ByCacheId.ElementAtOrDefault(s.Id) is { } mag && mag.Cache == s ? mag.Capacity : 0));
        SlabPropertyTests.Validate(m);
        Assert.Equal(0, m.KmemCacheShrink(s));
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
    }

    [Fact]
    public void UnderPressureTheSlowPathDrainsLiveThreadsMagazinesBeforeReclaimAndOom()
    {
        using var m = Machine.Boot(Small(6));
        int fresh = ObtainablePages(m);
        var s = m.KmemCacheCreate("pressure", 4096, 0, SlabFlags.None, null)!;
        using var release = new ManualResetEventSlim();
        using var ready = new ManualResetEventSlim();
        // A live thread frees its objects into its magazine and stays.
        var holder = new Thread(() =>
        {
            var objs = Enumerable.Range(0, 200).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToList();
            objs.ForEach(p => m.KmemCacheFree(s, p));
            ready.Set();
            release.Wait();
        });
        holder.Start();
        ready.Wait();
        long held = SlubOf(m).MagazineObjects(s);
        Assert.True(held > 0);
        // Take every free page: the last ones come from the drained magazines; the OOM killer, when it runs at
        // the very end, finds them drained already.
        var pages = new List<Page>();
        while (true)
        {
            var p = m.AllocPages(Gfp.Kernel | Gfp.NoWarn, 0);
            if (m.Log.Contains("invoked oom-killer"))
            {
                Assert.Equal(0, SlubOf(m).MagazineObjects(s));
            }
            if (p.IsNull)
            {
                break;
            }
            pages.Add(p);
        }
        Assert.Equal(0, SlubOf(m).MagazineObjects(s));
        Assert.True(pages.Count >= fresh * 0.97 - 1, $"{pages.Count} pages with a live thread's magazine, {fresh} fresh");
        pages.ForEach(p => m.FreePages(p, 0));
        release.Set();
        holder.Join();
        SlabPropertyTests.Validate(m);
        m.KmemCacheDestroy(s);
    }

    [Fact]
    public unsafe void StealingWhileOwnersRunTightPairsNeverHandsAnObjectOutTwice()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 8 });
        var s = m.KmemCacheCreate("steal", 32, 0, SlabFlags.None, null)!;
        var live = new ConcurrentDictionary<nint, int>();
        using var stop = new CancellationTokenSource();
        Exception? failure = null;
        var owners = Enumerable.Range(0, 3).Select(t => new Thread(() =>
        {
            try
            {
                var mine = new nint[8];
                for (long round = 0; !stop.IsCancellationRequested || round < 50_000; round++)
                {
                    int k = (int)(round % mine.Length);
                    if (mine[k] != 0)
                    {
                        Assert.Equal(mine[k] + t, *(long*)mine[k]);
                        Assert.True(live.TryRemove(mine[k], out _));
                        m.KmemCacheFree(s, mine[k]);
                    }
                    nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
                    Assert.True(live.TryAdd(p, t), $"0x{p:x} handed out twice");
                    *(long*)p = p + t;
                    mine[k] = p;
                }
                foreach (nint p in mine)
                {
                    live.TryRemove(p, out _);
                    m.KmemCacheFree(s, p);
                }
            }
            catch (Exception e)
            {
                failure = e;
            }
        })).ToArray();
        Array.ForEach(owners, o => o.Start());
        for (int i = 0; i < 300; i++)
        {
            m.KmemCacheShrink(s);
        }
        stop.Cancel();
        Assert.All(owners, o => Assert.True(o.Join(TimeSpan.FromMinutes(1))));
        Assert.Null(failure);
        Assert.Empty(live);
        SlabPropertyTests.Validate(m);
        Assert.Equal(0, m.KmemCacheShrink(s));
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
    }
}
