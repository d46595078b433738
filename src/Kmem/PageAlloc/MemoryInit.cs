// Boot-time memory setup of the page allocator (mm/mm_init.c free_area_init,
// find_zone_movable_pfns_for_nodes, memblock_free_all, build_zonelists, and the
// GFP_ZONE_TABLE of include/linux/gfp.h): nodes and zones from the preset's memory
// map, the boot reservations, the first frees into the buddy lists, the zonelists.
// Boot layout, as on a qemu "pc" machine: pfn 0 and 159..255 are holes, pfns
// 1..158 and the 16 MiB kernel image at 16 MiB are reserved, and each node's
// memmap (Linux's struct page size per frame: 64 bytes on x86-64, 32 on x86-32)
// is reserved at the top of the node (of lowmem on x86-32). ZONE_MOVABLE is
// carved from the top of each node per kernelcore= or movablecore=. A zone given a
// managed count (MachineOptions.ManagedPages, a recorded kernel's zoneinfo) reserves
// present − managed frames instead: more below the zone's existing reservations, top-down
// as memblock allocates, or less by trimming the kernel image, then the memmap. A zone's
// init memory (MachineOptions.InitMemoryPages) stays reserved until the watermarks are
// derived, then goes to the buddy lists (ReleaseInitMemory), as free_initmem does.
// Run once, by the PageAllocator constructor, before any other thread can see
// the allocator; it takes each zone's lock only to free the boot ranges.
using System.Numerics;
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed class MemoryInit(PageAllocator allocator) : PageAllocatorPart(allocator)
{
    public sbyte[] BuildGfpZoneTable()
    {
        var table = new sbyte[16];
        for (int bits = 0; bits < 16; bits++)
        {
            try
            {
                table[bits] = (sbyte)GfpFlags.GfpZone((Gfp)bits, Arch.HasZone(ZoneType.Dma),
                    Arch.HasZone(ZoneType.Dma32), Arch.HasZone(ZoneType.HighMem));
            }
            catch (ArgumentException)
            {
                table[bits] = -1;
            }
        }
        return table;
    }

    public Node[] BuildNodes(int nodeCount, CpuTopology cpus)
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
            nodes[n] = new Node(_allocator, n, start, end) { Cpus = [.. Enumerable.Range(0, cpus.Count).Where(c => cpus.NodeOf[c] == n)] };
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
                var zone = new Zone(_mem, node, type, index++, s, e, cpus);
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
        ZoneType usable = UsableZoneForMovable(Arch, _mem);
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
    public static ZoneType UsableZoneForMovable(Arch arch, PhysMem mem) =>
        arch.Zones.Where(t => t is not (ZoneType.Movable or ZoneType.Device)).Last(t => arch.ZoneSpan(t, mem.MaxPfn).End > 0);

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
    /// the buddy lists in the largest aligned blocks (memblock_free_all); returns the frames reserved and
    /// the reserved ranges (holes excluded, merged, by start) that later boot users take memory from.</summary>
    public long ReserveAndFreeBootMemory(out List<(uint Start, uint End)> reservedRanges)
    {
        long reservedPages = 0;
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
        foreach (var (name, pages) in Options.InitMemoryPages ?? new Dictionary<string, long>())
        {
            if (!Zones.Any(z => z.Name == name))
            {
                throw new MachineOptionException("InitMemoryPages", $"InitMemoryPages: {name} is not a zone of this machine ({string.Join(", ", Zones.Select(z => z.Name))})");
            }
            if (pages < 0 || (Options.ManagedPages?.TryGetValue(name, out long m) == true && pages > m))
            {
                throw new MachineOptionException("InitMemoryPages", $"InitMemoryPages: {pages} pages for zone {name}, which is not 0 up to its managed pages");
            }
        }
        if (Options.ManagedPages is { } managed)
        {
            foreach (string name in managed.Keys.Where(n => !Zones.Any(z => z.Name == n)))
            {
                throw new MachineOptionException("ManagedPages", $"ManagedPages: {name} is not a zone of this machine ({string.Join(", ", Zones.Select(z => z.Name))})");
            }
            foreach (var zone in Zones)
            {
                if (zone.SpannedPages != 0 && managed.TryGetValue(zone.Name, out long pages))
                {
                    ShapeZone(zone, pages - InitMemoryOf(zone), reserved); // the init memory is released after the watermarks
                }
            }
        }
        reserved.Sort((a, b) => a.Start.CompareTo(b.Start));
        reservedRanges = [];
        foreach (var (s, e, hole) in reserved)
        {
            if (hole || e <= s)
            {
                continue;
            }
            if (reservedRanges.Count > 0 && s <= reservedRanges[^1].End)
            {
                reservedRanges[^1] = (reservedRanges[^1].Start, Math.Max(e, reservedRanges[^1].End));
                continue;
            }
            reservedRanges.Add((s, e));
        }
        foreach (var (s, e, hole) in reserved)
        {
            for (uint p = s; p < e; p++)
            {
                ref PageFrame f = ref _mem.Frame(p);
                f.Flags = PageFlags.Reserved | (hole ? PageFlags.NoMap : 0);
                f.RefCount = hole ? 0 : 1;
                if (!hole)
                {
                    reservedPages++;
                }
            }
        }
        foreach (var zone in Zones)
        {
            if (zone.SpannedPages == 0)
            {
                continue;
            }
            // memmap_init: a pageblock starts Movable when the memmap walk over the zone's memory ranges visits its
            // first, aligned frame (reserved memory included); one whose first frame is a hole or below the zone
            // keeps MIGRATE_UNMOVABLE, as x86's first block of ZONE_DMA does (pfn 0 is not memory).
            for (uint b = zone.StartPfn >> _mem.PageblockOrder; b <= (zone.EndPfn - 1) >> _mem.PageblockOrder; b++)
            {
                uint first = b << _mem.PageblockOrder;
                if (first >= zone.StartPfn && !reserved.Any(r => r.Hole && r.Start <= first && first < r.End))
                {
                    _mem.SetPageblockMigratetype(first, MigrateType.Movable);
                }
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
        return reservedPages;
    }

    /// <summary>Makes the reservations inside <paramref name="zone"/> total present − <paramref name="managed"/>.</summary>
    /// <exception cref="MachineOptionException">The zone has fewer present pages than <paramref name="managed"/>.</exception>
    private static void ShapeZone(Zone zone, long managed, List<(uint Start, uint End, bool Hole)> reserved)
    {
        long holes = 0, resv = 0;
        foreach (var (s, e, hole) in reserved)
        {
            long n = Math.Max(0, (long)Math.Min(e, zone.EndPfn) - Math.Max(s, zone.StartPfn));
            if (hole)
            {
                holes += n;
            }
            else
            {
                resv += n;
            }
        }
        long present = zone.SpannedPages - holes;
        if (managed < 0 || managed > present)
        {
            throw new MachineOptionException("ManagedPages", $"ManagedPages: {managed} pages for zone {zone.Name}, which has {present} present pages");
        }
        long delta = present - managed - resv;
        if (delta > 0)
        {
            // Top-down below what is already reserved, as memblock_alloc places early allocations.
            uint top = zone.EndPfn;
            while (delta > 0 && top > zone.StartPfn)
            {
                var below = reserved.Where(r => r.Start < top && r.End > zone.StartPfn).Select(r => (r.Start, r.End)).ToList();
                var covering = below.Where(r => r.End >= top).ToList();
                if (covering.Count > 0)
                {
                    top = covering.Min(r => r.Start);
                    continue;
                }
                uint floor = below.Count == 0 ? zone.StartPfn : Math.Max(zone.StartPfn, below.Max(r => r.End));
                uint take = (uint)Math.Min(delta, top - floor);
                reserved.Add((top - take, top, false));
                delta -= take;
                top -= take;
            }
            return;
        }
        // Fewer reservations: trim the zone's non-hole ranges from their ends, the kernel image before the memmap.
        for (int i = 0; i < reserved.Count && delta < 0; i++)
        {
            var (s, e, hole) = reserved[i];
            if (hole || s < zone.StartPfn || e > zone.EndPfn || s < Arch.FirstMibPfns)
            {
                continue;
            }
            uint cut = (uint)Math.Min(-delta, e - s);
            reserved[i] = (s, e - cut, false);
            delta += cut;
        }
    }

    private void FreeBootRange(Zone zone, uint start, uint end)
    {
        if (end <= start)
        {
            return;
        }
        _mem.MarkUntouched(start, end);
        lock (zone.Lock)
        {
            while (start < end)
            {
                int order = Math.Min(Arch.MaxOrder - 1, BitOperations.TrailingZeroCount(start | (1u << 31)));
                while (start + (1u << order) > end)
                {
                    order--;
                }
                // __free_pages_core: onto the lists of the block's type (get_pfnblock_migratetype), as any free.
                zone.FreeOnePage(start, order, (int)_mem.PageblockMigratetype(start), toTail: true);
                zone.Counters.Stats.PgFree += 1L << order; // __free_pages_core counts PGFREE at boot too
                start += 1u << order;
            }
        }
    }

    private long InitMemoryOf(Zone zone) => Options.InitMemoryPages?.GetValueOrDefault(zone.Name) ?? 0;

    /// <summary>free_initmem and free_initrd_mem after the initcall that derived the watermarks, lowmem reserves and pcp
    /// sizes (run after WatermarkSetup.Init): each zone's init memory (MachineOptions.InitMemoryPages), its lowest
    /// frames still reserved (the kernel image's), goes to the buddy lists and counts as managed; nothing derived is
    /// derived again. Straight to the buddy lists, as the boot's own frees: no per-CPU list sees them.</summary>
    /// <exception cref="MachineOptionException">A zone has fewer reserved frames than its init memory.</exception>
    public void ReleaseInitMemory()
    {
        foreach (var zone in Zones)
        {
            long left = InitMemoryOf(zone);
            for (uint pfn = zone.StartPfn; left > 0 && pfn < zone.EndPfn; pfn++)
            {
                ref PageFrame f = ref _mem.Frame(pfn);
                if ((f.Flags & (PageFlags.Reserved | PageFlags.NoMap)) != PageFlags.Reserved || f.RefCount != 1 || _allocator.BootReserved.IsClaimed(pfn))
                {
                    continue;
                }
                f.Flags &= ~PageFlags.Reserved;
                f.RefCount = 0;
                f.Order = 0;
                _allocator.BootReserved.Release(pfn);
                FreeBootRange(zone, pfn, pfn + 1);
                zone.ManagedPages++;
                left--;
            }
            if (left > 0)
            {
                throw new MachineOptionException("InitMemoryPages", $"InitMemoryPages: zone {zone.Name} has {InitMemoryOf(zone) - left} reserved pages to release, not {InitMemoryOf(zone)}");
            }
        }
    }

    /// <summary>build_zonelists: this node first, then the others by distance (all equal here, so in
    /// order after this one); within a node the highest zone first; populated zones only.</summary>
    public void BuildZonelists()
    {
        foreach (var node in Nodes)
        {
            var order = Enumerable.Range(0, Nodes.Length).Select(i => Nodes[(node.Id + i) % Nodes.Length]);
            node.ZonelistFallback = [.. order.SelectMany(n => n.Zones.Reverse().Where(z => z.IsManaged))];
            node.ZonelistNoFallback = [.. node.Zones.Reverse().Where(z => z.IsManaged)];
        }
    }
}
