// The free vmap tree against a plain list model: random carves and frees keep the
// same blocks, merged when adjacent, the search returns the lowest aligned fit and
// the cached largest block matches the model's.
using Kmem.Vmalloc;

namespace Kmem.Tests.Vmalloc;

public class FreeVmapTreeTests
{
    [Fact]
    public void RandomCarvesAndFreesMatchASimpleModel()
    {
        var rnd = new Random(7);
        var tree = new FreeVmapTree();
        const ulong start = 0x10000, end = start + (1UL << 24);
        tree.Insert(start, end);
        var busy = new List<(ulong Start, ulong Size)>();
        var model = new List<(ulong Start, ulong End)> { (start, end) };
        for (int step = 0; step < 3000; step++)
        {
            if (busy.Count > 0 && rnd.Next(3) == 0)
            {
                var (s, size) = busy[rnd.Next(busy.Count)];
                busy.Remove((s, size));
                tree.Insert(s, s + size);
                model.Add((s, s + size));
                model = Merge(model);
            }
            else
            {
                ulong size = (ulong)rnd.Next(1, 64) * 4096;
                ulong align = 4096UL << rnd.Next(0, 4);
                var fit = model.Select(b => (b, a: (b.Start + align - 1) & ~(align - 1))).FirstOrDefault(x => x.a + size <= x.b.End);
                bool found = tree.FindLowest(size, align, out ulong address, out ulong block);
                Assert.Equal(fit.b != default, found);
                if (!found)
                {
                    continue;
                }
                Assert.Equal(fit.a, address);
                Assert.Equal(fit.b.Start, block);
                tree.Carve(block, address, size);
                model.Remove(fit.b);
                if (address > fit.b.Start)
                {
                    model.Add((fit.b.Start, address));
                }
                if (address + size < fit.b.End)
                {
                    model.Add((address + size, fit.b.End));
                }
                model = Merge(model);
                busy.Add((address, size));
            }
            Assert.Equal(model, tree.Blocks());
            Assert.Equal(model.Max(b => b.End - b.Start), tree.LargestBlock);
        }
    }

    private static List<(ulong Start, ulong End)> Merge(List<(ulong Start, ulong End)> blocks)
    {
        var sorted = blocks.OrderBy(b => b.Start).ToList();
        var merged = new List<(ulong Start, ulong End)>();
        foreach (var b in sorted)
        {
            if (merged.Count > 0 && merged[^1].End == b.Start)
            {
                merged[^1] = (merged[^1].Start, b.End);
            }
            else
            {
                merged.Add(b);
            }
        }
        return merged;
    }
}
