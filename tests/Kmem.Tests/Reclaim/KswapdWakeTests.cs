// wakeup_kswapd's tests (mm/vmscan.c): a balanced node is still woken while any zone up
// to the request's highest has a watermark boost (pgdat_watermark_boosted), whichever
// zone the wakeup names; and kswapd's rounds for a zone below the node's highest are
// counted with the pages they scanned (skipped pages included), as 6.1 counts pgscan;
// while a round runs, the zones it balances for are ZONE_RECLAIM_ACTIVE, and only then; the order and
// zone a wakeup asks are recorded before it finds the node balanced or hopeless.
using Kmem.PageAlloc;
using Kmem.Reclaim;
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

public sealed class KswapdWakeTests
{
    // A deferred kswapd (woken, its work waiting) on a machine with something on its LRU lists.
    private static (Machine M, Node Node, TaskStruct Task) Deferred()
    {
        var m = Boot("64M", kswapd: true);
        m.Mm.KswapdDeferred = true;
        var t = m.CreateTask("lru")!;
        Fill(t, t.Mmap(64 * Machine.PageSize), 64 * Machine.PageSize, 1);
        return (m, m.PageAllocator.Nodes[0], t);
    }

    [Fact]
    public void ABalancedNodeIsWokenForTheBoostOfALowerZoneThanTheOneNamed()
    {
        var (m, node, _) = Deferred();
        using (m)
        {
            var zones = node.Zones.Where(z => z.IsManaged).ToList();
            Assert.True(zones.Count >= 2, "a node with DMA and DMA32");
            Zone low = zones[0], top = zones[^1];
            Assert.True(KswapdDaemon.PgdatBalanced(node, 0, top.Type), "a fresh machine is balanced");
            long wakeups = m.Mm.KswapdWakeups;
            m.Mm.WakeupKswapd(top, 0, top.Type);
            Assert.Equal(wakeups, m.Mm.KswapdWakeups); // balanced, no boost: no wakeup
            lock (low.Lock)
            {
                low.WatermarkBoost = 512;
            }
            // The zone named has no boost; the node has one below it, within the request's zones.
            m.Mm.WakeupKswapd(top, 0, top.Type);
            Assert.Equal(wakeups + 1, m.Mm.KswapdWakeups);
            Assert.True(m.Mm.KswapdIsRunning(node));
        }
    }

    [Fact]
    public void AWakeupThatFindsTheNodeBalancedStillNamesTheZonesOfTheNextRound()
    {
        using var m = Boot("64M", kswapd: true);
        var t = m.CreateTask("lru")!;
        Fill(t, t.Mmap(64 * Machine.PageSize), 64 * Machine.PageSize, 1);
        var node = m.PageAllocator.Nodes[0];
        var zones = node.Zones.Where(z => z.IsManaged).ToList();
        Zone dma = zones[0], top = zones[^1];
        long wakeups = m.Mm.KswapdWakeups, runs = m.Mm.KswapdRuns;
        // Balanced: no wakeup, but the zone asked is recorded first (kswapd_highest_zoneidx), as the kernel does.
        m.Mm.WakeupKswapd(top, 0, ZoneType.Movable);
        Assert.Equal(wakeups, m.Mm.KswapdWakeups);
        var saved = dma.Watermark[Zone.WmarkHigh];
        lock (dma.Lock)
        {
            dma.WatermarkBoost = 512;
            dma.Watermark[Zone.WmarkHigh] = dma.FreePages + 1;
        }
        // rmqueue's boosted wakeup names DMA; the round it starts balances the zones asked before it too.
        m.Mm.WakeupKswapd(dma, 0, dma.Type);
        Assert.Equal(wakeups + 1, m.Mm.KswapdWakeups);
        Assert.True(m.Mm.KswapdRuns > runs, "a round ran");
        Assert.Equal((0L, 0L), m.Mm.KswapdLowerZone);
        lock (dma.Lock)
        {
            dma.Watermark[Zone.WmarkHigh] = saved;
        }
    }

    [Fact]
    public void ABoostAboveTheRequestsZonesWakesNothing()
    {
        var (m, node, _) = Deferred();
        using (m)
        {
            var zones = node.Zones.Where(z => z.IsManaged).ToList();
            Zone low = zones[0], top = zones[^1];
            lock (top.Lock)
            {
                top.WatermarkBoost = 512;
            }
            long wakeups = m.Mm.KswapdWakeups;
            m.Mm.WakeupKswapd(low, 0, low.Type); // a DMA-only request: DMA32's boost is not its business
            Assert.Equal(wakeups, m.Mm.KswapdWakeups);
            Assert.False(KswapdDaemon.PgdatWatermarkBoosted(node, low.Type));
            Assert.True(KswapdDaemon.PgdatWatermarkBoosted(node, top.Type));
        }
    }

    [Fact]
    public void ARoundMarksTheZonesItBalancesForReclaimActiveUntilItEnds()
    {
        using var m = Boot("64M", kswapd: true);
        var node = m.PageAllocator.Nodes[0];
        var zones = node.Zones.Where(z => z.IsManaged).ToList();
        var dma = zones[0];
        bool[]? seen = null;
        // The shrinker is asked during the round's shrink_node: it records the flags then.
        m.RegisterShrinker(new Shrinker("probe", _ =>
        {
            seen ??= [.. zones.Select(z => z.ReclaimActive)];
            return 0;
        }, _ => Shrinker.Stop));
        var saved = dma.Watermark[Zone.WmarkHigh];
        lock (dma.Lock)
        {
            dma.WatermarkBoost = 512;
            dma.Watermark[Zone.WmarkHigh] = dma.FreePages + 1; // DMA unbalanced: a round for DMA alone
        }
        m.Mm.WakeupKswapd(dma, 0, dma.Type);
        Assert.NotNull(seen);
        Assert.True(seen![0], "the zone balanced for");
        Assert.All(seen.Skip(1), Assert.False); // zones above it are not
        Assert.All(zones, z => Assert.False(z.ReclaimActive)); // cleared when the round ends
        lock (dma.Lock)
        {
            dma.Watermark[Zone.WmarkHigh] = saved;
        }
    }

    [Fact]
    public void RoundsForAZoneBelowTheNodesHighestAreCountedWithThePagesTheyScanned()
    {
        using var m = Boot("64M", kswapd: true);
        using var swap = Swap(m, 64);
        var node = m.PageAllocator.Nodes[0];
        var zones = node.Zones.Where(z => z.IsManaged).ToList();
        Zone dma = zones[0], top = zones[^1];
        var t = m.CreateTask("lru")!;
        ulong a = t.Mmap(256 * Machine.PageSize);
        Fill(t, a, 256 * Machine.PageSize, 3);
        // A round for the request's zones (GFP_HIGHUSER_MOVABLE): not one of them.
        var saved = zones.Select(z => z.Watermark[Zone.WmarkHigh]).ToArray();
        foreach (var z in zones)
        {
            lock (z.Lock)
            {
                z.Watermark[Zone.WmarkHigh] = z.FreePages + 8; // no zone balanced
            }
        }
        m.Mm.WakeupKswapd(top, 0, ZoneType.Movable);
        Assert.True(m.Mm.KswapdRuns >= 1);
        Assert.Equal((0L, 0L), m.Mm.KswapdLowerZone);
        for (int i = 0; i < zones.Count; i++)
        {
            lock (zones[i].Lock)
            {
                zones[i].Watermark[Zone.WmarkHigh] = saved[i];
            }
        }
        // rmqueue's wakeup after a boosting steal names the zone it allocated from: DMA, unbalanced, so the boost is
        // dropped and the round reclaims for DMA alone.
        lock (dma.Lock)
        {
            dma.WatermarkBoost = 512;
            dma.Watermark[Zone.WmarkHigh] = dma.FreePages + 1;
        }
        long runsBefore = m.Mm.KswapdRuns, scannedBefore = Vmstat(m)["pgscan_kswapd"];
        m.Mm.WakeupKswapd(dma, 0, dma.Type);
        var (runs, scanned) = m.Mm.KswapdLowerZone;
        Assert.True(runs >= 1, "a round for DMA");
        Assert.Equal(m.Mm.KswapdRuns - runsBefore, runs);
        Assert.Equal(Vmstat(m)["pgscan_kswapd"] - scannedBefore, scanned);
        Check(t, a, 256 * Machine.PageSize, 3);
    }
}
