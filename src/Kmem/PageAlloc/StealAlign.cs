// Putting a zone's buddy lists where a recorded kernel's were after one of its fallback
// steals (mm_page_alloc_extfrag), for a trace replay whose own allocator did not steal at
// that allocation. No kernel counterpart; what it mirrors is 6.1's __rmqueue: the steal
// came because __rmqueue_smallest found the requested type's lists empty at every order
// from the request's up, __rmqueue_fallback then took a block of the fallback type
// (steal_suitable_fallback: the block, or every free page of its pageblock, moved to the
// requested type, the pageblock claimed as the event's change_ownership says), and the
// allocation took its blocks from there. So: the type's free blocks of the request's order
// and above move to the fallback type's lists (the kernel's pages of that type were not
// free), a block of the fallback type is stolen as the event says, and the blocks the
// kernel's allocation took after the steal are taken off the type's lists as stand-ins
// (Kmem's allocation took its own blocks already, from the lists now moved): held by the
// caller and given back at the next alignment of the same zone and type, when the kernel's
// lists of that type are known empty again. No counter or observer sees any of it (an
// alignment is not a decision); the buddy structure stays valid (no block is split and put
// back free beside its free buddy). Runs under zone->lock.
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed partial class Zone
{
    /// <summary>After the kernel's steal of a <paramref name="fallbackMt"/> block of <paramref name="fallbackOrder"/> for
    /// an order-<paramref name="order"/> request of <paramref name="mt"/>, followed by <paramref name="blocksAfter"/>
    /// blocks of that order taken from the type's lists: this zone's lists made to agree. <paramref name="standIns"/>
    /// (the caller's, one per zone and type) holds the blocks taken: those of the previous alignment are given back
    /// first. Returns whether a block could be stolen (false: the zone had no free block of a fallback type; the
    /// type's lists are emptied all the same).</summary>
    public bool AlignSteal(int order, int fallbackOrder, int mt, int fallbackMt, bool changeOwnership, int blocksAfter,
        List<(uint Pfn, int Order)> standIns)
    {
        lock (Lock)
        {
            foreach (var (pfn, o) in standIns)
            {
                FreeOnePage(pfn, o, (int)_mem.PageblockMigratetype(pfn), toTail: false);
            }
            standIns.Clear();
            uint victim = FindStealBlock(fallbackOrder, fallbackMt, mt);
            for (int o = order; o < Arch.MaxOrder; o++)
            {
                ref PfnList list = ref _freeList[o * MigrateTypes + mt];
                while (!list.IsEmpty)
                {
                    MoveToFreeList(list.Head, o, fallbackMt);
                }
            }
            if (victim == PhysMem.NoPfn)
            {
                return false;
            }
            StealAs(victim, mt, changeOwnership);
            for (int i = 0; i < blocksAfter; i++)
            {
                uint pfn = TakeFromType(order, mt);
                if (pfn == PhysMem.NoPfn)
                {
                    break;
                }
                standIns.Add((pfn, order));
            }
            return true;
        }
    }

    // The block to steal: the fallback type's block of the kernel's order, else its smallest larger block, else its
    // largest smaller one, else a block of the request type's other fallback type by the same rule; NoPfn when the
    // zone has none. A larger block is stolen whole rather than split: a split piece put back free beside its free
    // buddy is a state the buddy lists never hold.
    private uint FindStealBlock(int fallbackOrder, int fallbackMt, int mt)
    {
        foreach (int type in (int[])[fallbackMt, .. s_fallbacks[mt].Where(t => t != fallbackMt)])
        {
            for (int o = fallbackOrder; o < Arch.MaxOrder; o++)
            {
                uint pfn = _freeList[o * MigrateTypes + type].Head;
                if (pfn != PhysMem.NoPfn)
                {
                    return pfn;
                }
            }
            for (int o = fallbackOrder - 1; o >= 0; o--)
            {
                uint pfn = _freeList[o * MigrateTypes + type].Head;
                if (pfn != PhysMem.NoPfn)
                {
                    return pfn;
                }
            }
        }
        return PhysMem.NoPfn;
    }

    // steal_suitable_fallback with the kernel's outcome: a block of a pageblock or more is claimed whole; a smaller
    // one takes every free page of its pageblock when can_steal_fallback allows it, the block alone otherwise; the
    // pageblock changes owner as the event said.
    private void StealAs(uint pfn, int mt, bool changeOwnership)
    {
        int order = _mem.Frame(pfn).Order;
        if (order >= PageblockOrder)
        {
            for (int i = 0; i < 1 << (order - PageblockOrder); i++)
            {
                _mem.SetPageblockMigratetype(pfn + ((uint)i << PageblockOrder), (MigrateType)mt);
            }
            MoveToFreeList(pfn, order, mt);
            return;
        }
        if (CanStealFallback(order, mt) && _mem.PageblockMigratetype(pfn) != MigrateType.HighAtomic)
        {
            MoveFreepagesBlock(pfn, mt, out _);
        }
        else
        {
            MoveToFreeList(pfn, order, mt);
        }
        if (changeOwnership)
        {
            _mem.SetPageblockMigratetype(pfn, (MigrateType)mt);
        }
    }

    // One block of the order taken off the type's lists as __rmqueue_smallest takes it (split from the smallest that
    // fits, the halves back on the type's lists), without its counter: a stand-in for a block the kernel's allocation
    // took, which Kmem's per-CPU list holds another frame for. NoPfn when the lists are empty.
    private uint TakeFromType(int order, int mt)
    {
        uint pfn = TakeSmallest(order, mt);
        if (pfn != PhysMem.NoPfn)
        {
            ModFreePages(-(1L << order));
        }
        return pfn;
    }
}
