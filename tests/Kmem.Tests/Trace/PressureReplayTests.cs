// Replay under memory pressure (src/Kmem.Trace/Pressure): the reader's vmscan, compaction and
// oom kinds; user pages as pages of Kmem tasks, the kernel's reclaim frees left to Kmem and
// the swap-in of the addresses it reclaimed; the OOM victim chosen by Kmem's own OOM killer
// against mark_victim, on hand-written traces and on the oom phase of the real capture Q
// (captures/linux-6.1-pressure-Q/excerpt-oom, cut by scripts/cut-pressure-excerpt.sh). The
// whole of Q is replayed behind the Soak trait.
using Kmem.PageAlloc;

namespace Kmem.Tests.Trace;

public class PressureReplayTests
{
    private static string Line(string comm, int pid, string text, int cpu = 0, string time = "1.000000") =>
        $"{comm,16}-{pid,-7} [{cpu:D3}] .....     {time}: {text}\n";

    private static string UserPage(string comm, int pid, ulong pfn, int cpu = 0) =>
        Line(comm, pid, $"mm_page_alloc: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO", cpu);

    // A swap-in's page is read from swap, never zeroed.
    private static string SwapIn(string comm, int pid, ulong pfn) =>
        Line(comm, pid, $"mm_page_alloc: page=ffffea0000000000 pfn=0x{pfn:x} order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_COMP");

    private static string PageFree(string comm, int pid, ulong pfn, int cpu = 0) =>
        Line(comm, pid, $"mm_page_free: page=ffffea0000000000 pfn=0x{pfn:x} order=0", cpu);

    private static TraceReplayResult Replay(Machine m, string text)
    {
        using var reader = ReplayData.Reader(ReplayData.Header + text);
        return new TraceReplayer(m).Replay(reader);
    }

    [Fact]
    public void TheReaderReadsTheVmscanCompactionAndOomEventsItReplaysAndCountsTheOthersAsUnknown()
    {
        string text = Line("pressure", 131, "mm_vmscan_wakeup_kswapd: nid=0 order=0 gfp_flags=GFP_HIGHUSER_MOVABLE")
            + Line("pressure", 131, "mm_vmscan_direct_reclaim_end: nr_reclaimed=34")
            + Line("kswapd0", 44, "mm_vmscan_write_folio: page=ffce33ab0052d800 pfn=0x14b60 flags=RECLAIM_WB_ANON|RECLAIM_WB_ASYNC")
            + Line("pressure", 207, "mark_victim: pid=207 comm=pressure total-vm=37852kB anon-rss=36636kB file-rss:4kB shmem-rss:648kB uid=0 pgtables=108kB oom_score_adj=1000")
            + Line("kswapd0", 44, "mm_vmscan_lru_isolate: classzone=2 order=0 nr_requested=32 nr_scanned=32 nr_skipped=0 nr_taken=32 lru=inactive_anon");
        using var reader = ReplayData.Reader(ReplayData.Header + text);
        var kinds = new List<TraceEventKind>();
        while (reader.TryRead(out var e))
        {
            kinds.Add(e.Kind);
            if (e.Kind == TraceEventKind.MmVmscanWriteFolio)
            {
                Assert.Equal(0x14b60UL, e.Pfn);
            }
            if (e.Kind == TraceEventKind.MmVmscanDirectReclaimEnd)
            {
                Assert.Equal("nr_reclaimed=34", e.Text);
                Assert.Equal(131, e.Pid);
            }
        }
        Assert.Equal([TraceEventKind.MmVmscanWakeupKswapd, TraceEventKind.MmVmscanDirectReclaimEnd, TraceEventKind.MmVmscanWriteFolio, TraceEventKind.MarkVictim], kinds);
        Assert.Equal(1, reader.UnknownEvents["mm_vmscan_lru_isolate"]);
        Assert.Equal(1, reader.CountOf(TraceEventKind.MarkVictim));
    }

    [Fact]
    public void UserPagesBecomeTaskPagesAndTheKernelsReclaimFreesAreLeftToKmem()
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        var sb = new System.Text.StringBuilder();
        for (ulong i = 0; i < 10; i++)
        {
            sb.Append(UserPage("hog", 50, 0x8000 + i));
        }
        for (ulong i = 0; i < 4; i++)
        {
            sb.Append(PageFree("kswapd0", 44, 0x8000 + i)); // reclaim: Kmem keeps the page
        }
        sb.Append(PageFree("hog", 50, 0x8008)).Append(PageFree("hog", 50, 0x8009)); // munmap: Kmem frees it
        for (ulong i = 0; i < 3; i++)
        {
            sb.Append(SwapIn("hog", 50, 0x9000 + i)); // the swap-in of three reclaimed addresses
        }
        sb.Append(Line("kworker/0:1", 12, "mm_page_alloc: page=ffffea0000000000 pfn=0xa000 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE"));
        var r = Replay(m, sb.ToString());
        var p = Assert.IsType<TracePressure>(r.Pressure);
        Assert.Equal(13, p.TaskPages);
        Assert.Equal(4, p.ReclaimFrees);
        Assert.Equal(3, p.SwapIns);
        var hog = Assert.Single(m.Tasks, t => t.Comm == "hog");
        Assert.Equal(8, hog.Rss); // 10 faulted, 2 freed by the task; the 4 reclaimed stayed, so the swap-ins found them
        // Kmem allocated a page for the ten first faults and for the kworker's page (not a task's); the swap-ins found theirs.
        Assert.Equal(11, r.PageAllocsReplayed);
        Assert.Equal(10, m.Tasks.Sum(t => t.Rss) + 2);
    }

    // <n> pages each of a hog faulting zeroed anonymous memory (pfn 0x8000 on) and of dd writing tmpfs (unzeroed pages,
    // pfn 0x8100 on), taking turns.
    private static System.Text.StringBuilder HogAndTmpfsWriter(int n)
    {
        var sb = new System.Text.StringBuilder();
        for (ulong i = 0; i < (ulong)n; i++)
        {
            sb.Append(UserPage("hog", 50, 0x8000 + i)).Append(SwapIn("dd", 60, 0x8100 + i));
        }
        return sb;
    }

    [Fact]
    public void AZeroedPageIsFreshEvenAfterAReclaimAndATmpfsWritersPagesNeverSwapIn()
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        var sb = HogAndTmpfsWriter(4);
        sb.Append(PageFree("kswapd0", 44, 0x8000)).Append(PageFree("kswapd0", 44, 0x8100));
        sb.Append(UserPage("hog", 50, 0x9000)); // zeroed: a fresh page, not the swap-in of 0x8000's address
        sb.Append(SwapIn("dd", 60, 0x9100)); // dd's next tmpfs page: fresh, dd never faulted anonymous memory
        sb.Append(SwapIn("hog", 50, 0x9001)); // unzeroed, for a task that did: the swap-in
        var r = Replay(m, sb.ToString());
        var p = Assert.IsType<TracePressure>(r.Pressure);
        Assert.Equal(1, p.SwapIns);
        Assert.Equal(5, Assert.Single(m.Tasks, t => t.Comm == "hog").Rss); // 4 + the fresh one; the swap-in found its page
        Assert.Equal(5, Assert.Single(m.Tasks, t => t.Comm == "dd").Rss);
    }

    [Fact]
    public void ATmpfsWritersPagesAreNotYoungAsTheKernelsUnmappedOnesAreNot()
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        Replay(m, HogAndTmpfsWriter(4).ToString());
        var young = new Dictionary<string, (int Young, int Old)>();
        for (uint pfn = 0; pfn < m.PageAllocator.Mem.MaxPfn; pfn++)
        {
            if (m.Mm.Lru.OwnerOf(pfn) is TaskStruct t)
            {
                var (y, o) = young.GetValueOrDefault(t.Comm);
                young[t.Comm] = m.Mm.TestClearYoung(pfn) ? (y + 1, o) : (y, o + 1);
            }
        }
        // The hog faulted its pages (young, as a fault leaves them); dd's were written through the file.
        Assert.Equal((4, 0), young.Single(kv => kv.Key.Contains("hog", StringComparison.Ordinal)).Value);
        Assert.Equal((0, 4), young.Single(kv => kv.Key.Contains("dd", StringComparison.Ordinal)).Value);
    }

    [Fact]
    public void ExitMmapFreesWhatTheKernelHadSwappedOutAndTheLastTmpfsInodeOfItsWriterFreesItsFiles()
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        var sb = new System.Text.StringBuilder();
        sb.Append(Line("dd", 60, "kmem_cache_alloc: call_site=shmem_alloc_inode+0x1d/0x30 ptr=ff12793800001000 bytes_req=776 bytes_alloc=784 gfp_flags=GFP_KERNEL node=-1 accounted=true"));
        for (ulong i = 0; i < 6; i++)
        {
            sb.Append(UserPage("hog", 50, 0x8000 + i)).Append(SwapIn("dd", 60, 0x8100 + i));
        }
        for (ulong i = 0; i < 4; i++)
        {
            sb.Append(PageFree("kswapd0", 44, 0x8000 + i)).Append(PageFree("kswapd0", 44, 0x8100 + i)); // reclaimed: Kmem keeps them
        }
        sb.Append(PageFree("hog", 50, 0x8004)); // the exit frees the resident pages (0x8005's free is not in the trace)
        sb.Append(Line("hog", 50, "kmem_cache_free: call_site=exit_mmap+0x189/0x310 ptr=ff12793814429558 name=vm_area_struct"));
        sb.Append(Line("dd", 60, "kmem_cache_free: call_site=exit_mmap+0x189/0x310 ptr=ff12793814429600 name=vm_area_struct"));
        Replay(m, sb.ToString());
        Assert.Equal(1, Assert.Single(m.Tasks, t => t.Comm == "hog").Rss); // the 4 the kernel had swapped out went with the exit
        var dd = Assert.Single(m.Tasks, t => t.Comm == "dd");
        Assert.Equal(6, dd.Rss); // its file outlives it
        Assert.Equal(-1000, dd.OomScoreAdj); // and no kill could free it

        using var m2 = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        sb.Append(Line("rm", 70, "mm_page_free: page=ffffea0000000000 pfn=0x8104 order=0")); // 0x8105's free is not in the trace
        sb.Append(Line("<idle>", 0, "kmem_cache_free: call_site=rcu_do_batch+0x19a/0x540 ptr=ff12793800001000 name=shmem_inode_cache"));
        Replay(m2, sb.ToString());
        Assert.Equal(1, Assert.Single(m2.Tasks, t => t.Comm == "dd").Rss); // the file is gone: the 4 swapped-out pages too
    }

    [Fact]
    public void KmemsOomKillerChoosesTheTaskTheTraceMarkedAsVictimWhenItsScoreAdjustmentSaysSo()
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "64M", Cpus = 1, Seed = 1 });
        var sb = new System.Text.StringBuilder();
        sb.Append(Line("init", 1, "oom_score_adj_update: pid=1 comm=init oom_score_adj=-1000"));
        ulong pfn = 0x1000;
        for (int i = 0; i < 2000; i++)
        {
            sb.Append(UserPage("keeper", 30, pfn++));
        }
        sb.Append(Line("hog", 40, "oom_score_adj_update: pid=40 comm=hog oom_score_adj=1000"));
        for (int i = 0; i < 20_000; i++)
        {
            sb.Append(UserPage("hog", 40, pfn++));
        }
        sb.Append(Line("hog", 40, "mark_victim: pid=40 comm=hog total-vm=80000kB anon-rss=80000kB file-rss:0kB shmem-rss:0kB uid=0 pgtables=100kB oom_score_adj=1000"));
        var r = Replay(m, sb.ToString());
        var p = Assert.IsType<TracePressure>(r.Pressure);
        Assert.Equal(["40 (hog)"], p.KernelVictims);
        Assert.Equal(["40 (hog)"], p.KmemVictims);
        var d = r.Decisions["oom_victim"];
        Assert.Equal(1, d.Compared);
        Assert.Equal(1, d.BothYes);
        // keeper inherited init's -1000 and was never a candidate; it keeps its pages.
        Assert.Equal(2000, Assert.Single(m.Tasks, t => t.Comm == "keeper").Rss);
        Assert.True(r.Decisions["kswapd_wake"].KmemYes > 0, "a machine running out of memory wakes kswapd");
    }

    [Fact]
    public void ACostlyAllocationTheKernelFailedIsAttemptedItsDecisionsComparedAndItsPageGivenBack()
    {
        const string gfp = "GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_RETRY_MAYFAIL|__GFP_COMP";
        string common = UserPage("hog", 50, 0x8000);
        string failed = Line("init", 1, $"mm_compaction_try_to_compact_pages: order=9 gfp_mask={gfp} priority=2")
            + Line("init", 1, $"mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 gfp_flags={gfp}")
            // An order-0 failure (a mempool's first try) is counted, not attempted.
            + Line("kswapd0", 44, "mm_page_alloc: page=0000000000000000 pfn=0x0 order=0 migratetype=0 gfp_flags=GFP_NOWAIT|__GFP_NOWARN|__GFP_NORETRY|__GFP_NOMEMALLOC");
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        var r = Replay(m, common + failed);
        Assert.Equal(2, r.TraceAllocFailures);
        // A fresh machine has order-9 blocks free: Kmem serves the request the kernel failed, without compacting.
        Assert.Equal(1, r.KmemServedTraceFailures);
        var compaction = r.Decisions["compaction"];
        Assert.Equal((1L, 0L), (compaction.KernelYes, compaction.KmemYes));
        // What Kmem got went back at once: its pages are as on a machine that never saw the failures.
        using var twin = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        var r2 = Replay(twin, common + Line("init", 1, $"mm_compaction_try_to_compact_pages: order=9 gfp_mask={gfp} priority=2"));
        Assert.Equal(0, r2.KmemServedTraceFailures);
        Assert.Equal(FreeOrListed(twin), FreeOrListed(m));
    }

    // A hog faulting user pages past the low watermark of a fresh 64 MiB machine (by <margin> pages, fewer than the
    // low-to-min distance), after the kernel's kswapd woke at the trace's start and, with <sleeps>, went back to sleep;
    // then the kernel's kswapd frees <kernelFrees> of the hog's pages (its reclaim, left to Kmem's).
    private sealed record HogRun(long Runs, bool Pending, long Need, long FreesAtRun);

    private static (Machine M, TraceReplayResult R, HogRun Run) HogPastLow(bool sleeps, int kernelFrees = 0, int margin = 40)
    {
        var m = TraceReplayer.Boot(new MachineOptions { Memory = "64M", Cpus = 1, Seed = 1 });
        var managed = m.PageAllocator.Zones.Where(z => z.IsManaged).ToArray();
        long free = managed.Sum(z => z.FreePages), low = managed.Sum(z => z.WmarkPages(Zone.WmarkLow));
        var sb = new System.Text.StringBuilder(Line("kswapd0", 44, "mm_vmscan_kswapd_wake: nid=0 order=0"));
        if (sleeps)
        {
            sb.Append(Line("kswapd0", 44, "mm_vmscan_kswapd_sleep: nid=0"));
        }
        int hogEvents = (int)(free - low + margin);
        for (int i = 0; i < hogEvents; i++)
        {
            sb.Append(UserPage("hog", 50, 0x1000 + (ulong)i));
        }
        for (int i = 0; i < kernelFrees; i++)
        {
            sb.Append(PageFree("kswapd0", 44, 0x1000 + (ulong)i));
        }
        // Read between events: Kmem's kswapd runs, whether a wakeup waits, what its node lacked below the high
        // watermarks after the wakeup, and how many of the kernel's kswapd frees had been replayed at its first run.
        long events = 0, runs = 0, need = -1, freesAtRun = -1;
        bool pending = false;
        int before = sleeps ? 2 : 1;
        using var reader = ReplayData.Reader(ReplayData.Header + sb);
        var r = new TraceReplayer(m, new TraceReplayOptions
        {
            SnapshotEvery = 1,
            Snapshot = _ =>
            {
                events++;
                (runs, pending) = (m.Mm.KswapdRuns, m.Mm.KswapdHasPending);
                if (pending && need < 0)
                {
                    need = managed.Sum(z => Math.Max(0, z.WmarkPages(Zone.WmarkHigh) - z.FreePages));
                }
                if (runs > 0 && freesAtRun < 0)
                {
                    freesAtRun = Math.Max(0, events - before - hogEvents);
                }
            },
        }).Replay(reader);
        return (m, r, new HogRun(runs, pending, need, freesAtRun));
    }

    [Fact]
    public void KmemsKswapdRunsAtTheKernelsPaceWhileTheKernelsRunsAndAtOnceWhileItSleeps()
    {
        // The kernel's kswapd in a run (woken, its events never silent: one timestamp) that frees nothing in the
        // trace: Kmem's kswapd, woken at the low watermark, waits (the events after the wakeup are far fewer than
        // the bound after which it runs anyway).
        var (paced, rPaced, run) = HogPastLow(sleeps: false);
        using (paced)
        {
            Assert.True(rPaced.Decisions["kswapd_wake"].KmemYes >= 1, "the hog woke Kmem's kswapd");
            Assert.Equal(0, run.Runs);
            Assert.True(run.Pending);
            Assert.True(run.Need > 0, "woken below the low watermark, the node lacks pages below the high one");
        }
        // The kernel's kswapd frees pages: Kmem's runs once the kernel's has freed as many as Kmem's node lacked.
        var (freed, _, freedRun) = HogPastLow(sleeps: false, kernelFrees: 1000);
        using (freed)
        {
            Assert.True(freedRun.Runs >= 1, "Kmem's kswapd ran at the kernel's pace");
            Assert.Equal(freedRun.Need, freedRun.FreesAtRun);
        }
        // The kernel's kswapd asleep: nothing to pace by, and a woken kswapd runs before the trace's next event.
        var (unpaced, rUnpaced, unpacedRun) = HogPastLow(sleeps: true);
        using (unpaced)
        {
            Assert.True(rUnpaced.Decisions["kswapd_wake"].KmemYes >= 1, "the hog woke Kmem's kswapd");
            Assert.True(unpacedRun.Runs >= 1, "Kmem's kswapd ran once woken");
            Assert.False(unpacedRun.Pending);
            Assert.Equal(0, unpacedRun.FreesAtRun);
        }
    }

    // A hog fills a fresh 64 MiB machine to near its high watermarks and frees three of every four pages it faulted, so
    // that no free block of pageblock order is left; then init allocates a hugetlb page (order 9) after the kernel's
    // direct compaction for it ended with <kernelStatus>.
    private static TraceReplayResult HugePageAfterFragmenting(string kernelStatus)
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "64M", Cpus = 1, Seed = 1 });
        var managed = m.PageAllocator.Zones.Where(z => z.IsManaged).ToArray();
        long hog = managed.Sum(z => z.FreePages - z.WmarkPages(Zone.WmarkHigh)) - 64;
        var sb = new System.Text.StringBuilder();
        for (long i = 0; i < hog; i++)
        {
            sb.Append(UserPage("hog", 50, 0x1000 + (ulong)i));
        }
        for (long i = 0; i < hog; i++)
        {
            if (i % 4 != 3)
            {
                sb.Append(PageFree("hog", 50, 0x1000 + (ulong)i));
            }
        }
        const string gfp = "GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_RETRY_MAYFAIL|__GFP_COMP|__GFP_THISNODE";
        sb.Append(Line("init", 1, $"mm_compaction_try_to_compact_pages: order=9 gfp_mask={gfp} priority=2"))
            .Append(Line("init", 1, "mm_compaction_begin: zone_start=0x1000 migrate_pfn=0x1000 free_pfn=0x3e00 zone_end=0x3fe0, mode=async"))
            .Append(Line("init", 1, $"mm_compaction_end: zone_start=0x1000 migrate_pfn=0x2000 free_pfn=0x2000 zone_end=0x3fe0, mode=async status={kernelStatus}"))
            .Append(Line("init", 1, $"mm_page_alloc: page=ffffea0000000000 pfn=0x3000 order=9 migratetype=1 gfp_flags={gfp}"));
        return Replay(m, sb.ToString());
    }

    [Fact]
    public void ACompactionsResultIsComparedAsItsAmount()
    {
        var same = HugePageAfterFragmenting("success").Decisions["compaction"];
        Assert.Equal((1L, 1L, 1L), (same.KernelYes, same.KmemYes, same.BothYes));
        Assert.Equal((1L, 1L), (same.AmountCompared, same.AmountEqual));
        var apart = HugePageAfterFragmenting("partial_skipped").Decisions["compaction"];
        Assert.Equal((1L, 1L, 1L), (apart.KernelYes, apart.KmemYes, apart.BothYes));
        Assert.Equal((1L, 0L), (apart.AmountCompared, apart.AmountEqual));
    }

    // Free frames, on the buddy lists or on a per-CPU list.
    private static long FreeOrListed(Machine m) =>
        m.PageAllocator.Zones.Sum(z => z.FreePages + z.Pcp.Sum(p => (long)p.Count));

    [Fact]
    public void ATraceWithoutPressureHasNoPressureResultAndNoPressureDecisionKinds()
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "128M", Cpus = 2, Seed = 1 });
        var r = Replay(m, ReplayData.Line("kmalloc: call_site=f+0x1/0x2 ptr=ffff888000001000 bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false"));
        Assert.Null(r.Pressure);
        Assert.DoesNotContain("kswapd_wake", r.Decisions.Keys);
        Assert.DoesNotContain("oom_victim", r.Decisions.Keys);
    }

    internal static TraceReplayResult ReplayCapture(string trace, bool aligned = false)
    {
        string dir = Path.GetDirectoryName(trace)!;
        using var m = TraceReplayer.Boot(new MachineOptions
        {
            Memory = "384M",
            Cpus = 2,
            Seed = 1,
            ManagedPages = TraceProcComparison.SnapshotManagedPages(dir),
        });
        using var reader = TraceReader.Open(trace);
        return new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned }).Replay(reader);
    }

    [Fact]
    public void TheOomPhaseOfTheRealCaptureEndsWithKmemKillingTheKernelsVictim()
    {
        var r = ReplayCapture(Captures.File(Captures.Pressure, Path.Combine("excerpt-oom", "trace.txt.xz")));
        var p = Assert.IsType<TracePressure>(r.Pressure);
        Assert.Equal(["207 (pressure)"], p.KernelVictims);
        Assert.Equal(["207 (pressure)"], p.KmemVictims);
        Assert.True(p.UntracedPages > 0, "the memory live before the excerpt began is held from the compact phase's vmstat");
        Assert.True(p.TaskPages > 5000, $"{p.TaskPages} task pages");
        var oom = Assert.Single(p.Phases, ph => ph.Phase == "oom");
        Assert.Equal(1, oom.Kernel["OOM kills"]);
        Assert.Equal(1, oom.Kmem["OOM kills"]);
        var kill = Assert.Single(p.Vmstat, c => c.Phase == "oom" && c.Name == "oom_kill");
        Assert.Equal(1, kill.Kernel);
        Assert.Equal(1, kill.Kmem);
        Assert.Equal(1, r.Decisions["oom_victim"].BothYes);
    }
}
