// The page tables of the tasks a replay makes of user pages are the traced kernel's own
// page-table frames (GFP_PGTABLE_USER), taken over from the page path rather than allocated
// on top of them, and the kernel's free of such a frame frees Kmem's table at the same event;
// and a slab free into a kernel slab the trace never showed allocated (it predates the trace,
// its occupancy unknown) is left out of the slab_freed comparison, counted as unknown_state.
namespace Kmem.Tests.Trace;

public class TraceReplayPageTableTests
{
    private const ulong Base = 0xffff888000000000UL;

    private static string Line(string comm, int pid, string text) => $"{comm,16}-{pid,-7} [000] .....     1.000000: {text}\n";

    private static string TablePage(ulong pfn) =>
        Line("sh", 100, $"mm_page_alloc: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO");

    // A PTE table's frame under CONFIG_HIGHPTE (x86-32): __userpte_alloc_gfp adds __GFP_HIGHMEM.
    private static string HighPteTablePage(ulong pfn) =>
        Line("sh", 100, $"mm_page_alloc: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_HIGHMEM|__GFP_ZERO");

    private static string UserPage(ulong pfn) =>
        Line("sh", 100, $"mm_page_alloc: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO");

    private static string PageFree(ulong pfn) => Line("sh", 100, $"mm_page_free: page=ffffea0000000000 pfn=0x{pfn:x} order=0");

    private static TraceReplayResult Replay(Machine m, string text, bool aligned = false)
    {
        using var reader = ReplayData.Reader(ReplayData.Header + text);
        return new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned, Mismatches = 10 }).Replay(reader);
    }

    [Fact]
    public void ATasksTablesAreTheKernelsPageTableFramesAndGoWhenTheKernelFreesThem()
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        // The kernel's four table frames, the user page they map, then the user page and three tables freed (exit).
        string text = TablePage(0x5001) + TablePage(0x5002) + TablePage(0x5003) + TablePage(0x5004) + UserPage(0x6000)
            + PageFree(0x6000) + PageFree(0x5001) + PageFree(0x5002) + PageFree(0x5003);
        var r = Replay(m, text);
        Assert.Equal(1, r.Pressure!.TaskPages);
        // The new task's PGD and the fault's PUD, PMD and PTE tables: the kernel's four frames, none of Kmem's own.
        Assert.Equal(4, r.PageTablesTakenOver);
        Assert.Equal(0, r.PageTablesOwn);
        // Every free of the trace freed a page of Kmem's (the tables mapped nothing once the user page went), so each
        // is a pcp_drain decision; the PTE and PMD tables are gone from NR_PAGETABLE.
        Assert.Equal(4, r.Decisions["pcp_drain"].Compared);
        Assert.Equal(0, m.Mm.NrPageTable);
    }

    [Fact]
    public void WithoutTheKernelsTableFramesAFaultAllocatesItsOwnAndATableStillMappingAPageMovesWhenItsFrameIsFreed()
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        var own = Replay(m, UserPage(0x6000));
        Assert.Equal(0, own.PageTablesTakenOver);
        Assert.Equal(4, own.PageTablesOwn);
        Assert.Equal(0, own.PageTablesOwnMoved);

        using var m2 = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        // The kernel frees a table frame while the page it maps in Kmem's task is still there: Kmem frees the frame
        // all the same, its table moved to a frame of its own, and the page stays mapped.
        var r = Replay(m2, TablePage(0x5001) + TablePage(0x5002) + TablePage(0x5003) + TablePage(0x5004) + UserPage(0x6000) + PageFree(0x5001));
        Assert.Equal(4, r.PageTablesTakenOver);
        Assert.Equal(1, r.PageTablesOwn);
        Assert.Equal(1, r.PageTablesOwnMoved);
        Assert.Equal(1, r.Decisions["pcp_drain"].Compared);
        var task = Assert.Single(m2.Mm.TasksSnapshot());
        Assert.Equal(1, task.Rss);
        m2.Mm.Validate();
    }

    private static string Task2(string text) => text.Replace("              sh-100    ", "              sh-200    ");

    [Fact]
    public void ATableMovedAfterAnotherTakesTheFrameTheFirstGaveBackNotAnotherFromThePageAllocator()
    {
        // Task 100 takes the kernel's four frames; the kernel frees its PTE table's frame while Kmem's task still maps
        // the page (the table moves to a frame of Kmem's own), then frees the page and the other three frames at its
        // exit_mmap: the moved table goes, its frame kept as a spare. Task 200 then does the same: its move takes that
        // spare, so the page allocator gives one frame for the two moves and its lists are as the kernel's frees left them.
        string first = TablePage(0x5001) + TablePage(0x5002) + TablePage(0x5003) + TablePage(0x5004) + UserPage(0x6000)
            + PageFree(0x5001) + PageFree(0x6000) + ExitMmap() + PageFree(0x5002) + PageFree(0x5003) + PageFree(0x5004);
        string second = Task2(TablePage(0x5011) + TablePage(0x5012) + TablePage(0x5013) + TablePage(0x5014) + UserPage(0x6010)
            + PageFree(0x5011));
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        long before = ReplayData.FreeAndPcpPages(m);
        var r = Replay(m, first + second);
        Assert.Equal(8, r.PageTablesTakenOver);
        Assert.Equal(2, r.PageTablesOwnMoved);
        Assert.Equal(1, r.PageTablesOwnFrames);
        var task = Assert.Single(m.Mm.TasksSnapshot());
        Assert.Equal(1, task.Rss);
        // Held now: task 200's PGD, PUD and PMD (the kernel's frames), its PTE table (the spare) and its page. The
        // spare went back to the allocator at the replay's end only because task 200 still holds it.
        Assert.Equal(5, before - ReplayData.FreeAndPcpPages(m));
        m.Mm.Validate();
    }

    private static string ExitMmap() =>
        Line("sh", 100, "kmem_cache_free: call_site=exit_mmap+0x189/0x310 ptr=ff12793814429558 name=vm_area_struct");

    [Fact]
    public void ATaskExitsWithItsTablesAtItsExitMmapAndWithItsPgdAtTheKernelsMmdrop()
    {
        // Two user pages; the exit (6.1's tlb_finish_mmu frees the gathered tables ahead of the pages): the kernel
        // frees the PTE table first, while Kmem's task still maps both pages, so its table moves to a frame of
        // Kmem's own; one page, the exit_mmap, then the other page (a per-CPU batch held it), and only then the PGD
        // (0x5004, mmdrop).
        string exit = TablePage(0x5001) + TablePage(0x5002) + TablePage(0x5003) + TablePage(0x5004) + UserPage(0x6000) + UserPage(0x6001)
            + PageFree(0x5001) + PageFree(0x6000) + ExitMmap();
        string text = exit + PageFree(0x6001);

        // At the exit_mmap the task's address space goes, its tables below the PGD with it, though a page was still
        // mapped: the page stays allocated, held for the kernel's free of its frame. Its PGD waits for mmdrop.
        using var atExit = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        var e = Replay(atExit, exit);
        var unmapped = Assert.Single(atExit.Mm.TasksSnapshot());
        Assert.Equal(0, unmapped.Rss);
        Assert.Empty(unmapped.Vmas);
        Assert.Equal(0, atExit.Mm.NrPageTable);
        Assert.Equal(1, e.Pressure!.ExitedTaskPages);
        atExit.Mm.Validate();

        // The kernel's free of the held page's frame frees it; its free of the PGD frame ends the task.
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        var r = Replay(m, text + PageFree(0x5004));
        Assert.Equal(2, r.Pressure!.TaskPages);
        Assert.Equal(1, r.PageTablesOwn);
        Assert.Equal(0, r.Pressure.ExitedTaskPages);
        // Every free of the trace freed a page of Kmem's (the frame the PTE table took over, the two user pages, the
        // PGD), so each is a pcp_drain decision.
        Assert.Equal(4, r.Decisions["pcp_drain"].Compared);
        Assert.Empty(m.Mm.TasksSnapshot());
        Assert.Equal(0, m.Mm.NrPageTable);
        m.Mm.Validate();

        // The pid's next user page (after exec) is a new task, with tables of its own (no frame of the kernel's left).
        using var m2 = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        var r2 = Replay(m2, text + PageFree(0x5004) + UserPage(0x6002));
        Assert.Equal(3, r2.Pressure!.TaskPages);
        var task = Assert.Single(m2.Mm.TasksSnapshot());
        Assert.Equal(1, task.Rss);
        Assert.Equal(4, task.PgtablesBytes / 4096 + 1); // its own PGD, PUD, PMD and PTE table
        m2.Mm.Validate();
    }

    [Fact]
    public void TheKernelsTableFramesATaskGaveUpAtItsExitStayAllocatedUntilTheKernelFreesThem()
    {
        // The task's page goes, then its exit_mmap, before the kernel frees any of its table frames (their frees come
        // later, as after a deferred tlb flush): Kmem's task gives up its tables there, but the frames stay allocated,
        // held for the kernel's frees, so Kmem's lists gain them when the kernel's do.
        string exit = TablePage(0x5001) + TablePage(0x5002) + TablePage(0x5003) + TablePage(0x5004) + UserPage(0x6000)
            + PageFree(0x6000) + ExitMmap();
        using var atExit = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        long before = ReplayData.FreeAndPcpPages(atExit);
        Replay(atExit, exit);
        Assert.Equal(4, before - ReplayData.FreeAndPcpPages(atExit)); // the three tables held, the PGD awaiting mmdrop
        Assert.Equal(0, atExit.Mm.NrPageTable);
        atExit.Mm.Validate();

        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        before = ReplayData.FreeAndPcpPages(m);
        var r = Replay(m, exit + PageFree(0x5001) + PageFree(0x5002) + PageFree(0x5003) + PageFree(0x5004));
        Assert.Equal(0, before - ReplayData.FreeAndPcpPages(m));
        // Each free of the trace freed a page of Kmem's: the user page, the three held frames and the PGD.
        Assert.Equal(5, r.Decisions["pcp_drain"].Compared);
        Assert.Empty(m.Mm.TasksSnapshot());
        m.Mm.Validate();
    }

    [Fact]
    public void ATaskWhoseTableFramesTheKernelFreedAllExitsWithoutAnExitMmapFree()
    {
        // A build whose exit_mmap frees carry no call site that tells them from munmap's: the kernel frees the task's
        // PTE, PMD and PUD frames (free_pgtables for the whole address space) while its page is still mapped in Kmem,
        // then the page. The last table frame ends Kmem's task there: the page stays allocated, held for its free.
        string text = TablePage(0x5001) + TablePage(0x5002) + TablePage(0x5003) + TablePage(0x5004) + UserPage(0x6000)
            + PageFree(0x5001) + PageFree(0x5002) + PageFree(0x5003) + Line("sh", 100, "kfree: call_site=g+0x1/0x2 ptr=0");
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        var r = Replay(m, text);
        Assert.Equal(1, r.Pressure!.TasksExited);
        Assert.Equal(1, r.Pressure.ExitedTaskPages);
        var task = Assert.Single(m.Mm.TasksSnapshot()); // its PGD, the kernel's frame, waits for mmdrop
        Assert.Equal(0, task.Rss);
        Assert.Equal(0, m.Mm.NrPageTable);
        m.Mm.Validate();

        // One table frame freed (munmap's free_pgtables for a range): the task lives on, its table moved.
        using var m2 = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        var r2 = Replay(m2, TablePage(0x5001) + TablePage(0x5002) + TablePage(0x5003) + TablePage(0x5004) + UserPage(0x6000)
            + PageFree(0x5001) + Line("sh", 100, "kfree: call_site=g+0x1/0x2 ptr=0"));
        Assert.Equal(0, r2.Pressure!.TasksExited);
        Assert.Equal(1, Assert.Single(m2.Mm.TasksSnapshot()).Rss);
    }

    [Fact]
    public void AReplayThatFailsOnABadLineLeavesTheTasksTablesToThePageAllocator()
    {
        // The replay takes back the table frames of its tasks while it runs; a corrupt line ends it, and from then on the
        // machine's own task exits free their tables to the page allocator again.
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        string text = TablePage(0x5001) + UserPage(0x6000) + Line("sh", 100, "mm_page_alloc: page=zzz pfn=0xnotanumber order=0");
        Assert.Throws<TraceFormatException>(() => Replay(m, text));
        Assert.Null(m.Mm.TablePageReturn);
        Assert.Null(m.Mm.TablePageSource);
    }

    [Theory]
    [InlineData(Preset.X64)]
    [InlineData(Preset.X86Pae)]
    public void AReplayedTaskTakesNoKernelStackOfItsOwnSinceThePagePathHoldsTheKernels(Preset preset)
    {
        // The kernel's fork allocated its stack before the task's first page (x86-64: vmalloc's bulk pages; x86-32:
        // an order-1 mm_page_alloc), and the page path replays those pages; the task made of the user page that follows
        // takes only the kernel's table frames and its page, so the page allocator counts the trace's pages once.
        using var m = TraceReplayer.Boot(new MachineOptions { Preset = preset, Memory = "128M", Cpus = 2, Seed = 1 });
        long before = ReplayData.FreeAndPcpPages(m);
        // x86-32's kernel (CONFIG_HIGHPTE) allocates its PTE table with __GFP_HIGHMEM: Kmem's PTE table takes that frame.
        string pte = preset == Preset.X64 ? TablePage(0x5001) : HighPteTablePage(0x5001);
        var r = Replay(m, pte + TablePage(0x5002) + TablePage(0x5003) + TablePage(0x5004) + UserPage(0x6000));
        Assert.Equal(1, r.Pressure!.TaskPages);
        Assert.Single(m.Mm.TasksSnapshot());
        Assert.Equal(0, m.Mm.NrKernelStackKb);
        Assert.DoesNotContain("alloc_thread_stack_node", m.Proc.Vmallocinfo());
        // The four tables, all the kernel's frames, and the user page: five pages taken from the free lists and the
        // per-CPU lists together.
        Assert.Equal(4, r.PageTablesTakenOver);
        Assert.Equal(0, r.PageTablesOwn);
        Assert.Equal(5, before - ReplayData.FreeAndPcpPages(m));
        m.Mm.Validate();
    }

    [Fact]
    public void AHighPteFrameIsTakenOnlyForAPteTableAndItsFreeMovesTheTableToAFrameOfItsKind()
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Preset = Preset.X86Pae, Memory = "1G", Cpus = 2, Seed = 1 });
        // The HIGHPTE frame is the newest: the PGD, PUD and PMD still take the GFP_PGTABLE_USER frames, the PTE table it.
        string text = TablePage(0x5001) + TablePage(0x5002) + TablePage(0x5003) + HighPteTablePage(0x5004) + UserPage(0x6000);
        var r = Replay(m, text);
        Assert.Equal(4, r.PageTablesTakenOver);
        Assert.Equal(0, r.PageTablesOwn);
        var task = Assert.Single(m.Mm.TasksSnapshot());
        var tables = m.Mm.PageTables(task);
        Assert.Equal(3, tables.Count);
        // The kernel frees the PTE table's frame while Kmem's task still maps its page: the entries move to a frame of
        // Kmem's own allocated as a HIGHPTE table would be (in HighMem on this machine), and the page stays mapped.
        using var m2 = TraceReplayer.Boot(new MachineOptions { Preset = Preset.X86Pae, Memory = "1G", Cpus = 2, Seed = 1 });
        var r2 = Replay(m2, text + PageFree(0x5004));
        Assert.Equal(1, r2.PageTablesOwn);
        Assert.Equal(1, r2.PageTablesOwnHighPte);
        Assert.Equal(1, r2.PageTablesOwnMoved);
        var moved = Assert.Single(m2.Mm.TasksSnapshot());
        var pteTable = Assert.Single(m2.Mm.PageTables(moved), x => x.Level == 1);
        Assert.True(m2.PageHighMem(new Page(pteTable.Pfn)));
        Assert.Equal(1, moved.Rss);
        m2.Mm.Validate();
    }

    private static string Kmalloc(ulong ptr) =>
        ReplayData.Line($"kmalloc: call_site=f+0x1/0x2 ptr={ptr:x} bytes_req=60 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false");

    private static string Kfree(ulong ptr) => ReplayData.Line($"kfree: call_site=g+0x1/0x2 ptr={ptr:x}");

    private static string SlabPage(ulong pfn) =>
        ReplayData.Line($"mm_page_alloc: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=0 gfp_flags=GFP_KERNEL");

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AFreeIntoAKernelSlabThatPredatesTheTraceIsNotComparedForSlabFreed(bool aligned)
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        var sb = new System.Text.StringBuilder();
        // Three kernel slabs seen allocated (the direct-map base is known after them), an object in each.
        foreach (ulong pfn in new ulong[] { 0x11000, 0x12000, 0x13000 })
        {
            sb.Append(SlabPage(pfn)).Append(Kmalloc(Base + (pfn << 12)));
        }
        // Two objects in a kernel slab no event showed allocated: it existed before tracing began.
        ulong old = Base + (0x20000UL << 12);
        sb.Append(Kmalloc(old)).Append(Kmalloc(old + 64));
        sb.Append(Kfree(old)).Append(Kfree(Base + (0x13000UL << 12)));
        var d = Replay(m, sb.ToString(), aligned).Decisions["slab_freed"];
        Assert.Equal(1, d.UnknownState); // the free into the slab that predates the trace
        Assert.Equal(1, d.Compared); // the free into the slab the trace showed allocated
    }
}
