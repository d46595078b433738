// Setting one CPU's per-CPU list to a given length, and its free_factor to a given
// value: what a trace replay uses to put Kmem's lists where a recorded kernel's
// were (its refills, drains and frees reveal them), so the next decision is made
// from the same state. No kernel counterpart. Blocks added come from the buddy lists
// as rmqueue_bulk takes them; blocks removed go back from the tail as
// free_pcppages_bulk gives them. The event counters (refills, drains) are left alone:
// an alignment is not a decision. Also a free block taken off the buddy lists as it
// is, of whichever type has one (TakeFreeBlock), for a replay that holds pages so its
// free count is the kernel's: holding must not steal, which would move pageblocks
// between types and count as the allocation's decision. Lock order as everywhere: pcp
// lock, then zone->lock.
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal static class PcpAlign
{
    private static readonly int[] s_holdTypes = [(int)MigrateType.Movable, (int)MigrateType.Reclaimable, (int)MigrateType.Unmovable];

    /// <summary>A free block of <paramref name="order"/> off <paramref name="zone"/>'s lists (movable first, then
    /// reclaimable, then unmovable; never a steal), as an allocated page (prep_new_page, not zeroed unless
    /// init_on_alloc); Page.Null when no type has one.</summary>
    public static Page TakeFreeBlock(PageAllocator pa, Zone zone, int order)
    {
        uint pfn = PhysMem.NoPfn;
        lock (zone.Lock)
        {
            foreach (int mt in s_holdTypes)
            {
                if ((pfn = zone.RmqueueSmallest(order, mt)) != PhysMem.NoPfn)
                {
                    zone.ModFreePages(-(1L << order));
                    break;
                }
            }
        }
        if (pfn == PhysMem.NoPfn)
        {
            return Page.Null;
        }
        pa.PrepNewPage(pfn, order, default);
        return new Page(pfn);
    }

    /// <summary>Makes CPU <paramref name="cpu"/>'s list of (order, migrate type) in <paramref name="zone"/> hold
    /// <paramref name="blocks"/> blocks (fewer when the buddy lists run out); returns how many it holds.</summary>
    public static int AlignPcpList(PhysMem mem, Zone zone, int cpu, int order, int mt, int blocks)
    {
        var pcp = zone.Pcp[cpu];
        int pindex = PerCpuPages.OrderToPindex(mt, order);
        if (Volatile.Read(ref pcp.Lists[pindex].Count) == blocks)
        {
            return blocks; // already there (most allocations): no lock to take
        }
        pcp.LockSpin();
        try
        {
            ref PfnList list = ref pcp.Lists[pindex];
            int have = list.Count; // kept by the list: a walk of it was most of an aligned replay's page allocation
            VmBug.On(have != Walk(mem, list));
            if (have == blocks)
            {
                return have;
            }
            lock (zone.Lock)
            {
                for (; have > blocks; have--)
                {
                    ReturnTail(mem, zone, pcp, ref list, order);
                }
                for (; have < blocks; have++)
                {
                    uint pfn = zone.Rmqueue(order, mt, AllocFlags.WmarkMin);
                    if (pfn == PhysMem.NoPfn)
                    {
                        break;
                    }
                    mem.Frame(pfn).Flags = PageFlags.Pcp;
                    list.AddTail(mem, pfn);
                    zone.ModFreePages(-(1L << order));
                    pcp.Count += 1 << order;
                }
            }
            return have;
        }
        finally
        {
            pcp.Unlock();
        }
    }

    /// <summary>Makes CPU <paramref name="cpu"/>'s lists in <paramref name="zone"/> hold <paramref name="pages"/>
    /// pages in all: order-0 blocks of <paramref name="mt"/> added, or blocks taken from the lists' tails in list
    /// order; returns the count reached.</summary>
    public static int AlignPcpCount(PhysMem mem, Zone zone, int cpu, int pages, int mt)
    {
        var pcp = zone.Pcp[cpu];
        if (Volatile.Read(ref pcp.Count) == pages)
        {
            return pages;
        }
        pcp.LockSpin();
        try
        {
            lock (zone.Lock)
            {
                for (int pindex = 0; pindex < PerCpuPages.NrPcpLists && pcp.Count > pages; pindex++)
                {
                    int order = PerCpuPages.PindexToOrder(pindex, mem.PageblockOrder);
                    ref PfnList list = ref pcp.Lists[pindex];
                    while (pcp.Count > pages && !list.IsEmpty)
                    {
                        ReturnTail(mem, zone, pcp, ref list, order);
                    }
                }
                ref PfnList add = ref pcp.Lists[PerCpuPages.OrderToPindex(mt, 0)];
                while (pcp.Count < pages)
                {
                    uint pfn = zone.Rmqueue(0, mt, AllocFlags.WmarkMin);
                    if (pfn == PhysMem.NoPfn)
                    {
                        break;
                    }
                    mem.Frame(pfn).Flags = PageFlags.Pcp;
                    add.AddTail(mem, pfn);
                    zone.ModFreePages(-1);
                    pcp.Count += 1;
                }
            }
            return pcp.Count;
        }
        finally
        {
            pcp.Unlock();
        }
    }

    // The list's length by walking it, to check its count in the DebugVm build.
    private static int Walk(PhysMem mem, in PfnList list)
    {
        int n = 0;
        for (uint p = list.Head; p != PhysMem.NoPfn; p = mem.Frame(p).Next)
        {
            n++;
        }
        return n;
    }

    /// <summary>The list's tail block back to the buddy lists. Caller holds the pcp lock and zone->lock.</summary>
    private static void ReturnTail(PhysMem mem, Zone zone, PerCpuPages pcp, ref PfnList list, int order)
    {
        uint pfn = list.Tail;
        list.Remove(mem, pfn);
        ref PageFrame f = ref mem.Frame(pfn);
        f.Flags = PageFlags.None;
        pcp.Count -= 1 << order;
        zone.FreeOnePage(pfn, order, f.MigrateType, toTail: false);
    }

    /// <summary>Sets CPU <paramref name="cpu"/>'s free_factor in <paramref name="zone"/>.</summary>
    public static void AlignPcpFreeFactor(Zone zone, int cpu, int freeFactor)
    {
        var pcp = zone.Pcp[cpu];
        if (Volatile.Read(ref pcp.FreeFactor) == freeFactor)
        {
            return; // nearly every free finds it so: no lock to take
        }
        pcp.LockSpin();
        pcp.FreeFactor = freeFactor;
        pcp.Unlock();
    }
}
