// Helpers shared by the page-allocator tests: finding a zone, snapshotting the
// buddy lists (the numbers /proc/buddyinfo prints), and checking the global
// accounting that every test relies on (free + per-CPU + held = managed).
using Kmem.PageAlloc;

namespace Kmem.Tests.PageAlloc;

internal static class PageAllocCheck
{
    /// <summary>The zone of one type on one node (populated or not).</summary>
    public static Zone ZoneOf(Machine m, ZoneType type, int node = 0) =>
        m.PageAllocator.Zones.Single(z => z.Type == type && z.Node.Id == node);

    /// <summary>Zone.Validate on every zone.</summary>
    public static void ValidateAll(Machine m)
    {
        foreach (var z in m.PageAllocator.Zones)
        {
            z.Validate();
        }
    }

    /// <summary>NrFree(order) of every zone, zone by zone: what /proc/buddyinfo shows.</summary>
    public static long[][] Buddyinfo(Machine m) =>
        [.. m.PageAllocator.Zones.Select(z => Enumerable.Range(0, Machine.MaxOrder).Select(o => z.NrFree(o)).ToArray())];

    public static long ManagedPages(Machine m) => m.PageAllocator.Zones.Sum(z => z.ManagedPages);

    public static long BuddyPages(Machine m) => m.PageAllocator.Zones.Sum(z => Volatile.Read(ref z.FreePages));

    public static long PcpPages(Machine m) => m.PageAllocator.Zones.Sum(z => z.PcpPages());

    /// <summary>Pages on the buddy lists plus pages on the per-CPU lists.</summary>
    public static long FreeAndCached(Machine m) => BuddyPages(m) + PcpPages(m);

    /// <summary>Every managed page is free, on a per-CPU list, or held by the caller.</summary>
    public static void AssertAccounted(Machine m, long heldPages)
    {
        long buddy = BuddyPages(m), pcp = PcpPages(m), managed = ManagedPages(m);
        Assert.True(buddy + pcp + heldPages == managed,
            $"free {buddy} + pcp {pcp} + held {heldPages} = {buddy + pcp + heldPages}, managed pages {managed}");
    }

    /// <summary>The allocator's state as a string: every zone's free count, per-order and per-type lists, and
    /// every CPU's list count. Equal strings before and after an operation mean it changed nothing.</summary>
    public static string State(Machine m)
    {
        var sb = new System.Text.StringBuilder();
        foreach (var z in m.PageAllocator.Zones)
        {
            sb.Append($"{z.Node.Id}/{z.Name} free {z.FreePages}:");
            for (int o = 0; o < Machine.MaxOrder; o++)
            {
                foreach (MigrateType mt in Enum.GetValues<MigrateType>())
                {
                    sb.Append($" {z.NrFree(o, mt)}");
                }
            }
            sb.Append(" pcp");
            foreach (var p in z.Pcp)
            {
                sb.Append($" {p.Count}");
            }
            sb.Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>Frames [pfn, pfn + 2^order) as a half-open range.</summary>
    public static (ulong Start, ulong End) Range(Page page, int order) => (page.Pfn, page.Pfn + (1UL << order));
}
