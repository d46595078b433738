// Draws a memory-map picture with SkiaSharp: cells are written straight into
// the bitmap's pixels (one pass, no draw call per cell), then the zone lines,
// the text and the legend go on through a canvas, and the bitmap is encoded as
// PNG. Text uses DejaVu Sans Mono, embedded in the assembly (the native assets
// used carry no fontconfig, so no system font can be relied on). Shapes are
// drawn without anti-aliasing on whole pixels, so every cell and swatch holds
// exactly its legend colour. Thread-safe: no shared mutable state besides the
// typeface, which Skia allows to be shared.
using SkiaSharp;

namespace Kmem;

internal static class MemoryMapPainter
{
    private const string FontResource = "Kmem.MemoryMap.DejaVuSansMono.ttf";
    private static readonly Lazy<SKTypeface> s_typeface = new(LoadTypeface);

    public static void Paint(Machine m, MemoryMapLayout layout, string? caption, MemoryMapPressure? pressure, Stream png)
    {
        byte[] keys = FrameScan.ClassifyAll(m);
        var info = new SKImageInfo(layout.Width, layout.Height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        using var bitmap = new SKBitmap(info);
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(SKColors.White);
        }
        FillCells(bitmap, layout, keys);
        using (var canvas = new SKCanvas(bitmap))
        {
            DrawZones(canvas, layout);
            DrawTitle(canvas, m, layout, caption);
            if (pressure is not null)
            {
                DrawPressure(canvas, layout, pressure);
            }
            DrawLegend(canvas, layout);
        }
        // Cells are 2+ pixels tall, so most rows repeat the row above: the Up filter with light compression
        // encodes in a third of the time of the default at twice the (still small) size.
        using var pixels = bitmap.PeekPixels();
        using var data = pixels.Encode(new SKPngEncoderOptions(SKPngEncoderFilterFlags.Up, 1))
            ?? throw new InvalidOperationException("SkiaSharp could not encode the memory map as PNG");
        data.SaveTo(png);
    }

    /// <summary>Each cell's dominant key, written as RGBA into the grid's pixels.</summary>
    private static unsafe void FillCells(SKBitmap bitmap, MemoryMapLayout layout, byte[] keys)
    {
        var legend = MemoryMap.Legend;
        Span<int> counts = stackalloc int[FrameScan.KeyCount];
        byte* pixels = (byte*)bitmap.GetPixels();
        int rowBytes = bitmap.RowBytes;
        ulong perCell = layout.FramesPerCell;
        int px = layout.CellPixels;
        for (ulong cell = 0; cell < layout.Cells; cell++)
        {
            ulong start = cell * perCell;
            int length = (int)Math.Min(perCell, layout.Frames - start);
            byte key = FrameScan.Dominant(keys.AsSpan((int)start, length), counts);
            uint rgb = legend[key].Color;
            var r = layout.CellRect(cell);
            for (int y = r.Y; y < r.Y + px; y++)
            {
                byte* p = pixels + (long)y * rowBytes + r.X * 4;
                for (int x = 0; x < px; x++, p += 4)
                {
                    p[0] = (byte)(rgb >> 16);
                    p[1] = (byte)(rgb >> 8);
                    p[2] = (byte)rgb;
                    p[3] = 0xff;
                }
            }
        }
        bitmap.NotifyPixelsChanged();
    }

    /// <summary>At each zone's first frame: a line around the cells that start the zone (along the top of its
    /// first row from that cell on, down its left side, along the bottom of the row before it), a tick into the
    /// gutter and the zone's name there.</summary>
    private static void DrawZones(SKCanvas canvas, MemoryMapLayout layout)
    {
        using var line = new SKPaint { Color = SKColors.Black, IsAntialias = false, Style = SKPaintStyle.Fill };
        using var text = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var font = new SKFont(s_typeface.Value, 11);
        int right = layout.MapLeft + layout.MapWidth;
        float lastLabel = float.MinValue;
        foreach (var zone in layout.Zones)
        {
            ulong cell = zone.StartPfn / layout.FramesPerCell;
            var r = layout.CellRect(cell);
            if (zone.StartPfn > 0)
            {
                canvas.DrawRect(new SKRect(r.X, r.Y, right, r.Y + 1), line);
                if (r.X > layout.MapLeft)
                {
                    canvas.DrawRect(new SKRect(r.X, r.Y, r.X + 1, r.Y + r.Height), line);
                    canvas.DrawRect(new SKRect(layout.MapLeft, r.Y + r.Height, r.X, r.Y + r.Height + 1), line);
                }
            }
            canvas.DrawRect(new SKRect(layout.MapLeft - 6, r.Y, layout.MapLeft - 1, r.Y + 1), line);
            // Labels of zones that start close together are pushed down so that they never overlap.
            float baseline = Math.Max(r.Y + 10, lastLabel + 12);
            lastLabel = baseline;
            canvas.DrawText(zone.Label, layout.MapLeft - 8, baseline, SKTextAlign.Right, font, text);
        }
    }

    private static void DrawTitle(SKCanvas canvas, Machine m, MemoryMapLayout layout, string? caption)
    {
        using var text = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var font = new SKFont(s_typeface.Value, 13);
        canvas.DrawText(Title(m, layout, caption), MemoryMapLayout.Margin, MemoryMapLayout.Margin + 12, SKTextAlign.Left, font, text);
    }

    /// <summary>"Kmem X64 · 1G · 2 CPUs · 1 node · 262144 frames · 1 cell = 1 frame · caption".</summary>
    internal static string Title(Machine m, MemoryMapLayout layout, string? caption)
    {
        string cell = layout.FramesPerCell == 1 ? "1 frame" : $"{layout.FramesPerCell} frames";
        string title = $"Kmem {m.Preset} · {MachineOptions.FormatSize(m.MemoryBytes)} · {m.NrCpus} CPU{(m.NrCpus == 1 ? "" : "s")}"
            + $" · {m.NrNodes} node{(m.NrNodes == 1 ? "" : "s")} · {layout.Frames} frames · 1 cell = {cell}";
        return string.IsNullOrEmpty(caption) ? title : $"{title} · {caption}";
    }

    /// <summary>The colours of the pressure bar by band: below min, below low, below high, at high or above.</summary>
    internal static readonly SKColor[] PressureColors =
    [
        new(0xD0, 0x20, 0x20), new(0xF0, 0x90, 0x20), new(0xE8, 0xD0, 0x30), new(0x40, 0xA0, 0x40),
    ];

    /// <summary>The pressure strip: "free" in the gutter, the bar of free pages in its band's colour on grey, a
    /// black tick at each watermark, and up to two lines of text under the bar.</summary>
    private static void DrawPressure(SKCanvas canvas, MemoryMapLayout layout, MemoryMapPressure p)
    {
        var bar = layout.PressureBar;
        using var fill = new SKPaint { IsAntialias = false, Style = SKPaintStyle.Fill };
        using var text = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var font = new SKFont(s_typeface.Value, 11);
        fill.Color = new SKColor(0xE4, 0xE4, 0xE4);
        canvas.DrawRect(bar.X, bar.Y, bar.Width, bar.Height, fill);
        long scale = p.Scale;
        int X(long pages) => (int)(Math.Clamp(pages, 0, scale) * bar.Width / scale);
        fill.Color = PressureColors[p.Band];
        canvas.DrawRect(bar.X, bar.Y, X(p.FreePages), bar.Height, fill);
        fill.Color = SKColors.Black;
        foreach (long mark in new[] { p.WatermarkMin, p.WatermarkLow, p.WatermarkHigh })
        {
            canvas.DrawRect(bar.X + Math.Min(X(mark), bar.Width - 1), bar.Y - 2, 1, bar.Height + 4, fill);
        }
        canvas.DrawText("free", layout.MapLeft - 8, bar.Y + 10, SKTextAlign.Right, font, text);
        string[] lines = (p.Text ?? "").Split('\n');
        for (int i = 0; i < Math.Min(lines.Length, MemoryMapLayout.PressureTextLines); i++)
        {
            canvas.DrawText(lines[i], bar.X, bar.Y + bar.Height + 13 + i * 14, SKTextAlign.Left, font, text);
        }
    }

    private static void DrawLegend(SKCanvas canvas, MemoryMapLayout layout)
    {
        using var swatch = new SKPaint { IsAntialias = false, Style = SKPaintStyle.Fill };
        using var edge = new SKPaint { Color = new SKColor(0x60, 0x60, 0x60), IsAntialias = false, Style = SKPaintStyle.Fill };
        using var text = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var font = new SKFont(s_typeface.Value, 11);
        var legend = MemoryMap.Legend;
        for (int i = 0; i < legend.Count; i++)
        {
            var r = layout.LegendSwatches[i];
            // A one-pixel frame around the swatch keeps pale colours visible on white.
            canvas.DrawRect(new SKRect(r.X - 1, r.Y - 1, r.X + r.Width + 1, r.Y + r.Height + 1), edge);
            uint rgb = legend[i].Color;
            swatch.Color = new SKColor((byte)(rgb >> 16), (byte)(rgb >> 8), (byte)rgb);
            canvas.DrawRect(new SKRect(r.X, r.Y, r.X + r.Width, r.Y + r.Height), swatch);
            canvas.DrawText(legend[i].Name, r.X + r.Width + 6, r.Y + r.Height - 2, SKTextAlign.Left, font, text);
        }
    }

    private static SKTypeface LoadTypeface()
    {
        using var stream = typeof(MemoryMapPainter).Assembly.GetManifestResourceStream(FontResource)
            ?? throw new InvalidOperationException($"the embedded font {FontResource} is missing from the Kmem assembly");
        using var data = SKData.Create(stream);
        return SKTypeface.FromData(data)
            ?? throw new InvalidOperationException($"SkiaSharp could not load the embedded font {FontResource}");
    }
}
