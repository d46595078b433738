// SlabMemoryOwner on every backend: an object travels as Memory<byte> over its real bytes, goes back to its
// cache exactly once when the owner is disposed (counted in the cache's slab figures after a shrink), refuses
// use after Dispose, holds the free back while pinned, and survives racing Dispose calls from many threads.
using System.Buffers;
using System.Runtime.InteropServices;

namespace Kmem.Tests.Slab;

public class SlabMemoryOwnerTests
{
    public static TheoryData<SlabAllocator> All => new() { SlabAllocator.Slub, SlabAllocator.Slab, SlabAllocator.Slob };

    private static Machine Boot(SlabAllocator kind) =>
        Machine.Boot(new MachineOptions { Memory = "256M", Slab = kind, Seed = 3 });

    /// <summary>Objects of the cache in use, once every per-CPU and per-thread cache has given its free ones back.</summary>
    private static long InUse(Machine m, KmemCache s)
    {
        m.KmemCacheShrink(s);
        return m.SlabLayer!.Stats(s).ActiveObjs;
    }

    [Theory]
    [MemberData(nameof(All))]
    public unsafe void DataSurvivesARoundTripThroughMemory(SlabAllocator kind)
    {
        using var m = Boot(kind);
        var s = m.KmemCacheCreate("owner_rt", 200, 0, SlabFlags.None, null)!;
        using var owner = m.KmemCacheAllocOwner(s, Gfp.Kernel)!;
        Assert.Same(s, owner.Cache);
        Assert.Equal((int)s.ObjectSize, owner.Length);
        Memory<byte> mem = owner.Memory;
        Assert.Equal(200, mem.Length);
        for (int i = 0; i < mem.Length; i++)
        {
            mem.Span[i] = (byte)(i * 7 + 1);
        }
        // The bytes are the object's own, in the direct map.
        var raw = new ReadOnlySpan<byte>((void*)owner.Address, 200);
        Assert.True(raw.SequenceEqual(mem.Span));
        Assert.True(MemoryMarshal.TryGetMemoryManager<byte, SlabMemoryOwner>(mem[10..], out var back, out int start, out int length));
        Assert.Same(owner, back);
        Assert.Equal((10, 190), (start, length));
        Assert.Equal((byte)(10 * 7 + 1), ReadThroughStream(mem[10..])[0]);
        using (var handle = mem[50..].Pin())
        {
            Assert.Equal(owner.Address + 50, (nint)handle.Pointer);
            Assert.Equal(unchecked((byte)(50 * 7 + 1)), *(byte*)handle.Pointer);
        }

        using var block = m.KmallocOwner(100, Gfp.Kernel | Gfp.Zero)!;
        Assert.Null(block.Cache);
        Assert.Equal(100, block.Memory.Length);
        Assert.True(block.Memory.Span.IndexOfAnyExcept((byte)0) < 0);
        Assert.True(m.Ksize(block.Address) >= 100);
        using var empty = m.KmallocOwner(0, Gfp.Kernel)!;
        Assert.Equal(Machine.ZeroSizePtr, empty.Address);
        Assert.True(empty.Memory.IsEmpty);
    }

    private static byte[] ReadThroughStream(ReadOnlyMemory<byte> mem)
    {
        using var stream = new MemoryStream();
        stream.Write(mem.Span);
        return stream.ToArray();
    }

    [Theory]
    [MemberData(nameof(All))]
    public void DisposeGivesTheObjectBackOnceAndASecondDisposeIsHarmless(SlabAllocator kind)
    {
        using var m = Boot(kind);
        var s = m.KmemCacheCreate("owner_once", 96, 0, SlabFlags.NoMerge, null)!;
        SlabMemoryOwner a, b;
        using (m.OnCpu(0))
        {
            a = m.KmemCacheAllocOwner(s, Gfp.Kernel)!;
            b = m.KmemCacheAllocOwner(s, Gfp.Kernel)!;
            Assert.Equal(2, InUse(m, s));
            ((IDisposable)a).Dispose();
            Assert.True(a.IsDisposed);
            Assert.Equal(1, InUse(m, s));
            ((IDisposable)a).Dispose();
            // A double free would have thrown; the cache's count is unchanged and the object is reused normally.
            Assert.Equal(1, InUse(m, s));
            nint again = m.KmemCacheAlloc(s, Gfp.Kernel);
            Assert.Equal(2, InUse(m, s));
            m.KmemCacheFree(s, again);
            ((IDisposable)b).Dispose();
            Assert.Equal(0, InUse(m, s));
        }
        Assert.Empty(m.SlabLayer!.ValidateAll());
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
    }

    [Theory]
    [MemberData(nameof(All))]
    public void UseAfterDisposeThrows(SlabAllocator kind)
    {
        using var m = Boot(kind);
        var owner = m.KmallocOwner(64, Gfp.Kernel)!;
        Memory<byte> mem = owner.Memory;
        ((IDisposable)owner).Dispose();
        Assert.Throws<ObjectDisposedException>(() => owner.GetSpan());
        Assert.Throws<ObjectDisposedException>(() => owner.Memory);
        Assert.Throws<ObjectDisposedException>(() => mem.Span.Length);
        Assert.Throws<ObjectDisposedException>(() => mem.Pin());
        var e = Assert.Throws<ObjectDisposedException>(() => owner.Address);
        Assert.Contains("kmalloc", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AnOwnerOutlivingItsMachineRefusesAccessAndDisposesQuietly()
    {
        var m = Boot(SlabAllocator.Slub);
        var owner = m.KmallocOwner(64, Gfp.Kernel)!;
        m.Dispose();
        var e = Assert.Throws<ObjectDisposedException>(() => owner.GetSpan());
        Assert.Contains("machine", e.Message, StringComparison.Ordinal);
        ((IDisposable)owner).Dispose();
        Assert.True(owner.IsDisposed);
    }

    [Theory]
    [MemberData(nameof(All))]
    public unsafe void APinnedOwnerFreesItsObjectAtTheLastUnpin(SlabAllocator kind)
    {
        using var m = Boot(kind);
        var s = m.KmemCacheCreate("owner_pin", 128, 0, SlabFlags.NoMerge, null)!;
        using (m.OnCpu(0))
        {
            var owner = m.KmemCacheAllocOwner(s, Gfp.Kernel)!;
            MemoryHandle h1 = owner.Pin(3);
            MemoryHandle h2 = owner.Memory.Pin();
            Assert.Equal(owner.Address + 3, (nint)h1.Pointer);
            ((IDisposable)owner).Dispose();
            Assert.Equal(1, InUse(m, s));
            Assert.Throws<ObjectDisposedException>(() => owner.Pin());
            h1.Dispose();
            Assert.Equal(1, InUse(m, s));
            h2.Dispose();
            Assert.Equal(0, InUse(m, s));
            Assert.Throws<InvalidOperationException>(owner.Unpin);
            using var other = m.KmemCacheAllocOwner(s, Gfp.Kernel)!;
            Assert.Throws<ArgumentOutOfRangeException>(() => other.Pin(129));
            Assert.Throws<ArgumentOutOfRangeException>(() => other.Pin(-1));
        }
    }

    [Theory]
    [MemberData(nameof(All))]
    public unsafe void OwnersTravelAcrossThreadsAndRacingDisposesFreeOnce(SlabAllocator kind)
    {
        using var m = Boot(kind);
        var s = m.KmemCacheCreate("owner_threads", 72, 0, SlabFlags.NoMerge, null)!;
        const int owners = 400;
        var list = new SlabMemoryOwner[owners];
        for (int i = 0; i < owners; i++)
        {
            list[i] = m.KmemCacheAllocOwner(s, Gfp.Kernel)!;
            list[i].Memory.Span.Fill((byte)i);
        }
        Assert.Equal(owners, InUse(m, s));
        // Two workers receive every owner; each checks the bytes and disposes, so every owner is disposed twice
        // at about the same moment from two threads, often while the other holds a pin.
        using var start = new Barrier(2);
        var bad = new int[2];
        var workers = Enumerable.Range(0, 2).Select(w => new Thread(() =>
        {
            start.SignalAndWait();
            for (int k = 0; k < owners; k++)
            {
                int i = w == 0 ? k : owners - 1 - k;
                var owner = list[i];
                try
                {
                    // The pin holds the free back while the bytes are read, even if the other worker disposes now.
                    using var pin = owner.Pin();
                    if (new ReadOnlySpan<byte>(pin.Pointer, owner.Length).IndexOfAnyExcept((byte)i) >= 0)
                    {
                        bad[w]++;
                    }
                }
                catch (ObjectDisposedException)
                {
                    // The other worker got there first.
                }
                ((IDisposable)owner).Dispose();
            }
        })).ToArray();
        foreach (var t in workers)
        {
            t.Start();
        }
        foreach (var t in workers)
        {
            t.Join();
        }
        Assert.Equal([0, 0], bad);
        Assert.All(list, o => Assert.True(o.IsDisposed));
        Assert.Equal(0, InUse(m, s));
        Assert.Empty(m.SlabLayer!.ValidateAll());
    }
}
