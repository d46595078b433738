// /proc/vmallocinfo against the real 6.1 captures: every vmalloc, vmap and unpurged
// line of the real x86-64 and i386 files and every line Kmem prints fit one shape
// (address width, %7ld size, caller, pages=, flag words, N<node>= only with NUMA);
// and vmalloc/vfree from several threads at once leaves nothing behind.
using System.Text.RegularExpressions;

using Kmem.Vmalloc;

namespace Kmem.Tests.Vmalloc;

// Serial with the other vmalloc tests: they share the process-wide host-mapping count that one of them checks.
[Collection("VmallocHostMappings")]
public partial class VmallocinfoFormatTests
{
    [GeneratedRegex(@"^0x[0-9a-f]{16}-0x[0-9a-f]{16} [ \d]{6}\d (\S+( pages=\d+)?( vmalloc)?( vmap)?( user)?( vpages)?( N0=\d+)*|unpurged vm_area)$")]
    private static partial Regex X64Line();

    [GeneratedRegex(@"^0x[0-9a-f]{8}-0x[0-9a-f]{8} [ \d]{6}\d (\S+( pages=\d+)?( vmalloc)?( vmap)?( user)?( vpages)?|unpurged vm_area)$")]
    private static partial Regex I386Line();

    [Theory]
    [InlineData(Preset.X64, "linux-6.1-boot-B")]
    [InlineData(Preset.X86Pae, "linux-i386-highmem")]
    public unsafe void KmemsLinesHaveTheShapeOfTheRealKernels(Preset preset, string capture)
    {
        var shape = preset == Preset.X64 ? X64Line() : I386Line();
        var real = Kmem.Tests.Proc.Snapshots.Lines(capture, "vmallocinfo")
            .Where(l => !l.Contains(" phys=", StringComparison.Ordinal) && !l.Contains('[', StringComparison.Ordinal)).ToList();
        Assert.True(real.Count > 10);
        Assert.All(real, l => Assert.Matches(shape, l));

        using var m = VmallocTests.Boot(preset, preset == Preset.X64 ? "512M" : "1536M");
        nint a = m.Vmalloc(4 * Machine.PageSize);
        nint b = m.VmallocUser(2000 * Machine.PageSize);
        var pages = new[] { m.AllocPage(Gfp.Kernel) };
        nint c = m.Vmap(pages, VmFlags.Map, PageProt.PageKernel);
        nint d = m.Vzalloc(Machine.PageSize);
        m.Vfree(d);
        string[] ours = m.Proc.Vmallocinfo().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(5, ours.Length); // a, b, b's page array, c, and d unpurged
        Assert.All(ours, l => Assert.Matches(shape, l));
        Assert.EndsWith(" unpurged vm_area", ours[^1], StringComparison.Ordinal);
        Assert.Contains(ours, l => l.Contains(" pages=2000 vmalloc user vpages", StringComparison.Ordinal));
        m.Vfree(a);
        m.Vfree(b);
        m.Vunmap(c);
        m.FreePage(pages[0]);
    }

    [Fact]
    public async Task VmallocAndVfreeFromSeveralThreadsLeaveNothingBehind()
    {
        using var m = VmallocTests.Boot(Preset.X64, "512M", cpus: 2);
        long free = VmallocTests.FreeAfterDrain(m);
        var threads = Enumerable.Range(0, 4).Select(t => Task.Factory.StartNew(() =>
        {
            using var cpu = m.OnCpu(t % 2);
            var rnd = new Random(t);
            var held = new List<(nint P, int Pages, byte Tag)>();
            for (int i = 0; i < 300; i++)
            {
                if (held.Count > 0 && rnd.Next(2) == 0)
                {
                    var (p, n, tag) = held[rnd.Next(held.Count)];
                    held.Remove((p, n, tag));
                    unsafe
                    {
                        var bytes = new ReadOnlySpan<byte>((void*)p, n * Machine.PageSize);
                        Assert.True(bytes.IndexOfAnyExcept(tag) < 0, "another thread's bytes in my area");
                    }
                    m.Vfree(p);
                }
                else
                {
                    int n = rnd.Next(1, 40);
                    nint p = m.Vmalloc((nuint)(n * Machine.PageSize));
                    Assert.NotEqual(0, p);
                    byte tag = (byte)(t * 64 + i % 64);
                    unsafe
                    {
                        new Span<byte>((void*)p, n * Machine.PageSize).Fill(tag);
                    }
                    held.Add((p, n, tag));
                }
            }
            foreach (var (p, _, _) in held)
            {
                m.Vfree(p);
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        // A failed assertion in a thread surfaces here instead of tearing the test host down.
        await Task.WhenAll(threads);
        Assert.Equal(0, m.VmallocSpace.AreaCount);
        Assert.Equal(0, VmallocTests.Meminfo(m, "VmallocUsed"));
        Assert.Equal(free, VmallocTests.FreeAfterDrain(m));
        m.VmUnmapAliases();
        Assert.Equal(0, m.VmallocSpace.StaleHostPages);
        Assert.Equal("", m.Proc.Vmallocinfo());
        Assert.Equal(VmallocLayout.X64HostWindow, m.VmallocSpace.FreeBytes);
    }
}
