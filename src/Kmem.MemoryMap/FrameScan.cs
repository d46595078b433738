// Classifying page frames for the memory map: one linear pass over the memmap
// (the way /proc/kpageflags or page_owner walk it), reading each frame's flags,
// buddy order and compound head, plus the two things the kernel keeps no mark of
// on the frame: which frames sit on the per-CPU lists (walked under each pcp
// lock) and which ones vmalloc areas own (asked of the vmalloc layer).
// Locking: none held over the pass. Frames are read as they are, like the
// kernel's own page walkers; a picture of a busy machine is a snapshot that may
// catch a block in the middle of a change. A quiet machine is shown exactly.
// Keys: a frame's class is a byte, its index in MemoryMap.Legend (free orders
// 0..MAX_ORDER-1 first, then one key per other FrameState).
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem;

/// <summary>The classes of every frame of one machine, taken in one pass.</summary>
internal sealed class FrameScan
{
    /// <summary>Legend index of the first non-free state; free order k has index k.</summary>
    public const int FirstStateKey = Arch.MaxOrder;

    /// <summary>The states after the free orders, in legend order.</summary>
    public static readonly FrameState[] OtherStates =
    [
        FrameState.PerCpuList, FrameState.Slab, FrameState.LargeKmalloc, FrameState.Vmalloc, FrameState.PageTable,
        FrameState.TaskAnon, FrameState.PageCache, FrameState.Kernel, FrameState.Reserved, FrameState.Hole,
    ];

    /// <summary>Number of keys (legend entries).</summary>
    public static int KeyCount => FirstStateKey + OtherStates.Length;

    /// <summary>The key of a state; <paramref name="order"/> matters for <see cref="FrameState.Free"/> only.</summary>
    public static byte KeyOf(FrameState state, int order) =>
        state == FrameState.Free ? (byte)Math.Clamp(order, 0, Arch.MaxOrder - 1)
        : (byte)(FirstStateKey + Array.IndexOf(OtherStates, state));

    /// <summary>The state a key stands for.</summary>
    public static FrameState StateOf(byte key) => key < FirstStateKey ? FrameState.Free : OtherStates[key - FirstStateKey];

    /// <summary>Classifies every frame of <paramref name="m"/>: the key of frame pfn at index pfn.</summary>
    public static byte[] ClassifyAll(Machine m)
    {
        PhysMem mem = m.Mem;
        uint n = mem.MaxPfn;
        var pcp = PcpBlocks(m.PageAllocator, null);
        var vmalloc = new ulong[(n + 63) / 64];
        m.MarkVmallocPages(vmalloc);
        var keys = new byte[n];
        byte pcpKey = KeyOf(FrameState.PerCpuList, 0), kernelKey = KeyOf(FrameState.Kernel, 0);
        uint p = 0;
        while (p < n)
        {
            ref PageFrame f = ref mem.Frame(p);
            PageFlags flags = f.Flags;
            uint run = 1;
            byte key;
            if ((flags & PageFlags.NoMap) != 0)
            {
                key = KeyOf(FrameState.Hole, 0);
            }
            else if ((flags & PageFlags.Reserved) != 0)
            {
                key = KeyOf(FrameState.Reserved, 0);
            }
            else if ((flags & PageFlags.Buddy) != 0)
            {
                int order = Math.Min((int)f.Order, Arch.MaxOrder - 1);
                key = (byte)order;
                run = 1u << order;
            }
            else if (pcp.TryGetValue(p, out int pcpOrder))
            {
                key = pcpKey;
                run = 1u << pcpOrder;
            }
            else if ((flags & PageFlags.Pcp) != 0)
            {
                key = pcpKey; // moved onto a list after the lists were walked
            }
            else if ((flags & PageFlags.Tail) != 0)
            {
                uint head = (uint)f.Private;
                key = head < n ? KeyOf(AllocatedState(mem.Frame(head).Flags, IsSet(vmalloc, head)), 0) : kernelKey;
            }
            else if ((flags & PageFlags.Head) != 0)
            {
                key = KeyOf(AllocatedState(flags, IsSet(vmalloc, p)), 0);
                run = 1u << Math.Min((int)f.Order, Arch.MaxOrder - 1);
            }
            else if (Volatile.Read(ref f.RefCount) > 0)
            {
                key = KeyOf(AllocatedState(flags, IsSet(vmalloc, p)), 0);
                // A non-compound block keeps its order on the first frame only; its other frames carry nothing.
                int order = Math.Min((int)f.Order, Arch.MaxOrder - 1);
                if (order > 0 && (p & ((1u << order) - 1)) == 0)
                {
                    uint end = Math.Min(n, p + (1u << order));
                    run = 1;
                    while (p + run < end && IsBare(ref mem.Frame(p + run)))
                    {
                        run++;
                    }
                }
            }
            else
            {
                key = kernelKey; // a bare frame outside any block seen: part of an allocation being set up
            }
            run = Math.Min(run, n - p);
            keys.AsSpan((int)p, (int)run).Fill(key);
            p += run;
        }
        return keys;
    }

    /// <summary>Classifies one frame without a full pass: its free block is found by the aligned-head walk of
    /// is_free_buddy_page, its per-CPU block by walking its zone's lists, its allocation by its compound head
    /// or the aligned first frame of a non-compound block.</summary>
    public static FrameState ClassifyOne(Machine m, uint pfn, out int order)
    {
        PhysMem mem = m.Mem;
        order = 0;
        ref PageFrame f = ref mem.Frame(pfn);
        PageFlags flags = f.Flags;
        if ((flags & PageFlags.NoMap) != 0)
        {
            return FrameState.Hole;
        }
        if ((flags & PageFlags.Reserved) != 0)
        {
            return FrameState.Reserved;
        }
        for (int o = 0; o < Arch.MaxOrder; o++)
        {
            uint start = pfn & ~((1u << o) - 1);
            ref PageFrame b = ref mem.Frame(start);
            if ((b.Flags & PageFlags.Buddy) != 0 && b.Order >= o)
            {
                order = b.Order;
                return FrameState.Free;
            }
        }
        var zone = m.PageAllocator.ZoneOf(pfn);
        var pcp = PcpBlocks(m.PageAllocator, zone);
        for (int o = 0; o < Arch.MaxOrder; o++)
        {
            if (pcp.TryGetValue(pfn & ~((1u << o) - 1), out int pcpOrder) && pcpOrder >= o)
            {
                order = pcpOrder;
                return FrameState.PerCpuList;
            }
        }
        if ((flags & PageFlags.Pcp) != 0)
        {
            return FrameState.PerCpuList;
        }
        if ((flags & PageFlags.Tail) != 0)
        {
            uint head = (uint)f.Private;
            if (head >= mem.MaxPfn)
            {
                return FrameState.Kernel;
            }
            ref PageFrame h = ref mem.Frame(head);
            order = h.Order;
            return AllocatedState(h.Flags, m.IsVmallocPage(head));
        }
        if ((flags & PageFlags.Head) != 0 || Volatile.Read(ref f.RefCount) > 0)
        {
            order = f.Order;
            return AllocatedState(flags, m.IsVmallocPage(pfn));
        }
        // A bare frame inside a non-compound block: the block's first frame holds the reference and the order.
        for (int o = 1; o < Arch.MaxOrder; o++)
        {
            uint start = pfn & ~((1u << o) - 1);
            ref PageFrame b = ref mem.Frame(start);
            if (Volatile.Read(ref b.RefCount) > 0 && (b.Flags & (PageFlags.Head | PageFlags.Tail | PageFlags.Buddy | PageFlags.Pcp)) == 0
                && b.Order >= o)
            {
                order = b.Order;
                return AllocatedState(b.Flags, m.IsVmallocPage(start));
            }
        }
        return FrameState.Kernel;
    }

    /// <summary>What an allocated block is, from its first frame's flags and page types.</summary>
    private static FrameState AllocatedState(PageFlags flags, bool vmalloc) =>
        (flags & PageFlags.Slab) != 0 ? FrameState.Slab
        : (flags & PageFlags.LargeKmalloc) != 0 ? FrameState.LargeKmalloc
        : (flags & PageFlags.Table) != 0 ? FrameState.PageTable
        : vmalloc ? FrameState.Vmalloc
        : (flags & PageFlags.SwapBacked) != 0 ? FrameState.TaskAnon
        : (flags & PageFlags.Lru) != 0 ? FrameState.PageCache
        : FrameState.Kernel;

    /// <summary>A frame with no flags and no reference: the inside of a non-compound block.</summary>
    private static bool IsBare(ref PageFrame f) => f.Flags == PageFlags.None && Volatile.Read(ref f.RefCount) == 0;

    private static bool IsSet(ulong[] bits, uint pfn) => (bits[pfn >> 6] & (1UL << (int)(pfn & 63))) != 0;

    /// <summary>The blocks on the per-CPU lists (first pfn → order) of one zone, or of every zone when
    /// <paramref name="only"/> is null; each CPU's lists are walked under its pcp lock.</summary>
    private static Dictionary<uint, int> PcpBlocks(PageAllocator pa, Zone? only)
    {
        var blocks = new Dictionary<uint, int>();
        int pageblockOrder = pa.Mem.PageblockOrder;
        foreach (var zone in pa.Zones)
        {
            if (only is not null && zone != only)
            {
                continue;
            }
            foreach (var pcp in zone.Pcp)
            {
                if (Volatile.Read(ref pcp.Count) == 0)
                {
                    continue;
                }
                pcp.LockSpin();
                try
                {
                    for (int pindex = 0; pindex < PerCpuPages.NrPcpLists; pindex++)
                    {
                        int order = PerCpuPages.PindexToOrder(pindex, pageblockOrder);
                        // Count bounds the walk: a list is never longer than the pages the CPU holds.
                        int budget = pcp.Count;
                        for (uint pfn = pcp.Lists[pindex].Head; pfn != PhysMem.NoPfn && budget-- > 0; pfn = pa.Mem.Frame(pfn).Next)
                        {
                            blocks[pfn] = order;
                        }
                    }
                }
                finally
                {
                    pcp.Unlock();
                }
            }
        }
        return blocks;
    }

    /// <summary>The key that most frames of <paramref name="keys"/>[start, end) have; a tie goes to the key
    /// listed first in the legend. <paramref name="counts"/> is scratch of <see cref="KeyCount"/> entries.</summary>
    public static byte Dominant(ReadOnlySpan<byte> keys, Span<int> counts)
    {
        if (keys.Length == 1)
        {
            return keys[0];
        }
        counts.Clear();
        foreach (byte k in keys)
        {
            counts[k]++;
        }
        int best = 0;
        for (int k = 1; k < counts.Length; k++)
        {
            if (counts[k] > counts[best])
            {
                best = k;
            }
        }
        return (byte)best;
    }

    /// <summary>log2 of the smallest power of two frames per group that keeps <paramref name="frames"/> within
    /// <paramref name="maxGroups"/> groups.</summary>
    public static int GroupShift(ulong frames, long maxGroups)
    {
        int shift = 0;
        while (((frames + (1UL << shift) - 1) >> shift) > (ulong)maxGroups)
        {
            shift++;
        }
        return shift;
    }
}
