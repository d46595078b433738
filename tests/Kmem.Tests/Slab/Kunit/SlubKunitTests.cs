// Linux 6.1's lib/slub_kunit.c on Kmem's SLUB: each case corrupts a debug cache on purpose (a red zone of an
// allocated or a free object, a free object's poison, its first word, its free pointer), runs
// validate_slab_cache and expects exactly the errors the kernel counts (one per report, one per fix). The
// counts are the kernel's own; the reports go to the log. After each case the cache validates clean and is
// destroyed.
namespace Kmem.Tests.Slab.Kunit;

public class SlubKunitTests
{
    private static Machine Boot() => Machine.Boot(new MachineOptions { Memory = "128M", Slab = SlabAllocator.Slub, Seed = 3 });

    /// <summary>validate_slab_cache with slab_errors reset, as the kunit resource hook counts.</summary>
    private static int Validate(Machine m, KmemCache s) => ((Kmem.Slab.Slub)m.SlabLayer!).Sysfs.ValidateSlabCache(s);

    private static unsafe byte* Ptr(nint p) => (byte*)p;

    [Fact]
    public unsafe void TestClobberZone()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("TestSlub_RZ_alloc", 64, 0, SlabFlags.RedZone, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        Ptr(p)[64] = 0x12;
        Assert.Equal(2, Validate(m, s));
        Assert.Contains(m.Log.Lines, l => l.Contains("BUG TestSlub_RZ_alloc (Not tainted): Right Redzone overwritten", StringComparison.Ordinal));
        Assert.Equal(0, Validate(m, s));
        m.KmemCacheFree(s, p);
        m.KmemCacheDestroy(s);
        Assert.DoesNotContain(m.SlabCaches, c => c == s);
    }

    [Fact]
    public unsafe void TestNextPointer()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("TestSlub_next_ptr_free", 64, 0, SlabFlags.Poison, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, p);
        ulong* ptrAddr = (ulong*)(p + (nint)s.Offset);
        ulong tmp = *ptrAddr;
        Ptr(p)[s.Offset] = (byte)~Ptr(p)[s.Offset];

        // The corrupted free chain, the wrong count of objects in use, and its fix.
        Assert.Equal(3, Validate(m, s));
        Assert.Contains(m.Log.Lines, l => l.Contains("Freechain corrupt", StringComparison.Ordinal));

        // The free pointer repaired: still the wrong count of objects in use and its fix.
        *ptrAddr = tmp;
        Assert.Equal(2, Validate(m, s));

        // The previous validation put the count right.
        Assert.Equal(0, Validate(m, s));
        m.KmemCacheDestroy(s);
        Assert.DoesNotContain(m.SlabCaches, c => c == s);
    }

    [Fact]
    public unsafe void TestFirstWord()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("TestSlub_1th_word_free", 64, 0, SlabFlags.Poison, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, p);
        *Ptr(p) = 0x78;
        Assert.Equal(2, Validate(m, s));
        Assert.Contains(m.Log.Lines, l => l.Contains("BUG TestSlub_1th_word_free (Not tainted): Poison overwritten", StringComparison.Ordinal));
        Assert.Equal(0, Validate(m, s));
        m.KmemCacheDestroy(s);
        Assert.DoesNotContain(m.SlabCaches, c => c == s);
    }

    [Fact]
    public unsafe void TestClobber50thByte()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("TestSlub_50th_word_free", 64, 0, SlabFlags.Poison, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, p);
        Ptr(p)[50] = 0x9a;
        Assert.Equal(2, Validate(m, s));
        Assert.Equal(0, Validate(m, s));
        m.KmemCacheDestroy(s);
        Assert.DoesNotContain(m.SlabCaches, c => c == s);
    }

    [Fact]
    public unsafe void TestClobberRedzoneFree()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("TestSlub_RZ_free", 64, 0, SlabFlags.RedZone, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, p);
        Ptr(p)[64] = 0xab;
        Assert.Equal(2, Validate(m, s));
        Assert.Equal(0, Validate(m, s));
        m.KmemCacheDestroy(s);
        Assert.DoesNotContain(m.SlabCaches, c => c == s);
    }

    [Fact]
    public void ValidateThroughSysfsLogsTheReportAndACleanCacheCountsNothing()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("TestSlub_sysfs", 96, 0, SlabFlags.Poison | SlabFlags.RedZone | SlabFlags.StoreUser, null)!;
        var objs = Enumerable.Range(0, 100).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToArray();
        for (int i = 0; i < objs.Length; i += 2)
        {
            m.KmemCacheFree(s, objs[i]);
        }
        // Full slabs of a SLAB_STORE_USER cache are validated too, and clean ones count nothing.
        Assert.Equal(0, Validate(m, s));
        Assert.Equal("", m.SysSlab.Read("TestSlub_sysfs", "validate"));
        unsafe
        {
            Ptr(objs[1])[-1] = 0;
        }
        m.SysSlab.Write("TestSlub_sysfs", "validate", "1\n");
        Assert.Contains(m.Log.Lines, l => l.Contains("Left Redzone overwritten", StringComparison.Ordinal));
        Assert.Throws<ArgumentException>(() => m.SysSlab.Write("TestSlub_sysfs", "validate", "0"));
        Assert.Equal(0, Validate(m, s));
        for (int i = 1; i < objs.Length; i += 2)
        {
            m.KmemCacheFree(s, objs[i]);
        }
        m.KmemCacheDestroy(s);
        Assert.DoesNotContain(m.SlabCaches, c => c == s);
    }
}
