// Mempools against mm/mempool.c of 6.1: the order of mempool_alloc (allocator without reclaim,
// reserve, allocator with the caller's flags, sleep), mempool_free refilling the reserve first,
// resize and destroy. Exhaustion comes from fail_page_alloc (page pools) or from an allocator
// the test controls. Every wait uses the timeout overloads so a bug cannot hang the run.
using System.Collections.Concurrent;

namespace Kmem.Tests.Mempools;

public class MempoolTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private static Machine Boot() => Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 1 });

    /// <summary>fail_page_alloc armed to fail every order-0 allocation, also those that may reclaim.</summary>
    private static void FailEveryPage(Machine m)
    {
        m.FailPageAlloc.Verbose = 0;
        m.FailPageAlloc.MinOrder = 0;
        m.FailPageAlloc.Times = -1;
        m.FailPageAlloc.IgnoreGfpWait = false;
        m.FailPageAlloc.Probability = 100;
    }

    private static void StopFailing(Machine m) => m.FailPageAlloc.Probability = 0;

    /// <summary>An allocator the test switches on and off, counting what it hands out and takes back.</summary>
    private sealed class CountingAllocator(Machine m, nuint size)
    {
        private readonly ConcurrentBag<Gfp> _gfps = [];
        private long _allocated;
        private long _freed;

        public volatile bool Failing;
        public Func<bool>? FailWhen;

        public ConcurrentBag<Gfp> Gfps => _gfps;
        public long Allocated => Interlocked.Read(ref _allocated);
        public long Freed => Interlocked.Read(ref _freed);

        public nint Alloc(Gfp gfp, object? data)
        {
            _gfps.Add(gfp);
            if (Failing || (FailWhen?.Invoke() ?? false))
            {
                return 0;
            }
            nint p = m.Kmalloc(size, gfp);
            if (p != 0)
            {
                Interlocked.Increment(ref _allocated);
            }
            return p;
        }

        public void Free(nint element, object? data)
        {
            Interlocked.Increment(ref _freed);
            m.Kfree(element);
        }
    }

    [Fact]
    public void CreatingAPoolFillsItsReserveFromTheAllocator()
    {
        using var m = Boot();
        var a = new CountingAllocator(m, 64);
        var pool = m.MempoolCreate(5, a.Alloc, a.Free, null)!;
        Assert.Equal(5, pool.MinNr);
        Assert.Equal(5, pool.CurrNr);
        Assert.Equal(5, a.Allocated);
        Assert.All(a.Gfps, g => Assert.Equal(Gfp.Kernel, g));
        Assert.Equal(0, m.MempoolDestroy(pool));
        Assert.Equal(5, a.Freed);
    }

    [Fact]
    public void CreationFailsCleanlyWhenTheReserveCannotBeFilled()
    {
        using var m = Boot();
        int calls = 0;
        var a = new CountingAllocator(m, 64) { FailWhen = () => ++calls > 3 };
        Assert.Null(m.MempoolCreate(5, a.Alloc, a.Free, null));
        Assert.Equal(3, a.Allocated);
        Assert.Equal(3, a.Freed);
    }

    [Fact]
    public void AllocatorIsTriedFirstWithoutReclaimOrIoThenTheReserveIsUsed()
    {
        using var m = Boot();
        var a = new CountingAllocator(m, 64);
        var pool = m.MempoolCreate(2, a.Alloc, a.Free, null)!;
        a.Failing = true;
        int before = a.Gfps.Count;
        nint e = m.MempoolAlloc(pool, Gfp.Kernel, Patience);
        Assert.NotEqual(0, e);
        // One call to the allocator only, stripped of reclaim and I/O, with the three flags added.
        var tried = a.Gfps.ToList();
        Assert.Equal(before + 1, tried.Count);
        Gfp expected = (Gfp.Kernel | Gfp.NoMemalloc | Gfp.NoRetry | Gfp.NoWarn) & ~(Gfp.DirectReclaim | Gfp.Io);
        Assert.Contains(expected, tried);
        Assert.Equal(1, pool.CurrNr);
        Assert.Equal(1, pool.ReserveAllocs);
        m.MempoolFree(e, pool);
        Assert.Equal(2, pool.CurrNr);
    }

    [Fact]
    public void AnEmptyReserveMakesTheAllocatorRetryAtOnceWithTheCallersFlags()
    {
        using var m = Boot();
        var pool = m.MempoolCreatePagePool(1, 0)!;
        m.FailPageAlloc.Verbose = 0;
        m.FailPageAlloc.MinOrder = 0;
        m.FailPageAlloc.Times = -1;
        m.FailPageAlloc.Probability = 100;
        // ignore-gfp-wait (the default) spares allocations that may reclaim: only the first, stripped try fails.
        nint fromReserve = m.MempoolAlloc(pool, Gfp.Kernel, Patience);
        nint fromRetry = m.MempoolAlloc(pool, Gfp.Kernel, Patience);
        Assert.NotEqual(0, fromReserve);
        Assert.NotEqual(0, fromRetry);
        Assert.NotEqual(fromReserve, fromRetry);
        Assert.Equal(0, pool.CurrNr);
        Assert.Equal(1, pool.ReserveAllocs);
        Assert.Equal(0, pool.Sleeps);
        StopFailing(m);
        m.MempoolFree(fromRetry, pool);
        m.MempoolFree(fromReserve, pool);
        Assert.Equal(0, m.MempoolDestroy(pool));
    }

    [Fact]
    public void AnAtomicCallerGetsTheReserveThenNull()
    {
        using var m = Boot();
        var pool = m.MempoolCreatePagePool(3, 0)!;
        var reserved = new HashSet<nint>();
        FailEveryPage(m);
        for (int i = 0; i < 3; i++)
        {
            nint e = m.MempoolAlloc(pool, Gfp.Atomic);
            Assert.NotEqual(0, e);
            Assert.True(reserved.Add(e), "an element was handed out twice");
        }
        Assert.Equal(0, pool.CurrNr);
        long failuresBefore = m.FailPageAlloc.Failures;
        Assert.Equal(0, m.MempoolAlloc(pool, Gfp.Atomic));
        Assert.Equal(0, m.MempoolAlloc(pool, Gfp.NoWait));
        Assert.True(m.FailPageAlloc.Failures > failuresBefore);
        Assert.Equal(0, pool.Sleeps);
        Assert.Equal(3, pool.ElementsOut);
        StopFailing(m);
        foreach (nint e in reserved)
        {
            m.MempoolFree(e, pool);
        }
        Assert.Equal(3, pool.CurrNr);
    }

    [Fact]
    public void FreeRefillsTheReserveBeforeGivingBackToTheAllocator()
    {
        using var m = Boot();
        var pool = m.MempoolCreatePagePool(2, 0)!;
        nint a = m.MempoolAlloc(pool, Gfp.Kernel);
        nint b = m.MempoolAlloc(pool, Gfp.Kernel);
        Assert.Equal(2, pool.CurrNr); // the allocator served both
        FailEveryPage(m);
        nint c = m.MempoolAlloc(pool, Gfp.Atomic);
        nint d = m.MempoolAlloc(pool, Gfp.Atomic);
        Assert.Equal(0, pool.CurrNr);
        StopFailing(m);

        m.MempoolFree(a, pool);
        Assert.Equal(1, pool.CurrNr);
        Assert.Equal(1, m.PageRefCount(m.MempoolElementPage(a))); // kept, not freed
        m.MempoolFree(b, pool);
        Assert.Equal(2, pool.CurrNr);
        Assert.Equal(1, m.PageRefCount(m.MempoolElementPage(b)));
        m.MempoolFree(c, pool);
        Assert.Equal(2, pool.CurrNr);
        Assert.Equal(0, m.PageRefCount(m.MempoolElementPage(c))); // the reserve is full: back to the buddy
        m.MempoolFree(d, pool);
        Assert.Equal(0, m.PageRefCount(m.MempoolElementPage(d)));
        Assert.Equal(0, pool.ElementsOut);
    }

    [Fact]
    public async Task ASleepingCallerBlocksAndResumesWhenAnotherThreadFrees()
    {
        using var m = Boot();
        var pool = m.MempoolCreatePagePool(2, 0)!;
        FailEveryPage(m);
        nint first = m.MempoolAlloc(pool, Gfp.Kernel, Patience);
        nint second = m.MempoolAlloc(pool, Gfp.Kernel, Patience);
        Assert.Equal(0, pool.CurrNr);

        var sleeper = Task.Factory.StartNew(() => m.MempoolAlloc(pool, Gfp.Kernel, Patience), TaskCreationOptions.LongRunning);
        Assert.True(SpinWait.SpinUntil(() => pool.Waiters == 1, Patience), "the caller never went to sleep");
        Assert.False(sleeper.IsCompleted);

        m.MempoolFree(second, pool);
        nint got = await sleeper.WaitAsync(Patience);
        Assert.Equal(second, got);
        Assert.Equal(0, pool.CurrNr);
        Assert.True(pool.Sleeps >= 1);

        StopFailing(m);
        m.MempoolFree(first, pool);
        m.MempoolFree(got, pool);
        Assert.Equal(0, m.MempoolDestroy(pool));
    }

    [Fact]
    public void ABoundedWaitGivesUpWhenNothingIsFreed()
    {
        using var m = Boot();
        var pool = m.MempoolCreatePagePool(1, 0)!;
        FailEveryPage(m);
        nint only = m.MempoolAlloc(pool, Gfp.Kernel, Patience);
        Assert.Equal(0, m.MempoolAlloc(pool, Gfp.Kernel, TimeSpan.FromMilliseconds(30)));
        // It slept (more than once when a wake-up came before the time was up, as on a loaded host).
        Assert.True(pool.Sleeps >= 1, $"{pool.Sleeps} sleeps");
        Assert.Equal(0, pool.Waiters);
        StopFailing(m);
        m.MempoolFree(only, pool);
        Assert.Equal(1, pool.CurrNr);
    }

    [Fact]
    public async Task CancellingTheTokenWakesTheSleeperWithNull()
    {
        using var m = Boot();
        var pool = m.MempoolCreatePagePool(1, 0)!;
        FailEveryPage(m);
        nint only = m.MempoolAlloc(pool, Gfp.Kernel, Patience);
        using var cts = new CancellationTokenSource(Patience * 2);
        var sleeper = Task.Factory.StartNew(() => m.MempoolAlloc(pool, Gfp.Kernel, cts.Token), TaskCreationOptions.LongRunning);
        Assert.True(SpinWait.SpinUntil(() => pool.Waiters == 1, Patience));
        cts.Cancel();
        Assert.Equal(0, await sleeper.WaitAsync(Patience));
        Assert.Equal(0, pool.CurrNr);
        StopFailing(m);
        m.MempoolFree(only, pool);
    }

    [Fact]
    public async Task NoElementIsLostOrHandedOutTwiceUnderContention()
    {
        using var m = Boot();
        const int threads = 3, rounds = 3000, minNr = 4;
        var random = new Random(7);
        var a = new CountingAllocator(m, 96);
        var pool = m.MempoolCreate(minNr, a.Alloc, a.Free, null)!;
        // Half of all allocator calls fail, decided by one seeded source.
        a.FailWhen = () =>
        {
            lock (random)
            {
                return random.Next(2) == 0;
            }
        };
        var live = new ConcurrentDictionary<nint, int>();
        long handedOut = 0, returned = 0, refused = 0;
        var workers = Enumerable.Range(0, threads).Select(t => Task.Factory.StartNew(() =>
        {
            var mine = new List<nint>();
            var rng = new Random(100 + t);
            for (int i = 0; i < rounds; i++)
            {
                // A thread sleeps only while it holds nothing, so the elements it waits for are with
                // threads that do not sleep: the kernel's rule for mempool users.
                Gfp gfp = mine.Count == 0 ? Gfp.Kernel : Gfp.Atomic;
                nint e = m.MempoolAlloc(pool, gfp, Patience);
                if (e == 0)
                {
                    Assert.Equal(Gfp.Atomic, gfp);
                    Interlocked.Increment(ref refused);
                }
                else
                {
                    Assert.True(live.TryAdd(e, t), $"element 0x{e:x} handed out twice");
                    Interlocked.Increment(ref handedOut);
                    mine.Add(e);
                }
                if (e == 0 || mine.Count > 3 || rng.Next(3) == 0)
                {
                    foreach (nint f in mine)
                    {
                        Assert.True(live.TryRemove(f, out _));
                        m.MempoolFree(f, pool);
                        Interlocked.Increment(ref returned);
                    }
                    mine.Clear();
                }
            }
            foreach (nint f in mine)
            {
                Assert.True(live.TryRemove(f, out _));
                m.MempoolFree(f, pool);
                Interlocked.Increment(ref returned);
            }
        }, TaskCreationOptions.LongRunning)).ToArray();
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Empty(live);
        Assert.Equal(handedOut, returned);
        Assert.True(handedOut > rounds, "too few allocations to mean anything");
        Assert.Equal(0, pool.ElementsOut);
        Assert.Equal(minNr, pool.CurrNr);
        // Everything the allocator gave is either back with it or in the reserve.
        Assert.Equal(a.Allocated - a.Freed, pool.CurrNr);
        Assert.Equal(0, m.MempoolDestroy(pool));
        Assert.Equal(a.Allocated, a.Freed);
    }

    [Fact]
    public void ResizeShrinksByFreeingTheSurplusAndGrowsByFillingTheReserve()
    {
        using var m = Boot();
        var a = new CountingAllocator(m, 32);
        var pool = m.MempoolCreate(4, a.Alloc, a.Free, null)!;
        Assert.Equal(0, m.MempoolResize(pool, 2));
        Assert.Equal(2, pool.MinNr);
        Assert.Equal(2, pool.CurrNr);
        Assert.Equal(2, a.Freed);
        Assert.Equal(0, m.MempoolResize(pool, 6));
        Assert.Equal(6, pool.CurrNr);
        Assert.Equal(8, a.Allocated);
        // Growing while the allocator fails keeps the new minimum; frees refill the reserve later.
        a.Failing = true;
        Assert.Equal(0, m.MempoolResize(pool, 8));
        Assert.Equal(8, pool.MinNr);
        Assert.Equal(6, pool.CurrNr);
        nint e = m.MempoolAlloc(pool, Gfp.Kernel, Patience);
        m.MempoolFree(e, pool);
        Assert.Equal(6, pool.CurrNr);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.MempoolResize(pool, 0));
        a.Failing = false;
        Assert.Equal(0, m.MempoolDestroy(pool));
        Assert.Equal(a.Allocated, a.Freed);
    }

    [Fact]
    public void DestroyReportsTheElementsStillOutAndLaterFreesGoToTheAllocator()
    {
        using var m = Boot();
        var a = new CountingAllocator(m, 64);
        var pool = m.MempoolCreate(2, a.Alloc, a.Free, null)!;
        nint x = m.MempoolAlloc(pool, Gfp.Kernel);
        nint y = m.MempoolAlloc(pool, Gfp.Kernel);
        Assert.Equal(2, m.MempoolDestroy(pool));
        Assert.True(m.Log.Contains("2 element(s) still allocated"));
        Assert.Equal(2, a.Freed); // the reserve went back
        Assert.Throws<ObjectDisposedException>(() => m.MempoolAlloc(pool, Gfp.Kernel));
        m.MempoolFree(x, pool);
        m.MempoolFree(y, pool);
        Assert.Equal(4, a.Freed);
        Assert.Equal(0, pool.ElementsOut);
        Assert.Equal(0, m.MempoolDestroy(null));
    }

    [Fact]
    public void FreeingAnElementTwiceIntoTheReserveIsABugAndChangesNothing()
    {
        using var m = Boot();
        var pool = m.MempoolCreatePagePool(2, 0)!;
        FailEveryPage(m);
        nint e = m.MempoolAlloc(pool, Gfp.Atomic);
        nint other = m.MempoolAlloc(pool, Gfp.Atomic);
        StopFailing(m);
        m.MempoolFree(e, pool);
        var bug = Assert.Throws<KernelBugException>(() => m.MempoolFree(e, pool));
        Assert.Contains("double free", bug.Message);
        Assert.Equal(1, pool.CurrNr);
        Assert.Equal(1, pool.ElementsOut);
        m.MempoolFree(other, pool);
        Assert.Equal(2, pool.CurrNr);
    }

    [Fact]
    public void SlabAndKmallocPoolsHandOutUsableObjectsAndGiveThemBack()
    {
        using var m = Boot();
        var cache = m.KmemCacheCreate("mempool_test", 200, 0, SlabFlags.HwcacheAlign, null)!;
        var slabPool = m.MempoolCreateSlabPool(3, cache)!;
        var kmallocPool = m.MempoolCreateKmallocPool(3, 500)!;
        Assert.Equal("slab:mempool_test", slabPool.Name);
        nint o = m.MempoolAlloc(slabPool, Gfp.Kernel);
        nint k = m.MempoolAlloc(kmallocPool, Gfp.Kernel);
        Machine.ObjectSpan(cache, o).Fill(0x5a);
        Assert.True(m.Ksize(k) >= 500);
        m.MempoolFree(o, slabPool);
        m.MempoolFree(k, kmallocPool);
        Assert.Equal(0, m.MempoolDestroy(slabPool));
        Assert.Equal(0, m.MempoolDestroy(kmallocPool));
        m.KmemCacheDestroy(cache);
        Assert.False(m.Log.Contains("still has objects"));
    }

    [Fact]
    public void APagePoolElementIsTheFramesStructPagePointer()
    {
        using var m = Boot();
        var pool = m.MempoolCreatePagePool(1, 2)!;
        nint e = m.MempoolAlloc(pool, Gfp.Kernel);
        Page page = m.MempoolElementPage(e);
        Assert.Equal(e, m.MempoolPageElement(page));
        Assert.Equal(4 * Machine.PageSize, m.PageSpan(page, 2).Length);
        Assert.Throws<ArgumentException>(() => m.MempoolElementPage(e + 1));
        m.MempoolFree(e, pool);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.MempoolCreatePagePool(1, Machine.MaxOrder));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.MempoolCreateKmallocPool(1, 0));
    }

    [Fact]
    public void ZeroingIsWarnedOnceAndAPoolOfAnotherMachineIsRefused()
    {
        using var m = Boot();
        using var other = Boot();
        var pool = m.MempoolCreateKmallocPool(1, 64)!;
        m.MempoolFree(m.MempoolAlloc(pool, Gfp.Kernel | Gfp.Zero), pool);
        m.MempoolFree(m.MempoolAlloc(pool, Gfp.Kernel | Gfp.Zero), pool);
        Assert.Single(m.Log.Lines, l => l.Contains("__GFP_ZERO is not supported"));
        Assert.Throws<ArgumentException>(() => other.MempoolAlloc(pool, Gfp.Kernel));
    }
}
