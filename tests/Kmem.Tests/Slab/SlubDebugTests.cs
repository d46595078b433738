// slub_debug as slub_kunit does it: each corruption (red zones left and right, poison after free, a double
// free, a corrupt free pointer, a free to the wrong cache, slab padding) is provoked on purpose and the report
// checked line by line against the kernel's wording; the bytes are restored, the cache stays usable and
// consistent. The debug object layout is checked against values worked out by hand from calculate_sizes.
using System.Runtime.CompilerServices;

namespace Kmem.Tests.Slab;

public class SlubDebugTests
{
    internal static Machine Boot(string? slubDebug = null, OnBug onBug = OnBug.Throw, bool hardened = false) =>
        Machine.Boot(new MachineOptions
        {
            Memory = "256M",
            Cpus = 2,
            Seed = 3,
            OnBug = onBug,
            SlubDebug = slubDebug,
            SlabFreelistHardened = hardened,
        });

    private static ulong Kaddr(Machine m, nint p) => m.SlabLayer!.KernelAddress(p);

    private const SlabFlags Fzpu = SlabFlags.ConsistencyChecks | SlabFlags.RedZone | SlabFlags.Poison | SlabFlags.StoreUser;

    // ───────────────────────────── geometry ─────────────────────────────

    [Fact]
    public void KmallocGeometryWithFzpuFollowsCalculateSizes()
    {
        using var m = Boot("FZPU");
        // kmalloc-8: 8 → +8 right red zone (no slack) = inuse 16; poison moves the free pointer out: 24;
        // two 32-byte tracks and orig_size: 92; a word of padding and an 8-byte left red zone: 108 → 112.
        AssertGeometry(m, "kmalloc-8", size: 112, inuse: 16, offset: 16, redLeft: 8, order: 0, objects: 36);
        // kmalloc-64 (aligned to 64): 72, 80, 148, 156, left red zone 64 → 220 → 256.
        AssertGeometry(m, "kmalloc-64", size: 256, inuse: 72, offset: 72, redLeft: 64, order: 0, objects: 16);
        // kmalloc-96 (aligned to 8): 104, 112, 180, 188, 196 → 200; 20 objects waste 96 of 4096.
        AssertGeometry(m, "kmalloc-96", size: 200, inuse: 104, offset: 104, redLeft: 8, order: 0, objects: 20);
        // kmalloc-8k: 8200, 8208, 8276, 8284, left red zone 8192 → 16476 → 24576: order 3 holds one object.
        AssertGeometry(m, "kmalloc-8k", size: 24576, inuse: 8200, offset: 8200, redLeft: 8192, order: 3, objects: 1);
        Assert.Contains("\nkmalloc-64           ", m.Proc.Slabinfo(), StringComparison.Ordinal);
        string line = m.Proc.Slabinfo().Split('\n').Single(l => l.StartsWith("kmalloc-64 ", StringComparison.Ordinal));
        var cols = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("256", cols[3]);
        Assert.Equal("16", cols[4]);
        // Debug caches keep no cpu partial slabs; min_partial from the debug size.
        var k64 = Cache(m, "kmalloc-64");
        Assert.Equal(0u, k64.CpuPartial);
        Assert.Equal(5, k64.MinPartial);
        Assert.True(k64.IsDebug);
        // ksize is the object size when red zones guard the rest.
        nint p = m.Kmalloc(60, Gfp.Kernel);
        Assert.Equal((nuint)64, m.Ksize(p));
        m.Kfree(p);
    }

    [Fact]
    public void UserCacheGeometryPerFlag()
    {
        using var m = Boot();
        // 12 bytes: aligned 16 has slack, so no extra right red-zone word; inuse 16, free pointer after it: 24,
        // tracks 88, padding word 96, left red zone 8: 104.
        var s = m.KmemCacheCreate("g12", 12, 0, Fzpu, null)!;
        Assert.Equal((104u, 16u, 16u, 8u), (s.Size, s.Inuse, s.Offset, s.RedLeftPad));
        // Red zone alone, 64 bytes on a cache line: inuse 72, free pointer in the middle (32), padding 80,
        // left red zone one line: 144 → 192.
        var z = m.KmemCacheCreate("g64z", 64, 0, SlabFlags.RedZone | SlabFlags.HwcacheAlign, null)!;
        Assert.Equal((192u, 72u, 32u, 64u), (z.Size, z.Inuse, z.Offset, z.RedLeftPad));
        Assert.Equal(0, z.Order);
        Assert.Equal(21, z.ObjectsPerSlab);
        // Store user alone: 40 bytes, free pointer inside (16), two tracks: 104.
        var u = m.KmemCacheCreate("g40u", 40, 0, SlabFlags.StoreUser, null)!;
        Assert.Equal((104u, 40u, 16u, 0u), (u.Size, u.Inuse, u.Offset, u.RedLeftPad));
        // No debugging: unchanged.
        var n = m.KmemCacheCreate("g40", 40, 0, SlabFlags.NoMerge, null)!;
        Assert.Equal((40u, 40u, 16u, 0u), (n.Size, n.Inuse, n.Offset, n.RedLeftPad));
        Assert.False(n.IsDebug);
    }

    [Fact]
    public void SlubDebugOptionSelectsCaches()
    {
        using var m = Boot("FZ,dbg_a,kmalloc-1*;U,dbg_b");
        var a = m.KmemCacheCreate("dbg_a", 32, 0, SlabFlags.None, null)!;
        var b = m.KmemCacheCreate("dbg_b", 32, 0, SlabFlags.None, null)!;
        var c = m.KmemCacheCreate("dbg_c", 48, 0, SlabFlags.None, null)!;
        Assert.Equal(SlabFlags.ConsistencyChecks | SlabFlags.RedZone, a.Flags);
        Assert.Equal(SlabFlags.StoreUser, b.Flags);
        Assert.Equal(SlabFlags.None, c.Flags);
        Assert.True(Cache(m, "kmalloc-128").IsDebug);
        Assert.True(Cache(m, "kmalloc-16").IsDebug);
        Assert.False(Cache(m, "kmalloc-64").IsDebug);
    }

    [Theory]
    [InlineData("", Fzpu)]
    [InlineData("FZPUT", Fzpu | SlabFlags.Trace)]
    [InlineData("fz", SlabFlags.ConsistencyChecks | SlabFlags.RedZone)]
    [InlineData("FZ-U", SlabFlags.StoreUser)]
    [InlineData("-", SlabFlags.None)]
    [InlineData(",other_cache", SlabFlags.None)]
    public void SlubDebugGlobalFlags(string option, SlabFlags expected)
    {
        using var m = Boot(option);
        Assert.Equal(expected | SlabFlags.Kmalloc, Cache(m, "kmalloc-32").Flags & ~SlabFlags.Panic);
    }

    [Theory]
    [InlineData("FQ")]
    [InlineData("F,")]
    [InlineData("F,a,,b")]
    public void ABadSlubDebugIsRefusedNamingTheOption(string option)
    {
        var e = Assert.Throws<MachineOptionException>(() => Boot(option));
        Assert.Equal("SlubDebug", e.Option);
        Assert.Contains("slub_debug=" + option, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void OptionODropsMetadataWhereItWouldRaiseTheOrder()
    {
        using var m = Boot("FZPUO");
        // kmalloc-4k would need an order-1 slot: it keeps only the consistency checks.
        var k4 = Cache(m, "kmalloc-4k");
        Assert.Equal(SlabFlags.ConsistencyChecks | SlabFlags.Kmalloc, k4.Flags & ~SlabFlags.Panic);
        Assert.Equal(4096u, k4.Size);
        Assert.Equal(112u, Cache(m, "kmalloc-8").Size);
    }

    // ───────────────────────────── reports ─────────────────────────────

    [Fact]
    public unsafe void RightRedzoneOverwriteIsReportedOnFreeAndTheObjectIsKept()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("rz_right", 24, 0, Fzpu, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        Assert.Equal(-1, new Span<byte>((void*)(p + 24), 8).IndexOfAnyExcept((byte)0xcc));
        ((byte*)p)[24] = 0x42;
        var e = Assert.Throws<SlabBugException>(() => m.KmemCacheFree(s, p));
        string r = e.Message;
        Assert.StartsWith("=============================================================================\nBUG rz_right (Not tainted): Right Redzone overwritten\n-----", r, StringComparison.Ordinal);
        ulong a = Kaddr(m, p);
        Assert.Contains($"0x{a + 24:x}-0x{a + 24:x} @offset=", r, StringComparison.Ordinal);
        Assert.Contains("First byte 0x42 instead of 0xcc", r, StringComparison.Ordinal);
        Assert.Contains($"Object 0x{a:x} @offset=", r, StringComparison.Ordinal);
        Assert.Contains($"Redzone  {a - 8:x16}: cc cc cc cc cc cc cc cc                          ........", r, StringComparison.Ordinal);
        Assert.Contains($"Redzone  {a + 24:x16}: 42 cc cc cc cc cc cc cc                          B.......", r, StringComparison.Ordinal);
        Assert.Contains($"Allocated in {nameof(RightRedzoneOverwriteIsReportedOnFreeAndTheObjectIsKept)} age=", r, StringComparison.Ordinal);
        Assert.Contains($"FIX rz_right: Restoring Right Redzone 0x{a + 24:x}-0x{a + 24:x}=0xcc", r, StringComparison.Ordinal);
        Assert.Contains($"FIX rz_right: Object at 0x{a:x} not freed", r, StringComparison.Ordinal);
        Assert.Equal("rz_right", e.Cache);
        Assert.Equal(a, e.Address);
        // The red zone is whole again and the object still allocated: freeing it now works.
        Assert.Equal(0xcc, ((byte*)p)[24]);
        m.KmemCacheFree(s, p);
        StaysUsable(m, s);
    }

    [Fact]
    public unsafe void LeftRedzoneUnderflowIsReported()
    {
        using var m = Boot(onBug: OnBug.Report);
        var s = m.KmemCacheCreate("rz_left", 100, 0, SlabFlags.ConsistencyChecks | SlabFlags.RedZone, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        ((byte*)p)[-3] = 0;
        m.KmemCacheFree(s, p);
        Assert.True(m.Log.Contains("BUG rz_left (Not tainted): Left Redzone overwritten"));
        Assert.True(m.Log.Contains("First byte 0x0 instead of 0xcc"));
        Assert.True(m.Log.Contains($"FIX rz_left: Object at 0x{Kaddr(m, p):x} not freed"));
        // With the report policy the machine carries on: the object is still ours and frees cleanly.
        m.Log.Clear();
        m.KmemCacheFree(s, p);
        Assert.False(m.Log.Contains("BUG"));
        StaysUsable(m, s);
    }

    [Fact]
    public unsafe void WritingToAFreedObjectIsPoisonOverwrittenOnTheNextAllocation()
    {
        using var m = Boot(onBug: OnBug.Report);
        var s = m.KmemCacheCreate("uaf", 64, 0, Fzpu, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        // An allocated object of a poisoned cache holds the poison until written.
        Assert.Equal(-1, new Span<byte>((void*)p, 63).IndexOfAnyExcept((byte)0x6b));
        Assert.Equal(0xa5, ((byte*)p)[63]);
        m.KmemCacheFree(s, p);
        Assert.Equal(0xbb, ((byte*)p)[-1]);
        ((byte*)p)[10] = 0x11;
        ((byte*)p)[11] = 0x12;
        nint q = m.KmemCacheAlloc(s, Gfp.Kernel);
        Assert.NotEqual(0, q);
        Assert.NotEqual(p, q);
        ulong a = Kaddr(m, p);
        Assert.True(m.Log.Contains("BUG uaf (Not tainted): Poison overwritten"));
        Assert.True(m.Log.Contains($"0x{a + 10:x}-0x{a + 11:x} @offset="));
        Assert.True(m.Log.Contains("First byte 0x11 instead of 0x6b"));
        Assert.True(m.Log.Contains($"Freed in {nameof(WritingToAFreedObjectIsPoisonOverwrittenOnTheNextAllocation)} age="));
        Assert.True(m.Log.Contains("FIX uaf: Marking all objects used"));
        m.KmemCacheFree(s, q);
        StaysUsable(m, s);
    }

    [Fact]
    public void ADoubleFreeOfADebugObjectPrintsTheTrailer()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("df_debug", 32, 0, Fzpu, null)!;
        nint p = AllocHere(m, s);
        m.KmemCacheFree(s, p);
        var e = Assert.Throws<SlabBugException>(() => m.KmemCacheFree(s, p));
        Assert.Contains("BUG df_debug (Not tainted): Object already free", e.Message, StringComparison.Ordinal);
        Assert.Contains($"Allocated in {nameof(AllocHere)} age=", e.Message, StringComparison.Ordinal);
        Assert.Contains($"Freed in {nameof(ADoubleFreeOfADebugObjectPrintsTheTrailer)} age=", e.Message, StringComparison.Ordinal);
        Assert.Contains($"Object 0x{Kaddr(m, p):x} @offset=", e.Message, StringComparison.Ordinal);
        Assert.Contains("Object   ", e.Message, StringComparison.Ordinal);
        Assert.Contains("6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b  kkkkkkkkkkkkkkkk", e.Message, StringComparison.Ordinal);
        Assert.Contains($"FIX df_debug: Object at 0x{Kaddr(m, p):x} not freed", e.Message, StringComparison.Ordinal);
        StaysUsable(m, s);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static nint AllocHere(Machine m, KmemCache s) => m.KmemCacheAlloc(s, Gfp.Kernel);

    [Fact]
    public unsafe void ACorruptFreePointerIsReportedAndTheSlabIsolated()
    {
        using var m = Boot(onBug: OnBug.Report);
        var s = m.KmemCacheCreate("fpc", 48, 0, Fzpu, null)!;
        nint keep = m.KmemCacheAlloc(s, Gfp.Kernel);
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, p);
        // With poisoning the free pointer lives after the object, at offset inuse.
        Assert.Equal(s.Inuse, s.Offset);
        *(long*)(p + (nint)s.Offset) = 0x1234;
        nint q = m.KmemCacheAlloc(s, Gfp.Kernel);
        Assert.NotEqual(0, q);
        Assert.True(m.Log.Contains("BUG fpc (Not tainted): Freepointer corrupt"));
        Assert.True(m.Log.Contains("FIX fpc: Marking all objects used"));
        m.KmemCacheFree(s, q);
        m.KmemCacheFree(s, keep);
        StaysUsable(m, s);
    }

    [Fact]
    public void AFreeToTheWrongCacheNamesBothAndTheAllocator()
    {
        using var m = Boot();
        var a = m.KmemCacheCreate("wc_a", 64, 0, SlabFlags.StoreUser | SlabFlags.ConsistencyChecks, null)!;
        var b = m.KmemCacheCreate("wc_b", 64, 0, SlabFlags.StoreUser | SlabFlags.ConsistencyChecks, null)!;
        nint p = m.KmemCacheAlloc(a, Gfp.Kernel);
        var e = Assert.Throws<SlabBugException>(() => m.KmemCacheFree(b, p));
        Assert.Contains("kmem_cache_free: Wrong slab cache. wc_b but object is from wc_a", e.Message, StringComparison.Ordinal);
        Assert.Contains($"Allocated in {nameof(AFreeToTheWrongCacheNamesBothAndTheAllocator)} age=", e.Message, StringComparison.Ordinal);
        m.KmemCacheFree(a, p);
        StaysUsable(m, a);
    }

    [Fact]
    public unsafe void OverwrittenSlabPaddingIsReportedAndRestored()
    {
        using var m = Boot(onBug: OnBug.Report);
        // 200-byte slots leave 96 bytes of padding at the end of an order-0 slab.
        var s = m.KmemCacheCreate("pad", 200, 0, SlabFlags.ConsistencyChecks | SlabFlags.Poison, null)!;
        Assert.Equal(208u, s.Size);
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        nint slab = p & ~(nint)4095;
        Assert.Equal(0, s.Order);
        byte* pad = (byte*)(slab + 4096 - 4);
        Assert.Equal(0x5a, *pad);
        *pad = 0x77;
        m.KmemCacheFree(s, p);
        Assert.True(m.Log.Contains("BUG pad (Not tainted): Padding overwritten."));
        Assert.True(m.Log.Contains("FIX pad: Restoring slab padding"));
        Assert.Equal(0x5a, *pad);
        StaysUsable(m, s);
    }

    [Fact]
    public void TraceLogsEveryAllocationAndFree()
    {
        using var m = Boot("T,traced");
        var s = m.KmemCacheCreate("traced", 16, 0, SlabFlags.None, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, p);
        string a = $"0x{Kaddr(m, p):x}";
        Assert.True(m.Log.Contains($"TRACE traced alloc {a} inuse=1 fp="));
        Assert.True(m.Log.Contains($"TRACE traced free {a} inuse=1 fp="));
    }

    [Fact]
    public void WithoutConsistencyChecksRedZonesAreWrittenButNotChecked()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("zonly", 24, 0, SlabFlags.RedZone, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        unsafe
        {
            Assert.Equal(0xcc, ((byte*)p)[24]);
            ((byte*)p)[24] = 0;
        }
        m.KmemCacheFree(s, p);
        Assert.False(m.Log.Contains("BUG"));
        StaysUsable(m, s);
    }

    [Fact]
    public void DebugCachesNeverUseTheCpuSlab()
    {
        using var m = Boot("FZPU");
        var ptrs = new List<nint>();
        using (m.OnCpu(0))
        {
            for (int i = 0; i < 200; i++)
            {
                ptrs.Add(m.Kmalloc(40, Gfp.Kernel));
            }
        }
        var k64 = Cache(m, "kmalloc-64");
        Assert.All(k64.CpuSlab, c => Assert.Equal(uint.MaxValue, c.Slab));
        SlabPropertyTests.Validate(m);
        using (m.OnCpu(1))
        {
            foreach (nint p in ptrs)
            {
                m.Kfree(p);
            }
        }
        SlabPropertyTests.Validate(m);
        Assert.Equal(0, KmallocTests.ActiveObjs(m, "kmalloc-64"));
    }

    // ───────────────────────────── helpers ─────────────────────────────

    internal static KmemCache Cache(Machine m, string name) => m.SlabCaches.Single(c => c.Name == name);

    private static void AssertGeometry(Machine m, string name, uint size, uint inuse, uint offset, uint redLeft, int order, int objects)
    {
        var s = Cache(m, name);
        Assert.Equal((size, inuse, offset, redLeft, order, objects),
            (s.Size, s.Inuse, s.Offset, s.RedLeftPad, s.Order, s.ObjectsPerSlab));
    }

    /// <summary>After a report: objects come and go, each handed out once, and every invariant holds.</summary>
    internal static void StaysUsable(Machine m, KmemCache s)
    {
        var seen = new HashSet<nint>();
        for (int i = 0; i < 3 * s.ObjectsPerSlab + 5; i++)
        {
            nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
            Assert.NotEqual(0, p);
            Assert.True(seen.Add(p), "an object was handed out twice");
            Machine.ObjectSpan(s, p).Fill((byte)i);
        }
        foreach (nint p in seen)
        {
            m.KmemCacheFree(s, p);
        }
        SlabPropertyTests.Validate(m);
    }
}
