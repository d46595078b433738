// Misuse under SLOB, which the kernel's SLOB cannot see but Kmem's side table of live blocks can: a
// double free, a pointer inside a block, a pointer SLOB never handed out, an object freed to the wrong
// cache, a kfree or ksize of a cache object, a kmalloc header overwritten. Each is reported once with
// the address and the cache, and nothing changes: the summary reads the same and the heap validates.
namespace Kmem.Tests.Slab;

public class SlobMisuseTests
{
    private static ulong KernelAddress(Machine m, nint p) => m.SlabLayer!.KernelAddress(p);

    /// <summary>Runs <paramref name="misuse"/>, which must throw a report naming <paramref name="what"/>,
    /// and checks that the heap is as it was.</summary>
    private static SlabBugException Refused(Machine m, Action misuse, string what)
    {
        string before = m.Proc.Read("slobinfo");
        string meminfo = m.Proc.Meminfo();
        var e = Assert.Throws<SlabBugException>(misuse);
        Assert.Contains(what, e.Message, StringComparison.Ordinal);
        Assert.Equal(before, m.Proc.Read("slobinfo"));
        Assert.Equal(meminfo, m.Proc.Meminfo());
        SlobTests.Validate(m);
        return e;
    }

    [Fact]
    public void ADoubleKfreeIsReportedAndChangesNothing()
    {
        using var m = SlobTests.Boot();
        nint keep = m.Kmalloc(40, Gfp.Kernel);
        nint p = m.Kmalloc(40, Gfp.Kernel);
        m.Kfree(p);
        var e = Refused(m, () => m.Kfree(p), "Object already free");
        Assert.Equal(KernelAddress(m, p), e.Address);
        Assert.Contains($"0x{KernelAddress(m, p):x}", e.Message, StringComparison.Ordinal);
        // The block comes back once.
        nint q = m.Kmalloc(40, Gfp.Kernel);
        Assert.Equal(p, q);
        Assert.NotEqual(q, m.Kmalloc(40, Gfp.Kernel));
        Assert.NotEqual(keep, q);
    }

    [Fact]
    public void ADoubleCacheFreeNamesTheCache()
    {
        using var m = SlobTests.Boot();
        var s = m.KmemCacheCreate("slob_df", 48, 0, SlabFlags.None, null)!;
        nint a = m.KmemCacheAlloc(s, Gfp.Kernel);
        nint b = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, a);
        var e = Refused(m, () => m.KmemCacheFree(s, a), "BUG slob_df (Not tainted): Object already free");
        Assert.Equal("slob_df", e.Cache);
        m.KmemCacheFree(s, b);
        // The page went back: a pointer into it is now simply not SLOB's.
        Refused(m, () => m.KmemCacheFree(s, b), "Freeing invalid pointer");
    }

    [Fact]
    public void APointerInsideABlockIsNotAnObjectStart()
    {
        using var m = SlobTests.Boot();
        var s = m.KmemCacheCreate("slob_mid", 64, 0, SlabFlags.None, null)!;
        nint o = m.KmemCacheAlloc(s, Gfp.Kernel);
        nint k = m.Kmalloc(100, Gfp.Kernel);
        var e = Refused(m, () => m.KmemCacheFree(s, o + 16), "Invalid object pointer");
        Assert.Equal("slob_mid", e.Cache);
        // The header of a kmalloc'd block belongs to it too.
        Refused(m, () => m.Kfree(k - 4), "Invalid object pointer");
        Refused(m, () => m.Kfree(k + 50), "Invalid object pointer");
    }

    [Fact]
    public void PointersSlobNeverHandedOutAreRefused()
    {
        using var m = SlobTests.Boot();
        nint k = m.Kmalloc(100, Gfp.Kernel);
        nint page = m.GetFreePage(Gfp.Kernel);
        Refused(m, () => m.Kfree(page), "kfree: Freeing invalid pointer");
        Refused(m, () => m.Kfree(page + 64), "Freeing invalid pointer");
        Refused(m, () => m.Kfree(unchecked((nint)0x1234_5678)), "Freeing invalid pointer");
        Assert.Equal((nuint)0, m.Ksize(0));
        m.Kfree(0);
        m.Kfree(Machine.ZeroSizePtr);
        Assert.Throws<SlabBugException>(() => m.Ksize(page));
        m.FreePage(page);
        m.Kfree(k);
    }

    [Fact]
    public void AnObjectFreedToTheWrongCacheIsReportedWithBothNames()
    {
        using var m = SlobTests.Boot();
        var a = m.KmemCacheCreate("slob_a", 64, 0, SlabFlags.None, null)!;
        var b = m.KmemCacheCreate("slob_b", 64, 0, SlabFlags.None, null)!;
        nint o = m.KmemCacheAlloc(a, Gfp.Kernel);
        var e = Refused(m, () => m.KmemCacheFree(b, o), "Wrong slab cache. slob_b but object is from slob_a");
        Assert.Equal("slob_b", e.Cache);
        nint k = m.Kmalloc(64, Gfp.Kernel);
        Refused(m, () => m.KmemCacheFree(b, k), "Wrong slab cache. slob_b but object is from (none)");
        m.KmemCacheFree(a, o);
        m.Kfree(k);
    }

    [Fact]
    public void KfreeAndKsizeOfACacheObjectAreRefusedBecauseSlobKeepsNoSizeForIt()
    {
        using var m = SlobTests.Boot();
        var s = m.KmemCacheCreate("slob_kf", 64, 0, SlabFlags.None, null)!;
        nint o = m.KmemCacheAlloc(s, Gfp.Kernel);
        var e = Refused(m, () => m.Kfree(o), "kfree of a kmem_cache object");
        Assert.Equal("slob_kf", e.Cache);
        Refused(m, () => m.Ksize(o), "ksize of a kmem_cache object");
        m.KmemCacheFree(s, o);
    }

    [Fact]
    public unsafe void AnOverwrittenKmallocHeaderIsReportedInsteadOfFreeingTheWrongSize()
    {
        using var m = SlobTests.Boot();
        nint p = m.Kmalloc(100, Gfp.Kernel);
        string before = m.Proc.Read("slobinfo");
        *(uint*)(p - 8) = 3000;
        var e = Assert.Throws<SlabBugException>(() => m.Kfree(p));
        Assert.Contains("kmalloc size header overwritten: 3000, allocated 100", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, m.Proc.Read("slobinfo"));
        // The validator sees the damage too, until it is repaired.
        Assert.Contains(m.SlabLayer!.ValidateAll(), v => v.Contains("header 3000, allocated 100", StringComparison.Ordinal));
        *(uint*)(p - 8) = 100;
        SlobTests.Validate(m);
        m.Kfree(p);
    }

    [Fact]
    public unsafe void TheValidatorReadsTheFreeChainInThePageAndCatchesItsCorruption()
    {
        using var m = SlobTests.Boot();
        nint keep = m.Kmalloc(10, Gfp.Kernel); // units 0..8; one free block from unit 9 to the end
        short* free = (short*)(m.PageAddress(m.VirtToPage(keep)) + 18);
        Assert.Equal(2039, free[0]);
        free[0] = 2000;
        var problems = m.SlabLayer!.ValidateAll();
        Assert.Contains(problems, p => p.Contains("2000 free units in the chain, units 2039", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("units 2009..2048 are neither free nor allocated", StringComparison.Ordinal)
            || p.Contains("blocks end at unit 2009", StringComparison.Ordinal));
        free[0] = 2039;
        free[1] = 5; // the next free block would lie behind this one
        Assert.Contains(m.SlabLayer.ValidateAll(), p => p.Contains("free block at unit 9 of 2039 units, next at 5", StringComparison.Ordinal));
        free[1] = 2048;
        SlobTests.Validate(m);
        m.Kfree(keep);
    }

    [Fact]
    public void WithTheReportPolicyTheMachineLogsAndCarriesOn()
    {
        using var m = SlobTests.Boot(onBug: OnBug.Report);
        nint keep = m.Kmalloc(24, Gfp.Kernel);
        nint p = m.Kmalloc(24, Gfp.Kernel);
        m.Kfree(p);
        m.Kfree(p);
        Assert.True(m.Log.Contains("Object already free"));
        nint q = m.Kmalloc(24, Gfp.Kernel);
        Assert.Equal(p, q);
        m.Kfree(q);
        m.Kfree(keep);
        SlobTests.Validate(m);
    }
}
