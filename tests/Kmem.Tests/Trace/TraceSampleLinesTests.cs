// Every Linux 6.1 event type, parsed field by field from real lines of the two recorded
// traces (Data/sample-lines.txt: the x86-64 capture's header and lines, then i386 lines with
// 32-bit pointers), plus the header, the prefix variants and the pfn spellings.

namespace Kmem.Tests.Trace;

public class TraceSampleLinesTests
{
    private static readonly Lazy<(List<TraceEvent> Events, TraceReader Reader)> s_sample = new(() =>
    {
        var reader = TraceReader.Open(TraceData.SampleLinesPath);
        var events = reader.ReadAll().ToList();
        reader.Dispose();
        return (events, reader);
    });

    private static TraceEvent AtLine(long line) => s_sample.Value.Events.Single(e => e.LineNumber == line);

    [Fact]
    public void TheHeaderGivesTheTracerTheEntriesAndTheCpuCount()
    {
        var reader = s_sample.Value.Reader;
        Assert.Equal("nop", reader.Tracer);
        Assert.Equal(1826878, reader.EntriesInBuffer);
        Assert.Equal(1826878, reader.EntriesWritten);
        Assert.Equal(2, reader.Cpus);
        Assert.Equal(TraceCompression.None, reader.Compression);
    }

    [Fact]
    public void EveryRealLineParsesAndIsCounted()
    {
        var (events, reader) = s_sample.Value;
        string[] lines = File.ReadAllLines(TraceData.SampleLinesPath);
        Assert.Equal(lines.Length, reader.Lines);
        Assert.Equal(lines.Count(l => !l.StartsWith('#')), events.Count);
        Assert.Equal(0, reader.BadLines);
        Assert.Empty(reader.UnknownEvents);
        Assert.Equal(5, reader.Markers);
        foreach (TraceEventKind kind in Enum.GetValues<TraceEventKind>().Where(k => k is not TraceEventKind.None and not TraceEventKind.Marker))
        {
            string name = kind switch
            {
                TraceEventKind.Kmalloc => "kmalloc",
                TraceEventKind.KmemCacheAlloc => "kmem_cache_alloc",
                TraceEventKind.Kfree => "kfree",
                TraceEventKind.KmemCacheFree => "kmem_cache_free",
                TraceEventKind.MmPageAlloc => "mm_page_alloc",
                TraceEventKind.MmPageFree => "mm_page_free",
                TraceEventKind.MmPageFreeBatched => "mm_page_free_batched",
                TraceEventKind.MmPageAllocZoneLocked => "mm_page_alloc_zone_locked",
                TraceEventKind.MmPagePcpuDrain => "mm_page_pcpu_drain",
                TraceEventKind.MmPageAllocExtfrag => "mm_page_alloc_extfrag",
                TraceEventKind.PercpuAllocPercpu => "percpu_alloc_percpu",
                TraceEventKind.PercpuFreePercpu => "percpu_free_percpu",
                TraceEventKind.PercpuCreateChunk => "percpu_create_chunk",
                TraceEventKind.PercpuDestroyChunk => "percpu_destroy_chunk",
                _ => "percpu_alloc_percpu_fail",
            };
            Assert.Equal(lines.Count(l => l.Contains($": {name}: ", StringComparison.Ordinal)), reader.CountOf(kind));
        }
    }

    [Fact]
    public void KmallocX64()
    {
        var e = AtLine(13);
        Assert.Equal(TraceEventKind.Kmalloc, e.Kind);
        Assert.Equal("<idle>", e.Comm);
        Assert.Equal(0, e.Pid);
        Assert.Equal(-1, e.Tgid);
        Assert.Equal(0, e.Cpu);
        Assert.Equal(0, e.Timestamp);
        Assert.Equal("tracepoint_add_func+0xf7/0x3f0", e.CallSite);
        Assert.Equal(0xff3f709d0838d540UL, e.Ptr);
        Assert.Equal(64UL, e.BytesReq);
        Assert.Equal(64UL, e.BytesAlloc);
        Assert.Equal(Gfp.Kernel, e.Gfp);
        Assert.Equal(-1, e.Node);
        Assert.False(e.Accounted);
    }

    [Fact]
    public void KmallocWithAModuleCallSite()
    {
        var e = AtLine(38);
        Assert.Equal(TraceEventKind.Kmalloc, e.Kind);
        Assert.Equal("insmod", e.Comm);
        Assert.Equal(96, e.Pid);
        Assert.Equal(1, e.Cpu);
        Assert.Equal(8_060_486, e.Timestamp);
        Assert.Equal("virtio_pci_probe+0x22/0x150 [virtio_pci]", e.CallSite);
        Assert.Equal(0xff3f709d145a1000UL, e.Ptr);
        Assert.Equal(1064UL, e.BytesReq);
        Assert.Equal(2048UL, e.BytesAlloc);
        Assert.Equal(Gfp.Kernel | Gfp.Zero, e.Gfp);
    }

    [Fact]
    public void KmemCacheAllocOnANodeAndAccounted()
    {
        var e = AtLine(39);
        Assert.Equal(TraceEventKind.KmemCacheAlloc, e.Kind);
        Assert.Equal("kthreadd", e.Comm);
        Assert.Equal(2, e.Pid);
        Assert.Equal(692_236, e.Timestamp);
        Assert.Equal("copy_process+0x20e/0x1ae0", e.CallSite);
        Assert.Equal(0xff3f709d08890000UL, e.Ptr);
        Assert.Equal(8392UL, e.BytesReq);
        Assert.Equal(8448UL, e.BytesAlloc);
        Assert.Equal(Gfp.Kernel, e.Gfp);
        Assert.Equal(0, e.Node);
        Assert.True(e.Accounted);
        Assert.Null(e.Name);
    }

    [Fact]
    public void KmemCacheAllocI386()
    {
        var e = AtLine(52);
        Assert.Equal(TraceEventKind.KmemCacheAlloc, e.Kind);
        Assert.Equal("__trace_define_field+0x1f/0xa0", e.CallSite);
        Assert.Equal(0xc41d71e0UL, e.Ptr);
        Assert.Equal(36UL, e.BytesReq);
        Assert.Equal(40UL, e.BytesAlloc);
        Assert.Equal(Gfp.Kernel | Gfp.Zero, e.Gfp);
        Assert.Equal(-1, e.Node);
        Assert.False(e.Accounted);
    }

    [Fact]
    public void KfreeIncludingKfreeOfNull()
    {
        var e = AtLine(17);
        Assert.Equal(TraceEventKind.Kfree, e.Kind);
        Assert.Equal("do_set_mempolicy+0xd0/0x150", e.CallSite);
        Assert.Equal(0xff3f709d0838b400UL, e.Ptr);
        var nil = AtLine(40);
        Assert.Equal(TraceEventKind.Kfree, nil.Kind);
        Assert.Equal(0UL, nil.Ptr);
        var i386 = AtLine(55);
        Assert.Equal("ordered_lsm_parse+0x1b2/0x1cb", i386.CallSite);
        Assert.Equal(0xc419be40UL, i386.Ptr);
        Assert.Equal(490_657, i386.Timestamp);
    }

    [Fact]
    public void KmemCacheFreeNamesTheCache()
    {
        var e = AtLine(20);
        Assert.Equal(TraceEventKind.KmemCacheFree, e.Kind);
        Assert.Equal("kthreadd", e.Comm);
        Assert.Equal("rcu_do_batch+0x19a/0x540", e.CallSite);
        Assert.Equal(0xff3f709d0884c000UL, e.Ptr);
        Assert.Equal("perf_event", e.Name);
        Assert.Equal("Acpi-State", AtLine(44).Name);
        var i386 = AtLine(57);
        Assert.Equal("kdevtmpfs", i386.Comm);
        Assert.Equal(19, i386.Pid);
        Assert.Equal(0xc429a000UL, i386.Ptr);
        Assert.Equal("names_cache", i386.Name);
    }

    [Fact]
    public void MmPageAlloc()
    {
        var e = AtLine(21);
        Assert.Equal(TraceEventKind.MmPageAlloc, e.Kind);
        Assert.Equal(0xfffacca84020f700UL, e.Page);
        Assert.Equal(0x83dcUL, e.Pfn);
        Assert.Equal(1, e.Order);
        Assert.Equal(MigrateType.Unmovable, e.MigrateType);
        Assert.Equal(Gfp.NoWarn | Gfp.NoRetry | Gfp.Comp, e.Gfp);
        var movable = AtLine(41);
        Assert.Equal(MigrateType.Movable, movable.MigrateType);
        Assert.Equal(Gfp.HighUserMovable | Gfp.Comp, movable.Gfp);
        var reclaimable = AtLine(42);
        Assert.Equal(MigrateType.Reclaimable, reclaimable.MigrateType);
        var highmem = AtLine(75);
        Assert.Equal(0xf686efd8UL, highmem.Page);
        Assert.Equal(0x36fffUL, highmem.Pfn);
        Assert.Equal(Gfp.HighMem | Gfp.NoWarn | Gfp.Zero, highmem.Gfp);
    }

    [Fact]
    public void MmPageFreeAndFreeBatched()
    {
        var free = AtLine(23);
        Assert.Equal(TraceEventKind.MmPageFree, free.Kind);
        Assert.Equal(0xfffacca8402bc180UL, free.Page);
        Assert.Equal(0xaf06UL, free.Pfn);
        Assert.Equal(0, free.Order);
        var batched = AtLine(25);
        Assert.Equal(TraceEventKind.MmPageFreeBatched, batched.Kind);
        Assert.Equal("modprobe", batched.Comm);
        Assert.Equal(46, batched.Pid);
        Assert.Equal(1, batched.Cpu);
        Assert.Equal(0x14475UL, batched.Pfn);
        var i386 = AtLine(62);
        Assert.Equal(0xf6ec3028UL, i386.Page);
        Assert.Equal(0x5f801UL, i386.Pfn);
    }

    [Fact]
    public void MmPageAllocZoneLockedAndPcpuDrain()
    {
        var locked = AtLine(43);
        Assert.Equal(TraceEventKind.MmPageAllocZoneLocked, locked.Kind);
        Assert.Equal(0x8808UL, locked.Pfn);
        Assert.Equal(3, locked.Order);
        Assert.Equal(MigrateType.Unmovable, locked.MigrateType);
        Assert.True(locked.PercpuRefill);
        var drain = AtLine(29);
        Assert.Equal(TraceEventKind.MmPagePcpuDrain, drain.Kind);
        Assert.Equal("kworker/u4:0", drain.Comm);
        Assert.Equal(9, drain.Pid);
        Assert.Equal(0x1f2faUL, drain.Pfn);
        Assert.Equal(0, drain.Order);
        Assert.Equal(MigrateType.Movable, drain.MigrateType);
        Assert.Equal(21_278_258, AtLine(45).Timestamp);
    }

    [Fact]
    public void MmPageAllocExtfragHasAllItsFields()
    {
        foreach (var (line, page, pfn, allocMt) in new[] { (31L, 0xfffacca840220000UL, 0x8800UL, 0), (67L, 0xf608b000UL, 0x4800UL, 2) })
        {
            var e = AtLine(line);
            Assert.Equal(TraceEventKind.MmPageAllocExtfrag, e.Kind);
            Assert.Equal(page, e.Page);
            Assert.Equal(pfn, e.Pfn);
            Assert.Equal(line == 31 ? 0 : 1, e.Order);
            Assert.Equal(10, e.FallbackOrder);
            Assert.Equal(9, e.PageblockOrder);
            Assert.Equal((MigrateType)allocMt, e.MigrateType);
            Assert.Equal(MigrateType.Movable, e.FallbackMigrateType);
            Assert.False(e.Fragmenting);
            Assert.True(e.ChangeOwnership);
        }
    }

    [Fact]
    public void PercpuAllocAndFree()
    {
        var e = AtLine(33);
        Assert.Equal(TraceEventKind.PercpuAllocPercpu, e.Kind);
        Assert.Equal("alloc_desc+0x50/0x250", e.CallSite);
        Assert.False(e.Reserved);
        Assert.False(e.IsAtomic);
        Assert.Equal(4UL, e.Size);
        Assert.Equal(4UL, e.Align);
        Assert.Equal(0xff3f709d1f237000UL, e.BaseAddr);
        Assert.Equal(2208, e.Off);
        Assert.Equal(0x378a0UL, e.Ptr);
        Assert.Equal(16UL, e.BytesAlloc);
        Assert.Equal(Gfp.Kernel, e.Gfp);
        var i386 = AtLine(68);
        Assert.Equal(0xf5fcc000UL, i386.BaseAddr);
        Assert.Equal(1876, i386.Off);
        Assert.Equal(0xcbe8b754UL, i386.Ptr);
        Assert.Equal(8UL, i386.BytesAlloc);
        var free = AtLine(35);
        Assert.Equal(TraceEventKind.PercpuFreePercpu, free.Kind);
        Assert.Equal(0xff3f709d1f237000UL, free.BaseAddr);
        Assert.Equal(9768, free.Off);
        Assert.Equal(0x39628UL, free.Ptr);
    }

    [Fact]
    public void PercpuChunksAndTheFailEvent()
    {
        var create = AtLine(37);
        Assert.Equal(TraceEventKind.PercpuCreateChunk, create.Kind);
        Assert.Equal("kworker/1:1", create.Comm);
        Assert.Equal(30, create.Pid);
        Assert.Equal(0xffadd3e2ffc00000UL, create.BaseAddr);
        Assert.Equal(0xfefdd000UL, AtLine(72).BaseAddr);
        // The recorded traces have neither event; the lines follow the 6.1 format files.
        var destroy = TraceData.One("     kworker/0:2-80      [000] .....     5.000001: percpu_destroy_chunk: base_addr=ffadd3e2ffc00000");
        Assert.Equal(TraceEventKind.PercpuDestroyChunk, destroy.Kind);
        Assert.Equal(0xffadd3e2ffc00000UL, destroy.BaseAddr);
        var fail = TraceData.One("            init-1       [000] .....     5.000002: percpu_alloc_percpu_fail: reserved=1 is_atomic=1 size=4096 align=8");
        Assert.Equal(TraceEventKind.PercpuAllocPercpuFail, fail.Kind);
        Assert.True(fail.Reserved);
        Assert.True(fail.IsAtomic);
        Assert.Equal(4096UL, fail.Size);
        Assert.Equal(8UL, fail.Align);
    }

    [Fact]
    public void MarkersCarryTheirText()
    {
        var e = AtLine(49);
        Assert.Equal(TraceEventKind.Marker, e.Kind);
        Assert.Equal("init", e.Comm);
        Assert.Equal("SNAPSHOT_FILE slabinfo", e.Text);
        Assert.Equal(58_610_622, e.Timestamp);
        Assert.Equal("INIT_START wl=H", AtLine(76).Text);
    }

    [Fact]
    public void InternedStringsAreShared()
    {
        var a = AtLine(13);
        var b = AtLine(14);
        Assert.Same(a.CallSite, b.CallSite);
        Assert.Same(a.Comm, b.Comm);
    }

    [Fact]
    public void DecimalPfnParses()
    {
        var e = TraceData.One("          <idle>-0       [000] d..1.     0.000000: mm_page_alloc: page=fffacca84020f700 pfn=33756 order=1 migratetype=0 gfp_flags=GFP_KERNEL");
        Assert.Equal(33756UL, e.Pfn);
        Assert.Equal(0x83dcUL, TraceData.One("   x-1  [000] .....  1.000000: mm_page_free: page=0 pfn=0x83DC order=0").Pfn);
    }

    [Fact]
    public void CommsWithSpacesAndDashesTakeThePidAfterTheLastDash()
    {
        var e = TraceData.One("  Web Content-x-4242    [003] d..1.  12.000001: kfree: call_site=x+0x1/0x2 ptr=ffff888003c1e000");
        Assert.Equal("Web Content-x", e.Comm);
        Assert.Equal(4242, e.Pid);
        Assert.Equal(3, e.Cpu);
        Assert.Equal(12_000_001, e.Timestamp);
        Assert.Equal(0xffff888003c1e000UL, e.Ptr);
    }

    [Fact]
    public void TheTgidColumnAndFourFlagCharactersParse()
    {
        var e = TraceData.One("            bash-1234    (   1200) [002] d..1  8123.456789: kfree: call_site=x+0x1/0x2 ptr=00000000a1b2c3d4");
        Assert.Equal("bash", e.Comm);
        Assert.Equal(1234, e.Pid);
        Assert.Equal(1200, e.Tgid);
        Assert.Equal(2, e.Cpu);
        Assert.Equal(8_123_456_789, e.Timestamp);
        var unknown = TraceData.One("     kworker/0:1-17      (-------) [000] .....    14.095175: percpu_create_chunk: base_addr=fefdd000");
        Assert.Equal(-1, unknown.Tgid);
        Assert.Equal(17, unknown.Pid);
    }

    [Fact]
    public void CrLfLineEndingsAndAMissingFinalNewlineAreFine()
    {
        var events = TraceData.Events("# tracer: nop\r\n   a-1  [000] .....  1.000000: kfree: call_site=x+0x1/0x2 ptr=10\r\n   a-1  [000] .....  1.000001: tracing_mark_write: END");
        Assert.Equal(2, events.Count);
        Assert.Equal(0x10UL, events[0].Ptr);
        Assert.Equal("END", events[1].Text);
    }

    [Fact]
    public void ATraceWithoutHeaderHasNoCpuCount()
    {
        using var reader = TraceData.Reader("   a-1  [000] .....  1.000000: kfree: call_site=x+0x1/0x2 ptr=10\n");
        Assert.Equal(0, reader.Cpus);
        Assert.Null(reader.Tracer);
        Assert.Equal(-1, reader.EntriesInBuffer);
        Assert.Single(reader.ReadAll());
    }

    [Fact]
    public void ParsingRepeatedLinesAllocatesNothing()
    {
        // The real event lines (markers aside, whose text is a new string) 300 times over.
        var lines = File.ReadAllLines(TraceData.SampleLinesPath).Where(l => !l.StartsWith('#') && !l.Contains("tracing_mark_write", StringComparison.Ordinal));
        string block = string.Join("\n", lines) + "\n";
        using var reader = TraceData.Reader(string.Concat(Enumerable.Repeat(block, 300)));
        // The first block interns call sites, comms, names and gfp spellings.
        int perBlock = lines.Count();
        for (int i = 0; i < perBlock; i++)
        {
            Assert.True(reader.TryRead(out _));
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        int n = 0;
        while (reader.TryRead(out _))
        {
            n++;
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(299 * perBlock, n);
        // Far below one object per event (24 bytes at least): the runtime's own tier-up work on this thread
        // can allocate a little, a per-event allocation would be hundreds of kilobytes.
        Assert.True(allocated < 16 * 1024, $"{allocated} bytes allocated for {n} events");
    }

    [Fact]
    public void GfpSpellingsWithNoneAndLeftoverBitsParse()
    {
        var none = TraceData.One("   a-1  [000] .....  1.000000: mm_page_alloc: page=1 pfn=0x1 order=0 migratetype=0 gfp_flags=none");
        Assert.Equal((Gfp)0, none.Gfp);
        var leftover = TraceData.One("   a-1  [000] .....  1.000000: mm_page_alloc: page=1 pfn=0x1 order=0 migratetype=0 gfp_flags=GFP_KERNEL|0x4000000");
        Assert.Equal(Gfp.Kernel | (Gfp)0x4000000, leftover.Gfp);
    }

    [Fact]
    public void PointersMayCarryAnOxPrefix()
    {
        var e = TraceData.One("   a-1  [000] .....  1.000000: kfree: call_site=0xffffffff81234567 ptr=0xffff888003c1e000");
        Assert.Equal("0xffffffff81234567", e.CallSite);
        Assert.Equal(0xffff888003c1e000UL, e.Ptr);
    }

    [Fact]
    public void TheReaderTellsHowFarThroughTheInputItIs()
    {
        long length = new FileInfo(TraceData.SampleLinesPath).Length;
        using var reader = TraceReader.Open(TraceData.SampleLinesPath);
        Assert.Equal(length, reader.InputLength);
        while (reader.TryRead(out _))
        {
        }
        Assert.Equal(length, reader.InputBytesRead);
        Assert.Equal(length, reader.BytesRead);
    }
}
