// Replay under memory pressure (mm/vmscan.c, mm/compaction.c, mm/oom_kill.c as the
// trace shows them). A Linux 6.1 trace has no fault or swap-in event: a user page is an
// order-0 mm_page_alloc with a user gfp (__GFP_HARDWALL and __GFP_MOVABLE) in a task's
// context. Such a page becomes a page of a Kmem task named after the line's pid and comm,
// faulted in by a write at the task's next free address, so it sits on Kmem's LRU lists.
// The kernel's own reclaim is compared, not replayed: a free of a user page made by
// reclaim (in kswapd's context, in a task between mm_vmscan_direct_reclaim_begin and
// _end, or of a frame mm_vmscan_write_folio wrote out) leaves Kmem's page where it is,
// so Kmem's reclaim has to find the same shortage itself; the task's next user page is
// then the swap-in of the oldest such address. Any other free of a user page frees it in
// Kmem (MADV_DONTNEED); when a task has no resident page left that way, its addresses
// the kernel had reclaimed go too (exit, or a deleted tmpfs file). kcompactd's frees and
// allocations of user pages move the address to the new frame (migration).
// Decisions, per user page allocation, kernel against Kmem: kswapd_wake
// (mm_vmscan_wakeup_kswapd by the task since its last page allocation / Kmem's kswapd
// wakeups), direct_reclaim (mm_vmscan_direct_reclaim_begin / Kmem's allocstall, with the
// pages reclaimed as the amount), compaction (mm_compaction_try_to_compact_pages /
// Kmem's compact_stall; costly-order allocations are compared too, see TraceReplayer.Pressure.cs);
// oom_victim, once per task either side killed (mark_victim's pid / Kmem's victim).
// Swap follows the kernel's: sys_swapon's init_swap_address_space allocation turns on a
// swap file of the capture's size, sys_swapoff's first kfree turns it off.
// Used on the replaying thread only.
using System.Globalization;

namespace Kmem;

/// <summary>The pressure side of a replay: user pages as task pages, the kernel's reclaim decisions read from the trace.</summary>
internal sealed class PressureReplay
{
    private const ulong ChunkBytes = 4UL << 20; // mapped 4 MiB at a time, as the capture's hogs do
    private const ulong PageSize = Machine.PageSize;
    private const ulong AddressSpaceBytes = 192; // sizeof(struct address_space) on x86-64 6.1
    private const long SwapAddressSpaceBytes = 64L << 20; // SWAP_ADDRESS_SPACE_PAGES (16,384) pages

    private readonly Machine _m;
    private readonly TraceDecisions _decisions;
    private readonly bool _decide;
    private readonly string? _directory;

    private readonly Dictionary<int, UserTask> _tasks = [];
    private readonly Dictionary<ulong, (UserTask Task, ulong Va)> _userPfns = [];
    private readonly Dictionary<ulong, FreeContext> _freeContext = [];
    private readonly HashSet<ulong> _written = [];
    private readonly Dictionary<int, SlowPath> _slow = [];
    private readonly HashSet<int> _inDirect = [];
    private readonly Dictionary<int, short> _adj = [];
    private readonly Queue<ulong> _migrating = new();
    private readonly List<(int Pid, string Comm)> _kernelVictims = [];
    private readonly List<(int Pid, string Comm)> _kmemVictims = [];
    private readonly bool _aligned;
    private readonly List<(Page Page, int Order)> _untraced = [];
    private bool _calibrated;
    private string? _swapFile;
    private bool _swapOn;

    public PressureReplay(Machine m, TraceDecisions decisions, bool decide, bool aligned, string? traceFile)
    {
        _m = m;
        _aligned = aligned;
        _decisions = decisions;
        _decide = decide;
        _directory = traceFile is null ? null : Path.GetDirectoryName(Path.GetFullPath(traceFile));
        Report = new PressureReport(m, _directory);
    }

    /// <summary>The per-phase counts, vmstat and timeline.</summary>
    public PressureReport Report { get; }

    public long TaskPages { get; private set; }
    public long ReclaimFrees { get; private set; }
    public long SwapIns { get; private set; }
    public long Migrated { get; private set; }
    public long DroppedAfterKill { get; private set; }
    public long SwapFailures { get; private set; }

    /// <summary>Whether the replay saw any pressure event or user page (the report is worth printing).</summary>
    public bool Active => TaskPages > 0 || Report.KernelEvents > 0;

    // ---------------------------------------------------------------- the kernel's side

    /// <summary>A vmscan, compaction or oom event, or a marker: read, never replayed.</summary>
    public void KernelEvent(ref TraceEvent e)
    {
        string text = e.Text ?? "";
        switch (e.Kind)
        {
            case TraceEventKind.Marker:
                if (Report.Marker(text, _m) is long kernelFree && (_aligned || !_calibrated))
                {
                    Calibrate(kernelFree);
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
                DeferKswapd();
                break;
            case TraceEventKind.MmVmscanKswapdSleep:
                break; // counted in the timeline only
            case TraceEventKind.MmCompactionTryToCompactPages:
                Slow(e.Pid).Compact = true;
                break;
            case TraceEventKind.MmCompactionEnd:
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

    /// <summary>A slab event: sys_swapon's and sys_swapoff's allocations turn Kmem's swap on and off.</summary>
    public void SlabEvent(ref TraceEvent e)
    {
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
            var before = Counters.Read(_m);
            try
            {
                _m.Swapoff(_swapFile!);
            }
            catch (InvalidOperationException)
            {
                SwapFailures++; // ENOMEM: Kmem could not hold what its swap held
            }
            NoteKills(before, Counters.Read(_m));
        }
    }

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
        if (_slow.Remove(pid, out var s))
        {
            return s;
        }
        return null;
    }

    // ---------------------------------------------------------------- kswapd's schedule

    // Events after which Kmem's deferred kswapd runs even if the kernel's showed no work (a kswapd the kernel did not wake).
    private const int KswapdRunBound = 4096;
    private bool _kswapdDeferred;
    private int _sinceKswapdRun;

    // Once the trace shows the kernel's kswapd, Kmem's synchronous kswapd runs when the kernel's reclaimed (its first
    // page freed or written after Kmem's wakeup), not at once: the task that woke it goes on meanwhile, as it does
    // beside a real kswapd, and may fall to the min watermark and reclaim directly. When and how long a thread runs is
    // the scheduler's, an input of the replay; what kswapd reclaims stays Kmem's decision.
    private void DeferKswapd()
    {
        if (!_kswapdDeferred && !_m.Mm.KswapdThreaded)
        {
            _kswapdDeferred = true;
            _m.Mm.KswapdDeferred = true;
        }
    }

    /// <summary>Every event, before it is dispatched: runs Kmem's deferred kswapd where the kernel's worked.</summary>
    public void Tick(ref TraceEvent e)
    {
        if (!_kswapdDeferred)
        {
            return;
        }
        bool kswapdWorked = e.Kind is TraceEventKind.MmPageFree or TraceEventKind.MmPageFreeBatched or TraceEventKind.MmVmscanWriteFolio
            && e.Comm.StartsWith("kswapd", StringComparison.Ordinal);
        if (kswapdWorked || ++_sinceKswapdRun >= KswapdRunBound)
        {
            _sinceKswapdRun = 0;
            var before = Counters.Read(_m);
            _m.Mm.RunKswapd();
            NoteKills(before, Counters.Read(_m));
        }
    }

    // ---------------------------------------------------------------- memory held before tracing

    /// <summary>Pages held for memory the kernel used before its trace began (the ring buffer, the initramfs).</summary>
    public long UntracedPages { get; private set; }

    // Where the capture reveals the kernel's free pages (its vmstat after a phase), Kmem holds or gives back pages so
    // its own free pages are the same: the memory the trace cannot show (allocated before tracing began) is an input,
    // like the watermarks. Free-running: once, at the first phase the capture reveals; aligned: at every one.
    // Taken without reclaim (no kswapd, no direct reclaim), in the largest blocks that are free, as boot-time
    // allocations are; unmovable, so compaction cannot move them.
    private void Calibrate(long kernelFree)
    {
        _calibrated = true;
        long delta = FreePages(_m) - kernelFree;
        const Gfp NoReclaim = (Gfp.Kernel & ~Gfp.Reclaim) | Gfp.NoWarn;
        for (int order = Machine.MaxOrder - 1; delta > 0 && order >= 0; order--)
        {
            while (delta >= 1L << order)
            {
                var page = _m.AllocPages(NoReclaim, order);
                if (page.IsNull)
                {
                    break;
                }
                _untraced.Add((page, order));
                UntracedPages += 1L << order;
                delta -= 1L << order;
            }
        }
        while (delta < 0 && _untraced.Count > 0)
        {
            var (page, order) = _untraced[^1];
            _untraced.RemoveAt(_untraced.Count - 1);
            _m.FreePages(page, order);
            UntracedPages -= 1L << order;
            delta += 1L << order;
        }
    }

    internal static long FreePages(Machine m)
    {
        long free = 0;
        foreach (var z in m.PageAllocator.Zones)
        {
            free += Volatile.Read(ref z.FreePages);
        }
        return free;
    }

    // ---------------------------------------------------------------- user pages

    /// <summary>Whether an allocation is a user page: order 0, a user gfp, in a task's context.</summary>
    public static bool IsUserPage(in TraceEvent e) =>
        e.Order == 0 && (e.Gfp & (Gfp.Hardwall | Gfp.Movable)) == (Gfp.Hardwall | Gfp.Movable) && IsTask(e.Pid, e.Comm);

    private static bool IsTask(int pid, string comm) =>
        pid > 0 && !(comm.StartsWith("kworker", StringComparison.Ordinal) || comm.StartsWith("kswapd", StringComparison.Ordinal)
            || comm.StartsWith("kcompactd", StringComparison.Ordinal) || comm.StartsWith("ksoftirqd", StringComparison.Ordinal)
            || comm.StartsWith("oom_reaper", StringComparison.Ordinal) || comm.StartsWith("khugepaged", StringComparison.Ordinal)
            || comm.StartsWith("migration/", StringComparison.Ordinal) || comm.StartsWith('<'));

    private static bool IsKcompactd(string comm) => comm.StartsWith("kcompactd", StringComparison.Ordinal);

    /// <summary>An mm_page_alloc: a user page becomes a task page (true: handled here, with Kmem's frame in
    /// <paramref name="kmemPfn"/>, or uint.MaxValue when Kmem allocated none for it); any other allocation only ends
    /// the task's slow path (its kernel decisions are not compared).</summary>
    public bool PageAlloc(ref TraceEvent e, out uint kmemPfn)
    {
        kmemPfn = uint.MaxValue;
        _written.Remove(e.Pfn);
        _freeContext.Remove(e.Pfn);
        if (e.Pfn == 0 && e.Page == 0)
        {
            return false;
        }
        if (IsKcompactd(e.Comm) && e.Order == 0 && _migrating.Count > 0 && (e.Gfp & Gfp.Movable) != 0)
        {
            // The target of a migration: the user page moved to this frame.
            ulong key = _migrating.Dequeue();
            if (_moving.Remove(key, out var moved))
            {
                _userPfns[e.Pfn] = moved;
                Migrated++;
                return true;
            }
        }
        if (!IsUserPage(in e))
        {
            return false;
        }
        var slow = TakeSlow(e.Pid);
        var t = TaskOf(e.Pid, e.Comm);
        if (t is null)
        {
            return false;
        }
        if (!t.Alive)
        {
            DroppedAfterKill++;
            return true;
        }
        ulong va;
        bool swapIn = t.Reclaimed.Count > 0;
        if (swapIn)
        {
            va = t.Reclaimed.Dequeue();
            SwapIns++;
        }
        else if (!t.FreeVa.TryPop(out va))
        {
            va = t.NextVa(_m);
            if (va == 0)
            {
                return false;
            }
        }
        var before = Counters.Read(_m);
        bool ok = Touch(t, va);
        var after = Counters.Read(_m);
        NoteKills(before, after);
        Report.Kmem(_m);
        if (_decide)
        {
            Decide(e.LineNumber, slow, before, after, $"{e.Comm}-{e.Pid}");
        }
        if (!ok)
        {
            DroppedAfterKill++;
            return true;
        }
        TaskPages++;
        t.Resident++;
        _userPfns[e.Pfn] = (t, va);
        kmemPfn = swapIn ? uint.MaxValue : t.Task!.FollowPage(va); // a swap-in of a page Kmem kept allocates nothing
        return true;
    }

    /// <summary>A costly-order allocation replayed by the page path: its compaction decision (Kmem's counters
    /// around the call <paramref name="before"/> and now).</summary>
    public void CostlyAlloc(in TraceEvent e, Counters before)
    {
        var slow = TakeSlow(e.Pid);
        var after = Counters.Read(_m);
        NoteKills(before, after);
        if (_decide)
        {
            Decide(e.LineNumber, slow, before, after, $"{e.Comm}-{e.Pid} order {e.Order}");
        }
    }

    public Counters ReadCounters() => Counters.Read(_m);

    private void Decide(long line, SlowPath? slow, Counters before, Counters after, string who)
    {
        bool kWake = slow?.Wake == true, kDirect = slow?.Direct == true, kCompact = slow?.Compact == true;
        bool mWake = after.Wakeups > before.Wakeups, mDirect = after.Allocstall > before.Allocstall, mCompact = after.CompactStall > before.CompactStall;
        _decisions.Decide(DecisionKind.KswapdWake, kWake, mWake, line, who);
        _decisions.Decide(DecisionKind.DirectReclaim, kDirect, mDirect, line,
            $"{who}: kernel reclaimed {slow?.Reclaimed ?? 0}, Kmem {after.PgstealDirect - before.PgstealDirect}",
            (int)Math.Min(int.MaxValue, slow?.Reclaimed ?? 0), (int)Math.Min(int.MaxValue, after.PgstealDirect - before.PgstealDirect));
        _decisions.Decide(DecisionKind.Compaction, kCompact, mCompact, line,
            $"{who}: kernel {slow?.Result ?? "-"}, Kmem {(after.CompactSuccess > before.CompactSuccess ? "success" : mCompact ? "fail" : "-")}");
    }

    // Writes one byte: the fault allocates the page (or swaps it back in). False when Kmem's OOM killer killed the task.
    private static bool Touch(UserTask t, ulong va)
    {
        try
        {
            t.Task!.Write(va, [1]);
            return true;
        }
        catch (TaskKilledException)
        {
            return false;
        }
    }

    private void NoteKills(Counters before, Counters after)
    {
        if (after.OomKill == before.OomKill)
        {
            return;
        }
        foreach (var t in _tasks.Values)
        {
            if (t.Task is { IsKilled: true } && !t.KilledSeen)
            {
                t.KilledSeen = true;
                _kmemVictims.Add((t.Pid, t.Comm));
                Report.KmemKill(t.Pid, t.Comm);
            }
        }
    }

    private UserTask? TaskOf(int pid, string comm)
    {
        if (_tasks.TryGetValue(pid, out var t))
        {
            return t;
        }
        // A task inherits oom_score_adj from its parent; without fork events, from init (pid 1) as last set.
        short adj = _adj.TryGetValue(pid, out short own) ? own : _adj.TryGetValue(1, out short init) ? init : (short)0;
        var task = _m.CreateTask(comm, adj);
        if (task is null)
        {
            return null;
        }
        t = new UserTask(pid, comm, task);
        _tasks[pid] = t;
        return t;
    }

    private readonly Dictionary<ulong, (UserTask Task, ulong Va)> _moving = [];

    /// <summary>A page free event (mm_page_free or mm_page_free_batched) as it is read: who freed a user page
    /// decides what its free is (the free itself is given to <see cref="FreeUserPage"/> when the page path commits it).</summary>
    public void NoteFree(ref TraceEvent e)
    {
        if (!_userPfns.ContainsKey(e.Pfn))
        {
            return;
        }
        _freeContext[e.Pfn] = IsKcompactd(e.Comm) ? FreeContext.Migration
            : _written.Remove(e.Pfn) || e.Comm.StartsWith("kswapd", StringComparison.Ordinal) || _inDirect.Contains(e.Pid) ? FreeContext.Reclaim
            : _freeContext.GetValueOrDefault(e.Pfn);
    }

    /// <summary>The free of a trace frame: true when it was a user page's, handled here; <paramref name="kmemFreed"/>
    /// says whether Kmem freed a page for it (not for a page the kernel's reclaim or migration freed).</summary>
    public bool FreeUserPage(ulong pfn, out bool kmemFreed)
    {
        kmemFreed = false;
        if (!_userPfns.Remove(pfn, out var up))
        {
            return false;
        }
        var context = _freeContext.Remove(pfn, out var c) ? c : FreeContext.Task;
        var t = up.Task;
        if (context == FreeContext.Migration)
        {
            _moving[pfn] = up; // migrated: the new frame is kcompactd's next movable allocation
            _migrating.Enqueue(pfn);
            return true;
        }
        t.Resident--;
        if (context == FreeContext.Reclaim)
        {
            // The kernel reclaimed it: Kmem keeps its page; Kmem's own reclaim decides.
            ReclaimFrees++;
            t.Reclaimed.Enqueue(up.Va);
            return true;
        }
        if (!t.Alive)
        {
            return true;
        }
        kmemFreed = t.Task!.FollowPage(up.Va) != uint.MaxValue;
        t.Task!.MadviseDontneed(up.Va, PageSize);
        t.FreeVa.Push(up.Va);
        if (t.Resident == 0 && t.Reclaimed.Count > 0)
        {
            // Nothing resident left: the task exited or its file went; what the kernel had swapped out goes too.
            while (t.Reclaimed.TryDequeue(out ulong va))
            {
                t.Task!.MadviseDontneed(va, PageSize);
                t.FreeVa.Push(va);
            }
        }
        return true;
    }

    /// <summary>Who freed a user page.</summary>
    private enum FreeContext : byte
    {
        Task,
        Reclaim,
        Migration,
    }

    /// <summary>Ends the replay: the oom_victim decisions (once per task either side chose) and the final vmstat.</summary>
    public void Finish()
    {
        if (_kswapdDeferred)
        {
            _m.Mm.RunKswapd();
            _m.Mm.KswapdDeferred = false;
            _kswapdDeferred = false;
        }
        Report.Finish(_m);
        if (!_decide)
        {
            return;
        }
        var kernel = _kernelVictims.Select(v => v.Pid).ToHashSet();
        var kmem = _kmemVictims.Select(v => v.Pid).ToHashSet();
        foreach (var (pid, comm) in _kernelVictims.Concat(_kmemVictims).DistinctBy(v => v.Pid))
        {
            _decisions.Decide(DecisionKind.OomVictim, kernel.Contains(pid), kmem.Contains(pid), 0, $"{comm}-{pid}");
        }
    }

    public IReadOnlyList<(int Pid, string Comm)> KernelVictims => _kernelVictims;

    public IReadOnlyList<(int Pid, string Comm)> KmemVictims => _kmemVictims;

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

    /// <summary>The kernel's slow-path events of one task since its last page allocation.</summary>
    private sealed class SlowPath
    {
        public bool Wake, Direct, Compact;
        public long Reclaimed;
        public string? Result;
    }

    /// <summary>A trace task and the Kmem task that stands for it.</summary>
    private sealed class UserTask(int pid, string comm, TaskStruct task)
    {
        public int Pid { get; } = pid;
        public string Comm { get; } = comm;
        public TaskStruct? Task { get; } = task;
        public readonly Queue<ulong> Reclaimed = new();
        public readonly Stack<ulong> FreeVa = new();
        public long Resident;
        public bool KilledSeen;
        private ulong _next, _limit;

        public bool Alive => Task is { IsKilled: false, HasExited: false };

        public ulong NextVa(Machine m)
        {
            if (_next == _limit)
            {
                ulong start = Task!.Mmap(ChunkBytes);
                if (start == 0)
                {
                    return 0;
                }
                (_next, _limit) = (start, start + ChunkBytes);
            }
            ulong va = _next;
            _next += PageSize;
            return va;
        }
    }
}

/// <summary>Kmem's pressure counters at one moment: the differences around a call are its decisions.</summary>
internal readonly record struct Counters(long Wakeups, long Allocstall, long CompactStall, long CompactSuccess, long PgstealDirect, long OomKill,
    long Pswpout, long KswapdRuns)
{
    public static Counters Read(Machine m)
    {
        var mm = m.Mm;
        ref var s = ref mm.Stats;
        return new Counters(mm.KswapdWakeups, mm.Allocstall.Sum(), Volatile.Read(ref s.CompactStall), Volatile.Read(ref s.CompactSuccess),
            Volatile.Read(ref s.PgstealDirect), Volatile.Read(ref s.OomKill), Volatile.Read(ref s.Pswpout), mm.KswapdRuns);
    }
}
