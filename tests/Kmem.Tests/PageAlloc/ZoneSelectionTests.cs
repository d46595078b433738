// Where a page comes from: the zone gfp_zone() picks for each GFP mask on each
// preset, the walk down the zonelist when the preferred zone runs low,
// ZONE_MOVABLE (only movable highuser allocations may use it), highmem frames
// without a direct-map address, and NUMA placement on a two-node machine.
using Kmem.PageAlloc;
using static Kmem.Tests.PageAlloc.PageAllocCheck;

namespace Kmem.Tests.PageAlloc;

public class ZoneSelectionTests
{
    private static Machine Boot(Preset preset, string memory, int cpus = 2, int nodes = 1, string? movableCore = null) =>
        Machine.Boot(new MachineOptions { Preset = preset, Memory = memory, Cpus = cpus, Nodes = nodes, MovableCore = movableCore, Seed = 1 });

    [Theory]
    [InlineData(Preset.X64, "1G", Gfp.Dma | Gfp.Kernel, ZoneType.Dma)]
    [InlineData(Preset.X64, "1G", Gfp.Dma32 | Gfp.Kernel, ZoneType.Dma32)]
    [InlineData(Preset.X64, "1G", Gfp.Kernel, ZoneType.Dma32)]
    [InlineData(Preset.X64, "1G", Gfp.HighUser, ZoneType.Dma32)]
    [InlineData(Preset.X64, "1G", Gfp.HighUserMovable, ZoneType.Dma32)]
    [InlineData(Preset.X64, "5G", Gfp.Kernel, ZoneType.Normal)]
    [InlineData(Preset.X64, "5G", Gfp.Dma32 | Gfp.Kernel, ZoneType.Dma32)]
    [InlineData(Preset.X64, "5G", Gfp.Dma | Gfp.Kernel, ZoneType.Dma)]
    [InlineData(Preset.X64, "5G", Gfp.Atomic, ZoneType.Normal)]
    [InlineData(Preset.X86Pae, "1536M", Gfp.Kernel, ZoneType.Normal)]
    [InlineData(Preset.X86Pae, "1536M", Gfp.Dma32 | Gfp.Kernel, ZoneType.Normal)]
    [InlineData(Preset.X86Pae, "1536M", Gfp.Dma | Gfp.Kernel, ZoneType.Dma)]
    [InlineData(Preset.X86Pae, "1536M", Gfp.HighUser, ZoneType.HighMem)]
    [InlineData(Preset.X86Pae, "1536M", Gfp.HighUserMovable, ZoneType.HighMem)]
    [InlineData(Preset.X86, "1G", Gfp.HighUser, ZoneType.HighMem)]
    public void AFreshMachineServesEachGfpFromItsPreferredZone(Preset preset, string memory, Gfp gfp, ZoneType expected)
    {
        using var m = Boot(preset, memory);
        for (int order = 0; order <= 4; order += 2)
        {
            var page = m.AllocPages(gfp, order);
            Assert.False(page.IsNull);
            Assert.Equal(expected, m.PageZone(page));
            Assert.Equal(expected, m.PageZone(page.Add((1 << order) - 1)));
            Assert.Equal(expected == ZoneType.HighMem, m.PageHighMem(page));
            m.FreePages(page, order);
        }
    }

    [Fact]
    public void HighmemFramesHaveNoDirectMapAddress()
    {
        using var m = Boot(Preset.X86Pae, "1536M");
        var page = m.AllocPage(Gfp.HighUser);
        Assert.Equal(ZoneType.HighMem, m.PageZone(page));
        Assert.True(m.PageHighMem(page));
        Assert.Equal(0, m.PageAddress(page));
        Assert.True(page.Pfn >= m.Mem.LowmemPfns);
        Assert.Throws<ArgumentException>(() => m.PageSpan(page));

        var low = m.AllocPage(Gfp.Kernel);
        Assert.False(m.PageHighMem(low));
        Assert.NotEqual(0, m.PageAddress(low));
        Assert.Equal(low, m.VirtToPage(m.PageAddress(low)));
        m.FreePage(page);
        m.FreePage(low);
    }

    [Fact]
    public void GetFreePagesNeverReturnsHighmemEvenWhenAskedFor()
    {
        using var m = Boot(Preset.X86Pae, "1536M");
        nint p = m.GetFreePages(Gfp.HighUser, 1);
        Assert.NotEqual(0, p);
        var page = m.VirtToPage(p);
        Assert.Equal(ZoneType.Normal, m.PageZone(page));
        m.FreePages(p, 1);
    }

    [Fact]
    public void GfpKernelOnX86NeverTakesHighmemEvenWhenLowmemRunsOut()
    {
        using var m = Boot(Preset.X86, "1G");
        var high = ZoneOf(m, ZoneType.HighMem);
        long highFree = high.FreePages;
        var held = new List<(Page Page, int Order)>();
        foreach (int order in new[] { 10, 4, 0 })
        {
            while (true)
            {
                var p = m.AllocPages(Gfp.Kernel | Gfp.NoWarn, order);
                if (p.IsNull)
                {
                    break;
                }
                held.Add((p, order));
            }
        }
        Assert.True(held.Sum(h => 1L << h.Order) > 200_000, $"only {held.Sum(h => 1L << h.Order)} pages before GFP_KERNEL failed");
        Assert.All(held, h => Assert.NotEqual(ZoneType.HighMem, m.PageZone(h.Page)));
        Assert.Equal(highFree, high.FreePages + high.PcpPages());
        // Highmem is still there for those who may use it.
        var user = m.AllocPage(Gfp.HighUser);
        Assert.Equal(ZoneType.HighMem, m.PageZone(user));
        m.FreePage(user);
        foreach (var (p, o) in held)
        {
            m.FreePages(p, o);
        }
        m.DrainAllPages();
        AssertAccounted(m, 0);
        ValidateAll(m);
    }

    [Fact]
    public void AnExhaustedPreferredZoneFallsBackDownTheZonelist()
    {
        using var m = Boot(Preset.X64, "64M");
        using var cpu = m.OnCpu(0);
        var dma32 = ZoneOf(m, ZoneType.Dma32);
        var dma = ZoneOf(m, ZoneType.Dma);
        long dmaFree = dma.FreePages;
        var held = new List<Page>();
        Page page;
        while (true)
        {
            page = m.AllocPage(Gfp.Kernel | Gfp.NoWarn);
            Assert.False(page.IsNull);
            if (m.PageZone(page) != ZoneType.Dma32)
            {
                break;
            }
            held.Add(page);
        }
        // The first page from outside DMA32 comes from DMA, and only once DMA32 is down to its low watermark.
        Assert.Equal(ZoneType.Dma, m.PageZone(page));
        Assert.True(dma32.FreePages <= dma32.Watermark[Zone.WmarkLow],
            $"DMA32 still had {dma32.FreePages} free pages above its low watermark {dma32.Watermark[Zone.WmarkLow]}");
        Assert.True(held.Count > dma32.ManagedPages - dma32.Watermark[Zone.WmarkLow] - 2 * dma32.Pcp[0].High,
            $"only {held.Count} of DMA32's {dma32.ManagedPages} pages were used before falling back");
        Assert.True(dma.FreePages < dmaFree);
        held.Add(page);
        foreach (var p in held)
        {
            m.FreePage(p);
        }
        m.DrainAllPages();
        AssertAccounted(m, 0);
        Assert.Equal(dmaFree, dma.FreePages);
    }

    [Fact]
    public void ZoneMovableServesOnlyMovableHighuserAllocations()
    {
        using var m = Boot(Preset.X64, "1G", movableCore: "25%");
        var movable = ZoneOf(m, ZoneType.Movable);
        Assert.True(movable.IsPopulated);
        Assert.Equal(262144 / 4, movable.SpannedPages);
        Assert.Equal(262144L, movable.EndPfn);
        Assert.Equal(movable.StartPfn, ZoneOf(m, ZoneType.Dma32).EndPfn);

        var user = m.AllocPage(Gfp.HighUserMovable);
        Assert.Equal(ZoneType.Movable, m.PageZone(user));
        var thp = m.AllocPages(Gfp.TransHuge, 9);
        Assert.Equal(ZoneType.Movable, m.PageZone(thp));
        m.FreePage(user);
        m.FreePages(thp, 9);

        // Everything else (even movable pages without __GFP_HIGHMEM) stays out, until it fails.
        long movableFree = movable.FreePages + movable.PcpPages();
        var held = new List<(Page, int)>();
        foreach (var gfp in new[] { Gfp.Kernel | Gfp.NoWarn, Gfp.Kernel | Gfp.Movable | Gfp.NoWarn, Gfp.HighUser | Gfp.NoWarn, Gfp.Atomic | Gfp.NoWarn })
        {
            foreach (int order in new[] { 10, 0 })
            {
                for (var p = m.AllocPages(gfp, order); !p.IsNull; p = m.AllocPages(gfp, order))
                {
                    Assert.NotEqual(ZoneType.Movable, m.PageZone(p));
                    held.Add((p, order));
                }
            }
        }
        Assert.Equal(movableFree, movable.FreePages + movable.PcpPages());
        // ... while a movable user allocation still finds room.
        var late = m.AllocPage(Gfp.HighUserMovable | Gfp.NoWarn);
        Assert.Equal(ZoneType.Movable, m.PageZone(late));
        held.Add((late, 0));
        foreach (var (p, o) in held)
        {
            m.FreePages(p, o);
        }
        m.DrainAllPages();
        AssertAccounted(m, 0);
        ValidateAll(m);
    }

    [Fact]
    public void ZoneMovableCarvedFromHighmemIsHighmemToo()
    {
        using var m = Machine.Boot(new MachineOptions { Preset = Preset.X86Pae, Memory = "1536M", MovableCore = "25%" });
        var movable = ZoneOf(m, ZoneType.Movable);
        var high = ZoneOf(m, ZoneType.HighMem);
        Assert.Equal(393216u / 4 * 3, movable.StartPfn);
        Assert.Equal(movable.StartPfn, high.EndPfn);
        Assert.True(high.IsManaged);
        // is_highmem: the min watermark is capped like HighMem's.
        Assert.Equal(Math.Clamp(movable.ManagedPages / 1024, 32, 128), movable.Watermark[Zone.WmarkMin]);
        var user = m.AllocPage(Gfp.HighUserMovable);
        Assert.Equal(ZoneType.Movable, m.PageZone(user));
        Assert.True(m.PageHighMem(user));
        Assert.Equal(0, m.PageAddress(user));
        var plain = m.AllocPage(Gfp.HighUser);
        Assert.Equal(ZoneType.HighMem, m.PageZone(plain));
        m.FreePage(user);
        m.FreePage(plain);
    }

    [Fact]
    public void AnUnmovableRequestTakesALowerZoneRatherThanFragmentNormal()
    {
        // ALLOC_NOFRAGMENT: a Normal-zone request on a machine with DMA32 may only steal whole pageblocks
        // there; when Normal has free pages only inside movable pageblocks, DMA32 serves it instead.
        using var m = Machine.Boot(new MachineOptions { Memory = "5G", Cpus = 1 });
        using var cpu = m.OnCpu(0);
        var normal = ZoneOf(m, ZoneType.Normal);
        var blocks = new List<Page>();
        var elsewhere = new List<Page>();
        while (true)
        {
            var p = m.AllocPages(Gfp.HighUserMovable, 8);
            if (m.PageZone(p) != ZoneType.Normal)
            {
                elsewhere.Add(p);
                break;
            }
            blocks.Add(p);
        }
        // Give back the first half of every pageblock: lots of free pages ...
        var lower = blocks.Where(p => p.Pfn % 512 == 0).ToList();
        lower.ForEach(p => m.FreePages(p, 8));
        Assert.True(normal.FreePages > 100_000, $"Normal has {normal.FreePages} free pages");
        // ... and no free pageblock: the few whole ones left under the low watermark go to movable THPs.
        var thps = new List<Page>();
        while (Enumerable.Range(9, 2).Sum(o => normal.NrFree(o)) > 0)
        {
            var thp = m.AllocPages(Gfp.HighUserMovable, 9);
            Assert.Equal(ZoneType.Normal, m.PageZone(thp));
            thps.Add(thp);
        }

        var unmovable = m.AllocPage(Gfp.Kernel);
        Assert.Equal(ZoneType.Dma32, m.PageZone(unmovable));
        Assert.All(Enumerable.Range(0, (int)(normal.SpannedPages >> 9)), b =>
            Assert.NotEqual(MigrateType.Unmovable, m.Mem.PageblockMigratetype(normal.StartPfn + ((uint)b << 9))));
        // A movable request is at home in Normal's movable pageblocks.
        var movable = m.AllocPage(Gfp.HighUserMovable);
        Assert.Equal(ZoneType.Normal, m.PageZone(movable));

        m.FreePage(unmovable);
        m.FreePage(movable);
        blocks.Except(lower).Concat(elsewhere).ToList().ForEach(p => m.FreePages(p, 8));
        thps.ForEach(p => m.FreePages(p, 9));
        m.DrainAllPages();
        AssertAccounted(m, 0);
    }

    [Fact]
    public void AllocPagesNodeTakesFromTheRequestedNode()
    {
        using var m = Boot(Preset.X64, "512M", cpus: 4, nodes: 2);
        Assert.Equal(2, m.NrNodes);
        using var cpu = m.OnCpu(0);
        for (int order = 0; order <= 9; order += 3)
        {
            var one = m.AllocPagesNode(1, Gfp.Kernel, order);
            var zero = m.AllocPagesNode(0, Gfp.Kernel, order);
            Assert.Equal(1, m.PageToNid(one));
            Assert.Equal(0, m.PageToNid(zero));
            m.FreePages(one, order);
            m.FreePages(zero, order);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => m.AllocPagesNode(2, Gfp.Kernel, 0));
        // Node 1 has no DMA zone: GFP_DMA falls back to node 0's, and fails with __GFP_THISNODE.
        var dma = m.AllocPagesNode(1, Gfp.Dma | Gfp.Kernel, 0);
        Assert.Equal((0, ZoneType.Dma), (m.PageToNid(dma), m.PageZone(dma)));
        m.FreePage(dma);
        Assert.True(m.AllocPagesNode(1, Gfp.Dma | Gfp.Kernel | Gfp.ThisNode, 0).IsNull);
        Assert.True(m.Log.Contains("page allocation failure: order:0"));
    }

    [Fact]
    public void DefaultAllocationsAreLocalToThePinnedCpusNode()
    {
        using var m = Boot(Preset.X64, "512M", cpus: 4, nodes: 2);
        int[] expectedNode = [0, 0, 1, 1];
        for (int c = 0; c < 4; c++)
        {
            using var cpu = m.OnCpu(c);
            var p = m.AllocPage(Gfp.Kernel);
            var q = m.AllocPagesNode(-1, Gfp.Kernel, 2);
            Assert.Equal(expectedNode[c], m.PageToNid(p));
            Assert.Equal(expectedNode[c], m.PageToNid(q));
            m.FreePage(p);
            m.FreePages(q, 2);
        }
    }

    [Fact]
    public void ThisNodeNeverFallsBackToAnotherNode()
    {
        using var m = Boot(Preset.X64, "256M", cpus: 4, nodes: 2);
        using var cpu = m.OnCpu(0);
        var node0Free = m.PageAllocator.Nodes[0].Zones.Sum(z => z.FreePages + z.PcpPages());
        var held = new List<(Page, int)>();
        foreach (int order in new[] { 10, 0 })
        {
            for (var p = m.AllocPagesNode(1, Gfp.Kernel | Gfp.ThisNode | Gfp.NoWarn, order); !p.IsNull;
                 p = m.AllocPagesNode(1, Gfp.Kernel | Gfp.ThisNode | Gfp.NoWarn, order))
            {
                Assert.Equal(1, m.PageToNid(p));
                held.Add((p, order));
            }
        }
        Assert.True(held.Sum(h => 1L << h.Item2) > m.PageAllocator.Nodes[1].Zones.Sum(z => z.ManagedPages) * 9 / 10);
        Assert.Equal(node0Free, m.PageAllocator.Nodes[0].Zones.Sum(z => z.FreePages + z.PcpPages()));
        // Without __GFP_THISNODE the same request falls back to node 0.
        var fallback = m.AllocPagesNode(1, Gfp.Kernel | Gfp.NoWarn, 0);
        Assert.Equal(0, m.PageToNid(fallback));
        held.Add((fallback, 0));
        foreach (var (p, o) in held)
        {
            m.FreePages(p, o);
        }
        m.DrainAllPages();
        AssertAccounted(m, 0);
    }

    [Fact]
    public void TwoNodesSplitMemoryAndCpus()
    {
        using var m = Boot(Preset.X64, "512M", cpus: 4, nodes: 2);
        var nodes = m.PageAllocator.Nodes;
        Assert.Equal([0, 1], nodes[0].Cpus);
        Assert.Equal([2, 3], nodes[1].Cpus);
        Assert.Equal(nodes[0].EndPfn, nodes[1].StartPfn);
        Assert.Equal(m.MaxPfn, nodes[1].EndPfn);
        Assert.Equal(0u, nodes[1].EndPfn % 1024);
        Assert.False(nodes[1].ZoneOf(ZoneType.Dma)!.IsPopulated);
        Assert.True(nodes[0].ZoneOf(ZoneType.Dma)!.IsPopulated);
        // The fallback list starts with the node's own zones, highest first.
        Assert.All(nodes[1].ZonelistFallback.TakeWhile(z => z.Node == nodes[1]), z => Assert.Equal(1, z.Node.Id));
        Assert.Equal(nodes[1], nodes[1].ZonelistFallback[0].Node);
        Assert.Equal(nodes[0], nodes[1].ZonelistFallback[^1].Node);
        Assert.All(nodes[1].ZonelistNoFallback, z => Assert.Equal(nodes[1], z.Node));
    }
}
