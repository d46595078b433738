// The geometry of a memory-map picture, computed before anything is drawn: the
// title line, the zone-name gutter, the grid of cells (a cell per 2^k frames,
// row after row in pfn order) and the legend below it. Callers use it to find
// the pixels of a frame or a legend swatch; the painter draws exactly there.
// Immutable.
namespace Kmem;

/// <summary>A rectangle of pixels: left, top, width and height.</summary>
/// <param name="X">Left column.</param>
/// <param name="Y">Top row.</param>
/// <param name="Width">Columns.</param>
/// <param name="Height">Rows.</param>
public readonly record struct PixelRect(int X, int Y, int Width, int Height);

/// <summary>A zone as the picture marks it: its label and its frames.</summary>
/// <param name="Label">The zone's name ("DMA32"), prefixed by its node ("N1 Normal") on a multi-node machine.</param>
/// <param name="StartPfn">First frame of the zone.</param>
/// <param name="EndPfn">One past the zone's last frame.</param>
public readonly record struct MemoryMapZone(string Label, ulong StartPfn, ulong EndPfn);

/// <summary>Where a memory-map picture puts everything; see <see cref="MemoryMap.GetLayout"/>.</summary>
/// <remarks>
/// The grid has <see cref="CellsPerRow"/> cells a row, in pfn order: frame pfn lies in cell
/// pfn / <see cref="FramesPerCell"/>. A cell that stands for several frames shows the state most of them
/// have (ties go to the state listed first in <see cref="MemoryMap.Legend"/>).
/// </remarks>
public sealed class MemoryMapLayout
{
    /// <summary>Blank border around everything, in pixels.</summary>
    public const int Margin = 8;
    /// <summary>Width of the column left of the grid that holds the zone names.</summary>
    public const int GutterWidth = 96;
    /// <summary>Height of the title line.</summary>
    public const int TitleHeight = 22;
    /// <summary>Height of the pressure strip under the title, when the options have one (bar and two text lines).</summary>
    public const int PressureHeight = 50;
    /// <summary>Lines of text the pressure strip shows.</summary>
    internal const int PressureTextLines = 2;
    /// <summary>Side of a legend swatch.</summary>
    public const int SwatchSize = 12;
    /// <summary>Width of one legend column (swatch and name).</summary>
    public const int LegendColumnWidth = 150;
    /// <summary>Height of one legend row.</summary>
    public const int LegendRowHeight = 18;
    private const int MinWidth = 640;

    private readonly PixelRect[] _swatches;

    internal MemoryMapLayout(ulong frames, MemoryMapOptions options, IReadOnlyList<MemoryMapZone> zones)
    {
        if (options.CellsPerRow is < 16 or > 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.CellsPerRow, "MemoryMapOptions.CellsPerRow must be 16..4096");
        }
        if (options.CellPixels is < 1 or > 8)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.CellPixels, "MemoryMapOptions.CellPixels must be 1..8");
        }
        if (options.MaxRows is < 1 or > 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxRows, "MemoryMapOptions.MaxRows must be 1..4096");
        }
        Frames = frames;
        CellsPerRow = options.CellsPerRow;
        CellPixels = options.CellPixels;
        FramesPerCell = 1UL << FrameScan.GroupShift(frames, (long)options.CellsPerRow * options.MaxRows);
        Cells = (frames + FramesPerCell - 1) / FramesPerCell;
        Rows = (int)((Cells + (ulong)CellsPerRow - 1) / (ulong)CellsPerRow);
        Zones = zones;
        MapLeft = Margin + GutterWidth;
        PressureTop = Margin + TitleHeight;
        MapTop = PressureTop + (options.Pressure is null ? 0 : PressureHeight);
        MapWidth = CellsPerRow * CellPixels;
        MapHeight = Rows * CellPixels;
        Width = Math.Max(MapLeft + MapWidth + Margin, MinWidth);
        int columns = Math.Max(1, (Width - 2 * Margin) / LegendColumnWidth);
        LegendTop = MapTop + MapHeight + 14;
        int entries = FrameScan.KeyCount;
        _swatches = new PixelRect[entries];
        for (int i = 0; i < entries; i++)
        {
            int x = Margin + i % columns * LegendColumnWidth;
            int y = LegendTop + i / columns * LegendRowHeight;
            _swatches[i] = new PixelRect(x, y + (LegendRowHeight - SwatchSize) / 2, SwatchSize, SwatchSize);
        }
        Height = LegendTop + (entries + columns - 1) / columns * LegendRowHeight + Margin;
    }

    /// <summary>Width of the picture in pixels.</summary>
    public int Width { get; }

    /// <summary>Height of the picture in pixels.</summary>
    public int Height { get; }

    /// <summary>Frames of the machine (max_pfn).</summary>
    public ulong Frames { get; }

    /// <summary>Frames each cell stands for: the smallest power of two that keeps the grid within
    /// <see cref="MemoryMapOptions.MaxRows"/> rows.</summary>
    public ulong FramesPerCell { get; }

    /// <summary>Cells drawn: ⌈<see cref="Frames"/> / <see cref="FramesPerCell"/>⌉.</summary>
    public ulong Cells { get; }

    /// <summary>Cells per row.</summary>
    public int CellsPerRow { get; }

    /// <summary>Rows of the grid.</summary>
    public int Rows { get; }

    /// <summary>Side of a cell in pixels.</summary>
    public int CellPixels { get; }

    /// <summary>Left column of the grid (cell 0).</summary>
    public int MapLeft { get; }

    /// <summary>Top row of the grid.</summary>
    public int MapTop { get; }

    /// <summary>Top row of the pressure strip (the grid starts below it when there is one).</summary>
    public int PressureTop { get; }

    /// <summary>The pressure strip's bar: as wide as the grid, left of it the label "free".</summary>
    public PixelRect PressureBar => new(MapLeft, PressureTop + 2, MapWidth, 12);

    /// <summary>Width of the grid in pixels.</summary>
    public int MapWidth { get; }

    /// <summary>Height of the grid in pixels.</summary>
    public int MapHeight { get; }

    /// <summary>Top row of the legend.</summary>
    public int LegendTop { get; }

    /// <summary>The populated zones, in pfn order, whose starts the picture marks.</summary>
    public IReadOnlyList<MemoryMapZone> Zones { get; }

    /// <summary>The swatch of each legend entry, in the order of <see cref="MemoryMap.Legend"/>.</summary>
    public IReadOnlyList<PixelRect> LegendSwatches => _swatches;

    /// <summary>The cell that shows frame <paramref name="pfn"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The pfn is beyond the machine.</exception>
    public PixelRect CellOf(ulong pfn)
    {
        if (pfn >= Frames)
        {
            throw new ArgumentOutOfRangeException(nameof(pfn), $"pfn 0x{pfn:x} is beyond max_pfn 0x{Frames:x}");
        }
        return CellRect(pfn / FramesPerCell);
    }

    internal PixelRect CellRect(ulong cell)
    {
        int row = (int)(cell / (ulong)CellsPerRow), col = (int)(cell % (ulong)CellsPerRow);
        return new PixelRect(MapLeft + col * CellPixels, MapTop + row * CellPixels, CellPixels, CellPixels);
    }
}
