// The kernel's side of a pressure replay (part of PressureReplay): its vmscan, compaction
// and oom events read per task (the slow path of its next page allocation, direct reclaim
// episodes, written frames, victims, oom_score_adj), sys_swapon and sys_swapoff as Kmem's
// swap, exit_mmap's frees as the end of a task's address space, kswapd's schedule, and where the
// capture reveals its free pages, the memory the kernel held before tracing began (UntracedMemory).
// Used on the replaying thread only.
using System.Globalization;

namespace Kmem;

internal sealed partial class PressureReplay
{
    /// <summary>The event names of the kinds this side reads, for the replay's event counts.</summary>
    public static readonly (TraceEventKind Kind, string Name)[] KindNames =
    [
        (TraceEventKind.MmVmscanWakeupKswapd, "mm_vmscan_wakeup_kswapd"),
        (TraceEventKind.MmVmscanKswapdWake, "mm_vmscan_kswapd_wake"),
        (TraceEventKind.MmVmscanKswapdSleep, "mm_vmscan_kswapd_sleep"),
        (TraceEventKind.MmVmscanDirectReclaimBegin, "mm_vmscan_direct_reclaim_begin"),
        (TraceEventKind.MmVmscanDirectReclaimEnd, "mm_vmscan_direct_reclaim_end"),
        (TraceEventKind.MmVmscanWriteFolio, "mm_vmscan_write_folio"),
        (TraceEventKind.MmCompactionTryToCompactPages, "mm_compaction_try_to_compact_pages"),
        (TraceEventKind.MmCompactionEnd, "mm_compaction_end"),
        (TraceEventKind.MmCompactionDeferred, "mm_compaction_deferred"),
        (TraceEventKind.MarkVictim, "mark_victim"),
        (TraceEventKind.OomScoreAdjUpdate, "oom_score_adj_update"),
        (TraceEventKind.MmCompactionBegin, "mm_compaction_begin"),
        (TraceEventKind.MmCompactionIsolateFreepages, "mm_compaction_isolate_freepages"),
        (TraceEventKind.ReclaimRetryZone, "reclaim_retry_zone"),
    ];

    /// <summary>Every event, before it is dispatched: what this side reads of it.</summary>
    public void BeforeEvent(ref TraceEvent e)
    {
        ExitPending();
        if (e.Kind is TraceEventKind.MmCompactionIsolateFreepages or TraceEventKind.ReclaimRetryZone)
        {
            // Read for the kernel's free pages only (aligned), not a step of kswapd's schedule.
            if (_aligned)
            {
                _kernelFree!.KernelFreeRevealed(e.Kind, e.Text ?? "", e.Pid);
            }
            return;
        }
        Tick(ref e);
        if (_aligned)
        {
            AlignBoost(ref e);
            _kernelFree!.TrackKernelFree(ref e);
        }
        switch (e.Kind)
        {
            case TraceEventKind.Kmalloc:
            case TraceEventKind.Kfree:
            case TraceEventKind.KmemCacheFree:
            case TraceEventKind.KmemCacheAlloc:
                SlabEvent(ref e);
                break;
            case >= TraceEventKind.Marker:
                KernelEvent(ref e);
                break;
            default:
                break;
        }
    }

    /// <summary>Adds the counts of the kinds this side reads that the trace had.</summary>
    public static void AddCounts(TraceReader reader, SortedDictionary<string, long> counts)
    {
        foreach (var (kind, name) in KindNames)
        {
            if (reader.CountOf(kind) is long n and > 0)
            {
                counts[name] = n;
            }
        }
    }

    // ---------------------------------------------------------------- the kernel's side

    /// <summary>A vmscan, compaction or oom event, or a marker: read, never replayed.</summary>
    private void KernelEvent(ref TraceEvent e)
    {
        string text = e.Text ?? "";
        switch (e.Kind)
        {
            case TraceEventKind.Marker:
                if (Report.Marker(text, _m) is long kernelFree && (_aligned || !_untraced.Calibrated))
                {
                    _untraced.Calibrate(kernelFree);
                    if (_aligned)
                    {
                        _kernelFree!.RebaseKernelFree(kernelFree);
                    }
                }
                return;
            case TraceEventKind.MmVmscanWakeupKswapd:
                Slow(e.Pid).Wake = true;
                DeferKswapd();
                break;
            case TraceEventKind.MmVmscanDirectReclaimBegin:
                Slow(e.Pid).Direct = true;
                _inDirect.Add(e.Pid);
                break;
            case TraceEventKind.MmVmscanDirectReclaimEnd:
                long n = Field(text, "nr_reclaimed=") ?? 0;
                Slow(e.Pid).Reclaimed += n;
                Report.Kernel(PressureReport.Reclaimed, n);
                _inDirect.Remove(e.Pid);
                break;
            case TraceEventKind.MmVmscanWriteFolio:
                _written.Add(e.Pfn);
                break;
            case TraceEventKind.MmVmscanKswapdWake:
                if (_aligned)
                {
                    AlignKswapd(text, awake: true);
                }
                DeferKswapd();
                break;
            case TraceEventKind.MmVmscanKswapdSleep:
                if (_aligned)
                {
                    AlignKswapd(text, awake: false);
                }
                break; // else counted in the timeline only
            case TraceEventKind.MmCompactionTryToCompactPages:
                Slow(e.Pid).Compact = true;
                break;
            case TraceEventKind.MmCompactionBegin:
                CompactionBegin(e.Pid, e.Comm);
                break;
            case TraceEventKind.MmCompactionEnd:
                _inCompaction.Remove(e.Pid);
                goto case TraceEventKind.MmCompactionDeferred;
            case TraceEventKind.MmCompactionDeferred:
                if (_slow.TryGetValue(e.Pid, out var s) && s.Compact)
                {
                    s.Result = e.Kind == TraceEventKind.MmCompactionDeferred ? "deferred" : Word(text, "status=");
                }
                break;
            case TraceEventKind.MarkVictim:
                _kernelVictims.Add(((int)(Field(text, "pid=") ?? e.Pid), Word(text, "comm=") ?? e.Comm));
                break;
            case TraceEventKind.OomScoreAdjUpdate:
                int pid = (int)(Field(text, "pid=") ?? e.Pid);
                short adj = (short)Math.Clamp(Field(text, "oom_score_adj=") ?? 0, -1000, 1000);
                _adj[pid] = adj;
                if (_tasks.TryGetValue(pid, out var t) && t.Alive)
                {
                    t.Task!.SetOomScoreAdj(adj);
                }
                break;
            default:
                return;
        }
        Report.KernelEventSeen(e.Kind);
    }

    // A compaction run in a task's context: its frees are migrations until mm_compaction_end. Without a
    // mm_compaction_try_to_compact_pages before it, it is compact_node for /proc/sys/vm/compact_memory (a run per
    // zone, one write): the write is an input, so Kmem compacts its own memory, once for the write's runs.
    private void CompactionBegin(int pid, string comm)
    {
        if (!IsTask(pid, comm))
        {
            return;
        }
        _inCompaction.Add(pid);
        if (_slow.TryGetValue(pid, out var s) && s.Compact || !_compactingMemory.Add(pid))
        {
            return;
        }
        var before = PressureCounters.Read(_m);
        _m.CompactMemory();
        NoteKills(before, PressureCounters.Read(_m));
    }

    /// <summary>A slab event: sys_swapon's and sys_swapoff's allocations turn Kmem's swap on and off.</summary>
    private void SlabEvent(ref TraceEvent e)
    {
        _compactingMemory.Remove(e.Pid);
        if (e.Kind is TraceEventKind.KmemCacheAlloc or TraceEventKind.KmemCacheFree)
        {
            CacheEvent(ref e);
            return;
        }
        string? site = e.CallSite;
        if (site is null)
        {
            return;
        }
        if (!_swapOn && e.Kind == TraceEventKind.Kmalloc && site.StartsWith("init_swap_address_space+", StringComparison.Ordinal))
        {
            long bytes = SwapsFileBytes() ?? (long)(e.BytesReq / AddressSpaceBytes) * SwapAddressSpaceBytes;
            Swapon(bytes);
        }
        else if (_swapOn && e.Kind == TraceEventKind.Kfree && site.StartsWith("__do_sys_swapoff+", StringComparison.Ordinal))
        {
            _swapOn = false;
            var before = PressureCounters.Read(_m);
            try
            {
                _m.Swapoff(_swapFile!);
            }
            catch (InvalidOperationException)
            {
                SwapFailures++; // ENOMEM: Kmem could not hold what its swap held
            }
            NoteKills(before, PressureCounters.Read(_m));
        }
    }

    private const string ShmemInodeCache = "shmem_inode_cache";
    private readonly Dictionary<ulong, int> _shmemInodes = [];
    private readonly Dictionary<int, int> _liveShmemInodes = [];

    // kmem_cache_alloc/free: exit_mmap's frees end a task's address space; a tmpfs inode is counted for the task
    // that created it (its writer, as far as the trace tells), and when the last one it created goes, so do the
    // pages of its files the kernel had swapped out or migrated (deleting a file frees its swap slots silently).
    private void CacheEvent(ref TraceEvent e)
    {
        if (e.Kind == TraceEventKind.KmemCacheAlloc)
        {
            // 6.1's kmem_cache_alloc names no cache: shmem_alloc_inode's call site does.
            if (e.CallSite?.StartsWith("shmem_alloc_inode+", StringComparison.Ordinal) == true && IsTask(e.Pid, e.Comm))
            {
                _shmemInodes[e.Ptr] = e.Pid;
                _liveShmemInodes[e.Pid] = _liveShmemInodes.GetValueOrDefault(e.Pid) + 1;
            }
            return;
        }
        if (e.CallSite?.StartsWith("exit_mmap+", StringComparison.Ordinal) == true)
        {
            MmGone(e.Pid);
        }
        else if (e.Name == ShmemInodeCache && _shmemInodes.Remove(e.Ptr, out int creator) && --_liveShmemInodes[creator] == 0)
        {
            _liveShmemInodes.Remove(creator);
            if (_tasks.TryGetValue(creator, out var t) || _mmGone.TryGetValue(creator, out t))
            {
                t.Drop(t.ReclaimedFile, t.MovedFile);
            }
        }
    }

    // exit_mmap in a task's context frees its VMAs: its address space is gone (exit, or exec), with its anonymous
    // pages and swap slots, resident or not (the resident ones' frees came before), and its page tables (their frees
    // came before too: tlb_finish_mmu frees the gathered tables ahead of the pages). A task with nothing swapped out or
    // migrated and no tmpfs file left exits there (its tables go, as the kernel's did: 6.1's exit
    // frees them, and exec's old mm is dropped the same way), its pages still resident held by the replay (Orphan);
    // one whose pages the kernel reclaimed or migrated has pages left in Kmem that no event
    // frees, which go now. Its tmpfs pages stay with their files: Kmem's task keeps them, as their owner no OOM kill
    // could free (oom_score_adj −1000), until their frees come. The pid's next user page starts a new Kmem task.
    private void MmGone(int pid)
    {
        if (!_tasks.TryGetValue(pid, out var t) || !t.Alive)
        {
            return;
        }
        if (t.Reclaimed.Count + t.Moved.Count + t.ReclaimedFile.Count + t.MovedFile.Count == 0)
        {
            // Pages still resident are freed after it (frees the replay commits at the CPU's next event, pages held
            // by a per-CPU LRU batch), stay in the page cache (a file the task read) or are a tmpfs file's (they go
            // with the file). Unless the task made tmpfs files that are still there, the pages become the replay's
            // own (Orphan: held by a reference, unmapped, freed at the kernel's free of their frame) and the task
            // exits now, as the kernel's exit freed its tables (its PGD at the kernel's mmdrop: ExitedTasks).
            t.MmGone = true;
            if (!_liveShmemInodes.ContainsKey(pid))
            {
                Orphan(t);
            }
            ExitIfEmpty(t);
            return;
        }
        _tasks.Remove(pid);
        t.Drop(t.Reclaimed, t.Moved);
        if (t.ReclaimedFile.Count + t.MovedFile.Count > 0)
        {
            t.Task!.SetOomScoreAdj(OomScoreAdjMin);
            _mmGone[pid] = t; // its files may go later
        }
    }

    private readonly Dictionary<int, UserTask> _mmGone = [];

    /// <summary>The kernel freed the last of the table frames <paramref name="task"/> took at its faults: its address
    /// space is gone, as at its exit_mmap. 6.1 frees a task's tables below the PGD only in free_pgtables, and all of them
    /// only when the whole address space goes (exit_mmap; on x86-32 PAE its PMD tables at mmdrop's pgd_free), so this
    /// ends the task where the build's exit_mmap frees carry no call site that tells them from munmap's
    /// (vm_area_free without a tail call, mt_destroy_walk), and a little ahead of them where they do.</summary>
    public void TablesGone(TaskStruct task)
    {
        foreach (var (pid, t) in _tasks)
        {
            if (t.Task == task)
            {
                MmGone(pid);
                return;
            }
        }
    }

    /// <summary>Kmem's tasks that exited at their trace task's exit_mmap (nothing of theirs left in Kmem).</summary>
    public long TasksExited { get; private set; }

    /// <summary>Scopes Kmem's calls as a class of the per-CPU drift (TraceReplayer's PcpDrift), or null.</summary>
    public Func<DriftClass, IDisposable>? DriftScope { get; set; }

    // A task whose trace address space is gone exits once nothing of it is resident any more.
    private void ExitIfEmpty(UserTask t)
    {
        if (t.MmGone && t.Resident == 0 && t.Alive && _tasks.GetValueOrDefault(t.Pid) == t)
        {
            _tasks.Remove(t.Pid);
            _exiting.Add(t);
        }
    }

    // The exits decided since the last event, made before the next one (or at the end): after the free that decided
    // one has been compared, so the pages the exit gives back are no part of that free's drain decision.
    private readonly List<UserTask> _exiting = [];

    private void ExitPending()
    {
        foreach (var t in _exiting)
        {
            Exited.Exit(t.Task!, DriftScope);
            TasksExited++;
        }
        _exiting.Clear();
    }

    private const short OomScoreAdjMin = -1000;

    private void Swapon(long bytes)
    {
        long pages = bytes / (long)PageSize;
        if (pages < 10)
        {
            return;
        }
        _swapFile ??= Path.Combine(Path.GetTempPath(), $"kmem-replay-swap-{Environment.ProcessId}-{Guid.NewGuid():N}.img");
        _m.Mkswap(_swapFile, pages * (long)PageSize);
        _m.Swapon(_swapFile);
        _swapOn = true;
    }

    // The size of the capture's swap area: /proc/swaps after swapon (Size in KiB, the header page not counted).
    private long? SwapsFileBytes()
    {
        foreach (string name in new[] { Path.Combine("meta", "phase", "swaps-after-swapon.txt"), "swaps.txt" })
        {
            string path = _directory is null ? "" : Path.Combine(_directory, name);
            if (_directory is null || !File.Exists(path))
            {
                continue;
            }
            foreach (string line in File.ReadLines(path).Skip(1))
            {
                string[] f = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                if (f.Length >= 3 && long.TryParse(f[2], NumberStyles.None, CultureInfo.InvariantCulture, out long kib))
                {
                    return (kib + 4) * 1024;
                }
            }
        }
        return null;
    }

    private SlowPath Slow(int pid)
    {
        if (!_slow.TryGetValue(pid, out var s))
        {
            s = new SlowPath();
            _slow[pid] = s;
        }
        return s;
    }

    // The kernel's slow-path events of the task since its last page allocation, forgotten once read.
    private SlowPath? TakeSlow(int pid)
    {
        _compactingMemory.Remove(pid);
        if (_slow.Remove(pid, out var s))
        {
            return s;
        }
        return null;
    }

    // ---------------------------------------------------------------- kswapd's schedule

    // Free-running, once the trace shows the kernel's kswapd: when Kmem's runs (KswapdPace).
    private void DeferKswapd()
    {
        if (!_aligned)
        {
            _kswapdPace.Engage();
        }
    }

    /// <summary>Every event, before it is dispatched: runs Kmem's deferred kswapd when its pace says so.</summary>
    private void Tick(ref TraceEvent e)
    {
        if (_kswapdPace.RunsNow(in e, TracedKswapd))
        {
            var before = PressureCounters.Read(_m);
            _m.Mm.RunKswapd();
            NoteKills(before, PressureCounters.Read(_m));
        }
    }

    /// <summary>Pages held for memory the kernel used before its trace began (the ring buffer, the initramfs).</summary>
    public long UntracedPages => _untraced.Pages;

    /// <summary>Pages allocated before the first event for memory the kernel used before tracing (its ring buffer): held
    /// with the rest of that memory (UntracedMemory.Adopt).</summary>
    public void AdoptUntraced(List<Page> pages) => _untraced.Adopt(pages);

    /// <summary>Removes the swap file's name (the machine keeps it open while it lives).</summary>
    public void DeleteSwapFile()
    {
        if (_swapFile is not null)
        {
            try
            {
                File.Delete(_swapFile); // the machine keeps its descriptor: only the name goes
            }
            catch (IOException)
            {
                // best effort: a temporary file
            }
        }
    }

    // ---------------------------------------------------------------- field text

    internal static long? Field(string text, string key)
    {
        string? w = Word(text, key);
        if (w is null)
        {
            return null;
        }
        w = w.TrimEnd(',');
        int end = 0;
        while (end < w.Length && (char.IsAsciiDigit(w[end]) || (end == 0 && w[end] == '-')))
        {
            end++;
        }
        return long.TryParse(w.AsSpan(0, end), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v) ? v : null;
    }

    internal static string? Word(string text, string key)
    {
        int i = 0;
        while ((i = text.IndexOf(key, i, StringComparison.Ordinal)) >= 0)
        {
            if (i == 0 || text[i - 1] == ' ')
            {
                int start = i + key.Length;
                int end = text.IndexOf(' ', start);
                return end < 0 ? text[start..] : text[start..end];
            }
            i += key.Length;
        }
        return null;
    }
}
