// What a replay aligned to a traced kernel asks of the reclaim layer (Reclaim/VmscanTraced.cs,
// KswapdDaemon.SetAwake): a given anonymous page paged out and counted as kswapd's or direct
// reclaim's, its bytes intact after the swap-in; direct reclaim handing its choice to the
// callback; kswapd kept awake or asleep from outside, a wakeup of an awake kswapd not counted.
using Kmem.PageAlloc;
using Kmem.Reclaim;
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

[Collection("reclaim-files")]
public class TracedReclaimTests
{
    [Fact]
    public void AGivenPageIsPagedOutAsKswapdsAndReadsBackIntact()
    {
        using var m = Boot();
        using var swap = Swap(m, 16);
        var t = m.CreateTask("traced")!;
        ulong a = t.Mmap(8 * Machine.PageSize);
        Fill(t, a, 8 * Machine.PageSize, 3);
        uint pfn = t.FollowPage(a + 2 * Machine.PageSize);
        Assert.NotEqual(uint.MaxValue, pfn);
        var before = Vmstat(m);
        Assert.True(m.Mm.Vmscan.ReclaimTracedPage(pfn, kswapd: true));
        var after = Vmstat(m);
        Assert.Equal(uint.MaxValue, t.FollowPage(a + 2 * Machine.PageSize)); // swapped out, not resident
        Assert.Equal(1, after["pgsteal_kswapd"] - before["pgsteal_kswapd"]);
        Assert.Equal(2, after["pgscan_kswapd"] - before["pgscan_kswapd"]); // the scan that wrote it and the one that freed it
        Assert.Equal(1, after["pgrotated"] - before["pgrotated"]);
        Assert.Equal(0, after["pgsteal_direct"] - before["pgsteal_direct"]);
        Assert.Equal(1, after["pswpout"] - before["pswpout"]);
        Assert.Equal(7, t.Rss);
        Assert.False(m.Mm.Vmscan.ReclaimTracedPage(pfn, kswapd: true)); // no longer a user page on an LRU list
        Check(t, a, 8 * Machine.PageSize, 3);
        m.Mm.Validate();
    }

    [Fact]
    public void DirectReclaimTakesTheCallbacksPagesOrItsOwnChoiceWhenTheCallbackDeclines()
    {
        using var m = Boot();
        using var swap = Swap(m, 64);
        var t = m.CreateTask("hog")!;
        ulong a = t.Mmap(4 << 20);
        Fill(t, a, 4 << 20, 5);
        uint given = t.FollowPage(a);
        int calls = 0;
        m.Mm.Vmscan.TracedReclaim = () =>
        {
            calls++;
            return calls == 1 && m.Mm.Vmscan.ReclaimTracedPage(given, kswapd: false) ? 1 : -1;
        };
        var zonelist = m.PageAllocator.Zones.Where(z => z.IsManaged).Reverse().ToArray();
        var before = Vmstat(m);
        Assert.Equal(1, m.Mm.TryToFreePages(Gfp.Kernel, 0, zonelist, zonelist[0].Type));
        Assert.Equal(uint.MaxValue, t.FollowPage(a)); // the callback's page went
        Assert.Equal(1, Vmstat(m)["pgsteal_direct"] - before["pgsteal_direct"]);
        long own = m.Mm.TryToFreePages(Gfp.Kernel, 0, zonelist, zonelist[0].Type); // declined: Kmem's reclaim chooses
        Assert.True(own >= Vmscan.SwapClusterMax, $"{own} pages");
        Assert.Equal(2, calls);
        m.Mm.Vmscan.TracedReclaim = null;
        Check(t, a, 4 << 20, 5);
    }

    [Fact]
    public void AKswapdKeptAwakeFromOutsideCountsNoWakeupUntilItIsPutBackToSleep()
    {
        using var m = Boot("64M", kswapd: true);
        m.Mm.KswapdDeferred = true;
        var node = m.PageAllocator.Nodes[0];
        var zone = node.Zones.Last(z => z.IsManaged);
        var t = m.CreateTask("lru")!; // something on the LRU lists, or a wakeup has nothing to wake kswapd for
        Fill(t, t.Mmap(64 * Machine.PageSize), 64 * Machine.PageSize, 1);
        foreach (var z in node.Zones.Where(z => z.IsManaged))
        {
            lock (z.Lock)
            {
                z.Watermark[Zone.WmarkHigh] = z.FreePages + 1; // no zone balanced
            }
        }
        m.Mm.KswapdSetAwake(node.Id, true);
        Assert.True(m.Mm.KswapdIsRunning(node));
        long wakeups = m.Mm.KswapdWakeups;
        m.Mm.WakeupKswapd(zone, 0, zone.Type);
        Assert.Equal(wakeups, m.Mm.KswapdWakeups); // its waitqueue is empty: no mm_vmscan_wakeup_kswapd
        m.Mm.KswapdSetAwake(node.Id, false);
        Assert.False(m.Mm.KswapdIsRunning(node));
        m.Mm.WakeupKswapd(zone, 0, zone.Type);
        Assert.Equal(wakeups + 1, m.Mm.KswapdWakeups);
        Assert.True(m.Mm.KswapdIsRunning(node)); // deferred: woken, its work waits
        Assert.Equal(0, m.Mm.KswapdRuns);
    }
}
