// The buddy allocator (the free-list half of mm/page_alloc.c): free blocks of
// 2^order pages sit on free_area[order].free_list[migratetype]. A freed block
// merges with its buddy (pfn XOR 2^order) while the buddy is free, of the same
// order and in the same zone, and moves up an order; an allocation takes the
// smallest block that fits and splits it ("expand"), returning the upper halves
// to the lower orders. When a migrate type's lists are empty, the allocator
// steals from another type by the kernel's fallback table, whole pageblocks when
// it can, so that unmovable and movable pages stay apart.
// Every method here runs under zone->lock.
using System.Diagnostics;
using Kmem.Physical;

namespace Kmem.PageAlloc;

/// <summary>The ALLOC_* flags of mm/internal.h (6.1 values).</summary>
[Flags]
internal enum AllocFlags
{
    WmarkMin = 0,
    WmarkLow = 1,
    WmarkHigh = 2,
    WmarkMask = NoWatermarks - 1,
    NoWatermarks = 0x04,
    Oom = 0x08,
    Harder = 0x10,
    High = 0x20,
    Cpuset = 0x40,
    Cma = 0x80,
    NoFragment = 0x100,
    Kswapd = 0x800,
}

internal sealed partial class Zone
{
    /// <summary>fallbacks[][]: the migrate types a request may steal from, in order.</summary>
    private static readonly int[][] s_fallbacks =
    [
        [(int)MigrateType.Reclaimable, (int)MigrateType.Movable],   // Unmovable
        [(int)MigrateType.Reclaimable, (int)MigrateType.Unmovable], // Movable
        [(int)MigrateType.Unmovable, (int)MigrateType.Movable],     // Reclaimable
    ];

    private int PageblockOrder => _mem.PageblockOrder;
    private uint PageblockNrPages => 1u << _mem.PageblockOrder;

    private void AddToFreeList(uint pfn, int order, int mt, bool tail)
    {
        VmBug.LockdepAssertHeld(Lock);
        VmBug.On((pfn & ((1u << order) - 1)) != 0); // a block starts at a multiple of its size
        ref PageFrame f = ref _mem.Frame(pfn);
        VmBug.On((f.Flags & PageFlags.Buddy) != 0); // already on a free list
        f.Flags = PageFlags.Buddy;
        f.Order = (byte)order;
        f.MigrateType = (byte)mt;
        int i = order * MigrateTypes + mt;
        if (tail)
        {
            _freeList[i].AddTail(_mem, pfn);
        }
        else
        {
            _freeList[i].AddHead(_mem, pfn);
        }
        _freeCount[i]++;
    }

    private void DelFromFreeList(uint pfn, int order)
    {
        VmBug.LockdepAssertHeld(Lock);
        ref PageFrame f = ref _mem.Frame(pfn);
        VmBug.On((f.Flags & PageFlags.Buddy) == 0 || f.Order != order); // not a free block of this order
        int i = order * MigrateTypes + f.MigrateType;
        _freeList[i].Remove(_mem, pfn);
        _freeCount[i]--;
        VmBug.On(_freeCount[i] < 0);
        f.Flags &= ~PageFlags.Buddy;
    }

    /// <summary>move_to_free_list: to the tail of another migrate type's list.</summary>
    private void MoveToFreeList(uint pfn, int order, int mt)
    {
        DelFromFreeList(pfn, order);
        AddToFreeList(pfn, order, mt, tail: true);
    }

    /// <summary>page_is_buddy via find_buddy_page_pfn: the buddy of <paramref name="pfn"/> if it is free at this order.</summary>
    private uint FindBuddy(uint pfn, int order)
    {
        uint buddy = pfn ^ (1u << order);
        if (!Spans(buddy))
        {
            return PhysMem.NoPfn;
        }
        ref PageFrame b = ref _mem.Frame(buddy);
        return (b.Flags & PageFlags.Buddy) != 0 && b.Order == order ? buddy : PhysMem.NoPfn;
    }

    /// <summary>
    /// __free_one_page: puts a block back, merging with free buddies. Up to pageblock_order
    /// any buddies merge; above it only pageblocks whose types can merge (not HighAtomic or Isolate).
    /// </summary>
    public void FreeOnePage(uint pfn, int order, int mt, bool toTail)
    {
        if (mt != (int)MigrateType.Isolate)
        {
            ModFreePages(1L << order);
        }
        uint buddy = PhysMem.NoPfn;
        while (order < Arch.MaxOrder - 1)
        {
            buddy = FindBuddy(pfn, order);
            if (buddy == PhysMem.NoPfn)
            {
                break;
            }
            if (order >= PageblockOrder)
            {
                int buddyMt = (int)_mem.PageblockMigratetype(buddy);
                if (mt != buddyMt && (!IsMergeable(mt) || !IsMergeable(buddyMt)))
                {
                    break;
                }
            }
            DelFromFreeList(buddy, order);
            pfn &= buddy;
            order++;
        }
        if (!toTail)
        {
            toTail = BuddyMergeLikely(pfn, order);
        }
        AddToFreeList(pfn, order, mt, toTail);
    }

    private static bool IsMergeable(int mt) => mt < PcpTypes;

    /// <summary>buddy_merge_likely: the block's own buddy one order up is free, so a merge is coming; keep it
    /// at the tail, away from allocations.</summary>
    private bool BuddyMergeLikely(uint pfn, int order)
    {
        if (order >= Arch.MaxOrder - 2)
        {
            return false;
        }
        uint higher = pfn & ~(1u << order);
        return FindBuddy(higher, order + 1) != PhysMem.NoPfn;
    }

    /// <summary>expand: split a block of order <paramref name="high"/> down to <paramref name="low"/>.</summary>
    private void Expand(uint pfn, int low, int high, int mt)
    {
        uint size = 1u << high;
        while (high > low)
        {
            high--;
            size >>= 1;
            AddToFreeList(pfn + size, high, mt, tail: false);
        }
    }

    /// <summary>__rmqueue_smallest: the first block of at least this order on the type's lists.</summary>
    public uint RmqueueSmallest(int order, int mt)
    {
        uint pfn = TakeSmallest(order, mt);
        if (pfn != PhysMem.NoPfn)
        {
            Counters.Stats.AllocZoneLocked++;
        }
        return pfn;
    }

    /// <summary>__rmqueue_smallest's work without its tracepoint's counter: the smallest block that fits, split.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private uint TakeSmallest(int order, int mt)
    {
        for (int o = order; o < Arch.MaxOrder; o++)
        {
            uint pfn = _freeList[o * MigrateTypes + mt].Head;
            if (pfn == PhysMem.NoPfn)
            {
                continue;
            }
            DelFromFreeList(pfn, o);
            Expand(pfn, order, o, mt);
            _mem.Frame(pfn).MigrateType = (byte)mt;
            return pfn;
        }
        return PhysMem.NoPfn;
    }

    /// <summary>__rmqueue: the type's own lists, then stealing, then the own lists again.</summary>
    public uint Rmqueue(int order, int mt, AllocFlags flags)
    {
        while (true)
        {
            uint pfn = RmqueueSmallest(order, mt);
            if (pfn != PhysMem.NoPfn || !RmqueueFallback(order, mt, flags))
            {
                return pfn;
            }
        }
    }

    /// <summary>can_steal_fallback.</summary>
    private bool CanStealFallback(int order, int startMt) =>
        order >= PageblockOrder
        || order >= PageblockOrder / 2
        || startMt == (int)MigrateType.Reclaimable
        || startMt == (int)MigrateType.Unmovable;

    /// <summary>find_suitable_fallback: the first fallback type with a free block of this order.</summary>
    private int FindSuitableFallback(int order, int mt, out bool canSteal)
    {
        canSteal = false;
        if (NrFree(order) == 0)
        {
            return -1;
        }
        foreach (int fallback in s_fallbacks[mt])
        {
            if (FreeAreaEmpty(order, fallback))
            {
                continue;
            }
            canSteal = CanStealFallback(order, mt);
            return fallback;
        }
        return -1;
    }

    /// <summary>
    /// __rmqueue_fallback: steal the largest block of a fallback type so that whole pageblocks change
    /// hands; a movable request that may not steal takes the smallest block instead.
    /// </summary>
    private bool RmqueueFallback(int order, int startMt, AllocFlags flags)
    {
        int minOrder = (flags & AllocFlags.NoFragment) != 0 && order < PageblockOrder ? PageblockOrder : order;
        for (int current = Arch.MaxOrder - 1; current >= minOrder; current--)
        {
            int fallbackMt = FindSuitableFallback(current, startMt, out bool canSteal);
            if (fallbackMt == -1)
            {
                continue;
            }
            if (!canSteal && startMt == (int)MigrateType.Movable && current > order)
            {
                // find_smallest: a movable request that cannot claim the block fragments as little as it can.
                for (current = order; current < Arch.MaxOrder; current++)
                {
                    fallbackMt = FindSuitableFallback(current, startMt, out canSteal);
                    if (fallbackMt != -1)
                    {
                        break;
                    }
                }
                Debug.Assert(current < Arch.MaxOrder, "a fallback block was seen above");
            }
            uint pfn = _freeList[current * MigrateTypes + fallbackMt].Head;
            StealSuitableFallback(pfn, flags, startMt, canSteal);
            Counters.Stats.AllocExtfrag++;
            if (Node.Allocator.Observer is { } observer)
            {
                observer.Fallback(Index, order, current, startMt, fallbackMt, (int)_mem.PageblockMigratetype(pfn) == startMt);
            }
            return true;
        }
        return false;
    }

    /// <summary>
    /// steal_suitable_fallback: move the block (and, when allowed, every free page of its pageblock)
    /// to the requesting type; claim the pageblock when at least half of it is free or alike.
    /// </summary>
    private void StealSuitableFallback(uint pfn, AllocFlags flags, int startMt, bool wholeBlock)
    {
        int currentOrder = _mem.Frame(pfn).Order;
        int oldBlockType = (int)_mem.PageblockMigratetype(pfn);
        if (oldBlockType == (int)MigrateType.HighAtomic)
        {
            MoveToFreeList(pfn, currentOrder, startMt);
            return;
        }
        if (currentOrder >= PageblockOrder)
        {
            for (int i = 0; i < 1 << (currentOrder - PageblockOrder); i++)
            {
                _mem.SetPageblockMigratetype(pfn + ((uint)i << PageblockOrder), (MigrateType)startMt);
            }
            MoveToFreeList(pfn, currentOrder, startMt);
            return;
        }
        if (BoostWatermark() && (flags & AllocFlags.Kswapd) != 0)
        {
            BoostedWatermark = true;
        }
        if (wholeBlock)
        {
            long free = MoveFreepagesBlock(pfn, startMt, out long movable);
            if (free != 0)
            {
                long alike = startMt == (int)MigrateType.Movable ? movable
                    : oldBlockType == (int)MigrateType.Movable ? PageblockNrPages - (free + movable)
                    : 0;
                if (free + alike >= PageblockNrPages / 2)
                {
                    _mem.SetPageblockMigratetype(pfn, (MigrateType)startMt);
                }
                return;
            }
        }
        MoveToFreeList(pfn, currentOrder, startMt);
    }

    /// <summary>move_freepages_block: every free block inside the pageblock of <paramref name="pfn"/> to
    /// <paramref name="mt"/>'s lists; counts the movable pages in use (LRU pages) beside them.</summary>
    public long MoveFreepagesBlock(uint pfn, int mt, out long movable)
    {
        movable = 0;
        uint start = pfn & ~(PageblockNrPages - 1);
        uint end = start + PageblockNrPages - 1;
        if (!Spans(start))
        {
            start = pfn;
        }
        if (!Spans(end))
        {
            return 0;
        }
        long moved = 0;
        for (uint p = start; p <= end;)
        {
            ref PageFrame f = ref _mem.Frame(p);
            if ((f.Flags & PageFlags.Buddy) == 0)
            {
                if ((f.Flags & PageFlags.Lru) != 0)
                {
                    movable++;
                }
                p++;
                continue;
            }
            int order = f.Order;
            MoveToFreeList(p, order, mt);
            p += 1u << order;
            moved += 1L << order;
        }
        return moved;
    }

    /// <summary>boost_watermark: a fragmenting steal raises the watermarks so kswapd reclaims ahead.</summary>
    private bool BoostWatermark()
    {
        int factor = Node.Allocator.Options.WatermarkBoostFactor;
        if (factor == 0 || PageblockNrPages * 4 > ManagedPages)
        {
            return false;
        }
        long maxBoost = Watermark[WmarkHigh] * factor / 10000;
        if (maxBoost == 0)
        {
            return false;
        }
        maxBoost = Math.Max(PageblockNrPages, maxBoost);
        WatermarkBoost = Math.Min(WatermarkBoost + PageblockNrPages, maxBoost);
        return true;
    }

    /// <summary>reserve_highatomic_pageblock: after a high-order atomic allocation, keep its pageblock
    /// for such allocations (up to 1% of the zone plus one pageblock).</summary>
    public void ReserveHighatomicPageblock(uint pfn)
    {
        long maxManaged = ManagedPages / 100 + PageblockNrPages;
        if (NrReservedHighatomic >= maxManaged)
        {
            return;
        }
        lock (Lock)
        {
            if (NrReservedHighatomic >= maxManaged)
            {
                return;
            }
            int mt = (int)_mem.PageblockMigratetype(pfn);
            if (!IsMergeable(mt))
            {
                return;
            }
            NrReservedHighatomic += PageblockNrPages;
            _mem.SetPageblockMigratetype(pfn, MigrateType.HighAtomic);
            MoveFreepagesBlock(pfn, (int)MigrateType.HighAtomic, out _);
        }
    }

    /// <summary>unreserve_highatomic_pageblock for this zone: give one HighAtomic pageblock back to the
    /// requesting type. <paramref name="force"/> releases even the last pageblock.</summary>
    public bool UnreserveHighatomicPageblock(int requestMt, bool force)
    {
        lock (Lock)
        {
            if (!force && NrReservedHighatomic <= PageblockNrPages)
            {
                return false;
            }
            for (int order = 0; order < Arch.MaxOrder; order++)
            {
                uint pfn = _freeList[order * MigrateTypes + (int)MigrateType.HighAtomic].Head;
                if (pfn == PhysMem.NoPfn)
                {
                    continue;
                }
                if (_mem.PageblockMigratetype(pfn) == MigrateType.HighAtomic)
                {
                    NrReservedHighatomic -= Math.Min(PageblockNrPages, NrReservedHighatomic);
                }
                _mem.SetPageblockMigratetype(pfn, (MigrateType)requestMt);
                return MoveFreepagesBlock(pfn, requestMt, out _) > 0;
            }
        }
        return false;
    }

    /// <summary>
    /// Checks the zone's free lists against their invariants (a heavy walk, for tests):
    /// counts add up to FreePages, every block is a PageBuddy head aligned to its order inside
    /// the zone, and no two free buddies of one order below MAX_ORDER-1 are left unmerged
    /// (unless a pageblock type boundary forbids it).
    /// </summary>
    public void Validate()
    {
        lock (Lock)
        {
            long pages = 0;
            for (int order = 0; order < Arch.MaxOrder; order++)
            {
                for (int mt = 0; mt < MigrateTypes; mt++)
                {
                    int i = order * MigrateTypes + mt;
                    long n = 0;
                    uint head = _freeList[i].Head;
                    uint p = head, prev = PhysMem.NoPfn;
                    while (p != PhysMem.NoPfn)
                    {
                        ref PageFrame f = ref _mem.Frame(p);
                        Check((f.Flags & PageFlags.Buddy) != 0, p, "on a free list without PageBuddy");
                        Check(f.Order == order, p, $"on the order-{order} list with order {f.Order}");
                        Check(f.MigrateType == mt, p, $"on the {(MigrateType)mt} list marked {(MigrateType)f.MigrateType}");
                        Check((p & ((1u << order) - 1)) == 0, p, $"not aligned to order {order}");
                        Check(Spans(p) && Spans(p + (1u << order) - 1), p, "outside its zone");
                        Check(f.RefCount == 0, p, $"free with refcount {f.RefCount}");
                        if (order < Arch.MaxOrder - 1 && order < PageblockOrder)
                        {
                            Check(FindBuddy(p, order) == PhysMem.NoPfn, p, $"free buddy of order {order} left unmerged");
                        }
                        Check(f.Prev == prev, p, "list links broken (prev)");
                        n++;
                        Check(n <= _freeCount[i], p, "list longer than its count");
                        prev = p;
                        p = f.Next;
                    }
                    Check(_freeList[i].Tail == prev, head, "list tail does not match the last entry");
                    Check(n == _freeCount[i], head, $"order-{order} {(MigrateType)mt} list has {n} blocks, count says {_freeCount[i]}");
                    pages += n << order;
                }
            }
            if (pages != FreePages)
            {
                throw new InvalidOperationException($"zone {Name}: free lists hold {pages} pages, NR_FREE_PAGES is {FreePages}");
            }
            ValidateVmstat();
        }
    }

    private void Check(bool ok, uint pfn, string what)
    {
        if (!ok)
        {
            throw new InvalidOperationException($"zone {Name}: pfn 0x{pfn:x} {what}");
        }
    }
}
