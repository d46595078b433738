// PG_reclaim's second scan (Reclaim/VmscanWriteback.cs): an anonymous page reclaim writes to
// swap is kept under writeback, rotated to the inactive tail when the write completes
// (pgrotated), and freed by the next scan; until then it sits unmapped in the swap cache,
// where a fault finds it without reading swap, and exit, munmap and compaction handle it.
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

[Collection("reclaim-files")]
public class WritebackTests
{
    private const int Bytes = 56 << 20;

    [Fact]
    public void AWrittenPageIsScannedAgainAfterItsWriteAndFreedThen()
    {
        using var m = Boot();
        using var swap = Swap(m, 96);
        var t = m.CreateTask("hog")!;
        ulong a = t.Mmap(Bytes);
        Fill(t, a, Bytes, 4);
        var v = Vmstat(m);
        long written = v["pswpout"], stolen = v["pgsteal_anon"];
        Assert.True(written > 1000, $"{written} pages written");
        Assert.Equal(0, v["nr_writeback"]); // every write completed
        Assert.Equal(written, v["pgrotated"]); // each completion found its page back on the list
        // Every page freed was written first, and scanned once to start its write and once to free it.
        Assert.True(v["pgscan_anon"] >= written + stolen, $"pgscan_anon {v["pgscan_anon"]}, pswpout {written}, pgsteal_anon {stolen}");
        long cached = Meminfo(m, "SwapCached") / 4;
        Assert.Equal(written - stolen, cached); // written, not yet scanned again: unmapped in the swap cache
        Assert.True(cached > 0);
        // A page waiting in the swap cache is mapped again from there at a fault: nothing read, the same frame.
        var waiting = new List<(uint Pfn, ulong Va)>();
        for (uint pfn = 0; pfn < m.Mem.MaxPfn && waiting.Count < 64; pfn++)
        {
            ref var f = ref m.Mem.Frame(pfn);
            if ((f.Flags & Kmem.Physical.PageFlags.SwapCache) != 0 && f.MapCount == 0 && t.FollowPage(m.Mm.Lru.IndexOf(pfn)) == uint.MaxValue)
            {
                waiting.Add((pfn, m.Mm.Lru.IndexOf(pfn)));
            }
        }
        Assert.NotEmpty(waiting);
        var buf = new byte[8];
        foreach (var (pfn, va) in waiting)
        {
            t.Read(va, buf);
            Assert.Equal(pfn, t.FollowPage(va));
        }
        Assert.Equal(v["pswpin"], Vmstat(m)["pswpin"]);
        Assert.Equal(v["pgmajfault"], Vmstat(m)["pgmajfault"]);
        Check(t, a, Bytes, 4);
        t.Munmap(a, Bytes);
        Assert.Equal(0, Meminfo(m, "SwapCached"));
        Assert.Equal(Meminfo(m, "SwapTotal"), Meminfo(m, "SwapFree"));
        m.Mm.Validate();
    }

    [Fact]
    public void CompactionAndExitTakeThePagesWaitingInTheSwapCache()
    {
        using var m = Boot();
        using var swap = Swap(m, 96);
        var t = m.CreateTask("hog")!;
        ulong a = t.Mmap(Bytes);
        var room = Enumerable.Range(0, 1024).Select(_ => m.AllocPage(Gfp.HighUserMovable)).ToList();
        Fill(t, a, Bytes, 6);
        room.ForEach(m.FreePage); // room for compaction to move pages into
        Assert.True(Meminfo(m, "SwapCached") > 0);
        long rss = t.Rss;
        Assert.True(m.CompactMemory() > 0);
        Assert.Equal(rss, t.Rss); // an unmapped page moved stays unmapped
        m.Mm.Validate();
        Check(t, a, Bytes, 6);
        t.Exit();
        Assert.Equal(0, Meminfo(m, "SwapCached"));
        Assert.Equal(Meminfo(m, "SwapTotal"), Meminfo(m, "SwapFree"));
        Assert.Equal(0, Meminfo(m, "Inactive(anon)") + Meminfo(m, "Active(anon)")); // none left behind on a list
        m.Mm.Validate();
    }

    [Fact]
    public void PagesSkippedForALowmemRequestCountAsScanned()
    {
        using var m = Boot("960M", Preset.X86); // 80 MiB of HighMem
        using var swap = Swap(m, 16); // anonymous pages are scanned only with swap to put them in
        var t = m.CreateTask("high")!;
        ulong a = t.Mmap(96 << 20);
        Fill(t, a, 96 << 20, 2); // user pages fill HighMem first, then spill into Normal
        var before = Vmstat(m);
        var zonelist = m.PageAllocator.Zones.Where(z => z.IsManaged).Reverse().ToArray();
        long freed = m.Mm.TryToFreePages(Gfp.Kernel, 0, zonelist, ZoneType.Normal);
        var after = Vmstat(m);
        long skipped = after["pgskip_high"] - before["pgskip_high"];
        long scanned = after["pgscan_direct"] - before["pgscan_direct"] + after["pgrefill"] - before["pgrefill"];
        Assert.True(skipped > freed, $"{skipped} skipped, {freed} freed");
        // isolate_lru_folios' total_scan: every page taken off a list, the HighMem pages it skipped too.
        Assert.True(scanned >= skipped + freed, $"{scanned} scanned, {skipped} skipped, {freed} freed");
        Assert.Equal(freed, after["pgsteal_direct"] - before["pgsteal_direct"]);
    }
}
