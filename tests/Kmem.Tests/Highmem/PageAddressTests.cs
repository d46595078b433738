// page_address of a highmem frame: its pkmap address while kmapped, 0 otherwise.
namespace Kmem.Tests.Highmem;

public class PageAddressTests
{
    [Fact]
    public void PageAddressOfAKmappedHighmemPageIsItsPkmapAddress()
    {
        using var m = Machine.Boot(new MachineOptions { Preset = Preset.X86Pae, Memory = "1536M", Cpus = 1 });
        var page = m.AllocPages(Gfp.HighUser, 0);
        Assert.True(m.PageHighMem(page));
        Assert.Equal(0, m.PageAddress(page));
        nint mapped = m.Kmap(page);
        Assert.NotEqual(0, mapped);
        Assert.Equal(mapped, m.PageAddress(page));
        m.Kunmap(page);
        m.KmapFlushUnused();
        Assert.Equal(0, m.PageAddress(page));
        m.FreePage(page);
    }
}
