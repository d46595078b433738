// The page cache over real files: reads and writes through the cache, fsync,
// drop_caches, reclaim dropping clean pages and writing dirty ones first, and
// GFP_NOFS never writing back.
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

[Collection("reclaim-files")]
public class PageCacheTests
{
    [Fact]
    public void WritesGoThroughTheCacheAndFsyncPutsThemOnDisk()
    {
        using var m = Boot();
        using var path = Temp("data");
        File.WriteAllBytes(path.Path, [.. Enumerable.Range(0, 10000).Select(i => (byte)(i * 7))]);
        using var f = m.OpenFile(path.Path);
        var buf = new byte[10000];
        Assert.Equal(10000, f.Read(0, buf));
        Assert.Equal(Enumerable.Range(0, 10000).Select(i => (byte)(i * 7)), buf);
        Assert.Equal(3, f.CachedPages);
        Assert.Equal(12, Meminfo(m, "Cached"));
        Assert.Equal(0, f.Read(20000, buf));
        f.Write(9000, new byte[3000]);
        Assert.Equal(12000, f.Length);
        Assert.Equal(4, Meminfo(m, "Dirty")); // page 2 (8192..12287) only
        Assert.Equal(10000, new FileInfo(path.Path).Length); // not yet on disk
        f.Fsync();
        Assert.Equal(0, Meminfo(m, "Dirty"));
        var disk = File.ReadAllBytes(path.Path);
        Assert.Equal(12000, disk.Length);
        Assert.All(disk[9000..], b => Assert.Equal(0, b));
        Assert.Equal(unchecked((byte)(8999 * 7)), disk[8999]);
        // A second read of a page activates it (mark_page_accessed twice).
        f.Read(0, buf.AsSpan(0, 10));
        Assert.True(Meminfo(m, "Active(file)") > 0);
        m.Mm.Validate();
    }

    [Fact]
    public void DropCachesDropsCleanPagesOnly()
    {
        using var m = Boot();
        using var path = Temp("drop");
        using var f = m.OpenFile(path.Path);
        f.Write(0, new byte[40960]);
        f.Fsync();
        f.Write(0, new byte[] { 1 });
        m.DropCaches(1);
        Assert.Equal(1, f.CachedPages);
        Assert.Equal(4, Meminfo(m, "Dirty"));
        f.Fsync();
        m.DropCaches(1);
        Assert.Equal(0, f.CachedPages);
        Assert.Equal(0, Meminfo(m, "Cached"));
        var one = new byte[1];
        f.Read(0, one);
        Assert.Equal(1, one[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.DropCaches(4));
    }

    [Fact]
    public void ReclaimWritesDirtyPagesBackButGfpNofsDoesNot()
    {
        using var m = Boot();
        using var path = Temp("dirty");
        using var f = m.OpenFile(path.Path);
        var data = new byte[8 << 20];
        new Random(3).NextBytes(data);
        f.Write(0, data);
        long dirty = Meminfo(m, "Dirty");
        Assert.Equal(8 << 10, dirty);
        var zonelist = m.PageAllocator.Nodes[0].ZonelistFallback;
        for (int i = 0; i < 20; i++)
        {
            m.Mm.TryToFreePages(Gfp.NoFs, 0, zonelist, ZoneType.Normal);
        }
        Assert.Equal(0, Vmstat(m)["nr_written"]);
        Assert.Equal(dirty, Meminfo(m, "Dirty"));
        for (int i = 0; i < 20; i++)
        {
            m.Mm.TryToFreePages(Gfp.Kernel, 0, zonelist, ZoneType.Normal);
        }
        var v = Vmstat(m);
        Assert.True(v["nr_vmscan_write"] > 0);
        Assert.True(v["pgsteal_file"] > 0);
        Assert.True(f.CachedPages < 2048);
        var back = new byte[data.Length];
        f.Read(0, back);
        Assert.Equal(data, back);
        m.Mm.Validate();
    }
}
