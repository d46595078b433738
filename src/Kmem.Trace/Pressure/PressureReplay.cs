// Replay under memory pressure (mm/vmscan.c, mm/compaction.c, mm/oom_kill.c as the
// trace shows them). A Linux 6.1 trace has no fault or swap-in event: a user page is an
// order-0 mm_page_alloc with a user gfp (__GFP_HARDWALL and __GFP_MOVABLE) in a task's
// context. Such a page becomes a page of a Kmem task named after the line's pid and comm,
// faulted in by a write at the task's next free address, so it sits on Kmem's LRU lists.
// The kernel's own reclaim is compared, not replayed: a free of a user page made by
// reclaim (in kswapd's context, in a task between mm_vmscan_direct_reclaim_begin and
// _end, or of a frame mm_vmscan_write_folio wrote out) leaves Kmem's page where it is,
// so Kmem's reclaim has to find the same shortage itself; the task's next unzeroed user
// page is then the swap-in of the oldest such address (a fresh anonymous page has
// __GFP_ZERO, a swap-in never; only a task seen faulting zeroed pages swaps in, since a
// tmpfs writer's pages are unzeroed whether fresh or not). Any other free of a user page frees it in
// Kmem (MADV_DONTNEED); when a task has no resident page left that way, its addresses
// the kernel had reclaimed go too (exit, or a deleted tmpfs file). A free of a user page by
// kcompactd or inside a task's compaction run (mm_compaction_begin to _end) is a migration:
// the new frame shows in no event, so Kmem keeps its page until the task's pages all go.
// A compaction run in a task's context that is not direct compaction is a write to
// /proc/sys/vm/compact_memory: Kmem compacts its memory there too.
// Decisions, per user page allocation, kernel against Kmem: kswapd_wake
// (mm_vmscan_wakeup_kswapd by the task since its last page allocation / Kmem's kswapd
// wakeups), direct_reclaim (mm_vmscan_direct_reclaim_begin / Kmem's allocstall, with the
// pages reclaimed as the amount), compaction (mm_compaction_try_to_compact_pages /
// Kmem's compact_stall; costly-order allocations are compared too, see TraceReplayer.Pressure.cs);
// oom_victim, once per task either side killed (mark_victim's pid / Kmem's victim).
// Swap follows the kernel's: sys_swapon's init_swap_address_space allocation turns on a
// swap file of the capture's size, sys_swapoff's first kfree turns it off.
// The kernel's side, swap, kswapd's schedule and the memory held before tracing are in
// PressureReplay.Kernel.cs. Used on the replaying thread only.

namespace Kmem;

/// <summary>The pressure side of a replay: user pages as task pages, the kernel's reclaim decisions read from the trace.</summary>
internal sealed partial class PressureReplay
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
    private readonly Dictionary<ulong, (UserTask Task, ulong Va, bool Anon)> _userPfns = [];
    private readonly Dictionary<ulong, FreeContext> _freeContext = [];
    private readonly Dictionary<ulong, int> _directFreer = [];
    private readonly HashSet<ulong> _written = [];
    private readonly Dictionary<int, SlowPath> _slow = [];
    private readonly HashSet<int> _inDirect = [];
    private readonly Dictionary<int, short> _adj = [];
    private readonly HashSet<int> _inCompaction = [];
    private readonly HashSet<int> _compactingMemory = [];
    private readonly List<(int Pid, string Comm)> _kernelVictims = [];
    private readonly List<(int Pid, string Comm)> _kmemVictims = [];
    private readonly bool _aligned;
    private readonly UntracedMemory _untraced;
    private readonly KswapdPace _kswapdPace;
    private string? _swapFile;
    private bool _swapOn;

    public PressureReplay(Machine m, TraceDecisions decisions, bool decide, bool aligned, string? traceFile)
    {
        _m = m;
        Exited = new ExitedTasks(m);
        _kswapdPace = new KswapdPace(m);
        _untraced = new UntracedMemory(m);
        _aligned = aligned;
        _decisions = decisions;
        _decide = decide;
        _directory = traceFile is null ? null : Path.GetDirectoryName(Path.GetFullPath(traceFile));
        Report = new PressureReport(m, _directory);
        if (aligned)
        {
            StartAligned();
        }
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

    /// <summary>Whether either side has shown pressure so far: a vmscan, compaction or oom event in the trace, or
    /// Kmem's own kswapd wakeup, direct reclaim, direct compaction or OOM kill.</summary>
    public bool PressureSeen
    {
        get
        {
            var c = PressureCounters.Read(_m);
            return Report.KernelEvents > 0 || c.Wakeups + c.Allocstall + c.CompactStall + c.OomKill > 0;
        }
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
        if (!IsUserPage(in e))
        {
            NoteCostly(in e);
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
        // A fresh anonymous page is zeroed (__GFP_ZERO); a swap-in reads its page from swap, so never is. Only a task
        // seen faulting anonymous memory swaps in: a tmpfs writer's pages are never zeroed, fresh or not, and
        // counting its new pages as swap-ins would have it re-fault what it wrote instead of writing more.
        bool zeroed = (e.Gfp & Gfp.Zero) != 0;
        t.Anonymous |= zeroed;
        bool swapIn = !zeroed && t.Anonymous && t.Reclaimed.Count > 0;
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
        if (_aligned)
        {
            _kernelFree!.AlignFree(e.Pid);
            ApplyKernelBoost();
            SettleKswapd();
            _allocatingPid = e.Pid;
        }
        var state = _decide ? ReadWakeState() : default;
        var before = PressureCounters.Read(_m);
        bool ok = Touch(t, va);
        if (ok && !zeroed && !swapIn && t.Task!.FollowPage(va) is var written && written != Kmem.Physical.PhysMem.NoPfn)
        {
            // Neither zero-filled nor a swap-in: a page of a file (tmpfs) the kernel's task wrote through write(), which
            // no page table maps, so reclaim's first look finds no reference; Kmem's stand-in is mapped, and was young.
            _m.Mm.TestClearYoung((uint)written);
        }
        var after = PressureCounters.Read(_m);
        if (_aligned)
        {
            _allocatingPid = -1;
            ReleaseHeldDirect(e.Pid);
        }
        NoteKills(before, after);
        Report.Kmem(_m);
        if (_decide)
        {
            Decide(e.LineNumber, slow, before, after, new Who(e.Comm, e.Pid, -1, state));
        }
        if (!ok)
        {
            DroppedAfterKill++;
            return true;
        }
        TaskPages++;
        t.Resident++;
        _userPfns[e.Pfn] = (t, va, zeroed || swapIn);
        kmemPfn = swapIn ? uint.MaxValue : t.Task!.FollowPage(va); // a swap-in of a page Kmem kept allocates nothing
        return true;
    }

    // Costly-order allocations (order > PAGE_ALLOC_COSTLY_ORDER, 3) the page path replays: the kernel's slow path
    // of the task until then, kept by frame until Kmem's allocation for it is made.
    private readonly Dictionary<ulong, (SlowPath? Slow, long Line, Who Who)> _costly = [];

    private void NoteCostly(in TraceEvent e)
    {
        if (e.Order > Kmem.PageAlloc.PerCpuPages.CostlyOrder)
        {
            _costly[e.Pfn] = (TakeSlow(e.Pid), e.LineNumber, new Who(e.Comm, e.Pid, e.Order, _decide ? ReadWakeState() : default));
        }
        else
        {
            _ = TakeSlow(e.Pid);
        }
        if (_aligned)
        {
            ReleaseHeldDirect(e.Pid); // Kmem's direct reclaim for a kernel allocation is its own
            _kernelFree!.ForgetOwnFree(e.Pid);
        }
    }

    /// <summary>The page path made Kmem's allocation for the trace's frame <paramref name="pfn"/>: for a costly order,
    /// its decisions (Kmem's counters <paramref name="before"/> the call and now) against the kernel's slow path.</summary>
    public void PageAllocated(ulong pfn, PressureCounters before)
    {
        if (!_costly.Remove(pfn, out var c))
        {
            return;
        }
        var after = PressureCounters.Read(_m);
        NoteKills(before, after);
        if (_decide)
        {
            Decide(c.Line, c.Slow, before, after, c.Who);
        }
    }

    public PressureCounters ReadPressureCounters() => PressureCounters.Read(_m);

    /// <summary>Whether a page allocation the kernel failed is attempted on Kmem (<see cref="AttemptFailedCostly"/>): a costly
    /// order, on a trace under memory pressure (a user page or a vmscan, compaction or oom event seen).</summary>
    public bool AttemptsFailed(in TraceEvent e) => e.Order > Kmem.PageAlloc.PerCpuPages.CostlyOrder && Active;

    /// <summary>A costly-order allocation that failed in the kernel (its event names no frame) is a decision too: its slow
    /// path woke kswapd, reclaimed or compacted before it gave up. Kmem makes the same request, the decisions are
    /// compared as for one that succeeded, and what Kmem gets goes back at once (the kernel's task got nothing).</summary>
    /// <returns>Whether Kmem's request succeeded where the kernel's failed.</returns>
    public bool AttemptFailedCostly(ref TraceEvent e, Func<Page> allocate)
    {
        NoteCostly(in e);
        var before = PressureCounters.Read(_m);
        var page = allocate();
        PageAllocated(e.Pfn, before);
        if (page.IsNull)
        {
            return false;
        }
        _m.FreePages(page, e.Order);
        return true;
    }

    // The allocating task of a decision, named in a mismatch's detail ("comm-pid", with the order of a costly one, and
    // Kmem's state before it); formatted only when a mismatch is kept.
    private readonly record struct Who(string Comm, int Pid, int Order, WakeState State)
    {
        public override string ToString() => (Order < 0 ? $"{Comm}-{Pid}" : $"{Comm}-{Pid} order {Order}") + $": {State}";
    }

    private void Decide(long line, SlowPath? slow, PressureCounters before, PressureCounters after, Who who)
    {
        bool kWake = slow?.Wake == true, kDirect = slow?.Direct == true, kCompact = slow?.Compact == true;
        bool mWake = after.Wakeups > before.Wakeups, mDirect = after.Allocstall > before.Allocstall, mCompact = after.CompactStall > before.CompactStall;
        long kReclaimed = slow?.Reclaimed ?? 0, mReclaimed = after.PgstealDirect - before.PgstealDirect;
        string kResult = slow?.Result ?? "-", mResult = after.CompactSuccess > before.CompactSuccess ? "success" : mCompact ? "fail" : "-";
        _decisions.Decide(DecisionKind.KswapdWake, kWake, mWake, line, who, static w => w.ToString());
        _decisions.Decide(DecisionKind.DirectReclaim, kDirect, mDirect, line, (who, kReclaimed, mReclaimed),
            static s => $"{s.who}; kernel reclaimed {s.kReclaimed}, Kmem {s.mReclaimed}",
            (int)Math.Min(int.MaxValue, kReclaimed), (int)Math.Min(int.MaxValue, mReclaimed));
        // The result compared as the amount: 1 for a compaction that made the page (the kernel's last run of it ended
        // with status=success, Kmem counted compact_success), 0 for one that failed or was deferred.
        _decisions.Decide(DecisionKind.Compaction, kCompact, mCompact, line, (who, kResult, mResult),
            static s => $"{s.who}; kernel {s.kResult}, Kmem {s.mResult}", kResult == "success" ? 1 : 0, mResult == "success" ? 1 : 0);
    }

    // A write fault without the write (MADV_POPULATE_WRITE): the fault allocates the page (or swaps it back in) and
    // marks it dirty; the trace tells nothing of the bytes, and a frame no one wrote costs the host nothing. False
    // when Kmem's OOM killer killed the task.
    private static bool Touch(UserTask t, ulong va)
    {
        try
        {
            t.Task!.MadvisePopulate(va, 1, write: true);
            return true;
        }
        catch (TaskKilledException)
        {
            return false;
        }
    }

    private void NoteKills(PressureCounters before, PressureCounters after)
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
        var task = _m.CreateReplayedTask(comm, adj);
        if (task is null)
        {
            return null;
        }
        t = new UserTask(pid, comm, task);
        _tasks[pid] = t;
        return t;
    }

    /// <summary>A page free event (mm_page_free or mm_page_free_batched) as it is read: who freed a user page
    /// decides what its free is (the free itself is given to <see cref="FreeUserPage"/> when the page path commits it).</summary>
    public void NoteFree(ref TraceEvent e)
    {
        if (!_userPfns.ContainsKey(e.Pfn))
        {
            return;
        }
        var context = IsKcompactd(e.Comm) || _inCompaction.Contains(e.Pid) ? FreeContext.Migration
            : _written.Remove(e.Pfn) || e.Comm.StartsWith("kswapd", StringComparison.Ordinal) || _inDirect.Contains(e.Pid) ? FreeContext.Reclaim
            : _freeContext.GetValueOrDefault(e.Pfn);
        _freeContext[e.Pfn] = context;
        if (_aligned && context == FreeContext.Reclaim && _inDirect.Contains(e.Pid))
        {
            _directFreer[e.Pfn] = e.Pid;
        }
    }

    /// <summary>The page Kmem will free at the kernel's free of user page <paramref name="pfn"/> (its task's page there),
    /// or Page.Null (not a user page, freed by the kernel's reclaim or compaction, or nothing resident in Kmem).</summary>
    public Page UserPageOf(ulong pfn)
    {
        if (Exited.PageOf(pfn) is { IsNull: false } held)
        {
            return held;
        }
        if (!_userPfns.TryGetValue(pfn, out var up) || _freeContext.GetValueOrDefault(pfn) != FreeContext.Task || !up.Task.Alive)
        {
            return Page.Null;
        }
        uint kmemPfn = up.Task.Task!.FollowPage(up.Va);
        return kmemPfn == uint.MaxValue ? Page.Null : _m.PfnToPage(kmemPfn);
    }

    /// <summary>What is left of tasks that exited at their exit_mmap until the kernel frees it.</summary>
    public ExitedTasks Exited { get; }

    // The task's resident pages are taken off its books and held (ExitedTaskPages), so that its exit unmaps them
    // without freeing them.
    private void Orphan(UserTask t)
    {
        foreach (ulong pfn in _userPfns.Where(kv => kv.Value.Task == t).Select(kv => kv.Key).ToList())
        {
            var up = _userPfns[pfn];
            _userPfns.Remove(pfn);
            _freeContext.Remove(pfn);
            t.Resident--;
            Exited.Hold(pfn, t.Task!, up.Va);
        }
    }

    /// <summary>The free of a trace frame: true when it was a user page's, handled here; <paramref name="kmemFreed"/>
    /// says whether Kmem freed a page for it (not for a page the kernel's reclaim or migration freed).</summary>
    public bool FreeUserPage(ulong pfn, out bool kmemFreed)
    {
        kmemFreed = false;
        if (Exited.Free(pfn))
        {
            kmemFreed = true;
            return true;
        }
        if (!_userPfns.Remove(pfn, out var up))
        {
            return false;
        }
        var context = _freeContext.Remove(pfn, out var c) ? c : FreeContext.Task;
        int directPid = _directFreer.Remove(pfn, out int dp) ? dp : -1;
        var t = up.Task;
        t.Resident--;
        if (context == FreeContext.Migration)
        {
            // Migrated by the kernel's compaction: its new frame shows in no event (compaction_alloc takes it from
            // the frames the free scanner isolated), so Kmem keeps its page until the task's pages all go.
            Migrated++;
            (up.Anon ? t.Moved : t.MovedFile).Push(up.Va);
            return true;
        }
        if (context == FreeContext.Reclaim)
        {
            // The kernel reclaimed it: Kmem keeps its page; Kmem's own reclaim decides.
            ReclaimFrees++;
            (up.Anon ? t.Reclaimed : t.ReclaimedFile).Enqueue(up.Va);
            if (_aligned)
            {
                AlignedReclaimFree(t, up.Va, directPid); // aligned: Kmem reclaims the kernel's page, not its own choice
            }
            return true;
        }
        if (!t.Alive)
        {
            return true;
        }
        kmemFreed = t.Task!.FollowPage(up.Va) != uint.MaxValue;
        t.Task!.MadviseDontneed(up.Va, PageSize);
        t.FreeVa.Push(up.Va);
        if (t.Resident == 0)
        {
            // Nothing resident left: the task exited or its file went; what the kernel had swapped out or migrated
            // goes too.
            t.Drop(t.Reclaimed, t.Moved);
            t.Drop(t.ReclaimedFile, t.MovedFile);
            ExitIfEmpty(t);
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
        ExitPending();
        if (_kswapdPace.Engaged)
        {
            _m.Mm.RunKswapd();
            _kswapdPace.Disengage();
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
        // Addresses whose page the kernel reclaimed or migrated, anonymous ones (which a swap-in brings back and the
        // task's exit frees) apart from tmpfs ones (which stay with their file).
        public readonly Queue<ulong> Reclaimed = new(), ReclaimedFile = new();
        public readonly Stack<ulong> Moved = new(), MovedFile = new();
        public readonly Stack<ulong> FreeVa = new();

        /// <summary>Frees Kmem's pages (or swap slots) at the addresses queued in <paramref name="reclaimed"/> and
        /// <paramref name="moved"/>.</summary>
        public void Drop(Queue<ulong> reclaimed, Stack<ulong> moved)
        {
            while (reclaimed.TryDequeue(out ulong va) || moved.TryPop(out va))
            {
                Task!.MadviseDontneed(va, PageSize);
                FreeVa.Push(va);
            }
        }
        public long Resident;
        public bool KilledSeen;
        /// <summary>The trace task's address space is gone (exit_mmap): Kmem's task exits when nothing of it is resident
        /// (at once unless it keeps tmpfs pages: MmGone hands its resident pages to the replay).</summary>
        public bool MmGone;
        /// <summary>The task has faulted a zeroed (anonymous) page: its unzeroed pages may be swap-ins.</summary>
        public bool Anonymous;
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
