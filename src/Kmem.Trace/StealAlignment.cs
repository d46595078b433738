// Aligned fallback decisions (TraceReplayOptions.Aligned): after Kmem's decision for an
// allocation the kernel stole for (mm_page_alloc_extfrag), Kmem's buddy lists of that zone
// and type are put where the kernel's steal left them (Zone.AlignSteal: the type's free
// blocks from the request's order up move to the fallback type, the kernel's block is
// stolen with its ownership, the blocks the kernel's allocation took after the steal are
// held as stand-ins until the next alignment of that zone and type), unless Kmem stole for
// the same zone and type itself: its lists were empty too, and its steal is its own. A steal
// only Kmem made is not corrected: the kernel's zone_locked at that allocation says only
// that its lists held a block, not how many pages. Owned by TraceReplayer; used on its
// replaying thread only.
namespace Kmem;

/// <summary>The aligned replay's corrections of Kmem's buddy lists after the kernel's fallback steals.</summary>
internal sealed class StealAlignment(Kmem.PageAlloc.PageAllocator pa)
{
    // Per zone and type: the blocks the last alignment took off the type's lists for the kernel's allocation.
    private readonly List<(uint Pfn, int Order)>?[] _standIns = new List<(uint, int)>?[pa.Zones.Length * Kmem.PageAlloc.Zone.PcpTypes];

    /// <summary>After Kmem's decision for an allocation: each kernel steal of it Kmem did not make (kmemStole:
    /// DecisionRecorder.StealTypes of Kmem's allocation, bit zone * 8 + type) applied to Kmem's lists.</summary>
    public void Align(KernelSteal[]? steals, ulong kmemStole)
    {
        foreach (var s in steals ?? [])
        {
            if ((int)s.Mt >= Kmem.PageAlloc.Zone.PcpTypes || (int)s.FallbackMt >= Kmem.PageAlloc.Zone.PcpTypes)
            {
                continue;
            }
            var zone = TraceZones.ZoneOf(pa, s.Pfn);
            if ((kmemStole & (1UL << (zone.Index * 8 + (int)s.Mt))) != 0)
            {
                continue;
            }
            var standIns = _standIns[zone.Index * Kmem.PageAlloc.Zone.PcpTypes + (int)s.Mt] ??= [];
            zone.AlignSteal(s.Order, s.FallbackOrder, (int)s.Mt, (int)s.FallbackMt, s.Ownership, s.BlocksAfter, standIns);
        }
    }

    /// <summary>A fallback mismatch's detail: the allocation's order and, when Kmem stole, its steal (zone, types, block
    /// order; DecisionRecorder.LastSteal).</summary>
    public static string Detail((int Order, (int Zone, int Mt, int FallbackMt, int FallbackOrder) Steal, Kmem.PageAlloc.PageAllocator Pa) s) =>
        s.Steal == default ? $"order {s.Order}"
            : $"order {s.Order}; Kmem's steal: {s.Pa.Zones[s.Steal.Zone].Name} {(MigrateType)s.Steal.Mt} from {(MigrateType)s.Steal.FallbackMt}, block order {s.Steal.FallbackOrder}";
}
