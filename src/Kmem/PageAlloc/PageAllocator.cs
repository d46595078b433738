// The page allocator of one machine: nodes, zones and zonelists, built at boot
// from the preset's memory map (mm/page_alloc.c free_area_init and
// memblock_free_all). The allocation paths are in AllocPath.cs, the free paths
// in FreePath.cs, watermarks and pcp sizing in Watermarks.cs.
// Boot layout, as on a qemu "pc" machine: pfn 0 and 159..255 are holes, pfns
// 1..158 and the 16 MiB kernel image at 16 MiB are reserved, and each node's
// memmap (Linux's struct page size per frame: 64 bytes on x86-64, 32 on x86-32)
// is reserved at the top of the node (of lowmem on x86-32). ZONE_MOVABLE is
// carved from the top of each node per kernelcore= or movablecore=. Immutable
// after boot except through the zones' own locks.
// The reclaimer: the page allocator and the reclaim layer need each other (the
// slow path reclaims; reclaim frees and isolates pages), as mm/page_alloc.c and
// mm/vmscan.c do. The allocator is built first and takes a factory that it calls
// once, at the end of its constructor, with itself: the reclaim layer is built
// over a finished allocator and the allocator keeps it in a readonly field, so
// neither is ever seen half-wired and nothing can swap the reclaimer later.
using System.Numerics;
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed partial class PageAllocator
{
    private readonly PhysMem _mem;
    private readonly CpuTopology _cpus;
    private readonly KernelLog _log;
    private readonly Action<KernelBugException> _bug;
    private readonly sbyte[] _gfpZoneTable = new sbyte[16];

    public PageAllocator(MachineOptions options, Arch arch, PhysMem mem, CpuTopology cpus, KernelLog log,
        FaultAttr failPageAlloc, Action<KernelBugException> bug, Func<PageAllocator, IReclaimer>? reclaimer = null)
    {
        Options = options;
        Observer = options.PageAllocObserver;
        Arch = arch;
        _mem = mem;
        _cpus = cpus;
        _log = log;
        FailPageAlloc = failPageAlloc;
        _bug = bug;
        BuildGfpZoneTable();
        Nodes = BuildNodes(options.Nodes, cpus);
        Zones = [.. Nodes.SelectMany(n => n.Zones)];
        foreach (var zone in Zones)
        {
            zone.IsHighMem = zone.Type == ZoneType.HighMem || (zone.Type == ZoneType.Movable && MovableFromHighmem);
        }
        ReserveAndFreeBootMemory();
        BuildZonelists();
        MinFreeKbytes = options.MinFreeKbytes ?? CalculateMinFreeKbytes();
        SetupPerZoneWmarks();
        SetupPerZoneLowmemReserve();
        if (options.MinFreeKbytes is null)
        {
            SetRecommendedMinFreeKbytes();
        }
        Reclaimer = reclaimer?.Invoke(this) ?? new NoReclaim();
    }

    public MachineOptions Options { get; }
    /// <summary>The observer of refills, drains and steals given at boot, or null.</summary>
    public IPageAllocObserver? Observer { get; }
    public Arch Arch { get; }
    public PhysMem Mem => _mem;
    public CpuTopology Cpus => _cpus;
    public KernelLog Log => _log;
    public Node[] Nodes { get; }
    /// <summary>Every zone of every node, node by node, in zone order; Zone.Index is the position here.</summary>
    public Zone[] Zones { get; }
    public FaultAttr FailPageAlloc { get; }
    /// <summary>What the slow path calls to wake kswapd and reclaim directly: the reclaim layer, made by the
    /// constructor's factory, or <see cref="NoReclaim"/> without one.</summary>
    public IReclaimer Reclaimer { get; }

    /// <summary>Frames reserved at boot (holes excluded).</summary>
    public long ReservedPages { get; private set; }

    /// <summary>totalram_pages: managed pages of every zone.</summary>
    public long TotalRamPages => Zones.Sum(z => z.ManagedPages);

    /// <summary>Managed pages of HighMem zones (totalhigh_pages).</summary>
    public long TotalHighPages => Zones.Where(z => z.IsHighMem).Sum(z => z.ManagedPages);

    /// <summary>global NR_FREE_PAGES.</summary>
    public long NrFreePages => Zones.Sum(z => Volatile.Read(ref z.FreePages));

    public Zone ZoneOf(uint pfn) => Zones[_mem.ZoneIndexOf(pfn)];

    private void BuildGfpZoneTable()
    {
        for (int bits = 0; bits < 16; bits++)
        {
            try
            {
                _gfpZoneTable[bits] = (sbyte)GfpFlags.GfpZone((Gfp)bits, Arch.HasZone(ZoneType.Dma),
                    Arch.HasZone(ZoneType.Dma32), Arch.HasZone(ZoneType.HighMem));
            }
            catch (ArgumentException)
            {
                _gfpZoneTable[bits] = -1;
            }
        }
    }

    private Node[] BuildNodes(int nodeCount, CpuTopology cpus)
    {
        uint maxPfn = _mem.MaxPfn;
        // Node boundaries fall on MAX_ORDER blocks so that no buddy block spans two nodes.
        uint align = 1u << (Arch.MaxOrder - 1);
        uint per = maxPfn / (uint)nodeCount / align * align;
        var nodes = new Node[nodeCount];
        for (int n = 0; n < nodeCount; n++)
        {
            uint start = (uint)n * per;
            uint end = n == nodeCount - 1 ? maxPfn : start + per;
            nodes[n] = new Node(this, n, start, end) { Cpus = [.. Enumerable.Range(0, cpus.Count).Where(c => cpus.NodeOf[c] == n)] };
        }
        var movableStart = MovableZoneStarts(nodes);
        int index = 0;
        foreach (var node in nodes)
        {
            var zones = new List<Zone>();
            foreach (var type in Arch.Zones)
            {
                (uint s, uint e) = type switch
                {
                    ZoneType.Movable => (movableStart[node.Id], node.EndPfn),
                    ZoneType.Device => (0u, 0u),
                    _ => Intersect(Arch.ZoneSpan(type, maxPfn), node.StartPfn, Math.Min(node.EndPfn, movableStart[node.Id])),
                };
                if (e <= s)
                {
                    (s, e) = (0, 0);
                }
                var zone = new Zone(_mem, node, type, index++, s, e, cpus.Count);
                _mem.RegisterZone(zone.Index, s, e);
                zones.Add(zone);
            }
            node.Zones = [.. zones];
        }
        return nodes;
    }

    private static (uint, uint) Intersect((uint Start, uint End) span, uint start, uint end)
    {
        uint s = Math.Max(span.Start, start), e = Math.Min(span.End, end);
        return e > s ? (s, e) : (0, 0);
    }

    /// <summary>
    /// find_zone_movable_pfns_for_nodes, simplified to even spreading: each node keeps its share of
    /// kernelcore below ZONE_MOVABLE, which starts on a MAX_ORDER boundary inside the highest zone.
    /// </summary>
    private uint[] MovableZoneStarts(Node[] nodes)
    {
        var starts = nodes.Select(n => n.EndPfn).ToArray();
        long total = _mem.MaxPfn;
        long kernelcore = -1;
        if (Options.KernelCore is { } kc)
        {
            kernelcore = ParseCorePages(kc, "kernelcore", total);
        }
        if (Options.MovableCore is { } mc)
        {
            long movable = Math.Min(total, ParseCorePages(mc, "movablecore", total));
            kernelcore = Math.Max(kernelcore, total - movable);
        }
        // No kernelcore (none given, or none left by movablecore) or all of it: no ZONE_MOVABLE.
        if (kernelcore <= 0 || kernelcore >= total)
        {
            return starts;
        }
        ZoneType usable = UsableZoneForMovable();
        uint usableStart = Arch.ZoneSpan(usable, _mem.MaxPfn).Start;
        long perNode = kernelcore / nodes.Length;
        uint align = 1u << (Arch.MaxOrder - 1);
        foreach (var node in nodes)
        {
            long start = Math.Max(node.StartPfn + perNode, usableStart);
            start = (start + align - 1) / align * align;
            starts[node.Id] = (uint)Math.Min(start, node.EndPfn);
        }
        return starts;
    }

    /// <summary>find_usable_zone_for_movable: the highest zone with memory, which ZONE_MOVABLE is taken from.</summary>
    private ZoneType UsableZoneForMovable() =>
        Arch.Zones.Where(t => t is not (ZoneType.Movable or ZoneType.Device)).Last(t => Arch.ZoneSpan(t, _mem.MaxPfn).End > 0);

    /// <summary>movable_zone == ZONE_HIGHMEM: then ZONE_MOVABLE counts as highmem (is_highmem).</summary>
    public bool MovableFromHighmem => UsableZoneForMovable() == ZoneType.HighMem;

    private static long ParseCorePages(string value, string option, long totalPages)
    {
        if (value.EndsWith('%'))
        {
            if (!int.TryParse(value.AsSpan(0, value.Length - 1), out int pct) || pct < 0 || pct > 100)
            {
                throw new ArgumentException($"{option}={value}: a percentage must be 0%..100%");
            }
            return totalPages * pct / 100;
        }
        return MachineOptions.ParseSize(value, option) >> PhysMem.PageShift;
    }

    /// <summary>Marks holes and boot reservations, counts present and managed pages, and hands the rest to
    /// the buddy lists in the largest aligned blocks (memblock_free_all).</summary>
    private void ReserveAndFreeBootMemory()
    {
        uint maxPfn = _mem.MaxPfn;
        var reserved = new List<(uint Start, uint End, bool Hole)>
        {
            (0, 1, true),
            (1, Arch.LowRamEndPfn, false),
            (Arch.LowRamEndPfn, Arch.FirstMibPfns, true),
            (Arch.KernelStartPfn, Math.Min(maxPfn, Arch.KernelStartPfn + Arch.KernelImagePfns), false),
        };
        uint lowEnd = _mem.LowmemPfns;
        foreach (var node in Nodes)
        {
            // memblock allocates the memmap top-down on its node (a part of ZONE_MOVABLE then stays reserved,
            // as in the kernel); on 32-bit it must be in lowmem. Boot validation makes sure it fits.
            uint top = Arch.HasHighMem ? Math.Min(node.EndPfn, lowEnd) : node.EndPfn;
            uint memmap = Arch.MemmapPages(node.EndPfn - node.StartPfn);
            reserved.Add((top - memmap, top, false));
        }
        reserved.Sort((a, b) => a.Start.CompareTo(b.Start));
        foreach (var (s, e, hole) in reserved)
        {
            for (uint p = s; p < e; p++)
            {
                ref PageFrame f = ref _mem.Frame(p);
                f.Flags = PageFlags.Reserved | (hole ? PageFlags.NoMap : 0);
                f.RefCount = hole ? 0 : 1;
                if (!hole)
                {
                    ReservedPages++;
                }
            }
        }
        foreach (var zone in Zones)
        {
            if (zone.SpannedPages == 0)
            {
                continue;
            }
            // memmap_init: every pageblock starts Movable, reserved ones included.
            for (uint b = zone.StartPfn >> _mem.PageblockOrder; b <= (zone.EndPfn - 1) >> _mem.PageblockOrder; b++)
            {
                _mem.SetPageblockMigratetype(b << _mem.PageblockOrder, MigrateType.Movable);
            }
            long holes = 0, resv = 0;
            uint cursor = zone.StartPfn;
            foreach (var (s, e, hole) in reserved)
            {
                uint rs = Math.Max(s, zone.StartPfn), re = Math.Min(e, zone.EndPfn);
                if (re <= rs)
                {
                    continue;
                }
                if (hole)
                {
                    holes += re - rs;
                }
                else
                {
                    resv += re - rs;
                }
                FreeBootRange(zone, cursor, rs);
                cursor = Math.Max(cursor, re);
            }
            FreeBootRange(zone, cursor, zone.EndPfn);
            zone.PresentPages = zone.SpannedPages - holes;
            zone.ManagedPages = zone.PresentPages - resv;
        }
    }

    private static void FreeBootRange(Zone zone, uint start, uint end)
    {
        if (end <= start)
        {
            return;
        }
        lock (zone.Lock)
        {
            while (start < end)
            {
                int order = Math.Min(Arch.MaxOrder - 1, BitOperations.TrailingZeroCount(start | (1u << 31)));
                while (start + (1u << order) > end)
                {
                    order--;
                }
                zone.FreeOnePage(start, order, (int)MigrateType.Movable, toTail: true);
                zone.Counters.Stats.PgFree += 1L << order; // __free_pages_core counts PGFREE at boot too
                start += 1u << order;
            }
        }
    }

    /// <summary>build_zonelists: this node first, then the others by distance (all equal here, so in
    /// order after this one); within a node the highest zone first; populated zones only.</summary>
    private void BuildZonelists()
    {
        foreach (var node in Nodes)
        {
            var order = Enumerable.Range(0, Nodes.Length).Select(i => Nodes[(node.Id + i) % Nodes.Length]);
            node.ZonelistFallback = [.. order.SelectMany(n => n.Zones.Reverse().Where(z => z.IsManaged))];
            node.ZonelistNoFallback = [.. node.Zones.Reverse().Where(z => z.IsManaged)];
        }
    }
}

/// <summary>What the page allocator asks of the reclaim layer.</summary>
internal interface IReclaimer
{
    /// <summary>wakeup_kswapd for one zone.</summary>
    void WakeupKswapd(Zone zone, int order, ZoneType highest);

    /// <summary>try_to_free_pages: direct reclaim; returns the pages reclaimed.</summary>
    long TryToFreePages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest);

    /// <summary>out_of_memory: kill a task to free memory; returns whether memory was freed.</summary>
    bool OutOfMemory(Gfp gfp, int order);

    /// <summary>try_to_compact_pages: direct compaction; returns whether a block of the order is now free.</summary>
    bool TryToCompactPages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest);
}

/// <summary>
/// The reclaimer of a machine without a reclaim layer: nothing can be reclaimed, and a woken kswapd finds
/// no work beyond dropping the watermark boost, as balance_pgdat does once the boost is met.
/// </summary>
internal sealed class NoReclaim : IReclaimer
{
    public void WakeupKswapd(Zone zone, int order, ZoneType highest)
    {
        if (zone.WatermarkBoost != 0)
        {
            lock (zone.Lock)
            {
                zone.WatermarkBoost = 0;
            }
        }
    }

    public long TryToFreePages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest) => 0;

    public bool OutOfMemory(Gfp gfp, int order) => false;

    public bool TryToCompactPages(Gfp gfp, int order, Zone[] zonelist, ZoneType highest) => false;
}
