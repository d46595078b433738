// Linux 6.1's lib/test_meminit.c: with init_on_alloc or init_on_free, pages, kmalloc'd and vmalloc'd blocks
// and slab objects come back zeroed after being filled with garbage and freed; a constructor's pattern
// survives; a SLAB_TYPESAFE_BY_RCU object is never wiped, keeps its bytes through kmem_cache_free inside a
// read section, and its content survives reallocation; bulk allocations are zeroed too. The page and
// vmalloc cases run on every backend; the slab cases on SLUB and SLAB (6.1's SLOB does not initialize its
// objects: its kernel run fails them too). The loops are the kernel's, with fewer iterations by default;
// the full ones sit behind the Soak trait.
namespace Kmem.Tests.Slab.Kunit;

public class MeminitTests
{
    private const uint GarbageInt = 0x09A7BA9E;
    private const byte GarbageByte = 0x9E;
    private const uint CtorPattern = 0x41414141;
    private const int CtorBytes = sizeof(uint);

    public static TheoryData<SlabAllocator, bool, bool> Modes()
    {
        var data = new TheoryData<SlabAllocator, bool, bool>();
        foreach (var kind in new[] { SlabAllocator.Slub, SlabAllocator.Slab, SlabAllocator.Slob })
        {
            data.Add(kind, true, false);
            data.Add(kind, false, true);
        }
        return data;
    }

    public static TheoryData<SlabAllocator, bool, bool> SlabModes()
    {
        var data = new TheoryData<SlabAllocator, bool, bool>();
        foreach (var kind in new[] { SlabAllocator.Slub, SlabAllocator.Slab })
        {
            data.Add(kind, true, false);
            data.Add(kind, false, true);
            data.Add(kind, true, true);
        }
        return data;
    }

    private static Machine Boot(SlabAllocator kind, bool initOnAlloc, bool initOnFree) =>
        Machine.Boot(new MachineOptions { Memory = "256M", Slab = kind, Seed = 11, InitOnAlloc = initOnAlloc, InitOnFree = initOnFree });

    private static unsafe int CountNonzeroBytes(nint p, int size) => size - new ReadOnlySpan<byte>((void*)p, size).Count((byte)0);

    private static unsafe void FillWithGarbageSkip(nint p, int size, int skip)
    {
        uint* w = (uint*)(p + skip);
        size -= skip;
        int i = 0;
        while (size >= sizeof(uint))
        {
            w[i++] = GarbageInt;
            size -= sizeof(uint);
        }
        new Span<byte>(&w[i], size).Fill(GarbageByte);
    }

    private static void FillWithGarbage(nint p, int size) => FillWithGarbageSkip(p, size, 0);

    [Theory]
    [MemberData(nameof(Modes))]
    public void TestPages(SlabAllocator kind, bool initOnAlloc, bool initOnFree)
    {
        using var m = Boot(kind, initOnAlloc, initOnFree);
        int failures = 0;
        for (int order = 0; order < 11; order++)
        {
            int size = 4096 << order;
            var page = m.AllocPages(Gfp.Kernel, order);
            FillWithGarbage(m.PageAddress(page), size);
            m.FreePages(page, order);
            page = m.AllocPages(Gfp.Kernel, order);
            nint buf = m.PageAddress(page);
            failures += CountNonzeroBytes(buf, size) != 0 ? 1 : 0;
            FillWithGarbage(buf, size);
            m.FreePages(page, order);
        }
        Assert.Equal(0, failures);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void TestKvmalloc(SlabAllocator kind, bool initOnAlloc, bool initOnFree)
    {
        using var m = Boot(kind, initOnAlloc, initOnFree);
        var failed = new List<string>();
        for (int i = 0; i < 20; i++)
        {
            int size = 1 << i;
            // 6.1's SLOB serves small kmallocs from its shared pages without initializing them.
            if (kind != SlabAllocator.Slob || size >= 4096)
            {
                nint buf = m.Kmalloc((nuint)size, Gfp.Kernel);
                FillWithGarbage(buf, size);
                m.Kfree(buf);
                buf = m.Kmalloc((nuint)size, Gfp.Kernel);
                if (CountNonzeroBytes(buf, size) != 0)
                {
                    failed.Add($"kmalloc {size}");
                }
                FillWithGarbage(buf, size);
                m.Kfree(buf);
            }
            nint v = m.Vmalloc((nuint)size);
            FillWithGarbage(v, size);
            m.Vfree(v);
            v = m.Vmalloc((nuint)size);
            if (CountNonzeroBytes(v, size) != 0)
            {
                failed.Add($"vmalloc {size}");
            }
            FillWithGarbage(v, size);
            m.Vfree(v);
        }
        Assert.Empty(failed);
    }

    /// <summary>check_buf: zeroed when it must be, the constructor's pattern when there is one.</summary>
    private static unsafe bool CheckBuf(nint buf, int size, bool wantCtor, bool wantRcu, bool wantZero)
    {
        int bytes = CountNonzeroBytes(buf, size);
        if (wantZero)
        {
            return bytes != 0;
        }
        if (wantCtor)
        {
            return *(uint*)buf != CtorPattern;
        }
        return bytes != 0 && !wantRcu;
    }

    private static unsafe bool DoKmemCacheSize(Machine m, int size, bool wantCtor, bool wantRcu, bool wantZero, int iterations)
    {
        bool fail = false;
        Gfp mask = Gfp.Kernel | (wantZero ? Gfp.Zero : 0);
        var c = m.KmemCacheCreate("test_cache", (uint)size, 1, wantRcu ? SlabFlags.TypesafeByRcu : SlabFlags.None,
            wantCtor ? obj => *(uint*)obj = CtorPattern : null)!;
        for (int iter = 0; iter < iterations; iter++)
        {
            nint buf = m.KmemCacheAlloc(c, mask);
            fail |= CheckBuf(buf, size, wantCtor, wantRcu, wantZero);
            FillWithGarbageSkip(buf, size, wantCtor ? CtorBytes : 0);
            if (!wantRcu)
            {
                m.KmemCacheFree(c, buf);
                continue;
            }
            // An RCU cache: inside a read section the object may be touched after it is freed.
            using (m.RcuReadLock())
            {
                nint copy = m.Kmalloc((nuint)size, Gfp.Atomic);
                new ReadOnlySpan<byte>((void*)buf, size).CopyTo(new Span<byte>((void*)copy, size));
                m.KmemCacheFree(c, buf);
                fail |= CheckBuf(buf, size, wantCtor, wantRcu, false);
                fail |= !new ReadOnlySpan<byte>((void*)buf, size).SequenceEqual(new ReadOnlySpan<byte>((void*)copy, size));
                m.Kfree(copy);
            }
        }
        m.KmemCacheDestroy(c);
        return fail;
    }

    private static bool DoKmemCacheSizeBulk(Machine m, int size, int maxiter)
    {
        var c = m.KmemCacheCreate("test_cache", (uint)size, (uint)size, SlabFlags.None, null)!;
        bool fail = false;
        var objects = new nint[10];
        for (int iter = 0; iter < maxiter && !fail; iter++)
        {
            int num = m.KmemCacheAllocBulk(c, Gfp.Kernel, objects);
            for (int i = 0; i < num; i++)
            {
                fail |= CountNonzeroBytes(objects[i], size) != 0;
                FillWithGarbage(objects[i], size);
            }
            if (num > 0)
            {
                m.KmemCacheFreeBulk(c, objects.AsSpan(0, num));
            }
        }
        m.KmemCacheDestroy(c);
        return fail;
    }

    private static unsafe bool DoKmemCacheRcuPersistent(Machine m, int size, int maxiter)
    {
        var c = m.KmemCacheCreate("test_cache", (uint)size, (uint)size, SlabFlags.TypesafeByRcu, null)!;
        nint buf = m.KmemCacheAlloc(c, Gfp.Kernel);
        nint saved = buf;
        FillWithGarbage(buf, size);
        byte[] contents = new ReadOnlySpan<byte>((void*)buf, size).ToArray();
        m.KmemCacheFree(c, buf);
        bool fail = false;
        var used = new List<nint>();
        for (int iter = 0; iter < maxiter; iter++)
        {
            buf = m.KmemCacheAlloc(c, Gfp.Kernel);
            used.Add(buf);
            if (buf == saved)
            {
                fail = !contents.AsSpan().SequenceEqual(new ReadOnlySpan<byte>((void*)buf, size));
                break;
            }
        }
        foreach (nint p in used)
        {
            m.KmemCacheFree(c, p);
        }
        m.KmemCacheDestroy(c);
        return fail;
    }

    private static List<string> RunKmemcache(Machine m, int sizes, int iterations, int bulkIterations)
    {
        var failed = new List<string>();
        for (int i = 0; i < sizes; i++)
        {
            int size = 8 << i;
            for (int flags = 0; flags < 8; flags++)
            {
                bool ctor = (flags & 1) != 0, rcu = (flags & 2) != 0, zero = (flags & 4) != 0;
                if (ctor && zero)
                {
                    continue;
                }
                if (DoKmemCacheSize(m, size, ctor, rcu, zero, iterations))
                {
                    failed.Add($"size {size} ctor={ctor} rcu={rcu} zero={zero}");
                }
            }
            if (DoKmemCacheSizeBulk(m, size, bulkIterations))
            {
                failed.Add($"bulk {size}");
            }
        }
        return failed;
    }

    private static List<string> RunRcuPersistent(Machine m, int sizes, int maxiter)
    {
        var failed = new List<string>();
        for (int i = 0; i < sizes; i++)
        {
            if (DoKmemCacheRcuPersistent(m, 8 << i, maxiter))
            {
                failed.Add($"rcu persistent {8 << i}");
            }
        }
        return failed;
    }

    [Theory]
    [MemberData(nameof(SlabModes))]
    public void TestKmemcache(SlabAllocator kind, bool initOnAlloc, bool initOnFree)
    {
        using var m = Boot(kind, initOnAlloc, initOnFree);
        Assert.Empty(RunKmemcache(m, sizes: 10, iterations: 4, bulkIterations: 64));
        Assert.Empty(m.SlabLayer!.ValidateAll());
    }

    [Theory]
    [MemberData(nameof(SlabModes))]
    public void TestRcuPersistent(SlabAllocator kind, bool initOnAlloc, bool initOnFree)
    {
        using var m = Boot(kind, initOnAlloc, initOnFree);
        Assert.Empty(RunRcuPersistent(m, sizes: 10, maxiter: 256));
    }

    [Theory]
    [Trait("Category", "Soak")]
    [MemberData(nameof(SlabModes))]
    public void TestMeminitInFull(SlabAllocator kind, bool initOnAlloc, bool initOnFree)
    {
        using var m = Boot(kind, initOnAlloc, initOnFree);
        Assert.Empty(RunKmemcache(m, sizes: 10, iterations: 10, bulkIterations: 1024));
        Assert.Empty(RunRcuPersistent(m, sizes: 10, maxiter: 1024));
    }

    [Fact]
    public void WithoutInitSlabHandsOutWhatTheLastUserLeft()
    {
        // The yardstick can fail: with neither option, SLAB reuses a freed object as it was.
        using var m = Boot(SlabAllocator.Slab, false, false);
        nint p = m.Kmalloc(64, Gfp.Kernel);
        FillWithGarbage(p, 64);
        m.Kfree(p);
        nint q = m.Kmalloc(64, Gfp.Kernel);
        Assert.Equal(p, q);
        Assert.NotEqual(0, CountNonzeroBytes(q, 64));
        m.Kfree(q);
    }
}
