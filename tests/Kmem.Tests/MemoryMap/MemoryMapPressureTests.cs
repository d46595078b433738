// The pressure strip of a memory map (MemoryMapOptions.Pressure): the grid moves down by the
// strip's height, the bar is filled up to the free pages in the colour of their band (below
// min, low, high, or above), grey beyond, with a black tick at each watermark; without the
// option the picture is as before.
using static Kmem.Tests.MemoryMaps.MapKit;

namespace Kmem.Tests.MemoryMaps;

public class MemoryMapPressureTests
{
    private static readonly uint s_grey = 0xE4E4E4;

    [Theory]
    [InlineData(100, 0)]
    [InlineData(250, 1)]
    [InlineData(350, 2)]
    [InlineData(900, 3)]
    public void TheBarIsFilledToTheFreePagesInTheirBandsColourWithTheWatermarksTicked(long free, int band)
    {
        using var m = Boot("64M");
        var strip = new MemoryMapPressure { FreePages = free, WatermarkMin = 200, WatermarkLow = 300, WatermarkHigh = 400, Text = "phase anon\nkswapd 1 / 2" };
        Assert.Equal(band, strip.Band);
        Assert.Equal(1600, strip.Scale); // four times high
        var plain = MemoryMap.GetLayout(m);
        var layout = MemoryMap.GetLayout(m, new MemoryMapOptions { Pressure = strip });
        Assert.Equal(plain.MapTop + MemoryMapLayout.PressureHeight, layout.MapTop);
        Assert.Equal(plain.Height + MemoryMapLayout.PressureHeight, layout.Height);
        using var bmp = Picture(m, new MemoryMapOptions { Pressure = strip });
        Assert.Equal(layout.Height, bmp.Height);
        var bar = layout.PressureBar;
        int filled = (int)(free * bar.Width / strip.Scale);
        int y = bar.Y + bar.Height / 2;
        uint expected = Rgb(MemoryMapPainter.PressureColors[band]);
        Assert.Equal(expected, Rgb(bmp.GetPixel(bar.X + filled / 2, y)));
        Assert.Equal(s_grey, Rgb(bmp.GetPixel(bar.X + filled + (bar.Width - filled) / 2 + 2, y)));
        foreach (long mark in new long[] { 200, 300, 400 })
        {
            Assert.Equal(0u, Rgb(bmp.GetPixel(bar.X + (int)(mark * bar.Width / strip.Scale), bar.Y - 1)));
        }
        // The grid keeps its colours, only lower down.
        Assert.Equal(CellColor(Picture(m), plain, 100), CellColor(bmp, layout, 100));
    }

    [Fact]
    public void WithoutAStripThePictureIsAsBefore()
    {
        using var m = Boot("64M");
        var layout = MemoryMap.GetLayout(m);
        Assert.Equal(MemoryMapLayout.Margin + MemoryMapLayout.TitleHeight, layout.MapTop);
        Assert.Equal(layout.PressureTop, layout.MapTop);
    }
}
