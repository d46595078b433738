// No lock survives an exception: a kernel bug reported with OnBug.Throw from inside a locked
// region (a corrupt free pointer, a double free, a bad page state) leaves every lock free. The
// bug is raised on one thread; then other threads keep allocating from the same cache or zone,
// and shrink and destroy complete. A lock left held would hang them: each phase has a bound,
// and a phase that overruns it fails the test instead of hanging the run.
using Kmem.Tests.Slab;

namespace Kmem.Tests.Lifetime;

public class LockReleaseTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(60);

    private static Machine Boot(SlabAllocator slab) =>
        Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 7, Slab = slab, OnBug = OnBug.Throw });

    /// <summary>Four threads, each allocating and freeing objects of the cache on CPU 0 and 1 alike.</summary>
    private static async Task OthersKeepAllocating(Machine m, KmemCache s)
    {
        var workers = Enumerable.Range(0, 4).Select(w => Task.Run(() =>
        {
            var held = new List<nint>();
            for (int i = 0; i < 2000; i++)
            {
                using (i % 3 == 0 ? m.OnCpu(w % 2) : default)
                {
                    nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
                    Assert.NotEqual(0, p);
                    held.Add(p);
                    if (held.Count > 40)
                    {
                        held.ForEach(o => m.KmemCacheFree(s, o));
                        held.Clear();
                    }
                }
            }
            held.ForEach(o => m.KmemCacheFree(s, o));
        }));
        await Task.WhenAll(workers).WaitAsync(s_bound);
    }

    private static async Task ShrinkAndDestroy(Machine m, KmemCache s, params nint[] still)
    {
        await Task.Run(() =>
        {
            foreach (nint p in still)
            {
                m.KmemCacheFree(s, p);
            }
            m.KmemCacheShrink(s);
            m.KmemCacheDestroy(s);
        }).WaitAsync(s_bound);
    }

    [Fact]
    public async Task ACorruptFreePointerThrownUnderSlubsLocksLeavesTheCacheUsableByOtherThreads()
    {
        using var m = Boot(SlabAllocator.Slub);
        var s = m.KmemCacheCreate("lockfpc", 48, 0, SlabFlags.ConsistencyChecks | SlabFlags.Poison | SlabFlags.RedZone, null)!;
        nint keep = m.KmemCacheAlloc(s, Gfp.Kernel);
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, p);
        unsafe
        {
            *(long*)(p + (nint)s.Offset) = 0x1234;
        }
        var bug = await Task.Run(() => Assert.ThrowsAny<KernelBugException>(() => m.KmemCacheAlloc(s, Gfp.Kernel))).WaitAsync(s_bound);
        Assert.Contains("Freepointer corrupt", bug.Report, StringComparison.Ordinal);
        await OthersKeepAllocating(m, s);
        await ShrinkAndDestroy(m, s, keep);
        // The corrupt slab was isolated (all its objects marked used), as the kernel does: destroy keeps the cache
        // and says so, instead of hanging on a lock.
        Assert.True(s.IsDestroyed || m.Log.Contains("Slab cache still has objects"));
    }

    [Fact]
    public async Task AnImpossibleFreePointerPoppedFromANonDebugCpuFreelistIsReportedWithTheCpuLockReleased()
    {
        using var m = Boot(SlabAllocator.Slub);
        var s = m.KmemCacheCreate("lockcpufl", 64, 0, SlabFlags.None, null)!;
        nint keep, victim;
        // Pinned: the objects come from and go back to CPU 0's slab freelist, not a thread magazine.
        using (m.OnCpu(0))
        {
            keep = m.KmemCacheAlloc(s, Gfp.Kernel);
            victim = m.KmemCacheAlloc(s, Gfp.Kernel);
            m.KmemCacheFree(s, victim);
        }
        // A write after free over the free pointer: the next pop takes the victim and decodes garbage as the next.
        unsafe
        {
            *(long*)(victim + (nint)s.Offset) = 0x1234;
        }
        var bug = await Task.Run(() =>
        {
            using (m.OnCpu(0))
            {
                Assert.Equal(victim, m.KmemCacheAlloc(s, Gfp.Kernel));
                return Assert.ThrowsAny<KernelBugException>(() => m.KmemCacheAlloc(s, Gfp.Kernel));
            }
        }).WaitAsync(s_bound);
        Assert.Contains("Freepointer corrupt", bug.Report, StringComparison.Ordinal);
        // CPU 0's lock is free: pinned and unpinned threads allocate on, and the next pinned allocation is a sane one.
        await OthersKeepAllocating(m, s);
        nint next = await Task.Run(() =>
        {
            using (m.OnCpu(0))
            {
                return m.KmemCacheAlloc(s, Gfp.Kernel);
            }
        }).WaitAsync(s_bound);
        Assert.NotEqual(0, next);
        await ShrinkAndDestroy(m, s, keep, victim, next);
        // The corrupt slab was isolated (left off every list), as the kernel does: destroy keeps the cache and says
        // so, instead of hanging on a lock.
        Assert.True(s.IsDestroyed || m.Log.Contains("Slab cache still has objects"));
    }

    [Theory]
    [InlineData(SlabAllocator.Slub)]
    [InlineData(SlabAllocator.Slab)]
    [InlineData(SlabAllocator.Slob)]
    public async Task ADoubleFreeThrownUnderTheSlabLocksLeavesTheCacheUsableByOtherThreads(SlabAllocator slab)
    {
        using var m = Boot(slab);
        var s = m.KmemCacheCreate("lockdf", 64, 0, SlabFlags.None, null)!;
        nint keep = m.KmemCacheAlloc(s, Gfp.Kernel);
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, p);
        // Pinned, so that the free goes to the per-CPU structures and their locks rather than a thread magazine.
        await Task.Run(() =>
        {
            using (m.OnCpu(0))
            {
                Assert.ThrowsAny<KernelBugException>(() => m.KmemCacheFree(s, p));
            }
            Assert.ThrowsAny<KernelBugException>(() => m.KmemCacheFree(s, p));
        }).WaitAsync(s_bound);
        await OthersKeepAllocating(m, s);
        await ShrinkAndDestroy(m, s, keep);
        Assert.True(s.IsDestroyed);
        SlabPropertyTests.Validate(m);
    }

    [Fact]
    public async Task ABadPageStateThrownUnderTheZoneLockLeavesThePageAllocatorUsableByOtherThreads()
    {
        using var m = Boot(SlabAllocator.Slub);
        var page = m.AllocPages(Gfp.Kernel, 3);
        m.FreePages(page, 3);
        await Task.Run(() =>
        {
            Assert.Throws<BadPageStateException>(() => m.FreePages(page, 3));
            using (m.OnCpu(1))
            {
                Assert.Throws<BadPageStateException>(() => m.FreePages(page, 0));
            }
        }).WaitAsync(s_bound);
        var workers = Enumerable.Range(0, 4).Select(w => Task.Run(() =>
        {
            for (int i = 0; i < 500; i++)
            {
                using (m.OnCpu(w % 2))
                {
                    var pg = m.AllocPages(Gfp.Kernel, i % 4);
                    Assert.False(pg.IsNull);
                    m.FreePages(pg, i % 4);
                }
            }
        }));
        await Task.WhenAll(workers).WaitAsync(s_bound);
        await Task.Run(m.DrainAllPages).WaitAsync(s_bound);
        Assert.Contains("Node 0", m.Proc.Buddyinfo(), StringComparison.Ordinal);
    }
}
