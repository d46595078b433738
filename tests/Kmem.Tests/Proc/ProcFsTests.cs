// ProcFs dispatch: files by full path, short name or path tail; a clear error
// for a file Kmem does not provide; no addresses in the reports.
namespace Kmem.Tests.Proc;

public class ProcFsTests
{
    [Fact]
    public void ReadAcceptsFullPathsShortNamesAndPathTails()
    {
        using var m = Snapshots.BootX64();
        var p = m.Proc;
        Assert.Equal(p.Buddyinfo(), p.Read("/proc/buddyinfo"));
        Assert.Equal(p.Buddyinfo(), p.Read("buddyinfo"));
        Assert.Equal(p.Pagetypeinfo(), p.Read("/proc/pagetypeinfo"));
        Assert.Equal(p.Zoneinfo(), p.Read("zoneinfo"));
        Assert.Equal(p.Meminfo(), p.Read("/proc/meminfo"));
        Assert.Equal(p.Vmstat(), p.Read("vmstat"));
        Assert.Equal(p.ExtfragUnusableIndex(), p.Read("/sys/kernel/debug/extfrag/unusable_index"));
        Assert.Equal(p.ExtfragUnusableIndex(), p.Read("unusable_index"));
        Assert.Equal(p.ExtfragIndex(), p.Read("extfrag/extfrag_index"));
        Assert.NotEqual(p.ExtfragIndex(), p.ExtfragUnusableIndex());
        Assert.Equal("/sys/kernel/debug/extfrag/unusable_index", p.PathOf("unusable_index"));
        Assert.Equal("/proc/vmstat", p.PathOf("vmstat"));
        Assert.Equal(p.Names.Count, p.Paths.Count);
        Assert.All(p.Names, n => Assert.True(p.Knows(n)));
    }

    [Theory]
    [InlineData("/proc/vmallocinfo2")]
    [InlineData("")]
    [InlineData("/proc/buddyinfo2")]
    [InlineData("extfrag")]
    public void AnUnknownFileIsNotFoundAndTheErrorListsTheKnownOnes(string path)
    {
        using var m = Snapshots.BootX64();
        Assert.False(m.Proc.Knows(path));
        var e = Assert.Throws<FileNotFoundException>(() => m.Proc.Read(path));
        Assert.Equal(path, e.FileName);
        Assert.Contains("/proc/buddyinfo", e.Message, StringComparison.Ordinal);
        Assert.Contains("/sys/kernel/debug/extfrag/extfrag_index", e.Message, StringComparison.Ordinal);
        Assert.Throws<FileNotFoundException>(() => m.Proc.PathOf(path));
    }

    [Fact]
    public void ReportsCarryNoAddresses()
    {
        using var m = Snapshots.BootX64();
        using (m.OnCpu(0))
        {
            Assert.NotEqual(0, m.GetFreePage(Gfp.Kernel));
        }
        foreach (var name in m.Proc.Names)
        {
            Assert.DoesNotContain("0x", m.Proc.Read(name), StringComparison.Ordinal);
        }
    }
}
