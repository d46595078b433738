// The library examples of README.md's tour, run here in-process line for line, with asserts on what
// the README says they do. ExampleTests checks that every line of the README's C# blocks is code of
// examples/QuickStart, and runs that program too.
namespace Kmem.Tests.Architecture;

public class ReadmeExampleTests
{
    [Fact]
    public void TheReadmeExampleRunsAsDescribed()
    {
        var output = new StringWriter();

        using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2 });

        Page page = m.AllocPages(Gfp.Kernel | Gfp.Zero, order: 2);   // 4 contiguous frames, zeroed; Page.Null on failure
        Span<byte> bytes = m.PageSpan(page, order: 2);                // the frames' real bytes, in the direct map
        bytes[0] = 42;
        output.Write(m.Proc.Buddyinfo());                             // /proc/buddyinfo, byte for byte
        m.FreePages(page, order: 2);

        using (m.OnCpu(1))                                            // pin this thread to CPU 1 (per-CPU lists, counters)
        {
            nint address = m.GetZeroedPage(Gfp.Kernel);               // a real pointer; 0 on failure
            m.FreePage(address);
        }

        Assert.False(page.IsNull);
        Assert.Equal(4 * Machine.PageSize, bytes.Length);
        Assert.StartsWith("Node 0, zone      DMA ", output.ToString(), StringComparison.Ordinal);
        Assert.Empty(m.Log.Lines);
    }

    [Fact]
    public void TheReadmeLayerExampleRunsAsDescribed()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2 });
        var output = new StringWriter();

        nint p = m.Kmalloc(100, Gfp.Kernel);                 // from kmalloc-128; 0 on failure
        KmemCache cache = m.KmemCacheCreate("my_objects", 72, 0, SlabFlags.HwcacheAlign, null)!;
        nint obj = m.KmemCacheAlloc(cache, Gfp.Kernel);
        m.KmemCacheFree(cache, obj);
        m.Kfree(p);

        nint big = m.Vmalloc(1 << 20);                        // one contiguous MiB over scattered frames
        m.Vfree(big);
        output.Write(m.Proc.Read("slabinfo"));               // also "vmallocinfo"

        Assert.NotEqual(0, p);
        Assert.NotEqual(0, obj);
        Assert.NotEqual(0, big);
        Assert.Contains("my_objects", output.ToString(), StringComparison.Ordinal);
        Assert.Empty(m.Log.Lines);
    }
}
