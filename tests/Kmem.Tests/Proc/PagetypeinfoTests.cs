// /proc/pagetypeinfo against the real snapshots (headers, columns, migrate types
// shown) and against the free lists and the pageblock migrate types.
using Kmem.Physical;

namespace Kmem.Tests.Proc;

public class PagetypeinfoTests
{
    private static readonly MigrateType[] s_types =
        [MigrateType.Unmovable, MigrateType.Movable, MigrateType.Reclaimable, MigrateType.HighAtomic, MigrateType.Isolate];

    [Theory]
    [InlineData(Snapshots.X64)]
    [InlineData(Snapshots.I386)]
    public void LayoutMatchesTheRealSnapshotLineForLine(string capture)
    {
        using var m = Snapshots.Boot(capture);
        var ours = Snapshots.SplitLines(m.Proc.Pagetypeinfo());
        var real = Snapshots.Lines(capture, "pagetypeinfo");
        Assert.Equal(real.Select(Snapshots.Shape), ours.Select(Snapshots.Shape));
        // The headers are text, not numbers: compare them whole.
        Assert.Equal(real[..4], ours[..4]);
        int blocks = Array.FindIndex(real, l => l.StartsWith("Number of blocks type", StringComparison.Ordinal));
        Assert.Equal(real[blocks], ours[blocks]);
    }

    [Theory]
    [InlineData(Snapshots.X64)]
    [InlineData(Snapshots.I386)]
    public void AtBootOnlyTheBlockThatStartsInAHoleIsUnmovable(string capture)
    {
        // memmap_init marks a pageblock Movable when it visits the block's first frame; ZONE_DMA starts at pfn 1
        // (pfn 0 is not memory), so its first block keeps MIGRATE_UNMOVABLE, as both recorded kernels show.
        using var m = Snapshots.Boot(capture);
        var counts = BlockCounts(m);
        Assert.Equal([1L, 7, 0, 0, 0], counts[ZoneType.Dma]);
        var mem = m.PageAllocator.Mem;
        Assert.Equal(MigrateType.Unmovable, mem.PageblockMigratetype(1));
        // The boot's frees go onto the lists of their block's type (__free_pages_core): the first block's free
        // frames are all on the Unmovable lists, which hold nothing else.
        long firstBlockFree = 0;
        for (uint pfn = 0; pfn < 1u << m.PageAllocator.Arch.PageblockOrder;)
        {
            ref var f = ref mem.Frame(pfn);
            bool free = (f.Flags & PageFlags.Buddy) != 0;
            firstBlockFree += free ? 1L << f.Order : 0;
            pfn += free ? 1u << f.Order : 1;
        }
        var dma = m.PageAllocator.Zones.Single(z => z.Type == ZoneType.Dma);
        Assert.True(firstBlockFree > 0);
        Assert.Equal(firstBlockFree, Enumerable.Range(0, Machine.MaxOrder).Sum(o => dma.NrFree(o, MigrateType.Unmovable) << o));
        foreach (var (type, blocks) in counts.Where(c => c.Key != ZoneType.Dma))
        {
            Assert.True(blocks[0] == 0 && blocks[1] == blocks.Sum(), $"{type}: every block Movable at boot");
        }
    }

    [Fact]
    public void FreeCountsAreEachListsBlocks()
    {
        using var m = Snapshots.BootX64();
        using (m.OnCpu(0))
        {
            for (int order = 0; order < 5; order++)
            {
                Assert.False(m.AllocPages(Gfp.Kernel, order).IsNull);
                Assert.False(m.AllocPages(Gfp.HighUserMovable, order).IsNull);
                Assert.False(m.AllocPages(Gfp.Kernel | Gfp.Reclaimable, order).IsNull);
            }
        }
        var lines = Snapshots.SplitLines(m.Proc.Pagetypeinfo());
        var zones = m.PageAllocator.Zones.Where(z => z.PresentPages > 0).ToArray();
        int row = 4;
        foreach (var zone in zones)
        {
            foreach (var mt in s_types)
            {
                Assert.StartsWith($"Node    0, zone {zone.Name,8}, type {mt,12} ", lines[row]);
                long[] expected = [.. Enumerable.Range(0, Machine.MaxOrder).Select(o => zone.NrFree(o, mt))];
                Assert.Equal(expected, Snapshots.Fields(lines[row], 6));
                row++;
            }
        }
        // The allocations above left blocks of three migrate types on the DMA32 lists.
        var dma32 = zones.Single(z => z.Type == ZoneType.Dma32);
        Assert.True(s_types[..3].All(mt => Enumerable.Range(0, Machine.MaxOrder).Any(o => dma32.NrFree(o, mt) > 0)));
    }

    [Fact]
    public void BlockCountsCountEveryPageblockOfTheZoneByItsMigrateType()
    {
        using var m = Snapshots.BootX64();
        var before = BlockCounts(m);
        using (m.OnCpu(0))
        {
            // An unmovable request with only movable free blocks steals a whole pageblock.
            Assert.False(m.AllocPage(Gfp.Kernel).IsNull);
        }
        var after = BlockCounts(m);
        Assert.True(after[ZoneType.Dma32][0] > before[ZoneType.Dma32][0], "the stolen pageblock shows as Unmovable");
        var pa = m.PageAllocator;
        uint block = 1u << pa.Arch.PageblockOrder;
        foreach (var zone in pa.Zones.Where(z => z.PresentPages > 0))
        {
            var expected = new long[s_types.Length];
            for (uint pfn = zone.StartPfn; pfn < zone.EndPfn; pfn += block)
            {
                expected[(int)pa.Mem.PageblockMigratetype(pfn)]++;
            }
            Assert.Equal(expected, after[zone.Type]);
            Assert.Equal((zone.EndPfn - zone.StartPfn + block - 1) / block, after[zone.Type].Sum());
        }
    }

    private static Dictionary<ZoneType, long[]> BlockCounts(Machine m)
    {
        var lines = Snapshots.SplitLines(m.Proc.Pagetypeinfo());
        int header = Array.FindIndex(lines, l => l.StartsWith("Number of blocks type", StringComparison.Ordinal));
        var zones = m.PageAllocator.Zones.Where(z => z.PresentPages > 0).ToArray();
        var counts = new Dictionary<ZoneType, long[]>();
        for (int i = 0; i < zones.Length; i++)
        {
            Assert.StartsWith($"Node 0, zone {zones[i].Name,8} ", lines[header + 1 + i]);
            counts[zones[i].Type] = Snapshots.Fields(lines[header + 1 + i], 4);
        }
        Assert.Equal(header + 1 + zones.Length, lines.Length);
        return counts;
    }
}
