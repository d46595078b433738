// The per-CPU allocation map (struct pcpu_chunk) under random alloc/free sequences: areas never
// overlap and keep their alignment, every hint matches a scan of the bitmap (checked every 4 steps), a
// request aligned to at most 8 bytes is refused only when no free run fits, and freeing everything
// leaves the map as it was made. Also through the whole allocator, where chunks come and go.
using CsCheck;
using Kmem.Percpu;

namespace Kmem.Tests.Percpu;

public class PercpuMapPropertyTests
{
    public readonly record struct Op(bool Alloc, int Bytes, int AlignShift, int Victim)
    {
        public override string ToString() => Alloc ? $"alloc {Bytes}/{1 << AlignShift}" : $"free #{Victim}";
    }

    // Sizes mostly small, as per-CPU data is, with some large ones to cross blocks.
    private static readonly Gen<Op> s_op = Gen.Select(Gen.Int[0, 99], Gen.Int[1, 64], Gen.Int[1, 6000], Gen.Int[2, 12], Gen.Int[0, 1 << 20],
        (k, small, large, align, victim) => new Op(k < 60, k < 45 ? small : large, k % 4 == 0 ? align : 2, victim));

    private static int Align(int value, int align) => (value + align - 1) / align * align;

    /// <summary>Brute force: whether an aligned run of <paramref name="bits"/> clear bits exists.</summary>
    private static bool AnyFit(PcpuChunk c, int bits, int alignBits)
    {
        int lo = c.StartOffset / PcpuChunk.MinAllocSize, hi = c.MapBits - c.EndOffset / PcpuChunk.MinAllocSize;
        int runStart = -1;
        for (int b = lo; b <= hi; b++)
        {
            bool free = b < hi && !c.IsAllocated(b);
            if (free && runStart < 0)
            {
                runStart = b;
            }
            else if (!free && runStart >= 0)
            {
                if (Align(runStart, alignBits) + bits <= b)
                {
                    return true;
                }
                runStart = -1;
            }
        }
        return false;
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(1876, 0)]
    [InlineData(0, 4096)]
    public void RandomSequencesNeverOverlapKeepTheHintsExactAndFreeToEmpty(int startOffset, int endOffset)
    {
        s_op.Array[20, 250].Sample(ops =>
        {
            var c = new PcpuChunk(4, startOffset, endOffset);
            int initialFree = c.FreeBytes;
            var live = new List<(int Off, int Bytes)>();
            for (int step = 0; step < ops.Length; step++)
            {
                var op = ops[step];
                if (op.Alloc)
                {
                    int bytes = Align(op.Bytes, PcpuChunk.MinAllocSize);
                    int bits = bytes / PcpuChunk.MinAllocSize;
                    int align = 1 << op.AlignShift;
                    int alignBits = align / PcpuChunk.MinAllocSize;
                    int fit = c.FindBlockFit(bits, alignBits);
                    int off = fit < 0 ? -1 : c.AllocArea(bits, alignBits, fit);
                    if (off < 0)
                    {
                        // The search goes by the hints: each block's largest run and the runs across block
                        // edges. Up to 8-byte alignment that finds every fit; a coarser alignment may miss a
                        // smaller, aligned run that is nobody's hint, as in the kernel (pcpu_next_fit_region).
                        if (align <= 8)
                        {
                            Assert.False(AnyFit(c, bits, alignBits), $"{bytes} bytes aligned {align} were refused though a run was free");
                        }
                        continue;
                    }
                    Assert.Equal(0, off % align);
                    Assert.True(off >= startOffset && off + bytes <= c.MapBits * PcpuChunk.MinAllocSize - endOffset);
                    Assert.DoesNotContain(live, a => off < a.Off + a.Bytes && a.Off < off + bytes);
                    live.Add((off, bytes));
                }
                else if (live.Count > 0)
                {
                    var victim = live[op.Victim % live.Count];
                    live.Remove(victim);
                    Assert.Equal(victim.Bytes, c.FreeArea(victim.Off));
                }
                if (step % 4 == 0)
                {
                    Assert.Null(c.Validate());
                }
                Assert.Equal(initialFree - live.Sum(a => a.Bytes), c.FreeBytes);
            }
            foreach (var (off, bytes) in live)
            {
                Assert.Equal(bytes, c.FreeArea(off));
            }
            Assert.Null(c.Validate());
            Assert.Equal(initialFree, c.FreeBytes);
            Assert.Equal(initialFree / PcpuChunk.MinAllocSize, c.ChunkMd.ContigHint);
            Assert.Equal(startOffset / PcpuChunk.MinAllocSize, c.ChunkMd.FirstFree);
        }, iter: 25, print: ops => string.Join("; ", ops));
    }

    [Fact]
    public void FreeingAnythingButAnAreaStartChangesNothing()
    {
        var c = new PcpuChunk(2, 0, 0);
        int a = c.AllocArea(8, 1, c.FindBlockFit(8, 1));
        Assert.Equal(-1, c.FreeArea(a + 4));
        Assert.Equal(-1, c.FreeArea(a + 32));
        Assert.Equal(32, c.FreeArea(a));
        Assert.Equal(-1, c.FreeArea(a));
        Assert.Null(c.Validate());
    }

    [Fact]
    public void RandomPercpuAllocationsThroughTheAllocatorComeAndGoWithTheirChunks()
    {
        s_op.Array[50, 300].Sample(ops =>
        {
            using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 3 });
            var first = m.AllocPercpu(4, 4);
            m.FreePercpu(first);
            long percpuPagesAtStart = m.PercpuPages;
            var live = new List<(PercpuPtr P, int Bytes, byte Fill)>();
            byte fill = 0;
            foreach (var op in ops)
            {
                if (op.Alloc)
                {
                    // Large requests (up to 6000 bytes, a few up to 24000) fill chunks and make new ones.
                    int bytes = op.Bytes > 64 ? op.Bytes * 4 : op.Bytes;
                    var p = m.AllocPercpu((nuint)bytes, (nuint)(1 << op.AlignShift));
                    Assert.False(p.IsNull);
                    fill++;
                    foreach (int cpu in m.ForEachPossibleCpu())
                    {
                        var span = Span(m, p, cpu, bytes);
                        Assert.True(span.IndexOfAnyExcept((byte)0) < 0, "per-CPU memory must come zeroed");
                        span.Fill((byte)(fill + cpu));
                    }
                    live.Add((p, bytes, fill));
                }
                else if (live.Count > 0)
                {
                    var victim = live[op.Victim % live.Count];
                    live.Remove(victim);
                    m.FreePercpu(victim.P);
                }
            }
            // Nobody's bytes were overwritten by another allocation.
            foreach (var (p, bytes, f) in live)
            {
                foreach (int cpu in m.ForEachPossibleCpu())
                {
                    Assert.True(Span(m, p, cpu, bytes).IndexOfAnyExcept((byte)(f + cpu)) < 0);
                }
            }
            Assert.Null(m.PercpuAllocator.Validate());
            foreach (var (p, _, _) in live)
            {
                m.FreePercpu(p);
            }
            Assert.Null(m.PercpuAllocator.Validate());
            // At most one spare chunk survives (pcpu_balance_free keeps one).
            Assert.True(m.PercpuAllocator.NrChunks <= 2);
            Assert.True(m.PercpuPages <= percpuPagesAtStart + m.PercpuAllocator.UnitPages * m.NrCpus);
        }, iter: 8, print: ops => string.Join("; ", ops));
    }

    private static unsafe Span<byte> Span(Machine m, PercpuPtr p, int cpu, int bytes) => new((void*)m.PerCpuPtr(p, cpu), bytes);
}
