// Reclaim: LRU aging by the accessed bit, kswapd woken below low and sleeping
// at high, the shrinker API (count/scan, SHRINK_STOP, seeks, drop_caches 2).
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

[Collection("reclaim-files")]
public class ReclaimTests
{
    [Fact]
    public void RecentlyUsedPagesStayWhileColdOnesAreSwappedOut()
    {
        using var m = Boot();
        using var swap = Swap(m, 64);
        var hot = m.CreateTask("hot")!;
        var cold = m.CreateTask("cold")!;
        ulong h = hot.Mmap(8 << 20), c = cold.Mmap(8 << 20);
        Fill(cold, c, 8 << 20, 1);
        Fill(hot, h, 8 << 20, 2);
        var zonelist = m.PageAllocator.Nodes[0].ZonelistFallback;
        // Enough rounds for reclaim to reach the hot pages twice: the first young PTE only marks a page referenced
        // (folio_check_references looks twice), the second activates it.
        for (int round = 0; round < 120; round++)
        {
            Check(hot, h, 8 << 20, 2); // sets the accessed bits of every hot page
            m.Mm.TryToFreePages(Gfp.Kernel, 0, zonelist, ZoneType.Normal);
        }
        Assert.True(cold.SwapEnts > 0);
        Assert.True(cold.SwapEnts > 4 * hot.SwapEnts, $"cold {cold.SwapEnts} swapped, hot {hot.SwapEnts}");
        var v = Vmstat(m);
        Assert.True(v["pgactivate"] > 0);
        Assert.True(v["pgscan_direct"] >= v["pgsteal_direct"] && v["pgsteal_direct"] > 0);
        Assert.Equal(v["pgsteal_direct"], v["pgsteal_anon"]);
        Assert.True(Meminfo(m, "Active(anon)") > 0);
        Check(cold, c, 8 << 20, 1);
        m.Mm.Validate();
    }

    [Fact]
    public void KswapdWakesBelowLowAndSleepsOnceAZoneIsAboveHigh()
    {
        // No watermark boost: kswapd is woken only by a real shortage, not to reclaim a boost away.
        using var m = Machine.Boot(new MachineOptions { Memory = "64M", Cpus = 1, Seed = 1, WatermarkBoostFactor = 0 });
        m.CompactionProactiveness = 0; // kcompactd would move pages meanwhile and leave freed ones on per-CPU lists
        using var swap = Swap(m, 64);
        var t = m.CreateTask("grower")!;
        ulong a = t.Mmap(60 << 20);
        var zone = m.PageAllocator.Nodes[0].Zones.Single(z => z.Type == ZoneType.Dma32);
        long low = zone.WmarkPages(1), high = zone.WmarkPages(2);
        var page = new byte[4096];
        ulong at = a;
        // Grow page by page, as a workload would, until kswapd has been woken (an allocation found every zone
        // under its low watermark) and has brought the node back above high: its own verdict, counted before it
        // sleeps. Checking after every page keeps what is allocated after that verdict to a page or two.
        while (m.Mm.KswapdBalancedRuns == 0 && at < a + (60UL << 20))
        {
            t.Write(at, page);
            at += 4096;
        }
        Assert.True(m.Mm.KswapdWakeups > 0, $"kswapd never woken; free {zone.FreePages}, low {low}");
        Assert.True(m.Mm.KswapdBalancedRuns > 0, $"kswapd never balanced the node; runs {m.Mm.KswapdRuns}, free {zone.FreePages}, high {high}");
        // Asleep: no wakeup pending and no run under way, read as one state under kswapd's wake lock.
        Assert.True(WaitFor(() => m.Mm.KswapdIdle), "kswapd never went back to sleep");
        var v = Vmstat(m);
        Assert.True(v["pgscan_kswapd"] >= v["pgsteal_kswapd"] && v["pgsteal_kswapd"] > 0, "kswapd balanced the node by reclaiming");
        Assert.True(v["pageoutrun"] >= 1);
        m.DrainAllPages(); // pages kswapd freed onto the per-CPU lists are free, but the watermark check counts buddy pages
        // Balanced: a fault finds free pages above low and does not wake it again (the wakeup would be counted
        // by the faulting thread itself, before it returns).
        long wakeups = m.Mm.KswapdWakeups;
        t.Write(at, page);
        Assert.True(wakeups == m.Mm.KswapdWakeups, $"woken again with free {zone.FreePages}, low {low}");
        Assert.True(m.Mm.KswapdIdle);
    }

    [Fact]
    public void ShrinkersAreScannedByPriorityAndSeeksAndStopWhenTheySayStop()
    {
        using var m = Boot();
        long objects = 10_000;
        var scans = new List<long>();
        var s = new Shrinker("test-cache", _ => objects, sc =>
        {
            scans.Add(sc.NrToScan);
            long n = Math.Min(objects, sc.NrToScan);
            objects -= n;
            return n;
        }) { Seeks = 2, Batch = 100 };
        m.RegisterShrinker(s);
        Assert.Throws<InvalidOperationException>(() => m.RegisterShrinker(s));
        var zonelist = m.PageAllocator.Nodes[0].ZonelistFallback;
        m.Mm.TryToFreePages(Gfp.Kernel, 0, zonelist, ZoneType.Normal);
        // Priority 12: (10000 >> 12) × 4 / 2 = 4 objects: below the batch and the freeable count, so deferred.
        Assert.True(scans.Count > 0, "lower priorities reached the shrinker");
        Assert.All(scans, n => Assert.True(n <= 100));
        long before = Vmstat(m)["slabs_scanned"];
        Assert.Equal(scans.Sum(), before);
        objects = 10_000;
        m.DropCaches(2);
        Assert.True(objects < 10_000 - 200);
        Assert.Equal(1, Vmstat(m)["drop_slab"]);
        // A shrinker that answers SHRINK_STOP is not called again in the same do_shrink_slab, and drop_slab
        // ends after a round that freed nothing.
        int stops = 0;
        var stopper = new Shrinker("busy", _ => 5000, _ =>
        {
            stops++;
            return Shrinker.Stop;
        });
        m.RegisterShrinker(stopper);
        m.DropCaches(2);
        Assert.Equal(1, stops);
        m.UnregisterShrinker(stopper);
        m.UnregisterShrinker(s);
        Assert.Throws<InvalidOperationException>(() => m.UnregisterShrinker(s));
    }

    /// <summary>A seeded machine runs kswapd's work synchronously; one without a seed on kswapd's own thread.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(null)]
    public void MachineDisposeStopsKswapd(int? seed)
    {
        var m = Machine.Boot(new MachineOptions { Memory = "64M", Cpus = 1, Seed = seed });
        Assert.Equal(seed is null, m.Mm.KswapdThreaded);
        var t = m.CreateTask("t")!;
        ulong a = t.Mmap(60 << 20);
        try
        {
            Fill(t, a, 60 << 20, 1);
        }
        catch (TaskKilledException)
        {
        }
        Assert.True(WaitFor(() => m.Mm.KswapdRuns > 0, 10));
        m.Dispose();
        Assert.True(m.Mm.IsDisposed);
        Assert.True(m.Mm.KswapdIdle);
    }

    [Fact]
    public void OnASeededMachineKswapdsWorkIsDoneBeforeTheAllocationThatWokeItReturns()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "64M", Cpus = 1, Seed = 1, WatermarkBoostFactor = 0 });
        Assert.False(m.Mm.KswapdThreaded);
        using var swap = Swap(m, 64);
        var t = m.CreateTask("grower")!;
        ulong a = t.Mmap(60 << 20);
        var page = new byte[4096];
        for (ulong at = a; at < a + (58UL << 20); at += 4096)
        {
            t.Write(at, page);
            // Every wakeup so far has had its round, plus one more each time a round left the node unbalanced and
            // kswapd did not sleep; no round is under way or pending.
            Assert.Equal(m.Mm.KswapdWakeups + Vmstat(m)["kswapd_high_wmark_hit_quickly"], m.Mm.KswapdRuns);
            Assert.True(m.Mm.KswapdIdle);
        }
        Assert.True(m.Mm.KswapdRuns > 0, "kswapd never woken");
        Assert.True(Vmstat(m)["kswapd_high_wmark_hit_quickly"] > 0, "a round that left the node unbalanced was followed by another");
        Assert.True(Vmstat(m)["pgsteal_kswapd"] > 0);
        m.Mm.Validate();
    }
}
