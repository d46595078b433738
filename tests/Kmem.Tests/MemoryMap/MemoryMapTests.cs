// The memory map: the picture's size and grouping rule, its legend swatches,
// zone lines, the title, the marks of the task and page-cache layer, the text
// map and bad arguments. Pixels are read back by decoding the PNG with SkiaSharp.
using Kmem.Physical;
using static Kmem.Tests.MemoryMaps.MapKit;

namespace Kmem.Tests.MemoryMaps;

public class MemoryMapTests
{
    [Fact]
    public void AOneGigabyteMachineGetsACellPerFrameOnA512By512Grid()
    {
        using var m = Boot("1G");
        var layout = MemoryMap.GetLayout(m);
        Assert.Equal(1UL, layout.FramesPerCell);
        Assert.Equal(512, layout.Rows);
        Assert.Equal(8 + 96 + 512 * 2 + 8, layout.Width);
        Assert.Equal(8 + 22, layout.MapTop);
        using var bmp = Picture(m);
        Assert.Equal(layout.Width, bmp.Width);
        Assert.Equal(layout.Height, bmp.Height);
        Assert.True(layout.Height > layout.MapTop + 1024 + 2 * 18, "the legend has rows below the grid");
    }

    [Theory]
    [InlineData("4G", 4UL)]
    [InlineData("16G", 16UL)]
    [InlineData("1536M", 2UL)]
    [InlineData("64M", 1UL)]
    public void BigMachinesGroupThePowerOfTwoFramesThatKeepsTheGridWithin512Rows(string memory, ulong perCell)
    {
        using var m = Boot(memory);
        var layout = MemoryMap.GetLayout(m);
        Assert.Equal(perCell, layout.FramesPerCell);
        ulong frames = m.MaxPfn;
        Assert.Equal((frames + perCell - 1) / perCell, layout.Cells);
        Assert.True(layout.Rows <= 512);
        // The next smaller group would need more than 512 rows.
        if (perCell > 1)
        {
            Assert.True((frames + perCell / 2 - 1) / (perCell / 2) > 512UL * 512);
        }
    }

    [Fact]
    public void AGroupedCellShowsTheStateMostOfItsFramesHaveWithTiesToTheFirstInTheLegend()
    {
        using var m = Boot("256M", cpus: 1);
        using var cpu = m.OnCpu(0);
        // 65536 frames on 64 × 256 cells: 4 frames a cell.
        var options = new MemoryMapOptions { CellsPerRow = 64, MaxRows = 256, CellPixels = 3 };
        var layout = MemoryMap.GetLayout(m, options);
        Assert.Equal(4UL, layout.FramesPerCell);
        var block = m.AllocPages(Gfp.Kernel, 2);
        ulong pfn = block.Pfn;
        Assert.Equal(0UL, pfn % 4);
        using (var bmp = Picture(m, options))
        {
            Assert.Equal(ColorOf(FrameState.Kernel), CellColor(bmp, layout, pfn));
        }
        m.SplitPage(block, 2);
        m.FreePage(block.Add(3)); // onto this CPU's list: 3 kernel, 1 per-CPU
        using (var bmp = Picture(m, options))
        {
            Assert.Equal(ColorOf(FrameState.Kernel), CellColor(bmp, layout, pfn));
        }
        m.FreePage(block.Add(2)); // 2 and 2: the tie goes to per-CPU lists, listed before other kernel
        using (var bmp = Picture(m, options))
        {
            Assert.Equal(ColorOf(FrameState.PerCpuList), CellColor(bmp, layout, pfn));
        }
        m.FreePage(block.Add(1));
        m.FreePage(block);
    }

    [Fact]
    public void EveryLegendSwatchHoldsItsLegendColourAndTheColoursDiffer()
    {
        using var m = Boot("128M");
        var layout = MemoryMap.GetLayout(m);
        using var bmp = Picture(m);
        var legend = MemoryMap.Legend;
        Assert.Equal(Machine.MaxOrder + 10, legend.Count);
        Assert.Equal(legend.Count, legend.Select(e => e.Color).Distinct().Count());
        Assert.Equal(legend.Count, legend.Select(e => e.Symbol).Distinct().Count());
        for (int i = 0; i < legend.Count; i++)
        {
            var r = layout.LegendSwatches[i];
            for (int y = r.Y; y < r.Y + r.Height; y++)
            {
                for (int x = r.X; x < r.X + r.Width; x++)
                {
                    Assert.Equal(legend[i].Color, Rgb(bmp.GetPixel(x, y)));
                }
            }
            // The name is printed right of the swatch: some dark text pixels there.
            Assert.True(DarkPixels(bmp, r.X + r.Width + 4, r.Y - 2, 60, r.Height + 4) > 5, $"no text beside the swatch of {legend[i].Name}");
        }
        // Free orders form a ramp from dark (single frames) to pale (the largest blocks).
        for (int o = 1; o < Machine.MaxOrder; o++)
        {
            Assert.True(Luma(legend[o].Color) > Luma(legend[o - 1].Color), $"free order {o} is not paler than order {o - 1}");
        }
    }

    [Fact]
    public void TaskPageCacheAndPageTableMarksAreShownWhenTheirLayerSetsThem()
    {
        using var m = Boot("128M");
        using var cpu = m.OnCpu(0);
        var pages = new[] { m.AllocPage(Gfp.HighUserMovable), m.AllocPage(Gfp.HighUserMovable), m.AllocPage(Gfp.Kernel) };
        var marks = new[] { PageFlags.Lru | PageFlags.SwapBacked, PageFlags.Lru, PageFlags.Table };
        var states = new[] { FrameState.TaskAnon, FrameState.PageCache, FrameState.PageTable };
        for (int i = 0; i < pages.Length; i++)
        {
            m.Mem.Frame(pages[i].RawPfn).Flags |= marks[i];
        }
        var layout = MemoryMap.GetLayout(m);
        using (var bmp = Picture(m))
        {
            for (int i = 0; i < pages.Length; i++)
            {
                Assert.Equal(states[i], MemoryMap.Classify(m, pages[i].Pfn));
                Assert.Equal(ColorOf(states[i]), CellColor(bmp, layout, pages[i].Pfn));
            }
        }
        for (int i = 0; i < pages.Length; i++)
        {
            m.Mem.Frame(pages[i].RawPfn).Flags &= ~marks[i];
            m.FreePage(pages[i]);
        }
    }

    [Fact]
    public void AZoneStartingOnARowIsMarkedByALineAcrossTheGridAndItsName()
    {
        using var m = Boot("128M");
        var layout = MemoryMap.GetLayout(m);
        Assert.Equal(["DMA", "DMA32"], layout.Zones.Select(z => z.Label));
        Assert.Equal(4096UL, layout.Zones[1].StartPfn);
        using var bmp = Picture(m);
        // DMA32 starts at pfn 4096: row 8, column 0, so the line runs along the top of row 8.
        int y = layout.MapTop + 8 * 2;
        for (int x = layout.MapLeft; x < layout.MapLeft + layout.MapWidth; x += 7)
        {
            Assert.Equal(0u, Rgb(bmp.GetPixel(x, y)));
        }
        // The row above has no line: its bottom pixels keep their cells' colours (free or reserved).
        Assert.NotEqual(0u, Rgb(bmp.GetPixel(layout.MapLeft + 300, y - 1)));
        Assert.True(DarkPixels(bmp, MemoryMapLayout.Margin, y, layout.MapLeft - 8 - MemoryMapLayout.Margin, 12) > 10, "no DMA32 label in the gutter");
    }

    [Fact]
    public void AZoneStartingMidRowIsMarkedByAStep()
    {
        using var m = Boot("1G", Preset.X86, cpus: 1);
        var layout = MemoryMap.GetLayout(m);
        var high = layout.Zones.Single(z => z.Label == "HighMem");
        Assert.Equal(0x36ffeUL, high.StartPfn);
        int row = (int)(high.StartPfn / 512), col = (int)(high.StartPfn % 512);
        Assert.Equal(510, col);
        using var bmp = Picture(m);
        int top = layout.MapTop + row * 2, x = layout.MapLeft + col * 2;
        Assert.Equal(0u, Rgb(bmp.GetPixel(x, top)));          // top of the first HighMem cell
        Assert.Equal(0u, Rgb(bmp.GetPixel(x + 3, top)));      // … and of the row's last cell
        Assert.Equal(0u, Rgb(bmp.GetPixel(x, top + 1)));      // the step's left side
        Assert.Equal(0u, Rgb(bmp.GetPixel(layout.MapLeft + 10, top + 2))); // under the row's Normal cells
        Assert.NotEqual(0u, Rgb(bmp.GetPixel(layout.MapLeft + 10, top))); // the Normal cells' tops stay coloured
    }

    [Fact]
    public void TheTitleNamesThePresetMemoryAndCpus()
    {
        using var m = Boot("512M", Preset.X86Pae, cpus: 3);
        var layout = MemoryMap.GetLayout(m, new MemoryMapOptions { Caption = "after" });
        Assert.Equal("Kmem X86Pae · 512M · 3 CPUs · 1 node · 131072 frames · 1 cell = 1 frame · after",
            MemoryMapPainter.Title(m, layout, "after"));
        using var bmp = Picture(m, new MemoryMapOptions { Caption = "after" });
        Assert.True(DarkPixels(bmp, MemoryMapLayout.Margin, 0, 400, MemoryMapLayout.TitleHeight) > 200, "the title was not drawn");
    }

    [Fact]
    public void ANumaMachineLabelsZonesWithTheirNode()
    {
        using var m = Boot("512M", nodes: 2);
        var labels = MemoryMap.GetLayout(m).Zones.Select(z => z.Label).ToArray();
        Assert.Contains("N0 DMA", labels);
        Assert.Contains("N1 DMA32", labels);
    }

    [Fact]
    public void RenderWritesAPngFile()
    {
        using var m = Boot("64M");
        string path = Path.Combine(Path.GetTempPath(), $"kmem-map-{Guid.NewGuid():N}.png");
        try
        {
            MemoryMap.Render(m, path);
            byte[] head = File.ReadAllBytes(path)[..8];
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0d, 0x0a, 0x1a, 0x0a }, head);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void TheTextMapShowsAKnownFrameByItsCharacterUnderItsZone()
    {
        using var m = Boot("64M", cpus: 1);
        using var cpu = m.OnCpu(0);
        nint obj = m.Kmalloc(200, Gfp.Kernel);
        ulong slabPfn = m.VirtToPage(obj).Pfn;
        // 16384 frames at 80 columns (11 for the pfn): a character per frame within 300 lines.
        string text = MemoryMap.RenderText(m, 80, 300);
        string[] lines = text.TrimEnd('\n').Split('\n');
        Assert.StartsWith("Kmem X64, 64M, 1 CPU, 1 node, 16384 frames, 1 char = 1 frame", lines[0]);
        Assert.All(lines, l => Assert.True(l.Length <= 80, $"line longer than 80: {l}"));
        Assert.Contains("zone DMA        pfn 0x1-0xfff", lines);
        Assert.Contains("zone DMA32      pfn 0x1000-0x3fff", lines);
        Assert.Equal('S', CharAt(lines, slabPfn));
        Assert.Equal('R', CharAt(lines, 4096 + 7));
        Assert.Equal('_', CharAt(lines, 200));
        Assert.Contains(lines, l => l.Contains("0123456789A free, by order 0-10", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("S slab", StringComparison.Ordinal));
        m.Kfree(obj);
    }

    [Fact]
    public void TheDefaultTextMapFitsIn32LinesOfCellsPlusOnePerZone()
    {
        using var m = Boot("1G");
        string text = MemoryMap.RenderText(m, 80);
        string[] cellLines = [.. text.Split('\n').Where(l => l.StartsWith("0x", StringComparison.Ordinal))];
        Assert.InRange(cellLines.Length, 2, 32 + 2);
        Assert.StartsWith("Kmem X64, 1G, 2 CPUs, 1 node, 262144 frames, 1 char = 128 frames", text);
        // A fresh machine: the DMA32 zone is mostly free order-10 blocks.
        Assert.True(cellLines.Sum(l => l.Count(c => c == 'A')) > 1500);
    }

    [Fact]
    public void BadArgumentsAreRefusedWithTheirNames()
    {
        using var m = Boot("64M");
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => MemoryMap.RenderText(m, 10));
        Assert.Contains("24", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => MemoryMap.Classify(m, m.MaxPfn));
        var o = Assert.Throws<ArgumentOutOfRangeException>(() => MemoryMap.GetLayout(m, new MemoryMapOptions { CellsPerRow = 4 }));
        Assert.Contains("CellsPerRow", o.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => MemoryMap.Render(m, new MemoryStream(), new MemoryMapOptions { CellPixels = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => MemoryMap.LegendOf(FrameState.Free, Machine.MaxOrder));
    }

    [Fact]
    public void TheReadmePictureExampleRunsAsDescribed()
    {
        string png = Path.Combine(Path.GetTempPath(), $"kmem-readme-{Guid.NewGuid():N}.png");
        var output = new StringWriter();
        try
        {
            using var m = Machine.Boot(new MachineOptions { Memory = "1G", Cpus = 2 });
            nint p = m.Kmalloc(64 << 10, Gfp.Kernel);                             // 16 frames of large kmalloc
            MemoryMap.Render(m, png, new MemoryMapOptions { Caption = "after kmalloc" });
            FrameState s = MemoryMap.Classify(m, m.VirtToPage(p).Pfn);              // FrameState.LargeKmalloc
            output.Write(MemoryMap.RenderText(m, 80));                              // the same map as characters

            Assert.Equal(FrameState.LargeKmalloc, s);
            Assert.True(new FileInfo(png).Length > 1000);
            Assert.StartsWith("Kmem X64, 1G, 2 CPUs", output.ToString(), StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(png);
        }
    }
}
