// The knobs of a memory-map picture: cells per row, pixels per cell, the row
// limit that decides how many frames share a cell, a caption for the title and an
// optional pressure strip under it.
// A plain options object; MemoryMapLayout validates it.
namespace Kmem;

/// <summary>How <see cref="MemoryMap.Render(Machine, string, MemoryMapOptions?)"/> lays out its picture.</summary>
/// <remarks>
/// One cell stands for a group of 2^k frames: k is the smallest that keeps the map within
/// <see cref="MaxRows"/> rows of <see cref="CellsPerRow"/> cells. With the defaults (512 × 512 cells) a
/// machine of up to 1 GiB gets a cell per frame, 4 GiB four frames per cell, 64 GiB 64.
/// </remarks>
public sealed class MemoryMapOptions
{
    /// <summary>Cells per row of the map (16..4096; default 512).</summary>
    public int CellsPerRow { get; init; } = 512;

    /// <summary>Side of a cell in pixels (1..8; default 2). From 2 up, zone lines never cover a cell's
    /// bottom-right pixel; at 1 they are drawn over the cells they cross.</summary>
    public int CellPixels { get; init; } = 2;

    /// <summary>Most rows the map may have before cells group more frames (1..4096; default 512).</summary>
    public int MaxRows { get; init; } = 512;

    /// <summary>Text added to the title line (say "before", "after" or "event 120000"); null for none.</summary>
    public string? Caption { get; init; }

    /// <summary>A strip under the title with free pages against the watermarks and a line of text (a replay under
    /// memory pressure); null for none.</summary>
    public MemoryMapPressure? Pressure { get; init; }
}
