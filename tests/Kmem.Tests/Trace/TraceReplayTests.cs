// Trace replay against expectations the tests compute themselves: a slice of the real
// bundled trace whose final slabinfo is checked object by object against a model built
// from the events here; small hand-written traces for the slab-page rule, cache naming,
// untracked frees, split pages and the fidelity shares; and determinism (the same
// trace twice gives byte-identical /proc files).
using System.Globalization;

namespace Kmem.Tests.Trace;

public class TraceReplayTests
{
    private static readonly string[] s_procFiles = ["slabinfo", "buddyinfo", "meminfo", "vmstat", "zoneinfo", "pagetypeinfo"];

    private static TraceReplayResult ReplaySlice(Machine m)
    {
        using var reader = ReplayData.SliceReader();
        return new TraceReplayer(m).Replay(reader);
    }

    [Fact]
    public void TheSlicesFinalSlabinfoHoldsExactlyTheObjectsTheTraceLeftAllocated()
    {
        // The model: every slab object the slice allocates and does not free, by kind.
        var live = new Dictionary<ulong, (bool Kmalloc, string Cache, ulong Size)>();
        var nameSizes = new Dictionary<string, HashSet<ulong>>(StringComparer.Ordinal);
        var namedByFree = new HashSet<string>(StringComparer.Ordinal);
        using (var reader = ReplayData.SliceReader())
        {
            while (reader.TryRead(out var e))
            {
                switch (e.Kind)
                {
                    case TraceEventKind.Kmalloc when e.Ptr != 0:
                        live[e.Ptr] = (true, KmallocName(e.Gfp, e.BytesAlloc), e.BytesAlloc);
                        break;
                    case TraceEventKind.KmemCacheAlloc when e.Ptr != 0:
                        live[e.Ptr] = (false, "", e.BytesAlloc);
                        break;
                    case TraceEventKind.Kfree:
                        live.Remove(e.Ptr);
                        break;
                    case TraceEventKind.KmemCacheFree:
                        if (live.Remove(e.Ptr, out var o) && !o.Kmalloc)
                        {
                            namedByFree.Add(e.Name!);
                            if (!nameSizes.TryGetValue(e.Name!, out var sizes))
                            {
                                nameSizes[e.Name!] = sizes = [];
                            }
                            sizes.Add(o.Size);
                        }
                        break;
                }
            }
        }

        using var m = ReplayData.Boot();
        var r = ReplaySlice(m);
        Assert.Equal(0, r.KmemAllocFailures);
        Assert.Equal(live.Count, r.LiveObjects);
        foreach (var cache in m.SlabCaches.ToList())
        {
            m.KmemCacheShrink(cache); // cpu slabs back to the node lists: active_objs is then exactly the objects in use
        }
        var slabinfo = TraceProcComparison.ParseSlabinfo(m.Proc.Slabinfo(), "slabinfo").ToDictionary(c => c.Name, c => c.Line);

        long expectedSlabObjects = live.Values.Count(o => !o.Kmalloc || o.Size <= Machine.KmallocMaxCacheSize);
        Assert.Equal(expectedSlabObjects, slabinfo.Values.Sum(l => l.ActiveObjs));
        foreach (var group in live.Values.Where(o => o.Kmalloc && o.Size <= Machine.KmallocMaxCacheSize).GroupBy(o => o.Cache))
        {
            var line = slabinfo[group.Key];
            if (namedByFree.Contains(group.Key))
            {
                Assert.True(line.ActiveObjs >= group.Count(), group.Key); // cache objects named kmalloc-N share it
            }
            else
            {
                Assert.Equal(group.Count(), line.ActiveObjs);
            }
        }
        foreach (var (name, sizes) in nameSizes.Where(kv => kv.Value.Count == 1 && slabinfo.ContainsKey(kv.Key)))
        {
            Assert.Equal((long)sizes.Single(), slabinfo[name].ObjSize);
        }
        foreach (var line in slabinfo.Values)
        {
            Assert.Equal(0, line.NumObjs % line.ObjPerSlab);
        }
    }

    [Fact]
    public void TheSameTraceTwiceGivesByteIdenticalProcFiles()
    {
        string[] first, second;
        using (var m = ReplayData.Boot())
        {
            ReplaySlice(m);
            first = [.. s_procFiles.Select(m.Proc.Read)];
        }
        using (var m = ReplayData.Boot())
        {
            ReplaySlice(m);
            second = [.. s_procFiles.Select(m.Proc.Read)];
        }
        Assert.Equal(first, second);
        Assert.Contains("kmalloc-64", first[0], StringComparison.Ordinal);
    }

    [Fact]
    public void TheSliceFindsTheDirectMapBaseAndLeavesSlabPagesToKmemsSlabLayer()
    {
        using var m = ReplayData.Boot();
        var r = ReplaySlice(m);
        // capture B's page_offset_base, from its pointer/pfn pairs (KASLR puts it on a 1 GiB boundary).
        Assert.Equal(0xff3f709d00000000UL, r.DirectMapBase);
        Assert.True(r.SlabPageAllocs > 100, $"{r.SlabPageAllocs} slab pages");
        Assert.Equal(r.PageAllocEvents, r.SlabPageAllocs + r.PageAllocsReplayed);
        Assert.Equal(1.0, r.KmallocSizeClassMatch);
        Assert.Equal(1.0, r.PageMigratetypeMatch);
        Assert.Equal(ReplayData.SliceLines - 12, r.Events); // 12 header lines
    }

    [Fact]
    public void APageEventInsideWhichTheNextObjectFallsIsASlabPageAndItsFreeIsNotReplayed()
    {
        const ulong Base = 0xffff888000000000UL;
        var text = new System.Text.StringBuilder(ReplayData.Header);
        AppendPagesWithAnObject(text, Base, [0x1000, 0x2345, 0x3456], "GFP_KERNEL");
        // An ordinary page: allocated, nothing inside it, then freed.
        text.Append(ReplayData.Line("mm_page_alloc: page=ffffea0000000000 pfn=0x7000 order=2 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE"));
        text.Append(ReplayData.Line("kfree: call_site=g+0x1/0x2 ptr=0"));
        // The slab layer gives the first slab page back: a consequence, not a page free to replay.
        text.Append(ReplayData.Line("mm_page_free: page=ffffea0000000000 pfn=0x1000 order=0"));
        text.Append(ReplayData.Line("mm_page_free: page=ffffea0000000000 pfn=0x7000 order=2"));
        text.Append(ReplayData.Line("mm_page_free: page=ffffea0000000000 pfn=0x9999 order=0"));

        using var m = ReplayData.Boot();
        using var reader = ReplayData.Reader(text.ToString());
        var r = new TraceReplayer(m).Replay(reader);
        Assert.Equal(Base, r.DirectMapBase);
        Assert.Equal(3, r.SlabPageAllocs);
        Assert.Equal(1, r.PageAllocsReplayed);
        Assert.Equal(1, r.UntrackedPageFrees); // pfn 0x9999 was never allocated in the trace
        Assert.Equal(3, r.KmallocEvents);
        Assert.Equal(3, r.LiveObjects);
    }

    [Fact]
    public void APageAllocationWithAGfpNoNewSlabCarriesIsNeverASlabPage()
    {
        // 6.1's new_slab keeps only the reclaim and constraint bits of the slab allocation's gfp: a page allocated with
        // __GFP_ZERO, __GFP_ACCOUNT, __GFP_HIGHMEM or __GFP_MOVABLE is no new slab, even with the next object inside it.
        const ulong Base = 0xffff888000000000UL;
        var text = new System.Text.StringBuilder(ReplayData.Header);
        AppendPagesWithAnObject(text, Base, [0x1000, 0x2345, 0x3456], "GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY");
        string[] notSlab = ["GFP_KERNEL_ACCOUNT|__GFP_ZERO", "GFP_HIGHUSER|__GFP_ACCOUNT", "GFP_KERNEL|__GFP_ZERO"];
        for (int i = 0; i < notSlab.Length; i++)
        {
            AppendPagesWithAnObject(text, Base, [0x5000UL + (ulong)i], notSlab[i]);
        }
        using var m = ReplayData.Boot();
        using var reader = ReplayData.Reader(text.ToString());
        var r = new TraceReplayer(m).Replay(reader);
        Assert.Equal(Base, r.DirectMapBase);
        Assert.Equal(3, r.SlabPageAllocs);
        Assert.Equal(notSlab.Length, r.PageAllocsReplayed);
    }

    [Fact]
    public void AHeldBackPageAllocationIsReplayedBeforeTheCpusNextPageEvent()
    {
        // A GFP_KERNEL page may be a new slab, so it waits for the CPU's next event; a page event on that CPU (here an
        // allocation of a page table, which no slab page is) finds it replayed first, as the kernel allocated it first.
        string text = ReplayData.Header
            + ReplayData.Line("mm_page_alloc: page=ffffea0000000000 pfn=0x6000 order=0 migratetype=0 gfp_flags=GFP_KERNEL")
            + ReplayData.Line("kfree: call_site=g+0x1/0x2 ptr=0")
            + ReplayData.Line("mm_page_alloc: page=ffffea0000000000 pfn=0x6001 order=0 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO")
            + ReplayData.Line("kfree: call_site=g+0x1/0x2 ptr=0");
        using var m = ReplayData.Boot();
        long free0 = ReplayData.FreeAndPcpPages(m);
        var taken = new List<long>();
        using var reader = ReplayData.Reader(text);
        new TraceReplayer(m, new TraceReplayOptions { SnapshotEvery = 1, Snapshot = _ => taken.Add(free0 - ReplayData.FreeAndPcpPages(m)) }).Replay(reader);
        // After each event: the first page is held (it may be a slab page), and both are Kmem's after the third event.
        Assert.Equal([0, 0, 2, 2], taken);
    }

    // Each page allocated with gfp, then a kmalloc'ed object inside it on the same CPU.
    private static void AppendPagesWithAnObject(System.Text.StringBuilder text, ulong directMapBase, ulong[] pfns, string gfp)
    {
        foreach (ulong pfn in pfns)
        {
            text.Append(ReplayData.Line($"mm_page_alloc: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=0 gfp_flags={gfp}"));
            text.Append(ReplayData.Line($"kmalloc: call_site=f+0x1/0x2 ptr={directMapBase + (pfn << 12) + 0x40:x} bytes_req=60 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false"));
        }
    }

    [Fact]
    public void CacheAllocationsGoToAProvisionalCacheUntilAFreeNamesItThenMoveThere()
    {
        var text = ReplayData.Header
            + ReplayData.Line("kmem_cache_alloc: call_site=__d_alloc+0x31/0x1c0 ptr=ffff888001000000 bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=false")
            + ReplayData.Line("kmem_cache_alloc: call_site=__d_alloc+0x31/0x1c0 ptr=ffff888001000100 bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=false")
            + ReplayData.Line("kmem_cache_alloc: call_site=__d_alloc+0x31/0x1c0 ptr=ffff888001000200 bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=false")
            + ReplayData.Line("kmem_cache_alloc: call_site=alloc_inode+0x20/0x90 ptr=ffff888002000000 bytes_req=600 bytes_alloc=640 gfp_flags=GFP_KERNEL node=-1 accounted=false");
        string named = ReplayData.Line("kmem_cache_free: call_site=__dentry_kill+0x1/0x2 ptr=ffff888001000100 name=dentry");
        using var m = ReplayData.Boot();
        using (var reader = ReplayData.Reader(text))
        {
            new TraceReplayer(m).Replay(reader);
        }
        Assert.Contains(m.SlabCaches, c => c.Name == "__d_alloc/192");
        Assert.Contains(m.SlabCaches, c => c.Name == "alloc_inode/640" && c.Size == 640);

        using var m2 = ReplayData.Boot();
        TraceReplayResult r;
        using (var reader = ReplayData.Reader(text + named))
        {
            r = new TraceReplayer(m2).Replay(reader);
        }
        Assert.DoesNotContain(m2.SlabCaches, c => c.Name == "__d_alloc/192"); // emptied and destroyed
        var dentry = Assert.Single(m2.SlabCaches, c => c.Name == "dentry");
        Assert.Equal(192u, dentry.Size);
        Assert.Equal(3, r.MovedObjects); // the freed object too: it is freed from the named cache
        m2.KmemCacheShrink(dentry);
        var line = TraceProcComparison.ParseSlabinfo(m2.Proc.Slabinfo(), "slabinfo").Single(c => c.Name == "dentry").Line;
        Assert.Equal(2, line.ActiveObjs);
        var use = Assert.Single(r.Caches, c => c.Name == "dentry");
        Assert.Equal(2, use.Live);
    }

    [Fact]
    public void FreesOfObjectsAllocatedBeforeTracingAreCountedNotErrors()
    {
        var text = ReplayData.Header
            + ReplayData.Line("kfree: call_site=f+0x1/0x2 ptr=ffff888001000000")
            + ReplayData.Line("kfree: call_site=f+0x1/0x2 ptr=0")
            + ReplayData.Line("kfree: call_site=f+0x1/0x2 ptr=0000000000000010")
            + ReplayData.Line("kmem_cache_free: call_site=f+0x1/0x2 ptr=ffff888001000040 name=dentry")
            + ReplayData.Line("kmalloc: call_site=f+0x1/0x2 ptr=ffff888003000000 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL node=-1 accounted=false")
            + ReplayData.Line("kfree: call_site=f+0x1/0x2 ptr=ffff888003000000")
            + ReplayData.Line("kfree: call_site=f+0x1/0x2 ptr=ffff888003000000");
        using var m = ReplayData.Boot();
        using var reader = ReplayData.Reader(text);
        var r = new TraceReplayer(m).Replay(reader);
        Assert.Equal(3, r.UntrackedFrees); // two before tracing, one freed twice in the trace; NULL and ZERO_SIZE_PTR ignored
        Assert.Equal(1, r.UntrackedFreesByCache["dentry"]);
        Assert.Equal(0, r.LiveObjects);
    }

    [Fact]
    public void FidelitySharesCompareKmemsChoicesWithTheTraces()
    {
        var text = ReplayData.Header
            + ReplayData.Line("kmalloc: call_site=f+0x1/0x2 ptr=ffff888003000000 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL node=-1 accounted=false")
            + ReplayData.Line("kmalloc: call_site=f+0x1/0x2 ptr=ffff888003000100 bytes_req=70 bytes_alloc=128 gfp_flags=GFP_KERNEL node=-1 accounted=false") // kernel said 128, Kmem's class is 96
            + ReplayData.Line("kmalloc: call_site=f+0x1/0x2 ptr=ffff888003010000 bytes_req=9000 bytes_alloc=16384 gfp_flags=GFP_KERNEL node=-1 accounted=false")
            + ReplayData.Line("kmalloc: call_site=f+0x1/0x2 ptr=ffff888003020000 bytes_req=40 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false", cpu: 1)
            + ReplayData.Line("mm_page_alloc: page=ffffea0000000000 pfn=0x7000 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE")
            + ReplayData.Line("mm_page_alloc: page=ffffea0000000000 pfn=0x7001 order=0 migratetype=0 gfp_flags=GFP_HIGHUSER_MOVABLE")
            + ReplayData.Line("mm_page_alloc: page=0000000000000000 pfn=0 order=0 migratetype=0 gfp_flags=GFP_KERNEL");
        using var m = ReplayData.Boot();
        using var reader = ReplayData.Reader(text);
        var r = new TraceReplayer(m).Replay(reader);
        Assert.Equal(4, r.KmallocEvents);
        Assert.Equal(0.75, r.KmallocSizeClassMatch);
        Assert.Equal(2, r.PageAllocEvents);
        Assert.Equal(0.5, r.PageMigratetypeMatch);
        Assert.Equal(1, r.TraceAllocFailures);
        Assert.Equal(100 + 70 + 9000 + 40, r.BytesRequested);
        Assert.Equal(128 + 96 + 16384 + 64, r.BytesAllocated);
        Assert.Contains(r.Caches, c => c.Name == "kmalloc-96" && c.Live == 1);
        Assert.Contains(r.Caches, c => c.Name == "kmalloc-large (pages)" && c.Live == 1);
    }

    [Fact]
    public void AFreeOfPartOfASplitBlockFreesJustThosePages()
    {
        var text = ReplayData.Header
            + ReplayData.Line("mm_page_alloc: page=ffffea0000000000 pfn=0x7000 order=2 migratetype=0 gfp_flags=GFP_KERNEL")
            + ReplayData.Line("mm_page_free: page=ffffea0000000000 pfn=0x7003 order=0")
            + ReplayData.Line("mm_page_free: page=ffffea0000000000 pfn=0x7002 order=0");
        using var m = ReplayData.Boot();
        long freeBefore = FreePages(m);
        using var reader = ReplayData.Reader(text);
        var r = new TraceReplayer(m).Replay(reader);
        Assert.Equal(0, r.UntrackedPageFrees);
        m.DrainAllPages();
        Assert.Equal(freeBefore - 2, FreePages(m)); // pages 0x7000 and 0x7001 still held
    }

    [Fact]
    public void TheReadmeReplayExampleRunsAsDescribed()
    {
        string folder = ReplayData.SliceFolder();
        try
        {
            var output = new StringWriter();

            using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
            using var reader = TraceReader.Open(Path.Combine(folder, "trace.txt"), new TraceReaderOptions { StopAtMarker = "SNAPSHOT_BEGIN" });
            TraceReplayResult r = new TraceReplayer(m).Replay(reader);
            output.WriteLine($"{r.Events} events; kmalloc size classes as in the kernel: {r.KmallocSizeClassMatch:P1}");
            output.Write(m.Proc.Read("slabinfo"));
            var cmp = TraceProcComparison.Compare(m, folder, r);

            Assert.StartsWith($"{ReplayData.SliceLines - 12} events; kmalloc size classes as in the kernel: 100", output.ToString(), StringComparison.Ordinal);
            Assert.Equal(3, cmp.Files.Count);
            Assert.Contains(cmp.Slabinfo, c => c.Name == "kmalloc-64" && c.Trace is not null && c.Kmem is not null);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void PercpuEventsDriveThePerCpuAllocator()
    {
        var text = ReplayData.Header
            + ReplayData.Line("percpu_alloc_percpu: call_site=alloc_desc+0x50/0x250 reserved=0 is_atomic=0 size=4 align=4 base_addr=ff3f709d1f237000 off=2208 ptr=00000000000378a0 bytes_alloc=16 gfp_flags=GFP_KERNEL")
            + ReplayData.Line("percpu_alloc_percpu: call_site=alloc_desc+0x50/0x250 reserved=0 is_atomic=0 size=64 align=8 base_addr=ff3f709d1f237000 off=2212 ptr=00000000000378a4 bytes_alloc=128 gfp_flags=GFP_KERNEL")
            + ReplayData.Line("percpu_alloc_percpu: call_site=load_module+0x1/0x2 reserved=1 is_atomic=0 size=32 align=8 base_addr=ff3f709d1f237000 off=16 ptr=0000000000030010 bytes_alloc=64 gfp_flags=GFP_KERNEL")
            + ReplayData.Line("percpu_free_percpu: base_addr=ff3f709d1f237000 off=2208 ptr=00000000000378a0")
            + ReplayData.Line("percpu_free_percpu: base_addr=ff3f709d1f237000 off=9768 ptr=0000000000039628")
            + ReplayData.Line("percpu_create_chunk: base_addr=ffadd3e2ffc00000");
        using var m = ReplayData.Boot();
        using var reader = ReplayData.Reader(text);
        var r = new TraceReplayer(m).Replay(reader);
        Assert.Equal(3, r.PercpuAllocsReplayed);
        Assert.Equal(2, r.LivePercpu);
        Assert.Equal(1, r.UntrackedPercpuFrees); // allocated before tracing began
        Assert.Equal(1, r.PercpuEventsNotReplayed); // the chunk event is a consequence
        Assert.Equal(0, r.KmemAllocFailures);
    }

    [Fact]
    public void TheStopMarkerEndsTheReplay()
    {
        var text = ReplayData.Header
            + ReplayData.Line("kmalloc: call_site=f+0x1/0x2 ptr=ffff888003000000 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL node=-1 accounted=false")
            + ReplayData.Line("tracing_mark_write: SNAPSHOT_FILE slabinfo")
            + ReplayData.Line("kfree: call_site=f+0x1/0x2 ptr=ffff888003000000");
        using var m = ReplayData.Boot();
        using var reader = ReplayData.Reader(text, new TraceReaderOptions { StopAtMarker = "SNAPSHOT_FILE slabinfo" });
        var r = new TraceReplayer(m).Replay(reader);
        Assert.Equal("SNAPSHOT_FILE slabinfo", r.StopMarker);
        Assert.Equal(1, r.LiveObjects);
        Assert.Equal(5, r.StopLine);
    }

    [Fact]
    public void TheProcComparisonReadsTheSnapshotFilesAndExplainsTheDifferences()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"kmem-cmp-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            File.WriteAllText(Path.Combine(dir, "slabinfo.txt"), "slabinfo - version: 2.1\n# name <active_objs> …\n"
                + "dentry              5000   5040    192   21    1 : tunables    0    0    0 : slabdata    240    240      0\n"
                + "kmalloc-128            3     32    128   32    1 : tunables    0    0    0 : slabdata      1      1      0\n");
            File.WriteAllText(Path.Combine(dir, "buddyinfo.txt"), "Node 0, zone      DMA      0      0      0      0      0      1      1      1      0      1      3 \n");
            File.WriteAllText(Path.Combine(dir, "meminfo.txt"), "MemTotal:         466112 kB\nSlab:              22364 kB\nSReclaimable:       9736 kB\nSUnreclaim:        12628 kB\n");
            var text = ReplayData.Header
                + ReplayData.Line("kmem_cache_alloc: call_site=__d_alloc+0x31/0x1c0 ptr=ffff888001000000 bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=false")
                + ReplayData.Line("kmem_cache_alloc: call_site=__d_alloc+0x31/0x1c0 ptr=ffff888001000100 bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=false")
                + ReplayData.Line("kmem_cache_free: call_site=d+0x1/0x2 ptr=ffff888001000000 name=dentry")
                + ReplayData.Line("kmem_cache_free: call_site=d+0x1/0x2 ptr=ffff888009000000 name=dentry");
            using var m = ReplayData.Boot();
            using var reader = ReplayData.Reader(text);
            var r = new TraceReplayer(m).Replay(reader);
            var c = TraceProcComparison.Compare(m, dir, r);
            Assert.Equal(["slabinfo.txt", "buddyinfo.txt", "meminfo.txt"], c.Files);
            var dentry = Assert.Single(c.Slabinfo, s => s.Name == "dentry");
            Assert.Equal(5000, dentry.Trace!.Value.ActiveObjs);
            Assert.Equal(192, dentry.Kmem!.Value.ObjSize);
            Assert.Contains("the trace freed 1 objects of it that it never allocated", dentry.Note, StringComparison.Ordinal);
            Assert.Contains(c.Slabinfo, s => s.Name == "kmalloc-128" && s.Kmem is not null);
            var dma = Assert.Single(c.Buddyinfo, b => b.Zone == "Node 0, zone DMA");
            Assert.Equal(11, dma.Trace!.Count);
            Assert.Contains("more free pages on Kmem", dma.Note, StringComparison.Ordinal);
            Assert.Contains(c.Buddyinfo, b => b.Zone == "Node 0, zone DMA32" && b.Trace is null);
            var slab = Assert.Single(c.Meminfo, x => x.Field == "Slab");
            Assert.Equal(22364, slab.TraceKb);
            Assert.Equal(long.Parse(Field(m.Proc.Meminfo(), "Slab"), CultureInfo.InvariantCulture), slab.KmemKb);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void EveryBackendIsComparedOrReportedUnavailableWithTheMachinesMessage()
    {
        string dir = ReplayData.SliceFolder();
        try
        {
            string small = Path.Combine(dir, "small.txt");
            File.WriteAllLines(small, File.ReadLines(Path.Combine(dir, "trace.txt")).Take(20_000));
            var runs = SlabBackendComparison.Compare(small, new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
            Assert.Equal([SlabAllocator.Slub, SlabAllocator.Slab, SlabAllocator.Slob], runs.Select(x => x.Slab));
            var slub = runs[0].Result!;
            Assert.True(slub.SlabBytesPeak >= slub.SlabBytesEnd && slub.SlabBytesEnd > 0);
            Assert.InRange(slub.InternalFragmentation, 0.0, 0.5);
            foreach (var run in runs.Skip(1))
            {
                if (run.Result is null)
                {
                    Assert.Contains("not part of this build", run.Unavailable, StringComparison.Ordinal);
                }
                else
                {
                    Assert.Equal(slub.Events, run.Result.Events);
                    Assert.True(run.Result.SlabBytesEnd > 0);
                }
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string KmallocName(Gfp gfp, ulong size)
    {
        string prefix = (gfp & Gfp.Dma) != 0 ? "dma-kmalloc-" : (gfp & Gfp.Reclaimable) != 0 ? "kmalloc-rcl-" : (gfp & Gfp.Account) != 0 ? "kmalloc-cg-" : "kmalloc-";
        return prefix + (size >= 1024 ? $"{size / 1024}k" : size.ToString(CultureInfo.InvariantCulture));
    }

    private static long FreePages(Machine m) =>
        TraceProcComparison.ParseBuddyinfo(m.Proc.Buddyinfo(), "buddyinfo").Values.Sum(c => c.Select((n, o) => n << o).Sum());

    private static string Field(string meminfo, string field) =>
        meminfo.Split('\n').First(l => l.StartsWith(field + ":", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
}
