// The highmem helpers (clear_highpage, copy_highpage, memcpy_to_page,
// memcpy_from_page, memcpy_page, memmove_page, memset_page, memzero_page,
// zero_user_segments): each works on highmem and lowmem pages alike through
// kmap_local, leaves no slot behind, and
// refuses a range outside the page with an ArgumentOutOfRangeException.
using static Kmem.Tests.Highmem.HighmemFixtures;

namespace Kmem.Tests.Highmem;

public class HighmemHelperTests
{
    public static TheoryData<bool> Zones => [true, false];

    private static Page PageIn(Machine m, bool high) => high ? HighPage(m) : m.AllocPage(Gfp.Kernel);

    private static byte[] Read(Machine m, Page page)
    {
        var bytes = new byte[Machine.PageSize];
        m.MemcpyFromPage(bytes, page, 0);
        return bytes;
    }

    [Theory]
    [MemberData(nameof(Zones))]
    public void ClearHighpageZeroesThePage(bool high)
    {
        using var m = Boot();
        var page = PageIn(m, high);
        nint k = m.Kmap(page);
        Fill(k, 3);
        m.ClearHighpage(page);
        Assert.DoesNotContain(Read(m, page), b => b != 0);
        m.Kunmap(page);
        Assert.Equal(0, m.Highmem.LocalSlots.Depth);
    }

    [Theory]
    [MemberData(nameof(Zones))]
    public void CopyHighpageCopiesEveryByte(bool high)
    {
        using var m = Boot();
        var from = PageIn(m, high);
        var to = HighPage(m);
        var data = Enumerable.Range(0, Machine.PageSize).Select(i => (byte)(i * 13)).ToArray();
        m.MemcpyToPage(from, 0, data);
        m.CopyHighpage(to, from);
        Assert.Equal(data, Read(m, to));
        Assert.Equal(0, m.Highmem.LocalSlots.Depth);
    }

    [Fact]
    public void MemcpyToAndFromPageUseTheOffset()
    {
        using var m = Boot();
        var page = HighPage(m);
        m.ClearHighpage(page);
        m.MemcpyToPage(page, 4000, [1, 2, 3, 4]);
        var back = new byte[6];
        m.MemcpyFromPage(back, page, 3999);
        Assert.Equal(new byte[] { 0, 1, 2, 3, 4, 0 }, back);
        m.MemcpyToPage(page, Machine.PageSize - 1, [9]);
        m.MemcpyToPage(page, Machine.PageSize, []);
        Assert.Equal(9, Read(m, page)[^1]);
    }

    [Fact]
    public void MemcpyPageAndMemzeroPageWorkAcrossPages()
    {
        using var m = Boot();
        var a = HighPage(m);
        var b = HighPage(m);
        m.ClearHighpage(b);
        m.MemcpyToPage(a, 100, [7, 8, 9]);
        m.MemcpyPage(b, 10, a, 100, 3);
        var bytes = Read(m, b);
        Assert.Equal(new byte[] { 7, 8, 9 }, bytes[10..13]);
        m.MemzeroPage(b, 11, 1);
        Assert.Equal(new byte[] { 7, 0, 9 }, Read(m, b)[10..13]);
        m.ZeroUser(b, 10, 3);
        Assert.DoesNotContain(Read(m, b), x => x != 0);
    }

    [Fact]
    public void MemmovePageWithinOneHighmemPageHandlesTheOverlap()
    {
        using var m = Boot();
        var page = HighPage(m);
        var other = HighPage(m);
        m.MemcpyToPage(page, 0, [1, 2, 3, 4, 5, 6]);
        m.MemmovePage(page, 2, page, 0, 4);
        var bytes = new byte[6];
        m.MemcpyFromPage(bytes, page, 0);
        Assert.Equal(new byte[] { 1, 2, 1, 2, 3, 4 }, bytes);
        m.MemmovePage(page, 0, page, 2, 4);
        m.MemcpyFromPage(bytes, page, 0);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 3, 4 }, bytes);
        m.MemmovePage(other, 100, page, 0, 6);
        m.MemcpyFromPage(bytes, other, 100);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 3, 4 }, bytes);
        Assert.Equal(0, m.Highmem.LocalSlots.Depth);
    }

    [Fact]
    public void MemsetPageSetsOnlyItsRange()
    {
        using var m = Boot();
        var page = HighPage(m);
        m.ClearHighpage(page);
        m.MemsetPage(page, 10, 0xab, 5);
        var bytes = Read(m, page);
        Assert.Equal(5, bytes.Count(b => b == 0xab));
        Assert.All(bytes[10..15], b => Assert.Equal(0xab, b));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.MemsetPage(page, 4095, 1, 2));
    }

    [Fact]
    public void CopiesOutsideThePageAreRefused()
    {
        using var m = Boot();
        var page = HighPage(m);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => m.MemcpyToPage(page, 4090, new byte[7]));
        Assert.Equal("offset", e.ParamName);
        Assert.Contains("4090", e.Message);
        Assert.Contains("4096", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.MemcpyToPage(page, -1, new byte[1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.MemcpyFromPage(new byte[4097], page, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.MemcpyFromPage(new byte[1], page, 4096));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.MemcpyPage(page, 0, page, 4000, 100));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.MemzeroPage(page, 4000, 97));
        Assert.Equal(0, m.Highmem.LocalSlots.Depth);
    }

    [Fact]
    public void ZeroUserSegmentsZeroesBothSegmentsOnly()
    {
        using var m = Boot();
        var page = HighPage(m);
        var ones = Enumerable.Repeat((byte)1, Machine.PageSize).ToArray();
        m.MemcpyToPage(page, 0, ones);
        m.ZeroUserSegments(page, 0, 10, 4000, 4096);
        var bytes = Read(m, page);
        Assert.All(bytes[..10], b => Assert.Equal(0, b));
        Assert.All(bytes[10..4000], b => Assert.Equal(1, b));
        Assert.All(bytes[4000..], b => Assert.Equal(0, b));

        m.MemcpyToPage(page, 0, ones);
        m.ZeroUserSegments(page, 20, 10, 0, 0); // an empty or inverted segment zeroes nothing
        Assert.All(Read(m, page), b => Assert.Equal(1, b));
        m.ZeroUserSegment(page, 100, 200);
        Assert.Equal(100, Read(m, page).Count(b => b == 0));
    }

    [Fact]
    public void ZeroUserSegmentsRefusesEndsBeyondThePage()
    {
        using var m = Boot();
        var page = HighPage(m);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => m.ZeroUserSegments(page, 0, 4097, 0, 0));
        Assert.Equal("end1", e.ParamName);
        Assert.Contains("PAGE_SIZE (4096)", e.Message);
        Assert.Equal("end2", Assert.Throws<ArgumentOutOfRangeException>(() => m.ZeroUserSegments(page, 0, 1, 0, 5000)).ParamName);
        Assert.Equal("start1", Assert.Throws<ArgumentOutOfRangeException>(() => m.ZeroUserSegments(page, -1, 1, 0, 0)).ParamName);
    }
}
