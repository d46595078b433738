// Each managed zone's free pages and watermarks for the live view's pressure panel, read
// cheaply enough to sample every few events (mm/page_alloc.c's zone counters; the watermarks
// without the boost of the moment, as the pressure report sums them). Read-only. Read on the
// replaying thread between two events, or a scenario's steps; each free count a single read.
using Kmem.PageAlloc;

namespace Kmem;

/// <summary>Each managed zone's free pages and watermarks, in zone order.</summary>
internal static class LiveZones
{
    /// <summary>The managed zones' names, in zone order.</summary>
    public static string[] Names(Machine m) => [.. m.PageAllocator.Zones.Where(z => z.IsManaged).Select(z => z.Name)];

    /// <summary>The managed zones' free pages into <paramref name="free"/> (one per name of <see cref="Names"/>).</summary>
    public static void ReadFree(Machine m, Span<long> free)
    {
        int i = 0;
        foreach (var z in m.PageAllocator.Zones)
        {
            if (z.IsManaged && i < free.Length)
            {
                free[i++] = Volatile.Read(ref z.FreePages);
            }
        }
    }

    /// <summary>The managed zones' min, low and high watermarks, in zone order.</summary>
    public static (long Min, long Low, long High)[] Watermarks(Machine m) =>
        [.. m.PageAllocator.Zones.Where(z => z.IsManaged).Select(z => (z.Watermark[Zone.WmarkMin], z.Watermark[Zone.WmarkLow], z.Watermark[Zone.WmarkHigh]))];
}
