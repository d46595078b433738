// Zone.AlignSteal, the aligned replay's correction after a kernel fallback steal: the
// requested type's free blocks of the request's order and above leave its lists for the
// fallback type's, a block of the fallback type is stolen as the event says (order,
// ownership), the blocks the kernel's allocation took after it leave the type's lists,
// and nothing is allocated, freed or counted as a steal. And the pressure replay's held
// pages (PcpAlign.TakeFreeBlock): taken as the blocks are, never stolen.
using Kmem.PageAlloc;
using static Kmem.Tests.PageAlloc.PageAllocCheck;

namespace Kmem.Tests.PageAlloc;

public class StealAlignTests
{
    private static Machine Boot() => Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });

    private static long TypePages(Zone zone, MigrateType mt, int fromOrder = 0) =>
        Enumerable.Range(fromOrder, Machine.MaxOrder - fromOrder).Sum(o => zone.NrFree(o, mt) << o);

    [Fact]
    public void AKernelSteal_LeavesTheTypesListsHoldingTheStolenBlockLessWhatTheAllocationTookAfterIt()
    {
        using var m = Boot();
        var zone = ZoneOf(m, ZoneType.Dma32);
        using (m.OnCpu(0))
        {
            m.AllocPage(Gfp.Kernel); // Kmem's own unmovable pages: a block split, the rest on the lists
        }
        Assert.True(TypePages(zone, MigrateType.Unmovable) > 0);
        long free = zone.FreePages, extfrag = zone.SumStats().AllocExtfrag;
        long movable = TypePages(zone, MigrateType.Movable), unmovable = TypePages(zone, MigrateType.Unmovable);
        var standIns = new List<(uint Pfn, int Order)>();

        Assert.True(zone.AlignSteal(0, 10, (int)MigrateType.Unmovable, (int)MigrateType.Movable, changeOwnership: true, blocksAfter: 30, standIns));

        Assert.Equal(1024 - 30, TypePages(zone, MigrateType.Unmovable));
        Assert.Equal(movable + unmovable - 1024, TypePages(zone, MigrateType.Movable));
        Assert.Equal(30, standIns.Count); // the blocks the kernel's allocation took after its steal, held
        Assert.Equal(free - 30, zone.FreePages);
        Assert.Equal(extfrag, zone.SumStats().AllocExtfrag); // an alignment is not a steal
        // The order-10 block's two pageblocks now belong to the requesting type.
        int unmovableBlocks = 0;
        for (uint pfn = zone.StartPfn & ~511u; pfn < zone.EndPfn; pfn += 512)
        {
            unmovableBlocks += zone.Spans(pfn) && m.PageAllocator.Mem.PageblockMigratetype(pfn) == MigrateType.Unmovable ? 1 : 0;
        }
        Assert.True(unmovableBlocks >= 2);
        zone.Validate();

        // The next alignment gives the stand-ins back first: the type's lists are emptied again, so every page is free.
        Assert.True(zone.AlignSteal(0, 10, (int)MigrateType.Unmovable, (int)MigrateType.Movable, changeOwnership: true, blocksAfter: 0, standIns));
        Assert.Empty(standIns);
        Assert.Equal(free, zone.FreePages);
        Assert.Equal(1024, TypePages(zone, MigrateType.Unmovable));
        zone.Validate();
    }

    [Fact]
    public void AHeldBlockIsTakenFromWhicheverTypeHasOneAndNeverStolen()
    {
        using var m = Boot();
        var zone = ZoneOf(m, ZoneType.Dma32);
        using (m.OnCpu(0))
        {
            m.AllocPage(Gfp.Kernel); // an unmovable block split: unmovable pages on the lists
        }
        // Every movable block of order 3 and above held: the movable lists have only smaller ones.
        var held = new List<Page>();
        while (TypePages(zone, MigrateType.Movable, 3) > 0)
        {
            held.Add(PcpAlign.TakeFreeBlock(m.PageAllocator, zone, Machine.MaxOrder - 1) is { IsNull: false } big ? big : PcpAlign.TakeFreeBlock(m.PageAllocator, zone, 3));
        }
        long extfrag = zone.SumStats().AllocExtfrag, unmovable = TypePages(zone, MigrateType.Unmovable), free = zone.FreePages;
        var blocks = Enumerable.Range(0, (int)(zone.EndPfn - zone.StartPfn) / 512).Select(i => zone.StartPfn + (uint)i * 512)
            .Where(zone.Spans).Select(m.PageAllocator.Mem.PageblockMigratetype).ToList();

        var page = PcpAlign.TakeFreeBlock(m.PageAllocator, zone, 3);

        Assert.False(page.IsNull);
        Assert.Equal(MigrateType.Unmovable, m.PageAllocator.Mem.PageblockMigratetype(page.RawPfn)); // taken where one was
        Assert.Equal(unmovable - 8, TypePages(zone, MigrateType.Unmovable));
        Assert.Equal(free - 8, zone.FreePages);
        Assert.Equal(extfrag, zone.SumStats().AllocExtfrag); // no steal
        Assert.Equal(blocks, Enumerable.Range(0, (int)(zone.EndPfn - zone.StartPfn) / 512).Select(i => zone.StartPfn + (uint)i * 512)
            .Where(zone.Spans).Select(m.PageAllocator.Mem.PageblockMigratetype).ToList()); // no pageblock changed type
        m.FreePages(page, 3);
        foreach (var p in held)
        {
            m.FreePages(p, m.PageAllocator.Mem.Frame(p.RawPfn).Order); // TakeFreeBlock records the order, as prep_new_page does
        }
        zone.Validate();
    }

    [Fact]
    public void ASmallerStealWithoutOwnership_TakesThePageblocksFreePagesAndLeavesItsType()
    {
        using var m = Boot();
        var zone = ZoneOf(m, ZoneType.Dma32);
        uint taken;
        lock (zone.Lock)
        {
            // One movable page straight off the buddy lists: its pageblock's order-10 block splits, leaving one free
            // block of each order 0-9 beside it, among them the order-2 block the kernel's event names.
            taken = zone.RmqueueSmallest(0, (int)MigrateType.Movable);
            zone.ModFreePages(-1);
        }
        long free = zone.FreePages;
        // An order-2 unmovable request stealing an order-2 movable block, the pageblock not claimed: can_steal_fallback
        // lets it take every free page of the pageblock, the pageblock stays movable.
        Assert.True(zone.AlignSteal(2, 2, (int)MigrateType.Unmovable, (int)MigrateType.Movable, changeOwnership: false, blocksAfter: 1, []));
        Assert.Equal(512 - 1 - 4, TypePages(zone, MigrateType.Unmovable));
        Assert.Equal(MigrateType.Movable, m.PageAllocator.Mem.PageblockMigratetype(taken));
        Assert.Equal(free - 4, zone.FreePages);
        zone.Validate();
    }
}
