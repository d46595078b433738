// vmap/vunmap of the caller's frames (lowmem and highmem), read-only vmap and
// VM_MAP_PUT_PAGES, and kvmalloc's choice between kmalloc and vmalloc, with
// kvfree freeing either.
namespace Kmem.Tests.Vmalloc;

// Serial with the other vmalloc tests: they share the process-wide host-mapping count that one of them checks.
[Collection("VmallocHostMappings")]
public class VmapTests
{
    [Theory]
    [InlineData(Preset.X64)]
    [InlineData(Preset.X86Pae)]
    public unsafe void VmapShowsTheCallersFramesContiguouslyAndVunmapLeavesThemToTheCaller(Preset preset)
    {
        using var m = VmallocTests.Boot(preset, preset == Preset.X64 ? "512M" : "1536M");
        var pages = new[] { m.AllocPage(Gfp.HighUser), m.AllocPage(Gfp.Kernel), m.AllocPage(Gfp.HighUser), m.AllocPage(Gfp.Kernel) };
        for (int i = 0; i < pages.Length; i++)
        {
            nint k = m.KmapLocalPage(pages[i]);
            new Span<byte>((void*)k, Machine.PageSize).Fill((byte)(i + 1));
            m.KunmapLocal(k);
        }
        nint p = m.Vmap(pages, VmFlags.Map, PageProt.PageKernel);
        Assert.NotEqual(0, p);
        for (int i = 0; i < pages.Length; i++)
        {
            Assert.Equal(pages[i], m.VmallocToPage(p + i * Machine.PageSize));
            Assert.Equal((byte)(i + 1), ((byte*)p)[i * Machine.PageSize + 100]);
        }
        ((byte*)p)[2 * Machine.PageSize + 5] = 0xee;
        nint third = m.KmapLocalPage(pages[2]);
        Assert.Equal(0xee, ((byte*)third)[5]);
        m.KunmapLocal(third);

        string line = m.Proc.Vmallocinfo().TrimEnd('\n');
        Assert.EndsWith($"   20480 {nameof(VmapShowsTheCallersFramesContiguouslyAndVunmapLeavesThemToTheCaller)} vmap", line, StringComparison.Ordinal);
        Assert.Equal(0, VmallocTests.Meminfo(m, "VmallocUsed"));
        m.Vunmap(p);
        Assert.True(m.VmallocToPage(p).IsNull);
        foreach (var page in pages)
        {
            Assert.Equal(1, m.PageRefCount(page));
            m.FreePage(page);
        }
    }

    [Fact]
    public unsafe void AReadOnlyVmapAndAVmapWhoseFramesVfreeFrees()
    {
        using var m = VmallocTests.Boot(Preset.X64);
        using var cpu = m.OnCpu(0);
        var pages = new[] { m.AllocPage(Gfp.Kernel), m.AllocPage(Gfp.Kernel) };
        m.PageSpan(pages[1])[0] = 42;
        nint ro = m.Vmap(pages, VmFlags.Map, PageProt.PageKernelRo);
        Assert.Equal(42, ((byte*)ro)[Machine.PageSize]);
        m.Vunmap(ro);
        long free = VmallocTests.FreeAfterDrain(m);
        nint owned = m.Vmap(pages, VmFlags.Map | VmFlags.MapPutPages, PageProt.PageKernel);
        Assert.Contains(" pages=2 vmap N0=2\n", m.Proc.Vmallocinfo(), StringComparison.Ordinal);
        m.Vfree(owned);
        Assert.Equal(free + 8, VmallocTests.FreeAfterDrain(m));
        Assert.Equal(0, m.Vmap([], VmFlags.Map, PageProt.PageKernel));
    }

    [Fact]
    public void KvmallocUsesKmallocForSmallSizesAndVmallocForBigOnes()
    {
        using var m = VmallocTests.Boot(Preset.X64);
        nint small = m.Kvmalloc(100, Gfp.Kernel);
        Assert.NotEqual(0, small);
        Assert.False(m.IsVmallocAddr(small));
        nint mid = m.Kvmalloc(64 << 10, Gfp.Kernel);
        Assert.False(m.IsVmallocAddr(mid));
        nint big = m.Kvzalloc(8 << 20, Gfp.Kernel); // above KMALLOC_MAX_SIZE: kmalloc fails silently
        Assert.True(m.IsVmallocAddr(big));
        Assert.DoesNotContain(m.Log.Lines, l => l.Contains("page allocation failure", StringComparison.Ordinal));
        Assert.Contains($" {nameof(KvmallocUsesKmallocForSmallSizesAndVmallocForBigOnes)} pages=2048 vmalloc vpages N0=2048\n", m.Proc.Vmallocinfo(), StringComparison.Ordinal);
        Assert.Equal(0, m.Kvmalloc(8 << 20, Gfp.Atomic)); // no vmalloc fallback without blocking
        Assert.Equal(0, m.Kvmalloc((nuint)int.MaxValue + 1, Gfp.Kernel));
        Assert.Contains($" {nameof(KvmallocUsesKmallocForSmallSizesAndVmallocForBigOnes)} pages=4 vmalloc N0=4\n", m.Proc.Vmallocinfo(), StringComparison.Ordinal);
        Assert.Equal(2, m.VmallocSpace.AreaCount); // the area and its page array's
        m.Kvfree(small);
        m.Kvfree(mid);
        m.Kvfree(big);
        m.Kvfree(0);
        Assert.Equal(0, m.VmallocSpace.AreaCount);
        Assert.Equal(0, VmallocTests.Meminfo(m, "VmallocUsed"));
    }
}
