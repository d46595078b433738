// Direct reclaim for a high order, as 6.1's do_try_to_free_pages and shrink_node do it: a target of
// SWAP_CLUSTER_MAX whatever the order, a costly order's zone with room to compact in left alone
// (compaction_ready), and a node shrunk again while compaction could not go ahead yet
// (should_continue_reclaim).
using Kmem.PageAlloc;
using Kmem.Reclaim;
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

[Collection("reclaim-files")]
public class ReclaimForCompactionTests
{
    private static Zone Dma32(Machine m) => m.PageAllocator.Zones.Single(z => z.Type == ZoneType.Dma32);

    [Fact]
    public void ACostlyOrdersReclaimLeavesAZoneWithRoomToCompactAlone()
    {
        using var m = Boot();
        using var swap = Swap(m, 64);
        var t = m.CreateTask("anon")!;
        ulong at = t.Mmap(16 << 20);
        Fill(t, at, 16 << 20, 1);
        var zone = Dma32(m);
        Assert.NotEqual(CompactResult.Skipped, m.Mm.Compaction.CompactionSuitable(zone, 9, ZoneType.Normal));
        long stolen = Vmstat(m)["pgsteal_direct"];
        // Order 9 with plenty free: compaction could go ahead, so reclaim frees nothing and reports progress.
        long progress = m.Mm.TryToFreePages(Gfp.HighUserMovable, 9, m.PageAllocator.Nodes[0].ZonelistFallback, ZoneType.Normal);
        Assert.Equal(1, progress);
        Assert.Equal(stolen, Vmstat(m)["pgsteal_direct"]);
        // Order 0 has no such stop: a batch of 32 is freed.
        long freed = m.Mm.TryToFreePages(Gfp.HighUserMovable, 0, m.PageAllocator.Nodes[0].ZonelistFallback, ZoneType.Normal);
        Assert.InRange(freed, Vmscan.SwapClusterMax, 4 * Vmscan.SwapClusterMax);
        Check(t, at, 16 << 20, 1);
    }

    [Fact]
    public void ReclaimForACostlyOrderGoesOnUntilCompactionCouldGoAhead()
    {
        using var m = Boot();
        using var swap = Swap(m, 64);
        var t = m.CreateTask("anon")!;
        var zone = Dma32(m);
        // DMA's free pages held, so that only DMA32 can give room to compact (a zone where compaction could go ahead
        // ends the reclaim: the test above).
        var dma = m.PageAllocator.Zones.Single(z => z.Type == ZoneType.Dma);
        var held = new List<Page>();
        for (var p = m.AllocPage(Gfp.Dma | Gfp.NoWait | Gfp.NoWarn); !p.IsNull; p = m.AllocPage(Gfp.Dma | Gfp.NoWait | Gfp.NoWarn))
        {
            held.Add(p);
        }
        Assert.Equal(CompactResult.Skipped, m.Mm.Compaction.CompactionSuitable(dma, 9, ZoneType.Normal));
        int bytes = 0;
        ulong at = t.Mmap(56 << 20);
        // Fill until compaction of an order-9 block could not go ahead for lack of free pages.
        while (m.Mm.Compaction.CompactionSuitable(zone, 9, ZoneType.Normal) != CompactResult.Skipped)
        {
            Fill(t, at + (ulong)bytes, 256 << 10, 2);
            bytes += 256 << 10;
            Assert.True(bytes < 56 << 20, "memory never got short");
        }
        long freed = m.Mm.TryToFreePages(Gfp.HighUserMovable, 9, m.PageAllocator.Nodes[0].ZonelistFallback, ZoneType.Normal);
        // More than the 32 pages reclaim aims at, and fewer than the order's 512 (a target of 1 << order would free
        // those): shrink_node went on until compaction could go ahead, which a few batches did.
        Assert.True(freed > Vmscan.SwapClusterMax && freed < 1 << 9, $"freed {freed}");
        Assert.NotEqual(CompactResult.Skipped, m.Mm.Compaction.CompactionSuitable(zone, 9, ZoneType.Normal));
        Check(t, at, bytes, 2);
        foreach (var p in held)
        {
            m.FreePage(p);
        }
    }
}
