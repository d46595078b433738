// kmem_cache behaviour on SLUB (the contracts SLAB shares run on both): objects
// are distinct, aligned, inside slab pages and usable as memory; the geometry
// (size, align, free pointer, order, objects per slab, min_partial, cpu_partial)
// is Linux 6.1's; empty slabs go back to the page allocator on shrink; destroy
// with objects left logs the kernel's lines and keeps the cache.
namespace Kmem.Tests.Slab;

public class KmemCacheTests
{
    internal static Machine Boot(int cpus = 2, OnBug onBug = OnBug.Throw, SlabAllocator slab = SlabAllocator.Slub) =>
        Machine.Boot(new MachineOptions { Memory = "256M", Cpus = cpus, Seed = 1, OnBug = onBug, Slab = slab });

    [Theory]
    [MemberData(nameof(SlabBackends.Cached), MemberType = typeof(SlabBackends))]
    public unsafe void ObjectsAreDistinctAlignedInsideSlabPagesAndWritable(SlabAllocator slab)
    {
        using var m = Boot(slab: slab);
        var s = m.KmemCacheCreate("test_obj", 100, 0, SlabFlags.HwcacheAlign, null)!;
        Assert.Equal(128u, s.Size);
        Assert.Equal(64u, s.Align);
        var seen = new HashSet<nint>();
        var objs = new List<nint>();
        for (int i = 0; i < 500; i++)
        {
            nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
            Assert.NotEqual(0, p);
            Assert.True(seen.Add(p), "an object was handed out twice");
            Assert.Equal(0, p % 64);
            var page = m.VirtToPage(p);
            Assert.True(m.PageSlab(page));
            Machine.ObjectSpan(s, p).Fill((byte)i);
            objs.Add(p);
        }
        for (int i = 0; i < objs.Count; i++)
        {
            Assert.Equal(-1, Machine.ObjectSpan(s, objs[i]).IndexOfAnyExcept((byte)i));
        }
        foreach (nint p in objs)
        {
            m.KmemCacheFree(s, p);
        }
        Assert.Equal(0, m.KmemCacheShrink(s));
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
    }

    [Theory]
    [InlineData(8u, 0u, SlabFlags.None, 8u, 8u)]
    [InlineData(24u, 0u, SlabFlags.HwcacheAlign, 32u, 32u)]
    [InlineData(33u, 0u, SlabFlags.HwcacheAlign, 64u, 64u)]
    [InlineData(200u, 0u, SlabFlags.HwcacheAlign, 256u, 64u)]
    [InlineData(20u, 16u, SlabFlags.None, 32u, 16u)]
    [InlineData(12u, 0u, SlabFlags.None, 16u, 8u)]
    public void SizeAndAlignFollowCalculateSizes(uint objectSize, uint align, SlabFlags flags, uint size, uint expectedAlign)
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("geom", objectSize, align, flags, null)!;
        Assert.Equal(size, s.Size);
        Assert.Equal(expectedAlign, s.Align);
        // Without a constructor the free pointer sits in the middle of the object, word-aligned.
        Assert.Equal(objectSize / 2 / 8 * 8, s.Offset);
    }

    [Fact]
    public unsafe void AConstructorKeepsTheObjectIntactAndRunsOncePerObjectOfANewSlab()
    {
        using var m = Boot();
        int calls = 0;
        var s = m.KmemCacheCreate("ctor", 64, 0, SlabFlags.None, p =>
        {
            calls++;
            new Span<byte>((void*)p, 64).Fill(0xAB);
        })!;
        Assert.Equal(64u, s.Offset);
        Assert.Equal(72u, s.Size);
        nint a = m.KmemCacheAlloc(s, Gfp.Kernel);
        Assert.Equal(s.ObjectsPerSlab, calls);
        m.KmemCacheFree(s, a);
        nint b = m.KmemCacheAlloc(s, Gfp.Kernel);
        Assert.Equal(-1, Machine.ObjectSpan(s, b).IndexOfAnyExcept((byte)0xAB));
        Assert.Equal(s.ObjectsPerSlab, calls);
        m.KmemCacheFree(s, b);
    }

    [Theory]
    [InlineData(1, 8u, 0, 512)]
    [InlineData(2, 512u, 1, 16)]
    [InlineData(2, 1024u, 2, 16)]
    [InlineData(2, 2048u, 3, 16)]
    [InlineData(4, 256u, 0, 16)]
    [InlineData(8, 256u, 1, 32)]
    [InlineData(8, 512u, 2, 32)]
    [InlineData(1, 512u, 0, 8)]
    [InlineData(1, 1024u, 1, 8)]
    [InlineData(2, 8192u, 3, 4)]
    [InlineData(2, 96u, 0, 42)]
    public void CalculateOrderMatchesTheKernelsTable(int cpus, uint size, int order, int objects)
    {
        using var m = Boot(cpus);
        var s = m.KmemCacheCreate("order", size, 0, SlabFlags.None, null)!;
        Assert.Equal(order, s.Order);
        Assert.Equal(objects, s.ObjectsPerSlab);
    }

    [Theory]
    [InlineData(8u, 5, 120u)]
    [InlineData(256u, 5, 52u)]
    [InlineData(1024u, 5, 24u)]
    [InlineData(4096u, 6, 6u)]
    [InlineData(8192u, 6, 6u)]
    public void MinPartialAndCpuPartialFollowTheKernel(uint size, int minPartial, uint cpuPartial)
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("partial", size, 0, SlabFlags.None, null)!;
        Assert.Equal(minPartial, s.MinPartial);
        Assert.Equal(cpuPartial, s.CpuPartial);
        Assert.Equal((cpuPartial * 2 + (uint)s.ObjectsPerSlab - 1) / (uint)s.ObjectsPerSlab, s.CpuPartialSlabs);
    }

    [Theory]
    [MemberData(nameof(SlabBackends.Cached), MemberType = typeof(SlabBackends))]
    public void ShrinkGivesEverySlabBackOnceTheObjectsAreFreed(SlabAllocator slab)
    {
        using var m = Boot(slab: slab);
        m.DrainAllPages();
        string before = FreeLine(m);
        var s = m.KmemCacheCreate("shrink", 256, 0, SlabFlags.None, null)!;
        var objs = new nint[2000];
        Assert.Equal(objs.Length, m.KmemCacheAllocBulk(s, Gfp.Kernel, objs));
        Assert.Contains("Slab:", m.Proc.Meminfo(), StringComparison.Ordinal);
        Assert.NotEqual("0", SlabUnreclaimable(m));
        Assert.Equal(1, m.KmemCacheShrink(s));
        m.KmemCacheFreeBulk(s, objs);
        Assert.Equal(0, m.KmemCacheShrink(s));
        Assert.Equal("0", SlabUnreclaimable(m));
        m.DrainAllPages();
        Assert.Equal(before, FreeLine(m));
    }

    [Theory]
    [MemberData(nameof(SlabBackends.Cached), MemberType = typeof(SlabBackends))]
    public void ZallocZeroesTheObject(SlabAllocator slab)
    {
        using var m = Boot(slab: slab);
        var s = m.KmemCacheCreate("zero", 48, 0, SlabFlags.None, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        Machine.ObjectSpan(s, p).Fill(0xFF);
        m.KmemCacheFree(s, p);
        nint q = m.KmemCacheZalloc(s, Gfp.Kernel);
        Assert.Equal(-1, Machine.ObjectSpan(s, q).IndexOfAnyExcept((byte)0));
        m.KmemCacheFree(s, q);
    }

    [Fact]
    public void DestroyWithObjectsLeftLogsTheKernelsLinesAndKeepsTheCache()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("leaky", 64, 0, SlabFlags.None, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        nint q = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, q);
        m.KmemCacheDestroy(s);
        Assert.False(s.IsDestroyed);
        Assert.True(m.Log.Contains("BUG leaky (Not tainted): Objects remaining in leaky on __kmem_cache_shutdown()"));
        Assert.True(m.Log.Contains("kmem_cache_destroy leaky: Slab cache still has objects when called from "
            + nameof(DestroyWithObjectsLeftLogsTheKernelsLinesAndKeepsTheCache)));
        Assert.Contains(m.Log.Lines, l => l.StartsWith("Object 0xffff", StringComparison.Ordinal) && l.EndsWith("@offset=0", StringComparison.Ordinal));
        Assert.Contains(m.SlabCaches, c => c.Name == "leaky");
        // The cache still works, and once empty it goes.
        m.KmemCacheFree(s, p);
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
        Assert.DoesNotContain(m.SlabCaches, c => c.Name == "leaky");
    }

    [Theory]
    [MemberData(nameof(SlabBackends.Cached), MemberType = typeof(SlabBackends))]
    public void CreateRejectsABadSizeWithNullOrPanicsWithSlabPanic(SlabAllocator slab)
    {
        using var m = Boot(slab: slab);
        Assert.Null(m.KmemCacheCreate("bad", 0, 0, SlabFlags.None, null));
        Assert.True(m.Log.Contains("kmem_cache_create_usercopy(bad) failed with error -22"));
        var e = Assert.Throws<InvalidOperationException>(() => m.KmemCacheCreate("bad", 0, 0, SlabFlags.Panic, null));
        Assert.Contains("Failed to create slab 'bad'. Error -22", e.Message, StringComparison.Ordinal);
        Assert.Null(m.KmemCacheCreate("bad", 64, 3, SlabFlags.None, null));
        // 0x10 is no SLAB_* flag; SLAB_KMALLOC (0x1000) is the slab layer's own.
        Assert.Null(m.KmemCacheCreate("bad", 64, 0, (SlabFlags)0x10, null));
        Assert.Null(m.KmemCacheCreate("bad", 64, 0, SlabFlags.Kmalloc, null));
        // Too big for any order below MAX_ORDER.
        Assert.Null(m.KmemCacheCreate("bad", 5u << 20, 0, SlabFlags.None, null));
        Assert.NotNull(m.KmemCacheCreate("big", 4u << 20, 0, SlabFlags.None, null));
    }

    internal static string FreeLine(Machine m) => m.Proc.Buddyinfo();

    internal static string SlabUnreclaimable(Machine m) =>
        m.Proc.Vmstat().Split('\n').First(l => l.StartsWith("nr_slab_unreclaimable ", StringComparison.Ordinal)).Split(' ')[1];
}
