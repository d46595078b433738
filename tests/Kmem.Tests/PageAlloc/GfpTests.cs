// Tests for Gfp and GfpFlags against the kernel's gfp_types.h values, GFP_ZONE_TABLE,
// gfp_migratetype() and the ftrace gfp_flags rendering, including every rendering seen
// in real Linux 6.1 traces.

namespace Kmem.Tests.PageAlloc;

public class GfpTests
{
    [Theory]
    [InlineData(Gfp.Kernel, 0xcc0u)]
    [InlineData(Gfp.Atomic, 0xa20u)]
    [InlineData(Gfp.NoWait, 0x800u)]
    [InlineData(Gfp.HighUserMovable, 0x100ccau)]
    [InlineData(Gfp.HighUser, 0x100cc2u)]
    [InlineData(Gfp.KernelAccount, 0x400cc0u)]
    [InlineData(Gfp.User, 0x100cc0u)]
    [InlineData(Gfp.NoFs, 0xc40u)]
    [InlineData(Gfp.NoIo, 0xc00u)]
    [InlineData(Gfp.TransHugeLight, 0x1c20cau)]
    [InlineData(Gfp.TransHuge, 0x1c24cau)]
    public void CompositesHaveTheKernelsValues(Gfp gfp, uint expected)
    {
        Assert.Equal(expected, (uint)gfp);
    }

    [Fact]
    public void ReclaimIsBothReclaimBitsAndEqualsNoIo()
    {
        Assert.Equal(0xc00u, (uint)Gfp.Reclaim);
        Assert.Equal(Gfp.DirectReclaim | Gfp.KswapdReclaim, Gfp.Reclaim);
        Assert.Equal(Gfp.NoIo, Gfp.Reclaim);
    }

    [Fact]
    public void SingleBitsHaveTheKernelsValues()
    {
        (Gfp Flag, uint Value)[] bits =
        [
            (Gfp.Dma, 0x01), (Gfp.HighMem, 0x02), (Gfp.Dma32, 0x04), (Gfp.Movable, 0x08),
            (Gfp.Reclaimable, 0x10), (Gfp.High, 0x20), (Gfp.Io, 0x40), (Gfp.Fs, 0x80),
            (Gfp.Zero, 0x100), (Gfp.AtomicBit, 0x200), (Gfp.DirectReclaim, 0x400),
            (Gfp.KswapdReclaim, 0x800), (Gfp.Write, 0x1000), (Gfp.NoWarn, 0x2000),
            (Gfp.RetryMayfail, 0x4000), (Gfp.NoFail, 0x8000), (Gfp.NoRetry, 0x10000),
            (Gfp.Memalloc, 0x20000), (Gfp.Comp, 0x40000), (Gfp.NoMemalloc, 0x80000),
            (Gfp.Hardwall, 0x100000), (Gfp.ThisNode, 0x200000), (Gfp.Account, 0x400000),
            (Gfp.ZeroTags, 0x800000),
        ];
        foreach (var (flag, value) in bits)
        {
            Assert.Equal(value, (uint)flag);
        }
    }

    [Fact]
    public void GfpKernelFormatsAsTheKernelPrintsIt()
    {
        Assert.Equal("GFP_KERNEL", GfpFlags.Format(Gfp.Kernel));
    }

    [Theory]
    [InlineData(Gfp.Kernel | Gfp.Zero, "GFP_KERNEL|__GFP_ZERO")]
    [InlineData(Gfp.Atomic | Gfp.NoWarn | Gfp.NoMemalloc, "GFP_ATOMIC|__GFP_NOWARN|__GFP_NOMEMALLOC")]
    [InlineData(Gfp.NoWait | Gfp.NoWarn, "GFP_NOWAIT|__GFP_NOWARN")]
    [InlineData(Gfp.Kernel | Gfp.NoWarn | Gfp.NoRetry | Gfp.Comp, "GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP")]
    [InlineData(Gfp.HighUserMovable | Gfp.Zero, "GFP_HIGHUSER_MOVABLE|__GFP_ZERO")]
    [InlineData(Gfp.TransHuge, "GFP_TRANSHUGE")]
    [InlineData(Gfp.TransHugeLight, "GFP_TRANSHUGE_LIGHT")]
    [InlineData(Gfp.Kernel | Gfp.Dma, "GFP_KERNEL|GFP_DMA")]
    [InlineData(Gfp.Kernel | Gfp.Dma32 | Gfp.NoWarn, "GFP_KERNEL|GFP_DMA32|__GFP_NOWARN")]
    [InlineData(Gfp.High | Gfp.AtomicBit | Gfp.Zero, "__GFP_HIGH|__GFP_ATOMIC|__GFP_ZERO")]
    [InlineData(Gfp.DirectReclaim, "__GFP_DIRECT_RECLAIM")]
    [InlineData(Gfp.Write | Gfp.ThisNode | Gfp.Memalloc | Gfp.ZeroTags, "__GFP_MEMALLOC|__GFP_THISNODE|__GFP_WRITE|__GFP_ZEROTAGS")]
    public void FormatPrintsTheKernelsNamesInTheKernelsOrder(Gfp gfp, string expected)
    {
        Assert.Equal(expected, GfpFlags.Format(gfp));
    }

    [Fact]
    public void ZeroFormatsAsNone()
    {
        Assert.Equal("none", GfpFlags.Format(0));
    }

    [Fact]
    public void NoIoIsOnlyPrintedWhenIoAndFsAreAbsent()
    {
        Assert.Equal("GFP_NOIO|__GFP_ZERO", GfpFlags.Format(Gfp.NoIo | Gfp.Zero));
        Assert.Equal("GFP_NOFS", GfpFlags.Format(Gfp.NoIo | Gfp.Io));
        Assert.Equal("GFP_NOWAIT|__GFP_IO|__GFP_FS", GfpFlags.Format(Gfp.Kernel & ~Gfp.DirectReclaim));
    }

    [Fact]
    public void BitsWithoutANameAreAppendedInLowercaseHex()
    {
        Assert.Equal("0x1000000", GfpFlags.Format((Gfp)0x1000000));
        Assert.Equal("GFP_KERNEL|0x9000000", GfpFlags.Format(Gfp.Kernel | (Gfp)0x9000000));
        Assert.Equal("__GFP_ZERO|0xab000000", GfpFlags.Format(Gfp.Zero | (Gfp)0xab000000));
    }

    [Fact]
    public void EveryRenderingInTheRealTracesRoundTrips()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "PageAlloc", "real-gfp-flags.txt");
        var lines = File.ReadAllLines(path).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        Assert.True(lines.Count >= 66, $"only {lines.Count} renderings in the data file");
        foreach (var text in lines)
        {
            Assert.Equal(text, GfpFlags.Format(GfpFlags.Parse(text)));
        }
    }

    [Fact]
    public void ParseOfFormatGivesBackEveryMask()
    {
        var random = new Random(61);
        for (int i = 0; i < 20000; i++)
        {
            // Mostly kernel bits, sometimes bits above them too.
            var gfp = (Gfp)((uint)random.Next() & (i % 4 == 0 ? 0xffffffffu : 0xffffffu));
            Assert.Equal(gfp, GfpFlags.Parse(GfpFlags.Format(gfp)));
        }
        for (int bit = 0; bit < 32; bit++)
        {
            var gfp = (Gfp)(1u << bit);
            Assert.Equal(gfp, GfpFlags.Parse(GfpFlags.Format(gfp)));
        }
    }

    [Theory]
    [InlineData("none", 0u)]
    [InlineData("GFP_KERNEL", 0xcc0u)]
    [InlineData("0xcc0", 0xcc0u)]
    [InlineData("3264", 0xcc0u)]
    [InlineData("GFP_KERNEL|0x1000000", 0x1000cc0u)]
    [InlineData("GFP_KERNEL|GFP_NOIO", 0xcc0u)]
    [InlineData("__GFP_RECLAIM|__GFP_IO|__GFP_FS", 0xcc0u)]
    public void ParseReadsNamesAndNumbers(string text, uint expected)
    {
        Assert.Equal((Gfp)expected, GfpFlags.Parse(text));
        Assert.True(GfpFlags.TryParse(text, out var gfp));
        Assert.Equal((Gfp)expected, gfp);
    }

    [Theory]
    [InlineData("GFP_KERNEL|__GFP_BOGUS", "__GFP_BOGUS")]
    [InlineData("gfp_kernel", "gfp_kernel")]
    [InlineData("GFP_Kernel|__GFP_ZERO", "GFP_Kernel")]
    [InlineData("0xzz", "0xzz")]
    [InlineData("GFP_KERNEL |__GFP_ZERO", "GFP_KERNEL ")]
    [InlineData("NONE", "NONE")]
    public void ParseRefusesUnknownTokensAndNamesThem(string text, string badToken)
    {
        var e = Assert.Throws<FormatException>(() => GfpFlags.Parse(text));
        Assert.Contains($"'{badToken}'", e.Message, StringComparison.Ordinal);
        Assert.False(GfpFlags.TryParse(text, out var gfp));
        Assert.Equal((Gfp)0, gfp);
    }

    [Theory]
    [InlineData("")]
    [InlineData("GFP_KERNEL||__GFP_ZERO")]
    [InlineData("GFP_KERNEL|")]
    [InlineData("0x100000000")]
    public void ParseRefusesEmptyPartsAndOverflow(string text)
    {
        Assert.Throws<FormatException>(() => GfpFlags.Parse(text));
        Assert.False(GfpFlags.TryParse(text, out _));
    }

    [Fact]
    public void TryParseOfNullIsFalse()
    {
        Assert.False(GfpFlags.TryParse(null, out _));
    }

    [Theory]
    [InlineData((Gfp)0, ZoneType.Normal)]
    [InlineData(Gfp.Dma, ZoneType.Dma)]
    [InlineData(Gfp.HighMem, ZoneType.HighMem)]
    [InlineData(Gfp.Dma32, ZoneType.Dma32)]
    [InlineData(Gfp.Movable, ZoneType.Normal)]
    [InlineData(Gfp.Movable | Gfp.Dma, ZoneType.Dma)]
    [InlineData(Gfp.Movable | Gfp.HighMem, ZoneType.Movable)]
    [InlineData(Gfp.Movable | Gfp.Dma32, ZoneType.Dma32)]
    [InlineData(Gfp.Kernel, ZoneType.Normal)]
    [InlineData(Gfp.HighUserMovable, ZoneType.Movable)]
    [InlineData(Gfp.HighUser, ZoneType.HighMem)]
    [InlineData(Gfp.Kernel | Gfp.Dma32 | Gfp.NoWarn, ZoneType.Dma32)]
    public void GfpZoneFollowsTheZoneTableWhenEveryZoneExists(Gfp gfp, ZoneType expected)
    {
        Assert.Equal(expected, GfpFlags.GfpZone(gfp, hasDma: true, hasDma32: true, hasHighMem: true));
    }

    [Theory]
    [InlineData(Gfp.Dma, ZoneType.Normal)]
    [InlineData(Gfp.Dma | Gfp.Movable, ZoneType.Normal)]
    [InlineData(Gfp.Dma32, ZoneType.Normal)]
    [InlineData(Gfp.Dma32 | Gfp.Movable, ZoneType.Normal)]
    [InlineData(Gfp.HighMem, ZoneType.Normal)]
    [InlineData(Gfp.HighMem | Gfp.Movable, ZoneType.Movable)]
    [InlineData(Gfp.Movable, ZoneType.Normal)]
    [InlineData((Gfp)0, ZoneType.Normal)]
    public void GfpZoneFallsBackToNormalForAbsentZones(Gfp gfp, ZoneType expected)
    {
        Assert.Equal(expected, GfpFlags.GfpZone(gfp, hasDma: false, hasDma32: false, hasHighMem: false));
    }

    [Fact]
    public void GfpZoneOnThePresetsZoneSets()
    {
        // x86-64: DMA, DMA32, Normal; no highmem.
        Assert.Equal(ZoneType.Normal, GfpFlags.GfpZone(Gfp.HighUser, true, true, false));
        Assert.Equal(ZoneType.Movable, GfpFlags.GfpZone(Gfp.HighUserMovable, true, true, false));
        Assert.Equal(ZoneType.Dma32, GfpFlags.GfpZone(Gfp.Dma32, true, true, false));
        // x86-32: DMA, Normal, HighMem; no DMA32.
        Assert.Equal(ZoneType.Normal, GfpFlags.GfpZone(Gfp.Dma32, true, false, true));
        Assert.Equal(ZoneType.HighMem, GfpFlags.GfpZone(Gfp.HighUser, true, false, true));
        Assert.Equal(ZoneType.Dma, GfpFlags.GfpZone(Gfp.Kernel | Gfp.Dma, true, false, true));
    }

    [Theory]
    [InlineData(Gfp.Dma | Gfp.HighMem, "GFP_DMA|__GFP_HIGHMEM")]
    [InlineData(Gfp.Dma | Gfp.Dma32, "GFP_DMA|GFP_DMA32")]
    [InlineData(Gfp.Dma32 | Gfp.HighMem, "__GFP_HIGHMEM|GFP_DMA32")]
    [InlineData(Gfp.Dma | Gfp.Dma32 | Gfp.HighMem, "GFP_DMA|__GFP_HIGHMEM|GFP_DMA32")]
    [InlineData(Gfp.Movable | Gfp.HighMem | Gfp.Dma, "GFP_DMA|__GFP_HIGHMEM|__GFP_MOVABLE")]
    [InlineData(Gfp.Movable | Gfp.Dma32 | Gfp.Dma, "GFP_DMA|GFP_DMA32|__GFP_MOVABLE")]
    [InlineData(Gfp.Movable | Gfp.Dma32 | Gfp.HighMem, "__GFP_HIGHMEM|GFP_DMA32|__GFP_MOVABLE")]
    [InlineData(Gfp.Movable | Gfp.Dma32 | Gfp.Dma | Gfp.HighMem, "GFP_DMA|__GFP_HIGHMEM|GFP_DMA32|__GFP_MOVABLE")]
    public void GfpZoneRefusesTheBadCombinationsAndNamesThem(Gfp zoneBits, string names)
    {
        foreach (var (dma, dma32, high) in new[] { (true, true, true), (false, false, false), (true, true, false) })
        {
            var e = Assert.Throws<ArgumentException>(() => GfpFlags.GfpZone(Gfp.Kernel | zoneBits, dma, dma32, high));
            Assert.Contains(names, e.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(Gfp.Kernel, MigrateType.Unmovable)]
    [InlineData(Gfp.Atomic, MigrateType.Unmovable)]
    [InlineData(Gfp.HighUserMovable, MigrateType.Movable)]
    [InlineData(Gfp.Movable, MigrateType.Movable)]
    [InlineData(Gfp.Kernel | Gfp.Reclaimable, MigrateType.Reclaimable)]
    [InlineData(Gfp.TransHuge, MigrateType.Movable)]
    public void GfpMigratetypeComesFromTheMobilityBits(Gfp gfp, MigrateType expected)
    {
        Assert.Equal(expected, GfpFlags.GfpMigratetype(gfp));
    }

    [Fact]
    public void GfpMigratetypeRefusesMovableAndReclaimableTogether()
    {
        var e = Assert.Throws<ArgumentException>(() => GfpFlags.GfpMigratetype(Gfp.Kernel | Gfp.Movable | Gfp.Reclaimable));
        Assert.Contains("__GFP_RECLAIMABLE", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void OnlyDirectReclaimAllowsBlocking()
    {
        Assert.True(GfpFlags.GfpAllowBlocking(Gfp.Kernel));
        Assert.True(GfpFlags.GfpAllowBlocking(Gfp.NoIo));
        Assert.True(GfpFlags.GfpAllowBlocking(Gfp.TransHuge));
        Assert.False(GfpFlags.GfpAllowBlocking(Gfp.Atomic));
        Assert.False(GfpFlags.GfpAllowBlocking(Gfp.NoWait));
        Assert.False(GfpFlags.GfpAllowBlocking(Gfp.TransHugeLight));
    }
}
