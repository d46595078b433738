// NR_FREE_PAGES as mm/vmstat.c keeps it: a CPU's changes stay in its vm_stat_diff until they pass
// stat_threshold, vmstat_update folds the rest, the counter is what the watermark checks read, and
// 6.1's boot leaves every zone of an SMP machine a percpu_drift_mark, so kswapd's runs raise the
// threshold to calculate_pressure_threshold's.
using Kmem.PageAlloc;
using static Kmem.Tests.PageAlloc.PageAllocCheck;

namespace Kmem.Tests.PageAlloc;

public class VmstatTests
{
    private static Machine Boot(int cpus) => Machine.Boot(new MachineOptions { Memory = "256M", Cpus = cpus, Seed = 1 });

    [Fact]
    public void AChangeStaysInItsCpusDiffUntilItPassesTheThreshold()
    {
        using var m = Boot(2);
        var zone = ZoneOf(m, ZoneType.Dma32);
        Assert.Equal(zone.FreePages, zone.VmstatFreePages); // boot's changes are folded
        int t = zone.StatThreshold;
        Assert.True(t > 1);
        long counter = zone.VmstatFreePages;
        using (m.OnCpu(1))
        {
            lock (zone.Lock)
            {
                zone.ModFreePages(-t); // at the threshold: held
            }
            Assert.Equal(counter, zone.VmstatFreePages);
            Assert.Equal(-t, zone.FreeDiff(1));
            Assert.Equal(0, zone.FreeDiff(0));
            lock (zone.Lock)
            {
                zone.ModFreePages(-1); // past it: the whole diff folds
            }
            Assert.Equal(counter - t - 1, zone.VmstatFreePages);
            Assert.Equal(0, zone.FreeDiff(1));
            lock (zone.Lock)
            {
                zone.ModFreePages(3);
            }
        }
        Assert.Equal(counter - t - 1, zone.VmstatFreePages);
        m.RefreshVmStats(); // vmstat_update
        Assert.Equal(zone.FreePages, zone.VmstatFreePages);
        Assert.Equal(0, zone.FreeDiff(1));
        lock (zone.Lock)
        {
            zone.ModFreePages(t - 2); // back to where it started, through the diff
        }
    }

    [Fact]
    public void AnAllocationsRefillIsOneChangeOfItsCpusDiff()
    {
        using var m = Boot(2);
        var zone = ZoneOf(m, ZoneType.Dma32);
        using var _ = m.OnCpu(0);
        long exact = zone.FreePages, counter = zone.VmstatFreePages;
        var page = m.AllocPage(Gfp.HighUserMovable);
        Assert.False(page.IsNull);
        int batch = zone.Pcp[0].Batch;
        // rmqueue_bulk took a batch off the buddy lists: the exact count fell by it, the counter by it or by nothing.
        Assert.Equal(exact - batch, zone.FreePages);
        Assert.Equal(batch > zone.StatThreshold ? exact - batch : counter, zone.VmstatFreePages);
        Assert.Equal(zone.FreePages, zone.VmstatFreePages + zone.FreeDiff(0) + zone.FreeDiff(1));
        m.FreePage(page);
        m.DrainAllPages();
        ValidateAll(m);
    }

    [Fact]
    public void TheAllocationPathTestsTheCounterNotTheExactCount()
    {
        using var m = Boot(2);
        var zone = ZoneOf(m, ZoneType.Dma32);
        using var _ = m.OnCpu(0);
        long[] saved = [.. zone.Watermark];
        long counter = zone.VmstatFreePages;
        int t = zone.StatThreshold;
        lock (zone.Lock)
        {
            // Every watermark one page below the counter, and CPU 1's diff holding t pages taken: the exact count is at
            // or below the marks, the counter above them.
            zone.Watermark[Zone.WmarkMin] = zone.Watermark[Zone.WmarkLow] = zone.Watermark[Zone.WmarkHigh] = counter - 1;
        }
        using (m.OnCpu(1))
        {
            lock (zone.Lock)
            {
                zone.ModFreePages(-t);
            }
        }
        Assert.True(zone.FreePages <= zone.WmarkPages(Zone.WmarkMin) && zone.VmstatFreePages > zone.WmarkPages(Zone.WmarkMin));
        // GFP_NOWAIT with DMA32 allowed: the counter passes, so the page comes from DMA32, not from DMA below it.
        var page = m.AllocPage(Gfp.NoWait | Gfp.NoWarn | Gfp.Dma32);
        Assert.False(page.IsNull);
        Assert.Equal(ZoneType.Dma32, m.PageZone(page));
        m.FreePage(page);
        using (m.OnCpu(1))
        {
            lock (zone.Lock)
            {
                zone.ModFreePages(t);
            }
        }
        lock (zone.Lock)
        {
            saved.CopyTo(zone.Watermark, 0);
        }
        m.DrainAllPages();
        ValidateAll(m);
    }

    [Fact]
    public void SixOneBootMarksEveryZoneOfAnSmpMachineForDrift()
    {
        using var smp = Boot(2);
        using var up = Boot(1);
        foreach (var zone in smp.PageAllocator.Zones.Where(z => z.IsManaged))
        {
            // The secondary CPU came up while every watermark was 0: the mark is 0 + CPUs × threshold (or more).
            Assert.True(zone.PercpuDriftMark >= 2L * zone.NormalStatThreshold(), $"{zone.Name}: mark {zone.PercpuDriftMark}");
            Assert.Equal(zone.NormalStatThreshold(), zone.StatThreshold);
        }
        // One CPU: the only refresh comes after the watermarks, and one CPU's drift stays within low - min.
        foreach (var zone in up.PageAllocator.Zones.Where(z => z.IsManaged))
        {
            Assert.Equal(0, zone.PercpuDriftMark);
        }
    }

    [Fact]
    public void KswapdsRunRaisesTheThresholdOfMarkedZonesAndItsSleepRestoresIt()
    {
        using var m = Boot(2);
        var zone = ZoneOf(m, ZoneType.Dma32);
        var node = m.PageAllocator.Nodes[0];
        int normal = zone.StatThreshold;
        int pressure = (int)Math.Min(125, (zone.WmarkPages(Zone.WmarkLow) - zone.WmarkPages(Zone.WmarkMin)) / 2);
        Assert.NotEqual(normal, pressure);
        Vmstat.SetPgdatPercpuThreshold(node, pressure: true);
        Assert.Equal(pressure, zone.StatThreshold);
        Vmstat.SetPgdatPercpuThreshold(node, pressure: false);
        Assert.Equal(normal, zone.StatThreshold);
    }
}
