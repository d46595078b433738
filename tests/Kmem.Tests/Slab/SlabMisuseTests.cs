// Misuse of the slab API, as slub_kunit and test-wrong do it: a double free, a
// pointer into the middle of an object, an object freed to the wrong cache, a
// page that is not a slab, a pointer outside the direct map. Each is reported
// once, names the address (PAGE_OFFSET-based) and the cache, and leaves the
// caches as they were: the next allocations still hand every object out once.
namespace Kmem.Tests.Slab;

public class SlabMisuseTests
{
    [Theory]
    [MemberData(nameof(SlabBackends.Cached), MemberType = typeof(SlabBackends))]
    public void ADoubleFreeIsReportedAndChangesNothing(SlabAllocator slab)
    {
        using var m = KmemCacheTests.Boot(slab: slab);
        var s = m.KmemCacheCreate("df", 64, 0, SlabFlags.None, null)!;
        nint a = m.KmemCacheAlloc(s, Gfp.Kernel);
        nint b = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, a);
        string before = m.Proc.Slabinfo();
        var e = Assert.Throws<SlabBugException>(() => m.KmemCacheFree(s, a));
        Assert.Contains("BUG df (Not tainted): Object already free", e.Message, StringComparison.Ordinal);
        Assert.Equal("df", e.Cache);
        Assert.Equal(KernelAddress(m, a), e.Address);
        Assert.Contains($"0x{KernelAddress(m, a):x}", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, m.Proc.Slabinfo());
        SlabPropertyTests.Validate(m);
        // The freed object comes back once, not twice.
        nint c = m.KmemCacheAlloc(s, Gfp.Kernel);
        nint d = m.KmemCacheAlloc(s, Gfp.Kernel);
        Assert.Equal(a, c);
        Assert.NotEqual(c, d);
        Assert.NotEqual(b, d);
        foreach (nint p in new[] { b, c, d })
        {
            m.KmemCacheFree(s, p);
        }
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
    }

    [Theory]
    [MemberData(nameof(SlabBackends.Cached), MemberType = typeof(SlabBackends))]
    public void ADoubleKfreeOfAnObjectOutsideTheCpuSlabIsCaughtToo(SlabAllocator slab)
    {
        using var m = KmemCacheTests.Boot(slab: slab);
        nint p;
        using (m.OnCpu(0))
        {
            p = m.Kmalloc(32, Gfp.Kernel);
        }
        using (m.OnCpu(1))
        {
            m.Kfree(p);
            var e = Assert.Throws<SlabBugException>(() => m.Kfree(p));
            Assert.Equal("kmalloc-32", e.Cache);
        }
    }

    [Theory]
    [MemberData(nameof(SlabBackends.Cached), MemberType = typeof(SlabBackends))]
    public void ThePolicyReportLogsAndCarriesOn(SlabAllocator slab)
    {
        using var m = KmemCacheTests.Boot(onBug: OnBug.Report, slab: slab);
        nint p = m.Kmalloc(100, Gfp.Kernel);
        m.Kfree(p);
        m.Kfree(p);
        Assert.True(m.Log.Contains("BUG kmalloc-128 (Not tainted): Object already free"));
        nint q = m.Kmalloc(100, Gfp.Kernel);
        nint r = m.Kmalloc(100, Gfp.Kernel);
        Assert.NotEqual(q, r);
        m.Kfree(q);
        m.Kfree(r);
    }

    [Theory]
    [MemberData(nameof(SlabBackends.Cached), MemberType = typeof(SlabBackends))]
    public void APointerInsideAnObjectIsNotAnObject(SlabAllocator slab)
    {
        using var m = KmemCacheTests.Boot(slab: slab);
        var s = m.KmemCacheCreate("mid", 64, 0, SlabFlags.None, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        var e = Assert.Throws<SlabBugException>(() => m.KmemCacheFree(s, p + 8));
        Assert.Contains("Invalid object pointer", e.Message, StringComparison.Ordinal);
        Assert.Equal("mid", e.Cache);
        m.KmemCacheFree(s, p);
    }

    [Theory]
    [MemberData(nameof(SlabBackends.Cached), MemberType = typeof(SlabBackends))]
    public void AnObjectFreedToTheWrongCacheIsReported(SlabAllocator slab)
    {
        using var m = KmemCacheTests.Boot(slab: slab);
        var a = m.KmemCacheCreate("cache_a", 64, 0, SlabFlags.None, null)!;
        // Unmergeable, or cache_b would be cache_a under a second name.
        var b = m.KmemCacheCreate("cache_b", 64, 0, SlabFlags.NoMerge, null)!;
        nint p = m.KmemCacheAlloc(a, Gfp.Kernel);
        var e = Assert.Throws<SlabBugException>(() => m.KmemCacheFree(b, p));
        Assert.Contains("kmem_cache_free: Wrong slab cache. cache_b but object is from cache_a", e.Message, StringComparison.Ordinal);
        m.KmemCacheFree(a, p);
    }

    [Theory]
    [MemberData(nameof(SlabBackends.Cached), MemberType = typeof(SlabBackends))]
    public void APageThatIsNotASlabAndAPointerOutsideTheDirectMapAreInvalid(SlabAllocator slab)
    {
        using var m = KmemCacheTests.Boot(slab: slab);
        nint page = m.GetFreePage(Gfp.Kernel);
        var e = Assert.Throws<SlabBugException>(() => m.Kfree(page));
        Assert.Contains("Freeing invalid pointer", e.Message, StringComparison.Ordinal);
        Assert.Contains($"0x{KernelAddress(m, page):x}", e.Message, StringComparison.Ordinal);
        Assert.Equal(1, m.PageRefCount(m.VirtToPage(page)));
        m.FreePage(page);

        byte[] managed = new byte[64];
        unsafe
        {
            fixed (byte* host = managed)
            {
                nint foreign = (nint)host;
                Assert.Throws<SlabBugException>(() => m.Kfree(foreign));
                var s = m.KmemCacheCreate("foreign", 64, 0, SlabFlags.None, null)!;
                var e2 = Assert.Throws<SlabBugException>(() => m.KmemCacheFree(s, foreign));
                Assert.Equal("foreign", e2.Cache);
            }
        }
    }

    [Theory]
    [MemberData(nameof(SlabBackends.Cached), MemberType = typeof(SlabBackends))]
    public void APointerIntoALargeKmallocThatIsNotItsStartIsInvalid(SlabAllocator slab)
    {
        using var m = KmemCacheTests.Boot(slab: slab);
        nint p = m.Kmalloc(20000, Gfp.Kernel);
        Assert.Throws<SlabBugException>(() => m.Kfree(p + 4096));
        m.Kfree(p);
    }

    [Fact]
    public unsafe void AUseAfterFreeThatClobbersTheFreePointerIsFoundByTheValidator()
    {
        using var m = KmemCacheTests.Boot();
        // Pinned, the thread uses the cpu slab itself: the freed object goes onto the cpu freelist.
        using var cpu = m.OnCpu(0);
        var s = m.KmemCacheCreate("uaf", 64, 0, SlabFlags.None, null)!;
        nint a = m.KmemCacheAlloc(s, Gfp.Kernel);
        nint b = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, a);
        SlabPropertyTests.Validate(m);
        long saved = *(long*)(a + (nint)s.Offset);
        *(long*)(a + (nint)s.Offset) = 0x4141414141414141;
        var problems = m.SlabLayer!.ValidateAll();
        Assert.Contains(problems, p => p.Contains("cpu", StringComparison.Ordinal) && p.Contains("is not an object", StringComparison.Ordinal));
        *(long*)(a + (nint)s.Offset) = saved;
        SlabPropertyTests.Validate(m);
        m.KmemCacheFree(s, b);
    }

    private static ulong KernelAddress(Machine m, nint p) =>
        0xffff888000000000UL + (Machine.PageToPfn(m.VirtToPage(p)) << 12) + (ulong)(p & 0xfff);
}
