// The pressure strip of a memory-map picture (MemoryMapOptions.Pressure): free pages as a
// bar against the min, low and high watermarks, coloured by the band they fall in, and two
// lines of text (a replay's phase and its kswapd, direct reclaim, compaction and OOM marks).
// A plain options object; the painter draws it between the title and the grid.
namespace Kmem;

/// <summary>Free pages against the watermarks, and a line of text, drawn under a memory map's title.</summary>
public sealed class MemoryMapPressure
{
    /// <summary>Free pages (all zones).</summary>
    public long FreePages { get; init; }

    /// <summary>The min watermark (pages, all zones).</summary>
    public long WatermarkMin { get; init; }

    /// <summary>The low watermark (pages, all zones): below it allocations wake kswapd.</summary>
    public long WatermarkLow { get; init; }

    /// <summary>The high watermark (pages, all zones): kswapd reclaims up to it.</summary>
    public long WatermarkHigh { get; init; }

    /// <summary>The text under the bar, up to two lines split by '\n' (the phase and what reclaim, compaction and the
    /// OOM killer did); null for none.</summary>
    public string? Text { get; init; }

    /// <summary>The band free pages fall in: 0 below min, 1 below low, 2 below high, 3 at high or above.</summary>
    public int Band => FreePages < WatermarkMin ? 0 : FreePages < WatermarkLow ? 1 : FreePages < WatermarkHigh ? 2 : 3;

    /// <summary>The pages the full width of the bar stands for: four times the high watermark, or the free pages
    /// when more (at least 1).</summary>
    public long Scale => Math.Max(1, Math.Max(4 * WatermarkHigh, FreePages));
}
