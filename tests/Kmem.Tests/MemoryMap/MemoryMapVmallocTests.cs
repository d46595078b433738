// The memory map on frames whose state the test sets up itself (slab,
// large kmalloc, vmalloc, a free order-10 block, per-CPU lists, reserved, holes),
// and Classify against the picture's own pass over every frame.
using Kmem.Workload;
using static Kmem.Tests.MemoryMaps.MapKit;

namespace Kmem.Tests.MemoryMaps;

// Serial with the vmalloc tests: vmalloc areas count against the process-wide host-mapping figure they check.
[Collection("VmallocHostMappings")]
public class MemoryMapVmallocTests
{
    [Fact]
    public void FramesTheTestSetsUpHaveTheirStatesColour()
    {
        using var m = Boot("256M", cpus: 2);
        using var cpu = m.OnCpu(0);
        nint obj = m.Kmalloc(64, Gfp.Kernel);
        nint large = m.Kmalloc(64 << 10, Gfp.Kernel);
        nint area = m.Vmalloc(3 * 4096);
        var order10 = m.AllocPages(Gfp.Kernel, 10);
        var kernelPage = m.AllocPages(Gfp.Kernel, 0);
        var pcpPage = m.AllocPages(Gfp.Kernel, 0);
        Assert.True(obj != 0 && large != 0 && area != 0 && !order10.IsNull && !kernelPage.IsNull && !pcpPage.IsNull);
        m.FreePages(order10, 10); // back on the buddy lists whole: order 10 is never kept on a per-CPU list
        m.FreePage(pcpPage);      // onto CPU 0's list
        ulong slabPfn = m.VirtToPage(obj).Pfn, largePfn = m.VirtToPage(large).Pfn;
        ulong vmallocPfn = m.VmallocToPage(area + 4096).Pfn;
        var cases = new (string What, ulong Pfn, FrameState State, int Order)[]
        {
            ("a kmalloc-64 slab page", slabPfn, FrameState.Slab, 0),
            ("the head of a 64 KiB kmalloc", largePfn, FrameState.LargeKmalloc, 4),
            ("a tail of a 64 KiB kmalloc", largePfn + 9, FrameState.LargeKmalloc, 4),
            ("a vmalloc page", vmallocPfn, FrameState.Vmalloc, 0),
            ("the first frame of a free order-10 block", order10.Pfn, FrameState.Free, 10),
            ("the last frame of a free order-10 block", order10.Pfn + 1023, FrameState.Free, 10),
            ("an alloc_pages page", kernelPage.Pfn, FrameState.Kernel, 0),
            ("a page on a per-CPU list", pcpPage.Pfn, FrameState.PerCpuList, 0),
            ("the kernel image", 4096 + 100, FrameState.Reserved, 0),
            ("pfn 0", 0, FrameState.Hole, 0),
            ("the BIOS hole", 200, FrameState.Hole, 0),
        };
        var layout = MemoryMap.GetLayout(m);
        Assert.Equal(1UL, layout.FramesPerCell);
        using var bmp = Picture(m);
        foreach (var (what, pfn, state, order) in cases)
        {
            Assert.Equal((what, state), (what, MemoryMap.Classify(m, pfn, out int got)));
            Assert.Equal((what, order), (what, got));
            uint expected = ColorOf(state, state == FrameState.Free ? order : 0);
            Assert.True(expected == CellColor(bmp, layout, pfn), $"{what} (pfn 0x{pfn:x}) is 0x{CellColor(bmp, layout, pfn):x6}, not 0x{expected:x6}");
        }
        m.Kfree(obj);
        m.Kfree(large);
        m.Vfree(area);
        m.FreePage(kernelPage);
        // Freed, the large kmalloc's frames are no longer large kmalloc.
        Assert.NotEqual(FrameState.LargeKmalloc, MemoryMap.Classify(m, largePfn));
        Assert.NotEqual(FrameState.Vmalloc, MemoryMap.Classify(m, vmallocPfn));
    }

    [Fact]
    public void ClassifyAgreesWithThePicturesPassOverEveryFrameAfterAMixedWorkload()
    {
        using var m = Boot("128M", cpus: 2);
        new MixedWorkload { Steps = 4000 }.Run(m, seed: 3);
        using (m.OnCpu(1))
        {
            for (int i = 0; i < 20; i++)
            {
                _ = m.Kmalloc((nuint)(16 << (i % 10)), Gfp.Kernel);
            }
            _ = m.Kmalloc(100 << 10, Gfp.Kernel);
            _ = m.Vmalloc(40 << 10);
        }
        byte[] keys = FrameScan.ClassifyAll(m);
        var seen = new HashSet<FrameState>();
        for (ulong pfn = 0; pfn < m.MaxPfn; pfn++)
        {
            var state = MemoryMap.Classify(m, pfn, out int order);
            seen.Add(state);
            Assert.True(keys[pfn] == FrameScan.KeyOf(state, order), $"pfn 0x{pfn:x}: Classify says {state} order {order}, the pass says {FrameScan.StateOf(keys[pfn])} key {keys[pfn]}");
        }
        Assert.Superset(new HashSet<FrameState> { FrameState.Free, FrameState.PerCpuList, FrameState.Slab, FrameState.LargeKmalloc,
            FrameState.Vmalloc, FrameState.Kernel, FrameState.Reserved, FrameState.Hole }, seen);
        // Every free frame is counted once: the pass's free frames equal the zones' free pages.
        long free = keys.Count(k => k < FrameScan.FirstStateKey);
        Assert.Equal(m.PageAllocator.NrFreePages, free);
        long pcp = keys.Count(k => k == FrameScan.KeyOf(FrameState.PerCpuList, 0));
        Assert.Equal(m.PageAllocator.Zones.Sum(z => z.PcpPages()), pcp);
    }
}
