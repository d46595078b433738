// Tasks and user memory: demand paging through software page tables, the
// PageTables and KernelStack counters, munmap, segfaults, exit, and user pages
// in HighMem on the 32-bit presets.
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

public class TaskTests
{
    [Fact]
    public void UntouchedMemoryReadsAsZerosAndAWriteReadsBack()
    {
        using var m = Boot();
        var t = m.CreateTask("reader")!;
        ulong a = t.Mmap(1 << 20);
        var buf = new byte[100];
        buf.AsSpan().Fill(0xAA);
        t.Read(a + 5000, buf);
        Assert.All(buf, b => Assert.Equal(0, b));
        Assert.Equal(1, t.Rss);
        byte[] data = [.. Enumerable.Range(0, 10000).Select(i => (byte)i)];
        t.Write(a + 4090, data);
        var back = new byte[data.Length];
        t.Read(a + 4090, back);
        Assert.Equal(data, back);
        Assert.Equal(4, t.Rss); // pages 0..3 of the mapping (4090 + 10000 spans pages 0..3), plus page 1 read earlier
        m.Mm.Validate();
    }

    [Fact]
    public void MadvisePopulateFaultsPagesInWithoutWritingThem()
    {
        using var m = Boot();
        var t = m.CreateTask("populated")!;
        ulong a = t.Mmap(8 * 4096);
        t.Write(a + 2 * 4096 + 9, [7]);
        Assert.Equal(1, t.Rss);
        t.MadvisePopulate(a + 100, (4 * 4096) + 10, write: true); // pages 0..4
        Assert.Equal(5, t.Rss);
        Assert.Equal(5 * 4, Meminfo(m, "AnonPages"));
        var page = new byte[4096];
        t.Read(a + 2 * 4096, page);
        Assert.Equal(7, page[9]); // a present page keeps its bytes
        Assert.Equal(1, page.Count(b => b != 0));
        t.Read(a + 4 * 4096, page);
        Assert.All(page, b => Assert.Equal(0, b));
        t.MadvisePopulate(a + 6 * 4096, 4096, write: false);
        Assert.Equal(6, t.Rss);
        var e = Assert.Throws<SegmentationFaultException>(() => t.MadvisePopulate(a + 7 * 4096, 2 * 4096, write: true));
        Assert.Equal(a + 8 * 4096, e.Address);
        Assert.Equal(6, t.Rss); // the range is checked before any page is faulted in
        m.Mm.Validate();
        t.Exit();
        Assert.Throws<TaskKilledException>(() => t.MadvisePopulate(a, 4096, write: true));
    }

    [Fact]
    public void PageTablesAndKernelStacksAreCountedAndExitGivesEverythingBack()
    {
        using var m = Boot();
        m.CreateTask("warm-up")!.Exit(); // the slab and vmalloc metadata a task needs stays cached after it
        m.VmUnmapAliases();
        m.DrainAllPages();
        long free0 = m.PageAllocator.NrFreePages;
        long stack0 = Meminfo(m, "KernelStack");
        var t = m.CreateTask("counted")!;
        Assert.Equal(stack0 + 16, Meminfo(m, "KernelStack"));
        ulong a = t.Mmap(8 << 20);
        Fill(t, a, 8 << 20, 1);
        // 2048 pages: 4 PTE tables, 1 PMD table, 1 PUD table; NR_PAGETABLE counts the PTE and PMD tables.
        Assert.Equal(2048, t.Rss);
        Assert.Equal(6 * 4096, t.PgtablesBytes);
        Assert.Equal(5 * 4, Meminfo(m, "PageTables"));
        Assert.Equal(2048 * 4, Meminfo(m, "AnonPages"));
        Assert.Equal(2048 * 4, Meminfo(m, "Inactive(anon)"));
        Assert.Contains("alloc_thread_stack_node", m.Proc.Vmallocinfo(), StringComparison.Ordinal);
        Check(t, a, 8 << 20, 1);
        m.Mm.Validate();
        t.Exit();
        Assert.True(t.HasExited);
        Assert.Throws<TaskKilledException>(() => t.Read(a, new byte[1]));
        m.VmUnmapAliases();
        m.DrainAllPages();
        Assert.Equal(free0, m.PageAllocator.NrFreePages);
        Assert.Equal(0, Meminfo(m, "PageTables"));
        Assert.Equal(0, Meminfo(m, "AnonPages"));
        Assert.Equal(stack0, Meminfo(m, "KernelStack"));
    }

    [Fact]
    public unsafe void AnExitedTasksStackIsCachedOnItsCpuAndTheNextForkThereTakesItCleared()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "64M", Cpus = 2 });
        int Stacks() => m.Proc.Vmallocinfo().Split('\n').Count(l => l.Contains("alloc_thread_stack_node", StringComparison.Ordinal));
        TaskStruct Fork(int cpu, string name)
        {
            using var _ = m.OnCpu(cpu);
            return m.CreateTask(name)!;
        }
        void ExitOn(int cpu, TaskStruct t)
        {
            using var _ = m.OnCpu(cpu);
            t.Exit();
        }
        var a = Fork(0, "a");
        var b = Fork(0, "b");
        var c = Fork(0, "c");
        nint sa = a.StackVmalloc, sb = b.StackVmalloc, sc = c.StackVmalloc;
        Assert.Equal(3, new[] { sa, sb, sc }.Distinct().Count());
        Assert.Equal(3, Stacks());
        Assert.Equal(3 * 16, Meminfo(m, "KernelStack"));
        new Span<byte>((void*)sa, 16 << 10).Fill(0xcc);
        ExitOn(0, a);
        ExitOn(0, b);
        ExitOn(0, c); // NR_CACHED_STACKS is 2: the third goes back to vmalloc
        Assert.Equal(2, Stacks());
        Assert.Equal(0, Meminfo(m, "KernelStack")); // a cached stack belongs to no task
        var other = Fork(1, "other-cpu");
        Assert.DoesNotContain(other.StackVmalloc, new[] { sa, sb });
        var d = Fork(0, "d");
        var e = Fork(0, "e");
        Assert.Equal(new[] { sa, sb }.Order(), new[] { d.StackVmalloc, e.StackVmalloc }.Order());
        var reused = d.StackVmalloc == sa ? d : e;
        Assert.Equal(-1, new ReadOnlySpan<byte>((void*)reused.StackVmalloc, 16 << 10).IndexOfAnyExcept((byte)0));
        Assert.Equal(3, Stacks());
        Assert.Equal(3 * 16, Meminfo(m, "KernelStack"));
    }

    [Fact]
    public void MunmapFreesTheRangeAndAnUnmappedAccessIsASegfault()
    {
        using var m = Boot();
        var t = m.CreateTask("unmapper")!;
        ulong a = t.Mmap(16 * 4096);
        Fill(t, a, 16 * 4096, 2);
        t.Munmap(a + 4 * 4096, 4 * 4096);
        Assert.Equal(12, t.Rss);
        Assert.Equal(12, t.TotalVm);
        var e = Assert.Throws<SegmentationFaultException>(() => t.Write(a + 3 * 4096, new byte[4097]));
        Assert.Equal(a + 4 * 4096, e.Address);
        Check(t, a, 4 * 4096, 2);
        Check(t, a + 8 * 4096, 8 * 4096, 2);
        Assert.Throws<ArgumentException>(() => t.Munmap(a + 1, 4096));
        Assert.Throws<ArgumentOutOfRangeException>(() => t.Mmap(0));
        ulong b = t.Mmap(4096);
        Assert.Equal(a + 4 * 4096, b); // first fit reuses the hole
        m.Mm.Validate();
    }

    [Theory]
    [InlineData(Preset.X86)]
    [InlineData(Preset.X86Pae)]
    public void On32BitPresetsUserPagesLandInHighMemAndStacksAreOrderOne(Preset preset)
    {
        using var m = Boot("1G", preset);
        long highFree = Meminfo(m, "HighFree");
        long stack0 = Meminfo(m, "KernelStack");
        var t = m.CreateTask("highuser")!;
        Assert.Equal(stack0 + 8, Meminfo(m, "KernelStack"));
        ulong a = t.Mmap(4 << 20);
        Fill(t, a, 4 << 20, 3);
        m.DrainAllPages();
        Assert.True(highFree - Meminfo(m, "HighFree") >= 4096, "the task's 4 MiB came from HighMem");
        Check(t, a, 4 << 20, 3);
        t.Exit();
        Assert.Equal(stack0, Meminfo(m, "KernelStack"));
    }

    [Fact]
    public void ABadOomScoreAdjOrNameIsRefused()
    {
        using var m = Boot();
        Assert.Throws<ArgumentOutOfRangeException>(() => m.CreateTask("x", 1001));
        Assert.Throws<ArgumentException>(() => m.CreateTask(""));
        Assert.Equal("a_very_long_nam", m.CreateTask("a_very_long_name_indeed")!.Comm);
    }
}
