// SLOB properties: random kmalloc/kmem_cache_alloc/free/krealloc sequences over sizes on both sides of
// every SLOB boundary (the list breaks, the page-less-header limit, powers of two, multi-page blocks).
// Each live block is aligned as promised (8, its size for a power of two, the cache's alignment, a
// page for page blocks), overlaps no other, keeps its fill byte until freed, and the heap validates
// between steps; after freeing everything every page is back and the counters read 0. A threaded run
// checks that the one slob_lock keeps blocks whole under contention.
using System.Collections.Concurrent;
using CsCheck;

namespace Kmem.Tests.Slab;

public class SlobPropertyTests
{
    public enum Kind
    {
        Kmalloc,
        CacheAlloc,
        Free,
        Realloc,
    }

    public readonly record struct Op(Kind Kind, int Size, int Victim)
    {
        public override string ToString() => $"{Kind} {Size} v{Victim}";
    }

    private static readonly Gen<int> s_size = Gen.OneOf(
        Gen.Int[1, 64], Gen.Int[65, 300], Gen.Int[240, 260], Gen.Int[1000, 1040], Gen.Int[4070, 4100],
        Gen.Int[0, 12].Select(i => 1 << i), Gen.Int[4100, 20000]);

    private static readonly Gen<Op> s_op = Gen.Select(Gen.Int[0, 99], s_size, Gen.Int[0, 1 << 20],
        (k, size, v) => new Op(k < 35 ? Kind.Kmalloc : k < 55 ? Kind.CacheAlloc : k < 90 ? Kind.Free : Kind.Realloc, size, v));

    private sealed record Held(nint P, int Len, byte Fill, KmemCache? Cache, long Align);

    private sealed class World(Machine m)
    {
        public readonly Machine M = m;
        public readonly KmemCache[] Caches =
        [
            m.KmemCacheCreate("p_24", 24, 0, SlabFlags.None, null)!,
            m.KmemCacheCreate("p_hw100", 100, 0, SlabFlags.HwcacheAlign, null)!,
            m.KmemCacheCreate("p_a256", 300, 256, SlabFlags.None, null)!,
            m.KmemCacheCreate("p_big", 5000, 0, SlabFlags.None, null)!,
        ];
        public readonly List<Held> Live = [];
        private int _fill;
        public byte NextFill() => (byte)Interlocked.Increment(ref _fill);
    }

    private static long Align(int size) => size >= 4096 - 8 ? 4096 : (size & (size - 1)) == 0 ? Math.Max(8, size) : 8;

    /// <summary>Takes a new block: <paramref name="align"/> is what was promised (0: what kmalloc or the
    /// cache promises for it).</summary>
    private static unsafe void Add(World w, nint p, int len, KmemCache? cache, long align = 0)
    {
        Assert.NotEqual(0, p);
        if (align == 0)
        {
            align = cache is null ? Align(len) : cache.Size >= 4096 ? 4096 : cache.Align;
        }
        Assert.True(p % align == 0, $"0x{p:x} ({len} bytes, {cache?.Name ?? "kmalloc"}) is not aligned to {align}");
        foreach (var h in w.Live)
        {
            Assert.True(p + len <= h.P || h.P + h.Len <= p, $"0x{p:x}+{len} overlaps 0x{h.P:x}+{h.Len}");
        }
        byte fill = w.NextFill();
        new Span<byte>((void*)p, len).Fill(fill);
        w.Live.Add(new Held(p, len, fill, cache, align));
    }

    private static Held Take(World w, int victim)
    {
        int i = victim % w.Live.Count;
        var h = w.Live[i];
        w.Live[i] = w.Live[^1];
        w.Live.RemoveAt(w.Live.Count - 1);
        return h;
    }

    private static unsafe void Check(Held h) =>
        Assert.Equal(-1, new Span<byte>((void*)h.P, h.Len).IndexOfAnyExcept(h.Fill));

    private static void Free(World w, Held h)
    {
        Check(h);
        if (h.Cache is null)
        {
            w.M.Kfree(h.P);
        }
        else
        {
            w.M.KmemCacheFree(h.Cache, h.P);
        }
    }

    private static unsafe void Step(World w, Op op)
    {
        var m = w.M;
        switch (op.Kind)
        {
            case Kind.Kmalloc:
                Add(w, m.Kmalloc((nuint)op.Size, Gfp.Kernel), op.Size, null);
                break;
            case Kind.CacheAlloc:
                {
                    var s = w.Caches[op.Victim % w.Caches.Length];
                    Add(w, m.KmemCacheAlloc(s, Gfp.Kernel), (int)s.ObjectSize, s);
                    break;
                }
            case Kind.Free when w.Live.Count > 0:
                Free(w, Take(w, op.Victim));
                break;
            case Kind.Realloc when w.Live.Count > 0:
                {
                    var h = Take(w, op.Victim);
                    if (h.Cache is not null)
                    {
                        Free(w, h);
                        break;
                    }
                    Check(h);
                    nint q = m.Krealloc(h.P, (nuint)op.Size, Gfp.Kernel);
                    int kept = Math.Min(h.Len, op.Size);
                    Assert.Equal(-1, new Span<byte>((void*)q, kept).IndexOfAnyExcept(h.Fill));
                    // krealloc keeps a block that is big enough, with the alignment it had.
                    Add(w, q, op.Size, null, q == h.P ? h.Align : 0);
                    break;
                }
        }
    }

    private static Machine BootFresh(out long freeBefore)
    {
        var m = SlobTests.Boot(memory: "128M");
        m.DrainAllPages();
        freeBefore = m.PageAllocator.NrFreePages;
        return m;
    }

    private static void GiveEverythingBack(World w, long freeBefore)
    {
        foreach (var h in w.Live)
        {
            Free(w, h);
        }
        w.Live.Clear();
        SlobTests.Validate(w.M);
        foreach (var s in w.Caches)
        {
            w.M.KmemCacheDestroy(s);
            Assert.True(s.IsDestroyed);
        }
        w.M.DrainAllPages();
        Assert.Equal(freeBefore, w.M.PageAllocator.NrFreePages);
        Assert.Contains("\nnr_slab_unreclaimable 0\n", w.M.Proc.Vmstat(), StringComparison.Ordinal);
        Assert.Equal(new long[] { 0, 0, 0, 0 }, SlobTests.Row(w.M, "pages"));
        Assert.Equal(new long[] { 0, 0, 0 }, SlobTests.Row(w.M, "total"));
    }

    [Fact]
    public void RandomSequencesKeepBlocksAlignedApartAndIntactAndGiveEveryPageBack()
    {
        s_op.Array[50, 500].Sample(ops =>
        {
            using var m = BootFresh(out long freeBefore);
            var w = new World(m);
            for (int i = 0; i < ops.Length; i++)
            {
                Step(w, ops[i]);
                if (i % 16 == 15)
                {
                    SlobTests.Validate(m);
                }
            }
            SlobTests.Validate(m);
            GiveEverythingBack(w, freeBefore);
        }, iter: 30, threads: 2, print: ops => string.Join("; ", ops));
    }

    [Fact]
    public void ThreadsSharingTheHeapNeverShareABlock()
    {
        using var m = BootFresh(out long freeBefore);
        var w = new World(m);
        var errors = new ConcurrentQueue<Exception>();
        var passed = new ConcurrentQueue<(nint P, int Len, byte Fill)>();
        var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            try
            {
                using var pin = m.OnCpu(t % 2);
                var rnd = new Random(t);
                var mine = new List<(nint P, int Len, byte Fill)>();
                for (int i = 0; i < 4000; i++)
                {
                    int k = rnd.Next(10);
                    if (k < 5 || mine.Count == 0)
                    {
                        int len = rnd.Next(1, 1500);
                        nint p = m.Kmalloc((nuint)len, Gfp.Kernel);
                        byte fill = (byte)(t * 64 + i);
                        unsafe
                        {
                            new Span<byte>((void*)p, len).Fill(fill);
                        }
                        mine.Add((p, len, fill));
                    }
                    else
                    {
                        int j = rnd.Next(mine.Count);
                        var b = mine[j];
                        mine[j] = mine[^1];
                        mine.RemoveAt(mine.Count - 1);
                        if (k == 9)
                        {
                            passed.Enqueue(b);
                        }
                        else
                        {
                            FreeChecked(m, b);
                        }
                    }
                    if (k == 8 && passed.TryDequeue(out var other))
                    {
                        FreeChecked(m, other);
                    }
                }
                foreach (var b in mine)
                {
                    FreeChecked(m, b);
                }
            }
            catch (Exception e)
            {
                errors.Enqueue(e);
            }
        })).ToArray();
        foreach (var t in threads)
        {
            t.Start();
        }
        foreach (var t in threads)
        {
            t.Join();
        }
        Assert.Empty(errors);
        while (passed.TryDequeue(out var b))
        {
            FreeChecked(m, b);
        }
        SlobTests.Validate(m);
        GiveEverythingBack(w, freeBefore);
    }

    private static unsafe void FreeChecked(Machine m, (nint P, int Len, byte Fill) b)
    {
        Assert.Equal(-1, new Span<byte>((void*)b.P, b.Len).IndexOfAnyExcept(b.Fill));
        m.Kfree(b.P);
    }
}
