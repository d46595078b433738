// The memory map as text, for a terminal: a character per group of frames,
// zone by zone, each line headed by the first pfn it shows, and a legend. The
// same classification and the same dominant-state rule as the picture. ASCII
// only, so that any terminal shows it. Stateless.
using System.Globalization;
using System.Text;

namespace Kmem;

internal static class MemoryMapText
{
    public const int MinWidth = 24;

    public static string Render(Machine m, int width, int maxLines)
    {
        if (width < MinWidth)
        {
            throw new ArgumentOutOfRangeException(nameof(width), width, $"the text map needs at least {MinWidth} characters per line");
        }
        if (maxLines < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxLines), maxLines, "the text map needs at least 1 line");
        }
        ulong frames = m.MaxPfn;
        int digits = Math.Max(5, (64 - System.Numerics.BitOperations.LeadingZeroCount(frames) + 3) / 4);
        int prefix = 2 + digits + 1;
        int perLine = width - prefix;
        ulong group = 1UL << FrameScan.GroupShift(frames, (long)perLine * maxLines);
        byte[] keys = FrameScan.ClassifyAll(m);
        var legend = MemoryMap.Legend;
        Span<int> counts = stackalloc int[FrameScan.KeyCount];
        var sb = new StringBuilder();
        string cell = group == 1 ? "1 frame" : $"{group} frames";
        sb.Append(CultureInfo.InvariantCulture, $"Kmem {m.Preset}, {MachineOptions.FormatSize(m.MemoryBytes)}, {m.NrCpus} CPU{(m.NrCpus == 1 ? "" : "s")}, ")
          .Append(CultureInfo.InvariantCulture, $"{m.NrNodes} node{(m.NrNodes == 1 ? "" : "s")}, {frames} frames, 1 char = {cell}\n");
        foreach (var zone in MemoryMap.ZonesOf(m))
        {
            sb.Append(CultureInfo.InvariantCulture, $"zone {zone.Label,-10} pfn 0x{zone.StartPfn:x}-0x{zone.EndPfn - 1:x}\n");
            ulong first = zone.StartPfn / group, end = (zone.EndPfn + group - 1) / group;
            for (ulong c = first; c < end; c++)
            {
                ulong lo = Math.Max(zone.StartPfn, c * group), hi = Math.Min(zone.EndPfn, (c + 1) * group);
                if ((c - first) % (ulong)perLine == 0)
                {
                    if (c != first)
                    {
                        sb.Append('\n');
                    }
                    sb.Append("0x").Append(lo.ToString("x" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture)).Append(' ');
                }
                sb.Append(legend[FrameScan.Dominant(keys.AsSpan((int)lo, (int)(hi - lo)), counts)].Symbol);
            }
            sb.Append('\n');
        }
        AppendLegend(sb, width);
        return sb.ToString();
    }

    /// <summary>"0-9A free, by order 0-10", then "p per-CPU lists", … wrapped at <paramref name="width"/>.</summary>
    private static void AppendLegend(StringBuilder sb, int width)
    {
        var legend = MemoryMap.Legend;
        var items = new List<string>();
        var free = new StringBuilder();
        int maxOrder = 0;
        foreach (var e in legend)
        {
            if (e.State == FrameState.Free)
            {
                free.Append(e.Symbol);
                maxOrder = e.Order;
            }
            else
            {
                items.Add($"{e.Symbol} {e.Name}");
            }
        }
        items.Insert(0, string.Create(CultureInfo.InvariantCulture, $"{free} free, by order 0-{maxOrder}"));
        int column = 0;
        sb.Append("legend:");
        column += 7;
        foreach (string item in items)
        {
            if (column + 2 + item.Length > width)
            {
                sb.Append('\n');
                column = 0;
            }
            sb.Append("  ").Append(item);
            column += 2 + item.Length;
        }
        sb.Append('\n');
    }
}
