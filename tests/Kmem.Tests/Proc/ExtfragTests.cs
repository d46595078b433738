// debugfs extfrag/unusable_index and extfrag/extfrag_index on a zone fragmented
// by hand, against the formulas of mm/vmstat.c computed here from the free lists.
using System.Globalization;
using System.Text.RegularExpressions;

namespace Kmem.Tests.Proc;

public partial class ExtfragTests
{
    [Fact]
    public void AFreshMachineCanServeEveryOrderInDma32()
    {
        using var m = Snapshots.BootX64();
        var unusable = Snapshots.SplitLines(m.Proc.ExtfragUnusableIndex());
        var extfrag = Snapshots.SplitLines(m.Proc.ExtfragIndex());
        Assert.Equal("Node 0, zone    DMA32 " + string.Concat(Enumerable.Repeat("0.000 ", 11)), unusable[1]);
        Assert.Equal("Node 0, zone    DMA32 " + string.Concat(Enumerable.Repeat("-1.000 ", 11)), extfrag[1]);
    }

    [Fact]
    public void AHandFragmentedZoneHasUnusableFreeMemoryAboveOrderZero()
    {
        using var m = Snapshots.BootX64();
        using (m.OnCpu(0))
        {
            // Take all of DMA one page at a time, then give back every other page in pfn order: the freed
            // pages cannot merge with their held buddies.
            var held = new List<Page>();
            for (int i = 0; i < 5000; i++)
            {
                var p = m.AllocPage(Gfp.Kernel | Gfp.Dma | Gfp.NoWarn);
                if (p.IsNull)
                {
                    break;
                }
                held.Add(p);
            }
            Assert.True(held.Count > 3000, $"only {held.Count} DMA pages were allocated");
            var sorted = held.OrderBy(p => p.Pfn).ToList();
            for (int i = 0; i < sorted.Count; i += 2)
            {
                m.FreePage(sorted[i]);
            }
            m.DrainAllPages();
        }
        var dma = m.PageAllocator.Zones[0];
        Assert.Equal(ZoneType.Dma, dma.Type);
        Assert.True(dma.NrFree(0) > 1000, "the freed pages sit alone on the order-0 list");

        string unusableLine = Snapshots.SplitLines(m.Proc.ExtfragUnusableIndex())[0];
        Assert.Matches(UnusableLine(), unusableLine);
        var unusable = Indices(unusableLine);
        Assert.Equal("0.000", unusable[0]);
        for (int order = 1; order < Machine.MaxOrder; order++)
        {
            Assert.True(Thousandths(unusable[order]) > 0, $"order {order}: {unusable[order]}");
            Assert.True(Thousandths(unusable[order]) >= Thousandths(unusable[order - 1]));
        }
        var (freePages, blocks, _) = Info(dma, 0);
        for (int order = 0; order < Machine.MaxOrder; order++)
        {
            long suitable = Info(dma, order).Suitable;
            long expected = (freePages - (suitable << order)) * 1000 / freePages;
            Assert.Equal(expected, Thousandths(unusable[order]));
        }

        string extfragLine = Snapshots.SplitLines(m.Proc.ExtfragIndex())[0];
        Assert.Matches(ExtfragLine(), extfragLine);
        var extfrag = Indices(extfragLine);
        Assert.Equal("-1.000", extfrag[0]);
        int failing = 0;
        for (int order = 0; order < Machine.MaxOrder; order++)
        {
            if (Info(dma, order).Suitable > 0)
            {
                Assert.Equal("-1.000", extfrag[order]);
                continue;
            }
            failing++;
            long expected = 1000 - ((1000 + (freePages * 1000 / (1L << order))) / blocks);
            Assert.Equal(expected, Thousandths(extfrag[order]));
            if (order >= 2)
            {
                // Above the default vm.extfrag_threshold: the failure is fragmentation, not lack of memory.
                Assert.True(expected > 500, $"order {order}: {extfrag[order]}");
            }
        }
        Assert.True(failing > 0, "some order has no free block left in DMA");
    }

    /// <summary>fill_contig_page_info, written out again from the zone's free counts.</summary>
    private static (long FreePages, long Blocks, long Suitable) Info(Kmem.PageAlloc.Zone zone, int order)
    {
        long free = 0, blocks = 0, suitable = 0;
        for (int o = 0; o < Machine.MaxOrder; o++)
        {
            long n = zone.NrFree(o);
            blocks += n;
            free += n << o;
            if (o >= order)
            {
                suitable += n << (o - order);
            }
        }
        return (free, blocks, suitable);
    }

    private static string[] Indices(string line) => line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[4..];

    private static long Thousandths(string index) =>
        (long)Math.Round(double.Parse(index, CultureInfo.InvariantCulture) * 1000);

    [GeneratedRegex(@"^Node 0, zone      DMA (\d\.\d{3} ){11}$")]
    private static partial Regex UnusableLine();

    [GeneratedRegex(@"^Node 0, zone      DMA ((-1| \d)\.\d{3} ){11}$")]
    private static partial Regex ExtfragLine();
}
