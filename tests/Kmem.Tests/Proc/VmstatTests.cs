// /proc/vmstat against the real snapshots (every name, in order) and against
// the allocator's counters: free pages, pgalloc per zone, pgfree, NUMA events,
// and the dirty limits checked on the real kernels' own figures.
using Kmem.Proc;

namespace Kmem.Tests.Proc;

public class VmstatTests
{
    [Theory]
    [InlineData(Snapshots.X64)]
    [InlineData(Snapshots.I386)]
    public void NamesAreTheRealKernelsInOrder(string capture)
    {
        using var m = Snapshots.Boot(capture);
        var ours = Snapshots.SplitLines(m.Proc.Vmstat()).Select(l => l.Split(' ')[0]);
        var real = Snapshots.Lines(capture, "vmstat").Select(l => l.Split(' ')[0]);
        Assert.Equal(real, ours);
    }

    [Fact]
    public void NonPaeX86HasNoThpEventsButKeepsThpMigration()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 1, Preset = Preset.X86 });
        var v = Snapshots.NameValues(m.Proc.Vmstat());
        Assert.DoesNotContain("thp_fault_alloc", v.Keys);
        Assert.Contains("thp_migration_success", v.Keys);
        Assert.Contains("pgalloc_high", v.Keys);
    }

    [Fact]
    public void NrFreePagesIsTheSumOfTheZonesFreePages()
    {
        using var m = Snapshots.BootX64();
        using (m.OnCpu(0))
        {
            Assert.False(m.AllocPages(Gfp.Kernel, 2).IsNull);
        }
        var v = Snapshots.NameValues(m.Proc.Vmstat());
        long free = m.PageAllocator.Zones.Sum(z => z.FreePages);
        Assert.Equal(free, v["nr_free_pages"]);
        Assert.True(free < m.PageAllocator.Zones.Sum(z => z.ManagedPages));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(5)]
    public void PgallocRisesByTwoToTheOrderInTheZoneThePagesCameFrom(int order)
    {
        using var m = Snapshots.BootX64();
        using var cpu = m.OnCpu(0);
        var before = Snapshots.NameValues(m.Proc.Vmstat());
        var page = m.AllocPages(Gfp.Kernel, order);
        Assert.False(page.IsNull);
        Assert.Equal(ZoneType.Dma32, m.PageZone(page));
        var after = Snapshots.NameValues(m.Proc.Vmstat());
        Assert.Equal(1L << order, after["pgalloc_dma32"] - before["pgalloc_dma32"]);
        Assert.Equal(before["pgalloc_dma"], after["pgalloc_dma"]);
        Assert.Equal(1, after["numa_hit"] - before["numa_hit"]);
        Assert.Equal(1, after["numa_local"] - before["numa_local"]);
        m.FreePages(page, order);
        var freed = Snapshots.NameValues(m.Proc.Vmstat());
        Assert.Equal(1L << order, freed["pgfree"] - after["pgfree"]);

        var dma = m.AllocPages(Gfp.Kernel | Gfp.Dma, order);
        Assert.Equal(ZoneType.Dma, m.PageZone(dma));
        var last = Snapshots.NameValues(m.Proc.Vmstat());
        Assert.Equal(1L << order, last["pgalloc_dma"] - freed["pgalloc_dma"]);
    }

    [Fact]
    public void NumaEventsCountAllocationsAndPgallocCountsPages()
    {
        using var m = Snapshots.BootX64();
        using (m.OnCpu(1))
        {
            Assert.False(m.AllocPages(Gfp.Kernel, 0).IsNull);
            Assert.False(m.AllocPages(Gfp.Kernel, 2).IsNull);
            Assert.False(m.AllocPages(Gfp.Kernel | Gfp.Dma, 4).IsNull);
        }
        var v = Snapshots.NameValues(m.Proc.Vmstat());
        Assert.Equal(3, v["numa_hit"]);
        Assert.Equal(3, v["numa_local"]);
        Assert.Equal(0, v["numa_miss"] + v["numa_foreign"] + v["numa_other"] + v["numa_interleave"]);
        Assert.Equal(1 + 4, v["pgalloc_dma32"]);
        Assert.Equal(16, v["pgalloc_dma"]);
        Assert.Equal(0, v["pgalloc_normal"] + v["pgalloc_movable"] + v["pgalloc_device"]);
    }

    [Fact]
    public void PgallocHighCountsHighMemAllocations()
    {
        using var m = Snapshots.BootPae();
        using var cpu = m.OnCpu(0);
        var before = Snapshots.NameValues(m.Proc.Vmstat());
        Assert.False(m.AllocPages(Gfp.HighUserMovable, 2).IsNull);
        var after = Snapshots.NameValues(m.Proc.Vmstat());
        Assert.Equal(4, after["pgalloc_high"] - before["pgalloc_high"]);
        Assert.Equal(before["pgalloc_normal"], after["pgalloc_normal"]);
    }

    [Theory]
    // The real kernels' own figures: NR_FREE_PAGES, totalreserve_pages (from the zoneinfo snapshot),
    // highmem free above the high watermark, and the thresholds their vmstat printed.
    [InlineData(48956, 1441, 0, 9500, 4744)]
    [InlineData(350350, 27175, 150257 - 4298, 35434, 17695)]
    public void DirtyLimitsReproduceTheRealKernels(long free, long reserve, long highmem, long thresh, long background)
    {
        Assert.Equal((thresh, background), VmTotals.DirtyLimits(free, reserve, highmem));
    }

    [Theory]
    [InlineData(Snapshots.X64)]
    [InlineData(Snapshots.I386)]
    public void DirtyThresholdsArePrintedFromTheMachinesFigures(string capture)
    {
        using var m = Snapshots.Boot(capture);
        var pa = m.PageAllocator;
        long free = pa.Zones.Sum(z => z.FreePages);
        long highmem = pa.Zones.Where(z => z.Type == ZoneType.HighMem)
            .Sum(z => z.FreePages - Math.Min(z.FreePages, z.WmarkPages(2)));
        var (thresh, background) = VmTotals.DirtyLimits(free, pa.TotalReservePages, highmem);
        var v = Snapshots.NameValues(m.Proc.Vmstat());
        Assert.Equal(thresh, v["nr_dirty_threshold"]);
        Assert.Equal(background, v["nr_dirty_background_threshold"]);
        Assert.True(thresh > 0);
    }
}
