// Property test of the pkmap window against a model: random kmap (one page or a batch),
// kunmap, kunmap without kmap and kmap_flush_unused over 600 highmem pages (more than
// the 512 slots of X86Pae: scans wrap, the window fills). After every step the window
// validates, a held page's pkmap_count is its holds + 1 and its address is kept, a kmap
// that may not wait fails exactly when other pages hold every slot; at the end every
// page shows the last byte written to it, whichever slot it lands in.
using CsCheck;
using static Kmem.Tests.Highmem.HighmemFixtures;

namespace Kmem.Tests.Highmem;

public class PkmapPropertyTests
{
    private const int Pages = 600;

    /// <summary>What a step does.</summary>
    public enum Kind
    {
        /// <summary>kmap one page.</summary>
        Map,
        /// <summary>kmap Count pages from Index on.</summary>
        MapMany,
        /// <summary>kunmap one held page.</summary>
        Unmap,
        /// <summary>kunmap a page nobody holds: the kernel's BUG.</summary>
        BadUnmap,
        /// <summary>kmap_flush_unused.</summary>
        Flush,
    }

    /// <summary>One step.</summary>
    public readonly record struct Op(Kind Kind, int Index, int Count)
    {
        public override string ToString() => $"{Kind} {Index} x{Count}";
    }

    private static readonly Gen<Op> s_op = Gen.Select(
        Gen.Frequency((5, Gen.Const(Kind.Map)), (2, Gen.Const(Kind.MapMany)), (5, Gen.Const(Kind.Unmap)),
            (1, Gen.Const(Kind.BadUnmap)), (1, Gen.Const(Kind.Flush))),
        Gen.Int[0, Pages - 1], Gen.Int[1, 120],
        (k, i, c) => new Op(k, i, c));

    [Fact]
    public void PkmapFollowsTheModel() =>
        s_op.Array[30, 150].Sample(Run, iter: 20, threads: 1, print: ops => string.Join("; ", ops));

    private static unsafe void Run(Op[] ops)
    {
        using var m = Boot();
        var pages = HighPages(m, Pages);
        var holds = new int[Pages];
        var address = new nint[Pages];
        var last = new byte[Pages];
        int heldPages = 0;

        void Map(int i)
        {
            bool mustFail = holds[i] == 0 && heldPages == m.LastPkmap;
            nint a = m.Kmap(pages[i], TimeSpan.Zero);
            if (mustFail)
            {
                Assert.Equal(0, a);
                return;
            }
            Assert.NotEqual(0, a);
            if (holds[i] > 0)
            {
                Assert.Equal(address[i], a);
            }
            else
            {
                heldPages++;
            }
            holds[i]++;
            address[i] = a;
            Assert.Equal(last[i], *(byte*)a);
            last[i] = (byte)(last[i] * 31 + i + 1);
            *(byte*)a = last[i];
        }

        foreach (var op in ops)
        {
            switch (op.Kind)
            {
                case Kind.Map:
                    Map(op.Index);
                    break;
                case Kind.MapMany:
                    for (int k = 0; k < op.Count; k++)
                    {
                        Map((op.Index + k) % Pages);
                    }
                    break;
                case Kind.Unmap:
                    int held = Array.FindIndex(holds, op.Index % Pages, h => h > 0);
                    if (held < 0)
                    {
                        held = Array.FindIndex(holds, h => h > 0);
                    }
                    if (held >= 0)
                    {
                        m.Kunmap(pages[held]);
                        if (--holds[held] == 0)
                        {
                            heldPages--;
                        }
                    }
                    break;
                case Kind.BadUnmap:
                    if (holds[op.Index] == 0)
                    {
                        Assert.ThrowsAny<KernelBugException>(() => m.Kunmap(pages[op.Index]));
                    }
                    break;
                case Kind.Flush:
                    m.KmapFlushUnused();
                    break;
            }
            m.Highmem.PkmapWindow.Validate();
            var counts = m.Highmem.PkmapWindow.Counts();
            for (int i = 0; i < Pages; i++)
            {
                // Plain comparisons: this runs for every page after every step.
                int count = counts.GetValueOrDefault((uint)pages[i].Pfn, -1);
                if (holds[i] > 0 ? count != holds[i] + 1 : count is not (-1 or 1))
                {
                    Assert.Fail($"after {op}: page {i} is held {holds[i]} times but has pkmap_count {count}");
                }
            }
        }
        // Whatever slot each page lands in now, its bytes are the last ones written.
        for (int i = 0; i < Pages; i++)
        {
            var b = new byte[1];
            m.MemcpyFromPage(b, pages[i], 0);
            Assert.Equal(last[i], b[0]);
        }
    }
}
