// Slab-layer properties (SLUB and SLAB): random alloc/free over own and kmalloc caches on pinned CPUs; each live object
// holds its own fill byte (no object is handed out twice, no two overlap) and the validator runs
// between steps. After freeing all, shrinking and draining, free pages are the fresh machine's and
// the slab counters 0. Two threads on two CPUs or one pass objects between them (remote frees).
using System.Collections.Concurrent;
using CsCheck;

namespace Kmem.Tests.Slab;

public class SlabPropertyTests
{
    public enum Kind
    {
        Alloc,
        Free,
        /// <summary>Pass an object to the other thread (sequentially: free it from another CPU).</summary>
        Handoff,
        /// <summary>Free an object the other thread passed.</summary>
        FreeRemote,
    }

    public readonly record struct Op(Kind Kind, int Target, int Cpu, int Victim)
    {
        public override string ToString() => $"cpu{Cpu} {Kind} t{Target} v{Victim}";
    }

    /// <summary>kmalloc targets: size and gfp.</summary>
    private static readonly (nuint Size, Gfp Gfp)[] s_kmalloc =
    [
        (8, Gfp.Kernel), (100, Gfp.Kernel), (192, Gfp.KernelAccount), (1000, Gfp.Kernel | Gfp.Reclaimable),
        (3000, Gfp.Kernel), (5000, Gfp.Kernel | Gfp.Dma), (20000, Gfp.Kernel), (64, Gfp.Atomic),
    ];

    private const int OwnCaches = 3;
    private static int Targets => OwnCaches + s_kmalloc.Length;

    private static Gen<Op> OpGen(int cpus) => Gen.Select(Gen.Int[0, 99], Gen.Int[0, Targets - 1], Gen.Int[0, cpus - 1], Gen.Int[0, 1 << 20],
        (k, t, c, v) => new Op(k < 55 ? Kind.Alloc : k < 85 ? Kind.Free : k < 93 ? Kind.Handoff : Kind.FreeRemote, t, c, v));

    private sealed record Held(nint P, int Target, int Len, byte Fill);

    private sealed class World(Machine m)
    {
        public readonly Machine M = m;
        public readonly KmemCache[] Caches =
        [
            m.KmemCacheCreate("prop_small", 24, 0, SlabFlags.None, null)!,
            m.KmemCacheCreate("prop_ctor", 200, 0, SlabFlags.HwcacheAlign, p => { unsafe { *(long*)p = 0x600d; } })!,
            m.KmemCacheCreate("prop_rcl", 700, 0, SlabFlags.ReclaimAccount, null)!,
        ];
        public readonly ConcurrentQueue<Held> Passed = new();
        private int _fill;
        public byte NextFill() => (byte)Interlocked.Increment(ref _fill);
    }

    private static unsafe void Step(World w, List<Held> held, Op op)
    {
        var m = w.M;
        using var pin = m.OnCpu(op.Cpu);
        switch (op.Kind)
        {
            case Kind.Alloc:
                {
                    nint p;
                    int len;
                    if (op.Target < OwnCaches)
                    {
                        var s = w.Caches[op.Target];
                        p = m.KmemCacheAlloc(s, Gfp.Kernel);
                        len = (int)s.ObjectSize;
                        if (op.Target == 1)
                        {
                            Assert.Equal(0x600d, *(long*)p);
                        }
                    }
                    else
                    {
                        var (size, gfp) = s_kmalloc[op.Target - OwnCaches];
                        p = m.Kmalloc(size, gfp);
                        len = (int)size;
                        Assert.True(m.Ksize(p) >= size);
                    }
                    Assert.NotEqual(0, p);
                    byte fill = w.NextFill();
                    new Span<byte>((void*)p, len).Fill(fill);
                    held.Add(new Held(p, op.Target, len, fill));
                    break;
                }
            case Kind.Free when held.Count > 0:
                Free(w, Take(held, op.Victim));
                break;
            case Kind.Handoff when held.Count > 0:
                w.Passed.Enqueue(Take(held, op.Victim));
                break;
            case Kind.FreeRemote when w.Passed.TryDequeue(out var h):
                Free(w, h);
                break;
        }
    }

    private static Held Take(List<Held> held, int victim)
    {
        int i = victim % held.Count;
        var h = held[i];
        held[i] = held[^1];
        held.RemoveAt(held.Count - 1);
        return h;
    }

    private static unsafe void Free(World w, Held h)
    {
        var span = new Span<byte>((void*)h.P, h.Len);
        Assert.Equal(-1, span.IndexOfAnyExcept(h.Fill));
        if (h.Target == 1)
        {
            // Objects go back in the constructed state.
            *(long*)h.P = 0x600d;
        }
        if (h.Target < OwnCaches)
        {
            w.M.KmemCacheFree(w.Caches[h.Target], h.P);
        }
        else
        {
            w.M.Kfree(h.P);
        }
    }

    private static Machine BootFresh(int cpus, out long freeBefore, SlabAllocator slab = SlabAllocator.Slub)
    {
        var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = cpus, Seed = 7, Slab = slab });
        m.DrainAllPages();
        freeBefore = MemFree(m);
        return m;
    }

    private static void GiveEverythingBack(World w, IEnumerable<Held> held, long freeBefore)
    {
        foreach (var h in held.Concat(w.Passed))
        {
            Free(w, h);
        }
        foreach (var s in w.Caches)
        {
            Assert.Equal(0, w.M.KmemCacheShrink(s));
        }
        foreach (var s in w.Caches)
        {
            w.M.KmemCacheDestroy(s);
            Assert.True(s.IsDestroyed);
        }
        // Every kmalloc cache too (after the destroys: SLAB keeps off-slab index arrays in kmalloc-32).
        foreach (var s in w.M.SlabCaches)
        {
            Assert.Equal(0, w.M.KmemCacheShrink(s));
        }
        Validate(w.M);
        w.M.DrainAllPages();
        string vmstat = w.M.Proc.Vmstat();
        Assert.Contains("\nnr_slab_reclaimable 0\n", vmstat, StringComparison.Ordinal);
        Assert.Contains("\nnr_slab_unreclaimable 0\n", vmstat, StringComparison.Ordinal);
        Assert.Equal(freeBefore, MemFree(w.M));
    }

    /// <summary>Every cache's invariants (the backend's ValidateAll) hold.</summary>
    internal static void Validate(Machine m)
    {
        var problems = m.SlabLayer!.ValidateAll();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    private static long MemFree(Machine m) => long.Parse(m.Proc.Meminfo().Split('\n')[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[1],
        System.Globalization.CultureInfo.InvariantCulture);

    [Theory]
    [MemberData(nameof(SlabBackends.Cached), MemberType = typeof(SlabBackends))]
    public void RandomAllocFreeSequencesGiveEveryObjectBackToItsCache(SlabAllocator slab)
    {
        OpGen(3).Array[50, 600].Sample(ops =>
        {
            using var m = BootFresh(3, out long freeBefore, slab);
            var w = new World(m);
            var held = new List<Held>();
            for (int i = 0; i < ops.Length; i++)
            {
                Step(w, held, ops[i]);
                if (i % 16 == 15)
                {
                    Validate(m);
                }
            }
            Validate(m);
            GiveEverythingBack(w, held, freeBefore);
        }, iter: 40, threads: 2, print: ops => string.Join("; ", ops));
    }

    public static TheoryData<SlabAllocator, bool> BackendsAndSameCpu =>
        new() { { SlabAllocator.Slub, false }, { SlabAllocator.Slub, true }, { SlabAllocator.Slab, false }, { SlabAllocator.Slab, true } };

    [Theory]
    [MemberData(nameof(BackendsAndSameCpu))]
    public void TwoThreadsOnTwoCpusOrOneKeepEveryObjectTheirOwn(SlabAllocator slab, bool sameCpu)
    {
        var gen = Gen.Select(OpGen(1).Array[500, 2000], OpGen(1).Array[500, 2000]);
        gen.Sample((a, b) =>
        {
            using var m = BootFresh(2, out long freeBefore, slab);
            var w = new World(m);
            var helds = new[] { new List<Held>(), new List<Held>() };
            var errors = new Exception?[2];
            using var start = new Barrier(2);
            var threads = new[] { a, b }.Select((ops, t) => new Thread(() =>
            {
                try
                {
                    start.SignalAndWait();
                    foreach (var op in ops)
                    {
                        Step(w, helds[t], op with { Cpu = sameCpu ? 0 : t });
                    }
                }
                catch (Exception e)
                {
                    errors[t] = e;
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
            Assert.All(errors, e => Assert.Null(e));
            Validate(m);
            GiveEverythingBack(w, helds[0].Concat(helds[1]), freeBefore);
        }, iter: 8, threads: 1, print: t => $"A: {t.Item1.Length} ops, B: {t.Item2.Length} ops");
    }

    [Theory]
    [MemberData(nameof(SlabBackends.Cached), MemberType = typeof(SlabBackends))]
    public void ManyThreadsHammeringOneCacheOnSharedCpusLoseNothing(SlabAllocator slab)
    {
        using var m = BootFresh(2, out long freeBefore, slab);
        var w = new World(m);
        var s = w.Caches[0];
        var errors = new ConcurrentQueue<Exception>();
        var shared = new ConcurrentQueue<(nint P, long Tag)>();
        var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            try
            {
                using var pin = m.OnCpu(t % 2);
                var mine = new List<(nint P, long Tag)>();
                var rnd = new Random(t);
                for (int i = 0; i < 20000; i++)
                {
                    int k = rnd.Next(10);
                    if (k < 5 || mine.Count == 0)
                    {
                        // A unique tag in the object's three words: an object handed out twice would be retagged.
                        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
                        long tag = ((long)t << 32) | (uint)i;
                        Machine.ObjectSpan(s, p).Fill((byte)tag);
                        System.Runtime.InteropServices.MemoryMarshal.Write(Machine.ObjectSpan(s, p), tag);
                        mine.Add((p, tag));
                    }
                    else if (k < 8)
                    {
                        int j = rnd.Next(mine.Count);
                        FreeTagged(m, s, mine[j]);
                        mine[j] = mine[^1];
                        mine.RemoveAt(mine.Count - 1);
                    }
                    else if (k == 8)
                    {
                        int j = rnd.Next(mine.Count);
                        shared.Enqueue(mine[j]);
                        mine[j] = mine[^1];
                        mine.RemoveAt(mine.Count - 1);
                    }
                    else if (shared.TryDequeue(out var o))
                    {
                        FreeTagged(m, s, o);
                    }
                }
                foreach (var o in mine)
                {
                    FreeTagged(m, s, o);
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
        Validate(m);
        while (shared.TryDequeue(out var o))
        {
            FreeTagged(m, s, o);
        }
        GiveEverythingBack(w, [], freeBefore);
    }

    private static void FreeTagged(Machine m, KmemCache s, (nint P, long Tag) o)
    {
        var span = Machine.ObjectSpan(s, o.P);
        Assert.Equal(o.Tag, System.Runtime.InteropServices.MemoryMarshal.Read<long>(span));
        Assert.Equal(-1, span[8..].IndexOfAnyExcept((byte)o.Tag));
        m.KmemCacheFree(s, o.P);
    }
}
