// Swap: pages go out to a real swap file under pressure and come back intact;
// the swap cache, /proc/swaps, swapon/swapoff, and __GFP_IO respected.
using CsCheck;
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

[Collection("reclaim-files")]
public class SwapTests
{
    [Fact]
    public void EveryByteWrittenReadsBackAfterHeavySwapping()
    {
        using var m = Boot();
        using var swap = Swap(m, 64);
        var t = m.CreateTask("big")!;
        const int size = 72 << 20; // more than the machine's RAM
        ulong a = t.Mmap(size);
        Fill(t, a, size, 7);
        var v = Vmstat(m);
        Assert.True(v["pswpout"] > 0);
        Assert.True(t.SwapEnts > 0);
        Check(t, a, size, 7);
        Assert.True(Vmstat(m)["pswpin"] > 0);
        Assert.True(Meminfo(m, "SwapFree") < Meminfo(m, "SwapTotal"));
        m.Mm.Validate();
        t.Exit();
        Assert.Equal(Meminfo(m, "SwapTotal"), Meminfo(m, "SwapFree"));
        Assert.Equal(0, Meminfo(m, "SwapCached"));
    }

    [Fact]
    public void RandomWritesUnderPressureAllReadBack()
    {
        var op = Gen.Select(Gen.Int[0, 80 * 256 - 1], Gen.Int[1, 6000], Gen.Byte);
        Gen.Select(Gen.Int[0, 1000], op.Array[20, 120]).Sample((seed, ops) =>
        {
            using var m = Boot(seed: seed);
            using var swap = Swap(m, 96);
            var t = m.CreateTask("random")!;
            const int size = 80 << 20;
            ulong a = t.Mmap(size);
            var model = new Dictionary<int, byte>();
            // Push the machine into swapping first.
            Fill(t, a + (40 << 20), 40 << 20, 9);
            foreach (var (page, len, value) in ops)
            {
                int off = page * 4096 + (page % 7) * 13;
                int n = Math.Min(len, size - off);
                var bytes = new byte[n];
                Array.Fill(bytes, value);
                t.Write(a + (ulong)off, bytes);
                for (int i = 0; i < n; i++)
                {
                    model[off + i] = value;
                }
            }
            var buf = new byte[1];
            foreach (var (off, value) in model.Where((_, i) => i % 97 == 0))
            {
                t.Read(a + (ulong)off, buf);
                Assert.Equal(value, buf[0]);
            }
            // Every written range, page by page.
            foreach (var g in model.GroupBy(kv => kv.Key >> 12))
            {
                var page = new byte[4096];
                t.Read(a + ((ulong)g.Key << 12), page);
                foreach (var (off, value) in g)
                {
                    Assert.Equal(value, page[off & 4095]);
                }
            }
            m.Mm.Validate();
        }, iter: 2);
    }

    [Fact]
    public void ProcSwapsShowsTheAreaAsTheKernelPrintsIt()
    {
        using var m = Boot();
        using var swap = Swap(m, 16);
        string text = m.Proc.Read("/proc/swaps");
        var lines = text.Split('\n');
        Assert.Equal("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority", lines[0]);
        string name = swap.Path;
        string pad = new(' ', name.Length < 40 ? 40 - name.Length : 1);
        Assert.Equal($"{name}{pad}file\t\t16380\t\t0\t\t-2", lines[1]);
        Assert.Equal(16380, Meminfo(m, "SwapTotal"));
        Assert.Contains(m.Log.Lines, l => l.StartsWith($"Adding 16380k swap on {name}.  Priority:-2", StringComparison.Ordinal));
        Assert.Throws<InvalidOperationException>(() => m.Swapon(swap.Path));
    }

    [Fact]
    public void SwapoffBringsEveryPageBackAndSwaponRefusesAFileWithoutAHeader()
    {
        using var m = Boot();
        using var swap = Swap(m, 64);
        var t = m.CreateTask("paged")!;
        const int size = 60 << 20;
        ulong a = t.Mmap(size);
        Fill(t, a, size, 5);
        long before = t.SwapEnts;
        Assert.True(before > 0);
        t.Munmap(a, 30 << 20); // the first half goes; enough memory for the rest to come back
        m.Swapoff(swap.Path);
        Assert.Equal(0, t.SwapEnts);
        Assert.Equal(0, Meminfo(m, "SwapTotal"));
        Assert.Equal("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n", m.Proc.Read("swaps"));
        Check(t, a + (30 << 20), 30 << 20, 5);
        m.Mm.Validate();
        using var bad = Temp("noswap");
        File.WriteAllBytes(bad.Path, new byte[64 << 10]);
        var e = Assert.Throws<InvalidDataException>(() => m.Swapon(bad.Path));
        Assert.Contains("SWAPSPACE2", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => m.Swapoff(bad.Path));
    }

    [Fact]
    public void SwapoffTakesBackTheEntriesOfEveryTaskAndEveryMapping()
    {
        using var m = Boot();
        using var swap = Swap(m, 64);
        var one = m.CreateTask("one")!;
        var two = m.CreateTask("two")!;
        const int small = 8 << 20, big = 44 << 20;
        ulong a = one.Mmap(small), b = one.Mmap(small), c = two.Mmap(small), d = one.Mmap(big);
        // The oldest pages go to swap first: a, then c; the big mapping makes the pressure.
        Fill(one, a, small, 1);
        Fill(two, c, small, 3);
        Fill(one, b, small, 2);
        Fill(one, d, big, 4);
        Assert.True(one.SwapEnts > 0 && two.SwapEnts > 0, $"swapped: one {one.SwapEnts}, two {two.SwapEnts}");
        one.Munmap(d, big);
        m.Swapoff(swap.Path);
        Assert.Equal(0, one.SwapEnts);
        Assert.Equal(0, two.SwapEnts);
        Check(one, a, small, 1);
        Check(one, b, small, 2);
        Check(two, c, small, 3);
        m.Mm.Validate();
    }

    [Fact]
    public void GfpNoIoNeverSwapsButGfpKernelDoes()
    {
        using var m = Boot();
        using var swap = Swap(m, 64);
        var t = m.CreateTask("resident")!;
        ulong a = t.Mmap(64 << 20);
        // Fill most of memory with anonymous pages while it still fits.
        long pages = m.PageAllocator.NrFreePages - 1500;
        Fill(t, a, (int)pages * 4096, 4);
        Assert.Equal(0, Vmstat(m)["pswpout"]);
        var held = new List<Page>();
        for (Page p; !(p = m.AllocPage(Gfp.NoIo | Gfp.NoWarn)).IsNull;)
        {
            held.Add(p);
        }
        Assert.Equal(0, Vmstat(m)["pswpout"]);
        Assert.True(Vmstat(m)["allocstall_dma32"] + Vmstat(m)["allocstall_normal"] > 0, "GFP_NOIO did enter direct reclaim");
        var kernel = new List<Page>();
        for (int i = 0; i < 256; i++)
        {
            var k = m.AllocPage(Gfp.Kernel);
            Assert.False(k.IsNull);
            kernel.Add(k);
        }
        Assert.True(Vmstat(m)["pswpout"] > 0);
        Check(t, a, (int)pages * 4096, 4);
        foreach (var p in held)
        {
            m.FreePage(p);
        }
        kernel.ForEach(m.FreePage);
    }
}

// Run alone: kswapd's wake/sleep test observes a background thread over time windows, which other
// tests' load on two cores can stretch past them.
[CollectionDefinition("reclaim-files", DisableParallelization = true)]
public class ReclaimFilesCollection;
