// The few printf conversions the kernel's seq_file reports use (%lu, %6lu,
// %-12s, %8s …), as StringBuilder extensions with invariant formatting, plus
// the kernel's populated_zone test that every report shares. Stateless.
using System.Globalization;
using System.Text;
using Kmem.PageAlloc;

namespace Kmem.Proc;

internal static class ProcText
{
    /// <summary>%ld / %lu.</summary>
    public static StringBuilder Num(this StringBuilder sb, long value) =>
        sb.Append(value.ToString(CultureInfo.InvariantCulture));

    /// <summary>%*ld: right-aligned in <paramref name="width"/> columns, wider if it must be.</summary>
    public static StringBuilder Num(this StringBuilder sb, long value, int width) =>
        sb.Right(value.ToString(CultureInfo.InvariantCulture), width);

    /// <summary>%0*ld: right-aligned in <paramref name="width"/> columns, padded with zeros.</summary>
    public static StringBuilder NumZero(this StringBuilder sb, long value, int width)
    {
        string text = value.ToString(CultureInfo.InvariantCulture);
        return sb.Append('0', Math.Max(0, width - text.Length)).Append(text);
    }

    /// <summary>%*s: right-aligned.</summary>
    public static StringBuilder Right(this StringBuilder sb, string text, int width) =>
        sb.Append(' ', Math.Max(0, width - text.Length)).Append(text);

    /// <summary>%-*s: left-aligned.</summary>
    public static StringBuilder Left(this StringBuilder sb, string text, int width) =>
        sb.Append(text).Append(' ', Math.Max(0, width - text.Length));

    /// <summary>populated_zone(): the zone has present pages (managed or not), as the kernel's reports test it.</summary>
    public static bool Populated(Zone zone) => zone.PresentPages != 0;

    /// <summary>node_state(N_MEMORY): the node has a populated zone.</summary>
    public static bool HasMemory(Node node) => node.Zones.Any(Populated);

    /// <summary>is_highmem(): HighMem, and Movable when ZONE_MOVABLE was carved out of HighMem.</summary>
    public static bool IsHighmem(PageAllocator pa, Zone zone) =>
        zone.Type == ZoneType.HighMem || (zone.Type == ZoneType.Movable && pa.Arch.HasHighMem && pa.MovableFromHighmem);
}
