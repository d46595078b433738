// Helpers shared by the memory-map tests: machines, the picture decoded with
// SkiaSharp, a cell's colour and the text map's character for a frame.
using SkiaSharp;

namespace Kmem.Tests.MemoryMaps;

internal static class MapKit
{
    public static Machine Boot(string memory, Preset preset = Preset.X64, int cpus = 2, int nodes = 1) =>
        Machine.Boot(new MachineOptions { Memory = memory, Preset = preset, Cpus = cpus, Nodes = nodes, Seed = 1 });

    public static SKBitmap Picture(Machine m, MemoryMapOptions? options = null)
    {
        using var png = new MemoryStream();
        MemoryMap.Render(m, png, options);
        png.Position = 0;
        return SKBitmap.Decode(png) ?? throw new InvalidOperationException("the PNG did not decode");
    }

    public static uint Rgb(SKColor c) => (uint)(c.Red << 16 | c.Green << 8 | c.Blue);

    /// <summary>The pixel of a cell that zone lines never cover (its bottom-right one, with 2-pixel cells).</summary>
    public static uint CellColor(SKBitmap bmp, MemoryMapLayout layout, ulong pfn)
    {
        var r = layout.CellOf(pfn);
        return Rgb(bmp.GetPixel(r.X + r.Width - 1, r.Y + r.Height - 1));
    }

    public static uint ColorOf(FrameState state, int order = 0) => MemoryMap.LegendOf(state, order).Color;

    /// <summary>The character the text map shows for <paramref name="pfn"/> (one frame per character).</summary>
    public static char CharAt(string[] lines, ulong pfn)
    {
        foreach (string line in lines.Where(l => l.StartsWith("0x", StringComparison.Ordinal)))
        {
            int space = line.IndexOf(' ', StringComparison.Ordinal);
            ulong first = Convert.ToUInt64(line[2..space], 16);
            int count = line.Length - space - 1;
            if (pfn >= first && pfn < first + (ulong)count)
            {
                return line[space + 1 + (int)(pfn - first)];
            }
        }
        throw new InvalidOperationException($"pfn 0x{pfn:x} is on no line");
    }

    public static int DarkPixels(SKBitmap bmp, int x0, int y0, int w, int h)
    {
        int n = 0;
        for (int y = Math.Max(0, y0); y < Math.Min(bmp.Height, y0 + h); y++)
        {
            for (int x = Math.Max(0, x0); x < Math.Min(bmp.Width, x0 + w); x++)
            {
                var c = bmp.GetPixel(x, y);
                if (c.Red + c.Green + c.Blue < 300)
                {
                    n++;
                }
            }
        }
        return n;
    }

    public static double Luma(uint rgb) => 0.299 * (rgb >> 16) + 0.587 * ((rgb >> 8) & 0xff) + 0.114 * (rgb & 0xff);
}
