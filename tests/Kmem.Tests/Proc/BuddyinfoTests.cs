// /proc/buddyinfo against the real snapshots (layout, zones, trailing spaces)
// and against the zones' free lists.
namespace Kmem.Tests.Proc;

public class BuddyinfoTests
{
    [Theory]
    [InlineData(Snapshots.X64)]
    [InlineData(Snapshots.I386)]
    public void LinesHaveTheRealLayoutZoneForZone(string capture)
    {
        using var m = Snapshots.Boot(capture);
        var ours = Snapshots.SplitLines(m.Proc.Buddyinfo());
        var real = Snapshots.Lines(capture, "buddyinfo");
        Assert.Equal(real.Select(Snapshots.Shape), ours.Select(Snapshots.Shape));
        Assert.All(ours, l => Assert.EndsWith(" ", l));
    }

    [Fact]
    public void CountsAreTheZonesFreeBlocksPerOrder()
    {
        using var m = Snapshots.BootX64();
        using (m.OnCpu(0))
        {
            // Split some large blocks so that the low orders are not all zero.
            for (int order = 0; order < 6; order++)
            {
                Assert.False(m.AllocPages(Gfp.Kernel, order).IsNull);
                Assert.False(m.AllocPages(Gfp.Kernel | Gfp.Dma, order).IsNull);
            }
        }
        var lines = Snapshots.SplitLines(m.Proc.Buddyinfo());
        var zones = m.PageAllocator.Zones.Where(z => z.PresentPages > 0).ToArray();
        Assert.Equal(zones.Length, lines.Length);
        for (int i = 0; i < zones.Length; i++)
        {
            Assert.StartsWith($"Node 0, zone {zones[i].Name,8} ", lines[i]);
            long[] numbers = Snapshots.Fields(lines[i], 4);
            long[] expected = [.. Enumerable.Range(0, Machine.MaxOrder).Select(o => zones[i].NrFree(o))];
            Assert.Equal(expected, numbers);
        }
        Assert.Contains(zones, z => Enumerable.Range(0, 6).Any(o => z.NrFree(o) > 0));
    }

    [Fact]
    public void APaeMachineWith1536MHasAHighMemLine()
    {
        using var m = Snapshots.BootPae();
        var lines = Snapshots.SplitLines(m.Proc.Buddyinfo());
        Assert.Equal(["DMA", "Normal", "HighMem"], lines.Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3]));
        var high = m.PageAllocator.Zones.Single(z => z.Type == ZoneType.HighMem);
        Assert.Equal(high.NrFree(Machine.MaxOrder - 1), Snapshots.Fields(lines[2], 4)[^1]);
    }
}
