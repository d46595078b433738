// The watermark checks of the allocation paths (__zone_watermark_ok,
// zone_watermark_fast; kswapd's zone_watermark_ok_safe is Zone.Vmstat.cs's), and the
// watermark indices. They read the zone's NR_FREE_PAGES counter (Zone.Vmstat.cs) without
// locks, as the kernel does; the watermarks themselves are set by WatermarkSetup.
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed partial class Zone
{
    public const int WmarkMin = 0, WmarkLow = 1, WmarkHigh = 2, WmarkPromo = 3;
}

internal sealed partial class PageAllocator
{
    /// <summary>__zone_watermark_unusable_free.</summary>
    private static long UnusableFree(Zone z, int order, AllocFlags flags)
    {
        long unusable = (1L << order) - 1;
        if ((flags & (AllocFlags.Harder | AllocFlags.Oom)) == 0)
        {
            unusable += z.NrReservedHighatomic;
        }
        return unusable;
    }

    /// <summary>
    /// __zone_watermark_ok: free pages above the mark (lowered by ALLOC_HIGH, ALLOC_HARDER, ALLOC_OOM) plus
    /// the lowmem reserve; for order &gt; 0 also a free block of at least that order that may be used.
    /// </summary>
    public static bool ZoneWatermarkOk(Zone z, int order, long mark, ZoneType highest, AllocFlags flags, long freePages)
    {
        long min = mark;
        bool harder = (flags & (AllocFlags.Harder | AllocFlags.Oom)) != 0;
        freePages -= UnusableFree(z, order, flags);
        if ((flags & AllocFlags.High) != 0)
        {
            min -= min / 2;
        }
        if (harder)
        {
            min -= (flags & AllocFlags.Oom) != 0 ? min / 2 : min / 4;
        }
        if (freePages <= min + z.LowmemReserve[(int)highest])
        {
            return false;
        }
        if (order == 0)
        {
            return true;
        }
        for (int o = order; o < Arch.MaxOrder; o++)
        {
            for (int mt = 0; mt < Zone.PcpTypes; mt++)
            {
                if (!z.FreeAreaEmpty(o, mt))
                {
                    return true;
                }
            }
            if (harder && !z.FreeAreaEmpty(o, (int)MigrateType.HighAtomic))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>zone_watermark_fast: the cheap order-0 test first, then the full one; GFP_ATOMIC order-0
    /// requests at the min watermark ignore the boost.</summary>
    private static bool ZoneWatermarkFast(Zone z, int order, long mark, ZoneType highest, AllocFlags flags, Gfp gfp)
    {
        long free = Volatile.Read(ref z.VmstatFreePages); // zone_page_state: the counter, not the exact count
        if (order == 0)
        {
            long usable = free - Math.Min(free, UnusableFree(z, 0, flags));
            if (usable > mark + z.LowmemReserve[(int)highest])
            {
                return true;
            }
        }
        if (ZoneWatermarkOk(z, order, mark, highest, flags, free))
        {
            return true;
        }
        if (order == 0 && (gfp & Gfp.AtomicBit) != 0 && z.WatermarkBoost != 0 && (flags & AllocFlags.WmarkMask) == AllocFlags.WmarkMin)
        {
            return ZoneWatermarkOk(z, order, z.Watermark[Zone.WmarkMin], highest, flags, free);
        }
        return false;
    }
}
