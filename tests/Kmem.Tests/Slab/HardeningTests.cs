// CONFIG_SLAB_FREELIST_HARDENED, CONFIG_SLAB_FREELIST_RANDOM and init_on_alloc / init_on_free as boot
// options: stored free pointers are ptr ^ secret ^ swab(slot address), the secret is per cache and repeats
// with the seed; a naive double free is set_freepointer's BUG; a new slab's objects come out in a per-cache
// random order; and memory is cleared on allocation or on free on every path, large kmalloc included.
// Threads are pinned to a CPU so that objects go through the per-CPU slab in the kernel's order.
using System.Buffers.Binary;

namespace Kmem.Tests.Slab;

public class HardeningTests
{
    internal static Machine Boot(bool hardened = false, bool random = false, bool initOnAlloc = false, bool initOnFree = false, int seed = 5) =>
        Machine.Boot(new MachineOptions
        {
            Memory = "256M",
            Cpus = 2,
            Seed = seed,
            SlabFreelistHardened = hardened,
            SlabFreelistRandom = random,
            InitOnAlloc = initOnAlloc,
            InitOnFree = initOnFree,
        });

    private static unsafe long Stored(nint obj, KmemCache s) => *(long*)(obj + (nint)s.Offset);

    private static long Swab(nint addr) => (long)BinaryPrimitives.ReverseEndianness((ulong)addr);

    [Fact]
    public void HardenedFreePointersAreEncodedWithThePerCacheSecret()
    {
        using var m = Boot(hardened: true);
        using var cpu = m.OnCpu(0);
        var s = m.KmemCacheCreate("hard", 64, 0, SlabFlags.None, null)!;
        nint a = m.KmemCacheAlloc(s, Gfp.Kernel);
        // The rest of the new slab is chained in address order: the object after a points to the next one.
        nint b = a + 64, c = a + 128;
        long secret1 = Stored(b, s) ^ c ^ Swab(b + 32);
        long secret2 = Stored(c, s) ^ (c + 64) ^ Swab(c + 32);
        Assert.Equal(secret1, secret2);
        Assert.NotEqual((long)c, Stored(b, s));
        Assert.Equal((long)s.FpRandom, secret1);
        // Another cache has another secret; the same seed gives the same one.
        var t = m.KmemCacheCreate("hard2", 64, 0, SlabFlags.NoMerge, null)!;
        Assert.NotEqual(s.FpRandom, t.FpRandom);
        using var again = Boot(hardened: true);
        Assert.Equal(s.FpRandom, again.KmemCacheCreate("hard", 64, 0, SlabFlags.None, null)!.FpRandom);
        m.KmemCacheFree(s, a);
        SlabPropertyTests.Validate(m);
    }

    [Fact]
    public void WithoutHardeningFreePointersAreRawAddresses()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        var s = m.KmemCacheCreate("plain", 64, 0, SlabFlags.None, null)!;
        nint a = m.KmemCacheAlloc(s, Gfp.Kernel);
        Assert.Equal((long)(a + 128), Stored(a + 64, s));
        m.KmemCacheFree(s, a);
    }

    [Fact]
    public void ANaiveDoubleFreeIsSetFreepointersBugWhenHardened()
    {
        using var m = Boot(hardened: true);
        using var cpu = m.OnCpu(1);
        var s = m.KmemCacheCreate("naive", 128, 0, SlabFlags.None, null)!;
        nint a = m.KmemCacheAlloc(s, Gfp.Kernel);
        nint keep = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheFree(s, a);
        var e = Assert.Throws<SlabBugException>(() => m.KmemCacheFree(s, a));
        Assert.Contains("kernel BUG at mm/slub.c", e.Message, StringComparison.Ordinal);
        Assert.Contains("set_freepointer", e.Message, StringComparison.Ordinal);
        Assert.Equal("naive", e.Cache);
        // Not at the head any more (another free came after it): the ordinary double-free report.
        m.KmemCacheFree(s, keep);
        var e2 = Assert.Throws<SlabBugException>(() => m.KmemCacheFree(s, a));
        Assert.Contains("Object already free", e2.Message, StringComparison.Ordinal);
        SlabPropertyTests.Validate(m);
        using var plain = Boot();
        using var cpu2 = plain.OnCpu(1);
        var p = plain.KmemCacheCreate("naive", 128, 0, SlabFlags.None, null)!;
        nint x = plain.KmemCacheAlloc(p, Gfp.Kernel);
        plain.KmemCacheFree(p, x);
        Assert.Contains("Object already free", Assert.Throws<SlabBugException>(() => plain.KmemCacheFree(p, x)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RandomFreelistHandsOutANewSlabInThePermutationsOrder()
    {
        using var m = Boot(random: true);
        using var cpu = m.OnCpu(0);
        var s = m.KmemCacheCreate("shuffled", 256, 0, SlabFlags.None, null)!;
        int n = s.ObjectsPerSlab;
        // random_seq: a permutation of the slot offsets.
        Assert.Equal(Enumerable.Range(0, n).Select(i => (uint)(i * 256)), s.RandomSeq!.Order());
        var objs = Enumerable.Range(0, n).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToList();
        nint slab = objs.Min();
        var offsets = objs.Select(p => (uint)(p - slab)).ToList();
        Assert.Equal(s.RandomSeq!.Order(), offsets.Order());
        Assert.NotEqual(offsets.Order(), offsets);
        // The order is the sequence read cyclically from some start.
        int start = Array.IndexOf(s.RandomSeq!, offsets[0]);
        Assert.Equal(Enumerable.Range(0, n).Select(i => s.RandomSeq![(start + i) % n]), offsets);
        // The same seed gives the same order.
        using var again = Boot(random: true);
        using var cpu2 = again.OnCpu(0);
        var s2 = again.KmemCacheCreate("shuffled", 256, 0, SlabFlags.None, null)!;
        var objs2 = Enumerable.Range(0, n).Select(_ => again.KmemCacheAlloc(s2, Gfp.Kernel)).ToList();
        Assert.Equal(offsets, objs2.Select(p => (uint)(p - objs2.Min())));
        foreach (nint p in objs)
        {
            m.KmemCacheFree(s, p);
        }
        SlabPropertyTests.Validate(m);
    }

    [Fact]
    public void WithoutRandomFreelistObjectsComeInAddressOrder()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        var s = m.KmemCacheCreate("ordered", 256, 0, SlabFlags.None, null)!;
        Assert.Null(s.RandomSeq);
        var objs = Enumerable.Range(0, s.ObjectsPerSlab).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToList();
        Assert.Equal(objs.Order(), objs);
    }

    [Fact]
    public unsafe void InitOnAllocClearsReusedObjectsAndLargeKmallocs()
    {
        foreach (bool on in new[] { false, true })
        {
            using var m = Boot(initOnAlloc: on);
            using var cpu = m.OnCpu(0);
            nint p = m.Kmalloc(64, Gfp.Kernel);
            new Span<byte>((void*)p, 64).Fill(0xee);
            m.Kfree(p);
            nint q = m.Kmalloc(64, Gfp.Kernel);
            Assert.Equal(p, q);
            int nonZero = new Span<byte>((void*)q, 64).IndexOfAnyExcept((byte)0);
            Assert.Equal(on, nonZero < 0);
            m.Kfree(q);
            nint big = m.Kmalloc(20000, Gfp.Kernel);
            new Span<byte>((void*)big, 20000).Fill(0xee);
            m.Kfree(big);
            nint big2 = m.Kmalloc(20000, Gfp.Kernel);
            Assert.Equal(big, big2);
            Assert.Equal(on, new Span<byte>((void*)big2, 20000).IndexOfAnyExcept((byte)0) < 0);
            m.Kfree(big2);
        }
    }

    [Fact]
    public unsafe void InitOnFreeClearsObjectsAndPagesWhenFreed()
    {
        using var m = Boot(initOnFree: true);
        using var cpu = m.OnCpu(0);
        var s = m.KmemCacheCreate("iof", 100, 0, SlabFlags.None, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        var span = new Span<byte>((void*)p, 100);
        span.Fill(0x5c);
        m.KmemCacheFree(s, p);
        // Everything but the free pointer (in the middle, at offset 48) is cleared.
        Assert.Equal(-1, span[..48].IndexOfAnyExcept((byte)0));
        Assert.Equal(-1, span[56..].IndexOfAnyExcept((byte)0));
        // On allocation the free pointer is wiped too.
        nint q = m.KmemCacheAlloc(s, Gfp.Kernel);
        Assert.Equal(p, q);
        Assert.Equal(-1, span.IndexOfAnyExcept((byte)0));
        m.KmemCacheFree(s, q);
        nint big = m.Kmalloc(3 * 4096, Gfp.Kernel);
        new Span<byte>((void*)big, 3 * 4096).Fill(0x5c);
        m.Kfree(big);
        Assert.Equal(-1, new Span<byte>((void*)big, 4 * 4096).IndexOfAnyExcept((byte)0));
        // A cache with a constructor keeps its constructed state.
        var c = m.KmemCacheCreate("iof_ctor", 64, 0, SlabFlags.None, o => *(long*)o = 42)!;
        nint o = m.KmemCacheAlloc(c, Gfp.Kernel);
        m.KmemCacheFree(c, o);
        Assert.Equal(42, *(long*)o);
        SlabPropertyTests.Validate(m);
    }
}
