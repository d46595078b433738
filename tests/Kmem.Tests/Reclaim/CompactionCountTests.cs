// Compaction's vmstat counts and proactive compaction as 6.1 has them: every run's
// scans count in compact_migrate_scanned/compact_free_scanned (compact_zone's end),
// kcompactd's runs for a wakeup count again as compact_daemon_*, proactive runs do
// not; a proactive run ends once its zone's fragmentation score is at the low
// mark (else goes on until the scanners meet), and gives way to a running kswapd.
using Kmem.PageAlloc;
using Kmem.Workload;
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

public class CompactionCountTests
{
    // Free memory in single pages between a task's (FragmentedMemory), the per-CPU lists drained.
    private static void Fragment(Machine m)
    {
        FragmentedMemory.Interleave(m);
        m.DrainAllPages();
    }

    private static Zone Dma32(Machine m) => m.PageAllocator.Zones.Single(z => z.Type == ZoneType.Dma32);

    private static CompactResult Kcompactd(Machine m, int order, bool proactive)
    {
        using (m.Mm.Locks.EnterAll())
        {
            return m.Mm.Compaction.KcompactdZone(Dma32(m), order, proactive);
        }
    }

    private static long Score(Machine m) => Fragmentation.ExtfragForOrder(Dma32(m), m.Mem.PageblockOrder);

    [Fact]
    public void EveryRunCountsItsScansAndOnlyKcompactdsWakeupRunsCountAsTheDaemons()
    {
        using var m = Boot();
        Fragment(m);
        Kcompactd(m, m.Mem.PageblockOrder, proactive: false);
        var v = Vmstat(m);
        Assert.True(v["compact_migrate_scanned"] > 0 && v["compact_free_scanned"] > 0, "kcompactd scanned");
        Assert.Equal(v["compact_migrate_scanned"], v["compact_daemon_migrate_scanned"]);
        Assert.Equal(v["compact_free_scanned"], v["compact_daemon_free_scanned"]);
        Kcompactd(m, -1, proactive: true);
        m.CompactMemory();
        var after = Vmstat(m);
        Assert.True(after["compact_migrate_scanned"] > v["compact_migrate_scanned"], "compact_memory's run counts");
        Assert.Equal(v["compact_daemon_migrate_scanned"], after["compact_daemon_migrate_scanned"]);
        Assert.Equal(v["compact_daemon_free_scanned"], after["compact_daemon_free_scanned"]);
        Assert.Equal(0, after["compact_daemon_wake"]); // the runs were called directly, not woken
    }

    [Fact]
    public void AProactiveRunEndsOnceItsZonesScoreIsAtTheLowMarkWhereCompactMemoryGoesOn()
    {
        using var proactive = Boot();
        using var whole = Boot();
        Fragment(proactive);
        Fragment(whole);
        // Page-table pages sit in every pageblock, so no run frees a whole one: the score stays 100. With the low
        // mark at 100 (proactiveness 0) the proactive run is finished at its first check; compact_memory is not.
        proactive.CompactionProactiveness = 0;
        int low = proactive.Mm.Compaction.FragmentationScoreWmark(low: true);
        Assert.Equal(100, low);
        Assert.Equal(100, Score(proactive));
        Assert.Equal(CompactResult.Success, Kcompactd(proactive, -1, proactive: true));
        Assert.Equal(0, Vmstat(proactive)["pgmigrate_success"]);
        proactive.CompactionProactiveness = 20;
        Assert.Equal(80, proactive.Mm.Compaction.FragmentationScoreWmark(low: true));
        Assert.Equal(90, proactive.Mm.Compaction.FragmentationScoreWmark(low: false));
        Assert.Equal(CompactResult.Complete, Kcompactd(proactive, -1, proactive: true));
        Assert.True(Vmstat(proactive)["pgmigrate_success"] > 0);
        Assert.True(whole.CompactMemory() > 0);
    }

    [Fact]
    public void AProactiveRunGivesWayToARunningKswapd()
    {
        using var m = Boot();
        Fragment(m);
        m.Mm.Compaction.KswapdIsRunning = _ => true;
        Assert.Equal(CompactResult.PartialSkipped, Kcompactd(m, -1, proactive: true));
        Assert.Equal(0, Vmstat(m)["pgmigrate_success"]);
    }
}
