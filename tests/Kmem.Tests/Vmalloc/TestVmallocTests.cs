// Linux 6.1's own vmalloc tests (lib/test_vmalloc.c, the vmalloc_test module) on a Kmem machine:
// fix_size_alloc, full_fit_alloc, long_busy_list_alloc, random_size_alloc, fix_align_alloc,
// random_size_align_alloc, align_shift_alloc, pcpu_alloc and vm_map_ram, each with the module's
// sizes and alignments and its pass condition, and checks the module leaves to the kernel: the
// alignment of every area, zeroed memory, bytes landing in the caller's frames, every frame and
// every area back at the end. Loop counts are the module's divided by 1000 (it loops a million
// times); the module's counts, and its run with several workers at once, are behind the Soak trait:
//   dotnet test --filter "Category=Soak&FullyQualifiedName~TestVmalloc"
// kvfree_rcu_1_arg/2_arg_vmalloc_test are not ported: Kmem has no kvfree_rcu.
namespace Kmem.Tests.Vmalloc;

[Collection("VmallocHostMappings")]
public class TestVmallocTests
{
    /// <summary>test_loop_count, scaled: the module's default is 1,000,000.</summary>
    internal const int LoopCount = 1000;

    /// <summary>THREAD_ALIGN on x86-64 without KASAN: THREAD_SIZE, 16 KiB.</summary>
    private const nuint ThreadAlign = 16 << 10;

    private const nuint Page = Machine.PageSize;

    /// <summary>The module's machine: x86-64, 1 GiB, 2 CPUs.</summary>
    internal static Machine Boot(int cpus = 2) => VmallocTests.Boot(Preset.X64, "1G", cpus);

    /// <summary>What every test ends with: no area left once the lazy ones are purged, and every frame back.</summary>
    internal static void AllBack(Machine m, long free)
    {
        m.VmUnmapAliases();
        Assert.Equal(0, m.VmallocSpace.AreaCount);
        Assert.Equal(0, m.VmallocSpace.LazyPages);
        Assert.Equal(free, VmallocTests.FreeAfterDrain(m));
    }

    /// <summary>What a run that made per-CPU areas ends with: the per-CPU allocator keeps its chunks' vmap areas, as
    /// the kernel keeps an empty chunk; every other area is gone, lazy ones and stale host mappings included.</summary>
    internal static void AllBackButPcpuChunks(Machine m)
    {
        m.VmUnmapAliases();
        Assert.Equal(0, m.VmallocSpace.LazyPages);
        Assert.Equal(0, m.VmallocSpace.StaleHostPages);
        Assert.Equal(0, VmallocTests.Meminfo(m, "VmallocUsed"));
        string info = m.Proc.Vmallocinfo();
        Assert.All(info.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => Assert.Contains(" pcpu_get_vm_areas ", l, StringComparison.Ordinal));
    }

    internal static unsafe void FixSizeAlloc(Machine m, int loops, int nrPages = 1)
    {
        for (int i = 0; i < loops; i++)
        {
            nint p = m.Vmalloc((nuint)nrPages * Page);
            Assert.NotEqual(0, p);
            *(byte*)p = 0;
            m.Vfree(p);
        }
    }

    [Fact]
    public void FixSizeAllocTest()
    {
        using var m = Boot();
        long free = VmallocTests.FreeAfterDrain(m);
        FixSizeAlloc(m, LoopCount);
        FixSizeAlloc(m, LoopCount / 10, nrPages: 64); // the module's nr_pages parameter
        AllBack(m, free);
    }

    /// <summary>full_fit_alloc_test: fls(CPUs) × 32 MiB of one-page areas, every other one freed, then one-page
    /// areas must fit in the holes.</summary>
    internal static unsafe void FullFitAlloc(Machine m, int loops)
    {
        int junkLength = (32 - int.LeadingZeroCount(m.NrCpus)) * (32 * 1024 * 1024 / (int)Page);
        nint ptr = m.Vmalloc((nuint)(sizeof(nint) * junkLength));
        nint junk = m.Vmalloc((nuint)(sizeof(nint) * junkLength));
        Assert.NotEqual(0, ptr);
        Assert.NotEqual(0, junk);
        var kept = new Span<nint>((void*)ptr, junkLength);
        var junkPtr = new Span<nint>((void*)junk, junkLength);
        for (int i = 0; i < junkLength; i++)
        {
            kept[i] = m.Vmalloc(Page);
            junkPtr[i] = m.Vmalloc(Page);
            Assert.NotEqual(0, kept[i]);
            Assert.NotEqual(0, junkPtr[i]);
        }
        for (int i = 0; i < junkLength; i++)
        {
            m.Vfree(junkPtr[i]);
        }
        for (int i = 0; i < loops; i++)
        {
            nint tmp = m.Vmalloc(Page);
            Assert.NotEqual(0, tmp);
            *(byte*)tmp = 1;
            m.Vfree(tmp);
        }
        for (int i = 0; i < junkLength; i++)
        {
            m.Vfree(kept[i]);
        }
        m.Vfree(ptr);
        m.Vfree(junk);
    }

    /// <summary>32,768 one-page areas busy at once, as 6.1 gives them: each takes one host mapping, its guard
    /// page a hole.</summary>
    [Fact]
    public void FullFitAllocTest()
    {
        using var m = Boot();
        long free = VmallocTests.FreeAfterDrain(m);
        FullFitAlloc(m, LoopCount);
        AllBack(m, free);
        Assert.Equal(0, m.VmallocSpace.StaleHostPages);
    }

    /// <summary>long_busy_list_alloc_test: <paramref name="busy"/> one-page areas stay allocated while 100-page and
    /// one-page areas come and go.</summary>
    internal static unsafe void LongBusyListAlloc(Machine m, int busy, int loops)
    {
        nint ptr = m.Vmalloc((nuint)(sizeof(nint) * busy));
        Assert.NotEqual(0, ptr);
        var areas = new Span<nint>((void*)ptr, busy);
        for (int i = 0; i < busy; i++)
        {
            areas[i] = m.Vmalloc(Page);
            Assert.NotEqual(0, areas[i]);
        }
        for (int i = 0; i < loops; i++)
        {
            nint p1 = m.Vmalloc(100 * Page);
            nint p2 = m.Vmalloc(Page);
            Assert.NotEqual(0, p1);
            Assert.NotEqual(0, p2);
            *(byte*)p1 = 0;
            *(byte*)p2 = 1;
            m.Vfree(p1);
            m.Vfree(p2);
        }
        for (int i = 0; i < busy; i++)
        {
            m.Vfree(areas[i]);
        }
        m.Vfree(ptr);
    }

    [Fact]
    public void LongBusyListAllocTest()
    {
        using var m = Boot();
        long free = VmallocTests.FreeAfterDrain(m);
        LongBusyListAlloc(m, 1500, LoopCount); // the module keeps 15,000 areas busy (Soak)
        AllBack(m, free);
    }

    internal static unsafe void RandomSizeAlloc(Machine m, Random rng, int loops)
    {
        for (int i = 0; i < loops; i++)
        {
            int n = rng.Next(1, 101);
            nint p = m.Vmalloc((nuint)n * Page);
            Assert.NotEqual(0, p);
            *(byte*)p = 1;
            ((byte*)p)[n * (int)Page - 1] = 1; // the last byte is mapped too
            m.Vfree(p);
        }
    }

    [Fact]
    public void RandomSizeAllocTest()
    {
        using var m = Boot();
        long free = VmallocTests.FreeAfterDrain(m);
        RandomSizeAlloc(m, new Random(1), LoopCount);
        AllBack(m, free);
    }

    /// <summary>An area of <paramref name="size"/> bytes at an address aligned to <paramref name="align"/>, zeroed,
    /// from node 0, as __vmalloc_node(size, align, GFP_KERNEL | __GFP_ZERO, 0) gives it.</summary>
    private static unsafe void AlignedZeroedArea(Machine m, nuint size, nuint align)
    {
        nint p = m.VmallocNode(size, align, Gfp.Kernel | Gfp.Zero, 0);
        Assert.NotEqual(0, p);
        Assert.Equal(0UL, m.VmallocKernelAddress(p) % Math.Max((ulong)align, Page));
        var bytes = new Span<byte>((void*)p, (int)size);
        Assert.Equal(-1, bytes.IndexOfAnyExcept((byte)0));
        bytes.Fill(0xa5); // dirty the frames, so that a later area that skipped __GFP_ZERO would show
        m.Vfree(p);
    }

    internal static void FixAlignAlloc(Machine m, int loops)
    {
        for (int i = 0; i < loops; i++)
        {
            AlignedZeroedArea(m, 5 * Page, ThreadAlign << 1);
        }
    }

    [Fact]
    public void FixAlignAllocTest()
    {
        using var m = Boot();
        long free = VmallocTests.FreeAfterDrain(m);
        FixAlignAlloc(m, LoopCount);
        AllBack(m, free);
    }

    internal static void RandomSizeAlignAlloc(Machine m, Random rng, int loops)
    {
        for (int i = 0; i < loops; i++)
        {
            int rnd = rng.Next(256); // get_random_u8
            nuint align = (nuint)1 << (rnd % 23); // up to 1024 pages
            nuint size = (nuint)(rnd % 10 + 1) * Page; // up to 10 pages
            AlignedZeroedArea(m, size, align);
        }
    }

    [Fact]
    public void RandomSizeAlignAllocTest()
    {
        using var m = Boot();
        long free = VmallocTests.FreeAfterDrain(m);
        RandomSizeAlignAlloc(m, new Random(1), LoopCount);
        AllBack(m, free);
    }

    /// <summary>align_shift_alloc_test, "supposed to be failed": one page at every alignment 2^0 .. 2^63. The
    /// small ones succeed; past what the vmalloc area can align to, the allocation fails cleanly (0 and the
    /// kernel's "vmap allocation … failed" warning), and stays failing for every larger alignment.</summary>
    [Fact]
    public void AlignShiftAllocTest()
    {
        using var m = Boot();
        long free = VmallocTests.FreeAfterDrain(m);
        int firstFailure = -1;
        for (int i = 0; i < 64; i++)
        {
            nuint align = (nuint)1 << i;
            nint p = m.VmallocNode(Page, align, Gfp.Kernel | Gfp.Zero, 0);
            if (p == 0)
            {
                firstFailure = firstFailure < 0 ? i : firstFailure;
                continue;
            }
            Assert.True(firstFailure < 0, $"2^{i} succeeded after 2^{firstFailure} failed");
            Assert.Equal(0UL, m.VmallocKernelAddress(p) % Math.Max((ulong)align, Page));
            m.Vfree(p);
        }
        Assert.InRange(firstFailure, 22, 63); // 4 MiB alignments, the largest the module's other tests ask for, fit
        Assert.Contains(m.Log.Lines, l => l.StartsWith("vmap allocation for size 8192 failed", StringComparison.Ordinal));
        AllBack(m, free);
    }

    [Theory]
    [InlineData(3 * 4096)]
    [InlineData(4096 + 1)]
    public void AnAlignmentThatIsNotAPowerOfTwoFailsCleanly(int align)
    {
        using var m = Boot();
        Assert.Equal(0, m.VmallocNode(Page, (nuint)align, Gfp.Kernel, 0));
        Assert.Contains(m.Log.Lines, l => l.Contains("vmalloc error: size 4096, vm_struct allocation failed", StringComparison.Ordinal));
        Assert.Equal(0, m.VmallocNode(Page, (nuint)align, Gfp.Kernel | Gfp.NoWarn, 0));
        Assert.Equal(0, m.VmallocSpace.AreaCount);
    }

    /// <summary>pcpu_alloc_test: <paramref name="count"/> per-CPU areas of 1 .. PAGE_SIZE/4 bytes at alignments
    /// 2 .. 2048, their pointer array vmalloc()ed.</summary>
    internal static unsafe void PcpuAlloc(Machine m, Random rng, int count)
    {
        nint array = m.Vmalloc((nuint)(sizeof(PercpuPtr) * count));
        Assert.NotEqual(0, array);
        var pcpu = new Span<PercpuPtr>((void*)array, count);
        for (int i = 0; i < count; i++)
        {
            nuint size = (nuint)rng.Next(1, (int)Page / 4 + 1);
            nuint align = (nuint)1 << rng.Next(1, 12);
            pcpu[i] = m.AllocPercpu(size, align);
            Assert.False(pcpu[i].IsNull, $"__alloc_percpu({size}, {align}) failed at {i}");
        }
        for (int i = 0; i < count; i++)
        {
            m.FreePercpu(pcpu[i]);
        }
        m.Vfree(array);
    }

    [Fact]
    public void PcpuAllocTest()
    {
        using var m = Boot();
        PcpuAlloc(m, new Random(1), 3500); // the module allocates 35,000 (Soak)
        AllBackButPcpuChunks(m); // the pointer array is gone
    }

    /// <summary>vm_map_ram_test: the same <paramref name="nrPages"/> frames mapped and unmapped again and again; a
    /// byte written through the mapping lands in the first frame.</summary>
    internal static unsafe void VmMapRam(Machine m, int nrPages, int loops)
    {
        var pages = VmallocTests.Scatter(m, nrPages, Gfp.Kernel);
        for (int i = 0; i < loops; i++)
        {
            nint v = m.VmMapRam(pages.ToArray(), -1);
            Assert.NotEqual(0, v);
            *(byte*)v = (byte)'a';
            ((byte*)v)[nrPages * (int)Page - 1] = (byte)i;
            Assert.Equal((byte)'a', m.PageSpan(pages[0], 0)[0]);
            Assert.Equal((byte)i, m.PageSpan(pages[^1], 0)[(int)Page - 1]);
            m.VmUnmapRam(v, nrPages);
        }
        foreach (var page in pages)
        {
            m.FreePages(page, 0);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(16)]
    [InlineData(100)]
    public void VmMapRamTest(int nrPages)
    {
        using var m = Boot();
        long free = VmallocTests.FreeAfterDrain(m);
        VmMapRam(m, nrPages, LoopCount / 4);
        AllBack(m, free);
    }

    [Fact]
    public void AVmMapRamAreaHasNoGuardPageNorVmStruct()
    {
        using var m = Boot();
        var pages = VmallocTests.Scatter(m, 3, Gfp.HighUser);
        nint a = m.VmMapRam(pages.ToArray(), 0);
        nint b = m.VmMapRam(pages.ToArray(), 0);
        ulong ka = m.VmallocKernelAddress(a);
        Assert.Equal(ka + 3 * Page, m.VmallocKernelAddress(b)); // no guard page between them
        Assert.Equal(pages[1], m.VmallocToPage(a + (nint)Page));
        string info = m.Proc.Vmallocinfo();
        Assert.Contains($"0x{ka:x16}-0x{ka + 3 * Page:x16}   12288 vm_map_ram\n", info, StringComparison.Ordinal);

        // vfree and vunmap do not know a vm_map_ram area: the kernel's warning, nothing changed.
        m.Vfree(a);
        m.Vunmap(b);
        Assert.Equal(2, m.Log.Lines.Count(l => l.Contains("nonexistent vm area", StringComparison.Ordinal)));
        // The wrong count: WARN, nothing changed.
        m.VmUnmapRam(a, 2);
        Assert.Contains(m.Log.Lines, l => l.StartsWith("vm_unmap_ram: no vm_map_ram area of 2 pages", StringComparison.Ordinal));
        Assert.Equal(info, m.Proc.Vmallocinfo());
        // A null or unaligned pointer is the kernel's BUG_ON.
        Assert.Throws<KernelBugException>(() => m.VmUnmapRam(0, 3));
        Assert.Throws<KernelBugException>(() => m.VmUnmapRam(a + 1, 3));
        Assert.Equal(info, m.Proc.Vmallocinfo());

        m.VmUnmapRam(a, 3);
        m.VmUnmapRam(b, 3);
        Assert.True(m.VmallocToPage(a).IsNull);
        m.VmUnmapAliases();
        Assert.Equal(0, m.VmallocSpace.AreaCount);
        foreach (var page in pages)
        {
            m.FreePages(page, 0);
        }
    }
}

/// <summary>The module's own counts (a million loops where it loops, 15,000 busy areas, 35,000 per-CPU areas),
/// and the module's concurrent run: every test on two workers at once, each on its own CPU.</summary>
[Trait("Category", "Soak")]
[Collection("VmallocHostMappings")]
public class TestVmallocSoakTests
{
    private const int ModuleLoops = 1_000_000;

    [Fact]
    public void EveryTestAtTheModulesCounts()
    {
        using var m = TestVmallocTests.Boot();
        long free = VmallocTests.FreeAfterDrain(m);
        var rng = new Random(7);
        TestVmallocTests.FixSizeAlloc(m, ModuleLoops);
        TestVmallocTests.LongBusyListAlloc(m, 15_000, ModuleLoops / 10);
        TestVmallocTests.RandomSizeAlloc(m, rng, ModuleLoops / 10);
        TestVmallocTests.FixAlignAlloc(m, ModuleLoops / 10);
        TestVmallocTests.RandomSizeAlignAlloc(m, rng, ModuleLoops / 10);
        TestVmallocTests.VmMapRam(m, 1, ModuleLoops / 10);
        TestVmallocTests.AllBack(m, free);
        TestVmallocTests.PcpuAlloc(m, rng, 35_000);
        TestVmallocTests.AllBackButPcpuChunks(m);
    }

    [Fact]
    public void TwoWorkersAtOnce()
    {
        using var m = TestVmallocTests.Boot();
        var failures = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        var workers = Enumerable.Range(0, 2).Select(cpu => new Thread(() =>
        {
            try
            {
                using (m.OnCpu(cpu))
                {
                    var rng = new Random(cpu);
                    TestVmallocTests.FixSizeAlloc(m, ModuleLoops / 20);
                    TestVmallocTests.LongBusyListAlloc(m, 3000, ModuleLoops / 100);
                    TestVmallocTests.RandomSizeAlloc(m, rng, ModuleLoops / 100);
                    TestVmallocTests.FixAlignAlloc(m, ModuleLoops / 100);
                    TestVmallocTests.RandomSizeAlignAlloc(m, rng, ModuleLoops / 100);
                    TestVmallocTests.PcpuAlloc(m, rng, 10_000);
                    TestVmallocTests.VmMapRam(m, 8, ModuleLoops / 100);
                }
            }
            catch (Exception e)
            {
                failures.Enqueue(e);
            }
        })).ToArray();
        foreach (var w in workers)
        {
            w.Start();
        }
        foreach (var w in workers)
        {
            Assert.True(w.Join(TimeSpan.FromMinutes(30)), "a worker did not finish");
        }
        Assert.Empty(failures);
        TestVmallocTests.AllBackButPcpuChunks(m);
    }
}
