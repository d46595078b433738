// SLAB properties under random kmalloc / kfree / krealloc / kmem_cache traffic over many sizes
// (1 byte to 64 KiB, so kmalloc-32 … 8k and the page allocator) with occasional cache_reap rounds,
// on pinned CPUs of a two-node machine: every block is aligned as its cache promises, no two live
// blocks overlap, each keeps its own fill byte until freed (krealloc keeps the common prefix), and
// the validator holds every ten steps. After freeing all and shrinking, every page is back.
using CsCheck;

namespace Kmem.Tests.Slab;

public class ArraySlabPropertyTests
{
    private enum Kind { Kmalloc, CacheAlloc, Free, Realloc, Reap }

    private readonly record struct Op(Kind Kind, uint Size, int Cpu, int Victim)
    {
        public override string ToString() => $"cpu{Cpu} {Kind} {Size} v{Victim}";
    }

    private static readonly Gen<uint> SizeGen = Gen.Frequency(
        (6, Gen.UInt[1, 256]), (3, Gen.UInt[257, 8192]), (1, Gen.UInt[8193, 65536]));

    private static readonly Gen<Op> OpGen = Gen.Select(Gen.Int[0, 99], SizeGen, Gen.Int[0, 3], Gen.Int[0, 1 << 20],
        (k, size, cpu, v) => new Op(k < 35 ? Kind.Kmalloc : k < 50 ? Kind.CacheAlloc : k < 80 ? Kind.Free : k < 97 ? Kind.Realloc : Kind.Reap, size, cpu, v));

    private sealed record Live(nint P, uint Len, byte Fill, KmemCache? Cache);

    [Fact]
    public void RandomTrafficKeepsBlocksAlignedDisjointAndIntactAndGivesEveryPageBack()
    {
        OpGen.Array[20, 200].Sample(ops =>
        {
            using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 4, Nodes = 2, Seed = 3, Slab = SlabAllocator.Slab });
            m.DrainAllPages();
            string before = m.Proc.Buddyinfo();
            KmemCache[] caches =
            [
                m.KmemCacheCreate("p_tiny", 10, 0, SlabFlags.None, null)!,
                m.KmemCacheCreate("p_ctor", 1024, 0, SlabFlags.HwcacheAlign, _ => { })!,
                m.KmemCacheCreate("p_align", 72, 128, SlabFlags.ReclaimAccount, null)!,
            ];
            var live = new List<Live>();
            byte fill = 0;
            for (int i = 0; i < ops.Length; i++)
            {
                var op = ops[i];
                using var pin = m.OnCpu(op.Cpu);
                switch (op.Kind)
                {
                    case Kind.Kmalloc:
                        Add(m, live, m.Kmalloc(op.Size, Gfp.Kernel), op.Size, ++fill, null);
                        break;
                    case Kind.CacheAlloc:
                        var s = caches[op.Victim % caches.Length];
                        Add(m, live, m.KmemCacheAlloc(s, Gfp.Kernel), s.ObjectSize, ++fill, s);
                        break;
                    case Kind.Free when live.Count > 0:
                        Free(m, Take(live, op.Victim));
                        break;
                    case Kind.Realloc when live.Count > 0 && live[op.Victim % live.Count].Cache is null:
                        {
                            var old = Take(live, op.Victim);
                            nint q = m.Krealloc(old.P, op.Size, Gfp.Kernel);
                            Assert.NotEqual(0, q);
                            Assert.Equal(-1, Span(q, Math.Min(old.Len, op.Size)).IndexOfAnyExcept(old.Fill));
                            // krealloc keeps an object that still fits (6.1's __do_krealloc: ksize >= new
                            // size), so only a moved one owes the new size's natural alignment.
                            Add(m, live, q, op.Size, ++fill, null, inPlace: q == old.P);
                            break;
                        }
                    case Kind.Reap:
                        m.CacheReap();
                        break;
                }
                CheckDisjoint(live);
                if (i % 10 == 9)
                {
                    SlabPropertyTests.Validate(m);
                }
            }
            SlabPropertyTests.Validate(m);
            foreach (var l in live)
            {
                Free(m, l);
            }
            foreach (var s in caches)
            {
                m.KmemCacheDestroy(s);
                Assert.True(s.IsDestroyed);
            }
            foreach (var s in m.SlabCaches)
            {
                Assert.Equal(0, m.KmemCacheShrink(s));
            }
            SlabPropertyTests.Validate(m);
            string vmstat = m.Proc.Vmstat();
            Assert.Contains("\nnr_slab_reclaimable 0\n", vmstat, StringComparison.Ordinal);
            Assert.Contains("\nnr_slab_unreclaimable 0\n", vmstat, StringComparison.Ordinal);
            m.DrainAllPages();
            Assert.Equal(before, m.Proc.Buddyinfo());
        }, iter: 12, threads: 2, print: ops => string.Join("; ", ops));
    }

    private static unsafe Span<byte> Span(nint p, uint len) => new((void*)p, (int)len);

    private static void Add(Machine m, List<Live> live, nint p, uint len, byte fill, KmemCache? cache, bool inPlace = false)
    {
        Assert.NotEqual(0, p);
        // kmalloc: 8-byte aligned at least, naturally aligned for power-of-two sizes up to a page;
        // a cache: its own alignment.
        uint align = cache?.Align ?? (inPlace ? 8u : len >= 4096 ? 4096u : (len & (len - 1)) == 0 && len >= 8 ? len : 8u);
        Assert.True(p % align == 0, $"0x{p:x} of {len} bytes is not {align}-aligned");
        Assert.True(m.Ksize(p) >= len || cache is not null);
        Span(p, len).Fill(fill);
        live.Add(new Live(p, len, fill, cache));
    }

    private static void Free(Machine m, Live l)
    {
        Assert.Equal(-1, Span(l.P, l.Len).IndexOfAnyExcept(l.Fill));
        if (l.Cache is { } s)
        {
            m.KmemCacheFree(s, l.P);
        }
        else
        {
            m.Kfree(l.P);
        }
    }

    private static Live Take(List<Live> live, int victim)
    {
        int i = victim % live.Count;
        var l = live[i];
        live[i] = live[^1];
        live.RemoveAt(live.Count - 1);
        return l;
    }

    private static void CheckDisjoint(List<Live> live)
    {
        var sorted = live.OrderBy(l => l.P).ToList();
        for (int i = 1; i < sorted.Count; i++)
        {
            Assert.True(sorted[i - 1].P + (nint)sorted[i - 1].Len <= sorted[i].P, $"0x{sorted[i - 1].P:x}+{sorted[i - 1].Len} overlaps 0x{sorted[i].P:x}");
        }
    }
}
