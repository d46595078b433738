// The zones of the trace's frames: the kernel's memory map is the same as Kmem's, so a
// traced pfn lies in the Kmem zone whose span holds it. Stateless; reads the zone spans,
// which never change after boot.
using Kmem.PageAlloc;

namespace Kmem;

/// <summary>Maps the trace's page frames and gfp masks to Kmem's zones.</summary>
internal static class TraceZones
{
    // The zone the trace's frame lies in; past every span, the last populated zone below it.
    public static Zone ZoneOf(PageAllocator pa, ulong tracePfn)
    {
        var zones = pa.Zones;
        Zone last = zones[0];
        foreach (var z in zones)
        {
            if (!z.IsPopulated)
            {
                continue;
            }
            if (tracePfn >= z.StartPfn && tracePfn < z.EndPfn)
            {
                return z;
            }
            if (tracePfn >= z.EndPfn)
            {
                last = z;
            }
        }
        return last;
    }

    // The gfp zone modifiers that ask for the zone the trace's frame lies in.
    public static Gfp ZoneModifiers(PageAllocator pa, ulong tracePfn) => TypeOf(pa, tracePfn) switch
    {
        ZoneType.Dma => Gfp.Dma,
        ZoneType.Dma32 => Gfp.Dma32,
        ZoneType.HighMem or ZoneType.Movable => Gfp.HighMem | Gfp.Movable,
        _ => 0,
    };

    // The zone type the trace's frame lies in, by Kmem's zone spans (the same memory map as the kernel's).
    public static ZoneType TypeOf(PageAllocator pa, ulong tracePfn)
    {
        var zones = pa.Zones;
        foreach (var z in zones)
        {
            if (z.IsPopulated && tracePfn >= z.StartPfn && tracePfn < z.EndPfn)
            {
                return z.Type;
            }
        }
        ZoneType last = ZoneType.Normal;
        foreach (var z in zones)
        {
            if (z.IsPopulated && tracePfn >= z.EndPfn)
            {
                last = z.Type;
            }
        }
        return last;
    }

    // The highest populated zone a gfp allows (gfp_zone, then the zonelist's first populated zone).
    public static ZoneType Highest(PageAllocator pa, Gfp gfp)
    {
        ZoneType want = (gfp & Gfp.Dma) != 0 ? ZoneType.Dma
            : (gfp & Gfp.Dma32) != 0 ? ZoneType.Dma32
            : (gfp & Gfp.HighMem) != 0 ? ((gfp & Gfp.Movable) != 0 ? ZoneType.Movable : ZoneType.HighMem)
            : ZoneType.Normal;
        ZoneType best = ZoneType.Dma;
        foreach (var z in pa.Zones)
        {
            if (z.IsManaged && z.Type <= want && z.Type >= best)
            {
                best = z.Type;
            }
        }
        return best;
    }
}
