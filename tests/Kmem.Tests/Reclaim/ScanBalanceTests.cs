// get_scan_count's balance (swap, priority 0, file_is_tiny, cache_trim_mode, the
// cost-weighted swappiness split), lru_note_cost's decay, and
// folio_check_references' look-twice rule for mapped pages.
using Kmem.Reclaim;
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

[Collection("reclaim-files")]
public sealed class ScanBalanceTests
{
    private static (ScanBalance Balance, long[] Nr, ScanControl Sc) Count(Machine m, int priority)
    {
        var vec = m.Mm.Lruvecs[0];
        var sc = new ScanControl { Gfp = Gfp.Kernel, Priority = priority, ReclaimIdx = ZoneType.Normal, NrToReclaim = 32 };
        var nr = new long[4];
        using (m.Mm.Locks.EnterAll())
        {
            Vmscan.PrepareScanCount(m.PageAllocator.Nodes[0], vec, ref sc);
            var balance = m.Mm.Vmscan.GetScanCount(vec, ref sc, nr);
            return (balance, nr, sc);
        }
    }

    // One shrink_node pass over node 0 as kswapd makes it.
    private static ScanControl KswapdPass(Machine m, int priority, long nrToReclaim)
    {
        var sc = new ScanControl { Gfp = Gfp.Kernel, Priority = priority, ReclaimIdx = ZoneType.Normal, NrToReclaim = nrToReclaim, Kswapd = true };
        using (m.Mm.Locks.EnterAll())
        {
            m.Mm.Vmscan.ShrinkNode(m.Mm.Lruvecs[0], ref sc);
        }
        return sc;
    }

    private static void CacheFile(Machine m, string path, int pages)
    {
        var f = m.OpenFile(path); // left open: its pages stay in the cache
        var page = new byte[Machine.PageSize];
        for (int i = 0; i < pages; i++)
        {
            f.Write((long)i * page.Length, page);
        }
        f.Fsync();
    }

    [Fact]
    public void TheBalanceFollowsSwapPriorityCacheTrimModeAndTheReclaimCosts()
    {
        using var m = Boot("128M");
        var t = m.CreateTask("anon")!;
        ulong a = t.Mmap(8 << 20);
        Fill(t, a, 8 << 20, 1); // 2048 inactive anon pages, no file page
        var vec = m.Mm.Lruvecs[0];
        Assert.Equal(2048, vec.Count[(int)LruList.InactiveAnon]);

        // No swap: file only.
        var (b, nr, _) = Count(m, 4);
        Assert.Equal(ScanBalance.File, b);
        Assert.Equal([0L, 0L, 0L, 0L], nr);

        using var swap = Swap(m, 32);
        // Priority 0 with swappiness: every list by its size.
        (b, nr, _) = Count(m, 0);
        Assert.Equal(ScanBalance.Equal, b);
        Assert.Equal([2048L, 0L, 0L, 0L], nr);

        // Priority 4, no file to trim, plenty free: the split, 2048 >> 4 = 128 pages x ap / (ap + fp).
        (vec.AnonCost, vec.FileCost) = (0, 0);
        (b, nr, var sc) = Count(m, 4);
        Assert.False(sc.CacheTrimMode);
        Assert.False(sc.FileIsTiny);
        Assert.Equal(ScanBalance.Fract, b);
        Assert.Equal(128 * 60 / 200, nr[0]); // swappiness 60: ap 60, fp 140
        m.Mm.Vmscan.Swappiness = 100;
        (_, nr, _) = Count(m, 4);
        Assert.Equal(64, nr[0]); // ap = fp = 100
        // Anon's recent cost counts against it: total 300, anon_cost 600, file_cost 300, total 900;
        // ap = 100 x 901 / 601 = 149, fp = 100 x 901 / 301 = 299.
        (vec.AnonCost, vec.FileCost) = (300, 0);
        (_, nr, _) = Count(m, 4);
        Assert.Equal(128 * 149 / (149 + 299), nr[0]);
        (vec.AnonCost, vec.FileCost) = (0, 300);
        (_, nr, _) = Count(m, 4);
        Assert.Equal(128 * 299 / (149 + 299), nr[0]);

        // Enough inactive file at this priority (1024 >> 8 = 4): cache_trim_mode, file only.
        using var data = Temp("data");
        CacheFile(m, data.Path, 1024);
        (b, nr, sc) = Count(m, 8);
        Assert.True(sc.CacheTrimMode);
        Assert.Equal(ScanBalance.File, b);
        Assert.Equal([0L, 0L, 4L, 0L], nr);
        // At priority 12 the 1024 file pages are too few to trim (1024 >> 12 = 0): the split again.
        (b, _, sc) = Count(m, 12);
        Assert.False(sc.CacheTrimMode);
        Assert.Equal(ScanBalance.Fract, b);
    }

    [Fact]
    public void LruNoteCostHalvesBothCostsOnceTheyPassAQuarterOfTheLists()
    {
        var vec = new Lruvec(0);
        vec.Count[0] = 400; // lrusize 400: the costs may sum to 100
        Vmscan.LruNoteCost(vec, file: false, 60);
        Vmscan.LruNoteCost(vec, file: true, 40);
        Assert.Equal((60L, 40L), (vec.AnonCost, vec.FileCost));
        Vmscan.LruNoteCost(vec, file: true, 2); // 102 > 100: both halve
        Assert.Equal((30L, 21L), (vec.AnonCost, vec.FileCost));
        Vmscan.LruNoteCost(vec, file: true, 0); // nothing written: no change
        Assert.Equal((30L, 21L), (vec.AnonCost, vec.FileCost));
    }

    [Fact]
    public void ANodeAlmostOutOfFilePagesScansAnonOnly()
    {
        using var m = Boot("64M");
        using var swap = Swap(m, 64);
        var t = m.CreateTask("filler")!;
        ulong a = t.Mmap(64 << 20);
        var zones = m.PageAllocator.Nodes[0].Zones.Where(z => z.IsManaged).ToArray();
        long high = zones.Sum(z => z.WmarkPages(2));
        var page = new byte[Machine.PageSize];
        ulong at = a;
        while (zones.Sum(z => z.FreePages) > high - 8)
        {
            t.Write(at, page);
            at += (ulong)page.Length;
        }
        var (b, nr, sc) = Count(m, 10);
        Assert.True(sc.FileIsTiny, $"free {zones.Sum(z => z.FreePages)}, high {high}");
        Assert.Equal(ScanBalance.Anon, b);
        Assert.True(nr[0] > 0 && nr[2] == 0 && nr[3] == 0);
    }

    [Fact]
    public void OnceEnoughIsReclaimedKswapdNudgesTheScanOnceAndStopsAfterTheNextBatch()
    {
        // 6.1's shrink_lruvec: with nr_to_reclaim met (32 clean file pages, while the 32 anon pages were only found
        // young), the smaller type (file: 992 of 1024 left, against anon's 2016 of 2048) stops and anon's target is cut
        // to its unscanned share (2048 x 4 % = 81, less the 32 scanned); one more batch of 32 anon pages, then the
        // loop ends, as the smaller type's lists are empty. Scanning the whole cut target (49 pages) would be
        // the overreclaim 6.0 fixed.
        using var m = Boot("128M");
        using var swap = Swap(m, 32);
        var t = m.CreateTask("anon")!;
        ulong a = t.Mmap(8 << 20);
        Fill(t, a, 8 << 20, 1); // 2048 inactive anon pages, young from their faults
        CacheFile(m, "/nudge", 1024);
        var vec = m.Mm.Lruvecs[0];
        Assert.Equal(2048, vec.Count[(int)LruList.InactiveAnon]);
        Assert.Equal(1024, vec.Count[(int)LruList.InactiveFile]);
        long before = Vmstat(m)["pgscan_kswapd"];
        var sc = KswapdPass(m, priority: 0, nrToReclaim: 32);
        Assert.Equal(32 + 32 + 32, Vmstat(m)["pgscan_kswapd"] - before);
        Assert.Equal(32, sc.NrReclaimed);
        m.Mm.Validate();
    }

    [Fact]
    public void AMappedPageMustBeFoundYoungTwiceToBeActivated()
    {
        using var m = Boot();
        using var swap = Swap(m, 16);
        var t = m.CreateTask("twice")!;
        ulong a = t.Mmap(64 * 4096);
        Fill(t, a, 64 * 4096, 3); // 64 pages, young from their faults
        var vec = m.Mm.Lruvecs[0];
        void Pass() => KswapdPass(m, priority: 0, nrToReclaim: 1 << 20);
        Pass(); // young once: marked referenced, kept inactive, nothing freed
        var v = Vmstat(m);
        Assert.Equal(0, v["pgactivate"]);
        Assert.Equal(0, t.SwapEnts);
        Assert.Equal(64, vec.Count[(int)LruList.InactiveAnon]);
        Check(t, a, 64 * 4096, 3); // used again
        Pass(); // young and referenced: activated; then kswapd-style aging deactivates a batch of 32
        v = Vmstat(m);
        Assert.Equal(64, v["pgactivate"]);
        Assert.Equal(32, v["pgdeactivate"]);
        Assert.Equal(0, t.SwapEnts);
        Pass(); // not young: the referenced mark alone does not save an anon page
        Assert.True(t.SwapEnts >= 32, $"{t.SwapEnts} swapped");
        Check(t, a, 64 * 4096, 3);
        m.Mm.Validate();
    }
}
