// /proc/zoneinfo against the real snapshots (every label, its indentation and
// padding, which zones stop after protection, where the per-node stats go) and
// against the allocator's watermarks, reserves and per-CPU lists.
using System.Globalization;
using Kmem.PageAlloc;

namespace Kmem.Tests.Proc;

public class ZoneinfoTests
{
    [Theory]
    [InlineData(Snapshots.X64)]
    [InlineData(Snapshots.I386)]
    public void LayoutMatchesTheRealSnapshotLineForLine(string capture)
    {
        using var m = Snapshots.Boot(capture);
        var ours = Snapshots.SplitLines(m.Proc.Zoneinfo());
        var real = Snapshots.Lines(capture, "zoneinfo");
        Assert.Equal(real.Select(Snapshots.Skeleton), ours.Select(Snapshots.Skeleton));
    }

    [Fact]
    public void WatermarksProtectionAndPagesetsAreTheAllocators()
    {
        using var m = Snapshots.BootX64();
        using (m.OnCpu(1))
        {
            // Leave pages on CPU 1's lists so that the counts are not all zero.
            for (int i = 0; i < 5; i++)
            {
                m.FreePage(m.AllocPage(Gfp.Kernel));
                m.FreePage(m.AllocPage(Gfp.Kernel | Gfp.Dma));
            }
        }
        var pa = m.PageAllocator;
        var blocks = Parse(m.Proc.Zoneinfo());
        Assert.Equal(pa.Zones.Length, blocks.Count);
        for (int i = 0; i < pa.Zones.Length; i++)
        {
            var zone = pa.Zones[i];
            var b = blocks[i];
            Assert.Equal($"Node 0, zone {zone.Name,8}", b.Header);
            Assert.Equal(zone.FreePages, b.Values["pages free"]);
            Assert.Equal(zone.WmarkPages(Zone.WmarkMin), b.Values["min"]);
            Assert.Equal(zone.WmarkPages(Zone.WmarkLow), b.Values["low"]);
            Assert.Equal(zone.WmarkPages(Zone.WmarkHigh), b.Values["high"]);
            Assert.Equal(zone.SpannedPages, b.Values["spanned"]);
            Assert.Equal(zone.PresentPages, b.Values["present"]);
            Assert.Equal(zone.ManagedPages, b.Values["managed"]);
            Assert.Equal(pa.Arch.Zones.Select(t => zone.LowmemReserve[(int)t]), b.Protection);
            if (zone.PresentPages == 0)
            {
                Assert.Empty(b.Pagesets);
                Assert.False(b.Values.ContainsKey("start_pfn"));
                continue;
            }
            Assert.Equal(zone.FreePages, b.Values["nr_free_pages"]);
            Assert.Equal(zone.StartPfn, b.Values["start_pfn"]);
            Assert.Equal(m.NrCpus, b.Pagesets.Count);
            for (int cpu = 0; cpu < m.NrCpus; cpu++)
            {
                var pcp = zone.Pcp[cpu];
                Assert.Equal((cpu, (long)pcp.Count, (long)pcp.High, (long)pcp.Batch, (long)zone.NormalStatThreshold()), b.Pagesets[cpu]);
            }
        }
        // The machine has protection in DMA and pages on CPU 1's DMA32 list: the figures above were not all zero.
        Assert.True(pa.Zones[0].LowmemReserve[(int)ZoneType.Dma32] > 0);
        Assert.True(blocks[1].Pagesets[1].Count > 0);
    }

    [Fact]
    public void EachNodePrintsItsStatsUnderItsOwnFirstPopulatedZone()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "1G", Cpus = 2, Nodes = 2 });
        var lines = Snapshots.SplitLines(m.Proc.Zoneinfo());
        var headers = lines.Select((l, i) => (l, i)).Where(x => x.l.StartsWith("Node ", StringComparison.Ordinal)).ToList();
        Assert.Equal(10, headers.Count);
        var withStats = headers.Where(h => lines[h.i + 1] == "  per-node stats").Select(h => h.l).ToList();
        // Node 1 (512M..1G) has no DMA: its first populated zone is DMA32.
        Assert.Equal(["Node 0, zone      DMA", "Node 1, zone    DMA32"], withStats);
        Assert.Equal(2, Snapshots.SplitLines(m.Proc.Pagetypeinfo()).Count(l => l.StartsWith("Page block order: ", StringComparison.Ordinal)));
        Assert.Equal(["Node 0, zone      DMA ", "Node 0, zone    DMA32 ", "Node 1, zone    DMA32 "],
            Snapshots.SplitLines(m.Proc.Buddyinfo()).Select(l => l[..22]));
    }

    [Fact]
    public void NumaCountersOfAZoneAreItsAllocations()
    {
        using var m = Snapshots.BootX64();
        using (m.OnCpu(0))
        {
            for (int i = 0; i < 7; i++)
            {
                Assert.False(m.AllocPages(Gfp.Kernel | Gfp.Dma, i % 4).IsNull);
            }
        }
        var dma = Parse(m.Proc.Zoneinfo())[0];
        Assert.Equal(7, dma.Values["numa_hit"]);
        Assert.Equal(7, dma.Values["numa_local"]);
        Assert.Equal(0, dma.Values["numa_miss"]);
    }

    internal sealed record ZoneBlock(string Header, Dictionary<string, long> Values, long[] Protection,
        List<(int Cpu, long Count, long High, long Batch, long Threshold)> Pagesets);

    /// <summary>Splits zoneinfo into its zones: the header, every "label value" line, the protection list
    /// and the pagesets.</summary>
    internal static List<ZoneBlock> Parse(string text)
    {
        var blocks = new List<ZoneBlock>();
        ZoneBlock? b = null;
        (int Cpu, long Count, long High, long Batch, long Threshold) pcp = default;
        foreach (var line in Snapshots.SplitLines(text))
        {
            if (line.StartsWith("Node ", StringComparison.Ordinal))
            {
                b = new ZoneBlock(line, [], [], []);
                blocks.Add(b);
                continue;
            }
            Assert.NotNull(b);
            string t = line.Trim();
            if (t.StartsWith("protection: (", StringComparison.Ordinal))
            {
                b = b with { Protection = [.. t["protection: (".Length..^1].Split(", ").Select(long.Parse)] };
                blocks[^1] = b;
                continue;
            }
            if (t is "per-node stats" or "pagesets")
            {
                continue;
            }
            int colon = t.IndexOf(':', StringComparison.Ordinal);
            string label = colon >= 0 ? t[..colon] : t[..t.LastIndexOf(' ')].TrimEnd();
            long value = long.Parse(t[(t.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            switch (label)
            {
                case "cpu":
                    pcp = ((int)value, 0, 0, 0, 0);
                    break;
                case "count":
                    pcp.Count = value;
                    break;
                case "high" when colon >= 0:
                    pcp.High = value;
                    break;
                case "batch":
                    pcp.Batch = value;
                    break;
                case "vm stats threshold":
                    pcp.Threshold = value;
                    b.Pagesets.Add(pcp);
                    break;
                default:
                    b.Values.Add(label, value);
                    break;
            }
        }
        return blocks;
    }
}
