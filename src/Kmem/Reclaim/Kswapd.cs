// kswapd (mm/vmscan.c kswapd, balance_pgdat, wakeup_kswapd): per node, woken
// from the allocation slow path when the node is not balanced (a zone fell
// below its low watermark, so the fast path failed, or a watermark boost is
// pending); it reclaims until some eligible zone is above its high watermark
// (plus boost) for the requested order, wakes kcompactd for a high-order
// request, then sleeps; while it balances, the zones it balances for are
// marked ZONE_RECLAIM_ACTIVE (their per-CPU lists keep at most four batches);
// a node still unbalanced after a round gets another at
// once (no sleep). After MAX_RECLAIM_RETRIES rounds without progress it
// stops answering wakeups until direct reclaim frees something on the node
// (kswapd_failures).
// Two ways to run, chosen at boot:
// - Threaded (a machine booted without a seed): one background thread per
//   node, started on the first wakeup, as in the kernel; what it does and when
//   depends on the host's scheduling.
// - Synchronous (a machine booted with a seed: runs must repeat exactly): the
//   wakeup is recorded the same way, and the daemon's work for it runs on the
//   waking thread, as the kswapd of a machine whose kswapd is infinitely fast,
//   before the allocation that woke it goes on. Work is never run from inside
//   reclaim (PF_MEMALLOC: a shrinker callback's allocation) or while this layer's
//   locks are held; such a wakeup stays pending and runs at the next defined
//   point: the end of the reclaim layer's entry from the page allocator (direct
//   reclaim, compaction, the OOM killer, the next wakeup).
// Either way the daemon's run is PF_MEMALLOC (its shrinker callbacks' allocations
// do not reclaim) and counts as kswapd's in vmstat.
// Shutdown: Machine.Dispose sets the stop flag, wakes every thread and joins it
// (no bound: memory is unmapped only after). Locking: the wake state (requested order, pending wakeup,
// busy count) is under _wakeLock, so "idle" (nothing pending, nothing running)
// is one consistent reading (HasPending alone reads a count of it without the
// lock); it is never held while reclaiming, and a reclaim pass takes the four
// owner locks (LockOrder.cs), so tasks run between passes.
using Kmem.PageAlloc;

namespace Kmem.Reclaim;

/// <summary>The kswapd daemons of one machine.</summary>
internal sealed class KswapdDaemon(PageAllocator pa, Lruvecs lru, Vmscan vmscan, Shrinkers shrinkers, KcompactdDaemon kcompactd,
    VmEvents events, ReclaimLocks locks, bool enabled, bool threaded) : IDisposable
{
    private readonly Lock _wakeLock = new();
    private readonly CancellationTokenSource _stop = new();
    private Thread?[]? _threads;
    private SemaphoreSlim[]? _wake;
    private int[]? _order;
    private ZoneType[]? _highest;
    private bool[]? _pending;
    // How many nodes have a wakeup pending (under _wakeLock; read without it by HasPending).
    private int _pendingNodes;
    private int _busy;
    private long _runs, _wakeups, _balancedRuns, _lowerZoneRuns, _lowerZoneScanned;

    /// <summary>Whether the daemon's work runs on background threads (else synchronously at defined points).</summary>
    public bool Threaded => threaded;

    /// <summary>Rounds of balance_pgdat finished (for observers waiting on kswapd).</summary>
    public long Runs => Volatile.Read(ref _runs);

    /// <summary>Rounds of balance_pgdat that ended with the node balanced (a zone above its high watermark):
    /// kswapd's own verdict, taken before it sleeps.</summary>
    public long BalancedRuns => Volatile.Read(ref _balancedRuns);

    /// <summary>Rounds of balance_pgdat for a zone below the node's highest managed zone (a boosted wakeup from rmqueue
    /// names the zone it allocated from): their reclaim walks the pages of the zones above as skipped.</summary>
    public long LowerZoneRuns => Volatile.Read(ref _lowerZoneRuns);

    /// <summary>Pages those rounds scanned (pgscan_kswapd, skipped pages included).</summary>
    public long LowerZoneScanned => Volatile.Read(ref _lowerZoneScanned);

    /// <summary>Wakeups that reached a kswapd (the node was not balanced), as the mm_vmscan_wakeup_kswapd
    /// tracepoint would count them.</summary>
    public long Wakeups => Volatile.Read(ref _wakeups);

    /// <summary>Whether every kswapd sleeps with no wakeup pending: read under the wake lock, so a thread that
    /// has been woken but not yet started its run does not count as asleep.</summary>
    public bool Idle
    {
        get
        {
            lock (_wakeLock)
            {
                return _busy == 0 && (_pending is null || !_pending.Contains(true));
            }
        }
    }

    /// <summary>Whether some node's wakeup waits for its run, read without the wake lock (a synchronous machine's
    /// driver polls it between events; a stale answer only delays the run to the next poll).</summary>
    public bool HasPending => Volatile.Read(ref _pendingNodes) > 0;

    // Sets a node's pending flag and keeps the count of pending nodes with it (under _wakeLock).
    private void SetPendingLocked(int nid, bool pending)
    {
        if (_pending![nid] != pending)
        {
            _pending[nid] = pending;
            Volatile.Write(ref _pendingNodes, _pendingNodes + (pending ? 1 : -1));
        }
    }

    /// <summary>kswapd_is_running: the node's kswapd is woken (a wakeup pending, not yet run) or running.</summary>
    public bool IsRunning(Node node)
    {
        lock (_wakeLock)
        {
            return _busy > 0 || (_pending is not null && _pending[node.Id]);
        }
    }

    /// <summary>pgdat_balanced: some zone up to <paramref name="highest"/> passes its high watermark for the order.</summary>
    public static bool PgdatBalanced(Node node, int order, ZoneType highest)
    {
        bool any = false;
        foreach (var z in node.Zones)
        {
            if (z.Type > highest || !z.IsManaged)
            {
                continue;
            }
            any = true;
            if (z.WatermarkOkSafe(order, z.WmarkPages(Zone.WmarkHigh), highest))
            {
                return true;
            }
        }
        return !any;
    }

    /// <summary>pgdat_watermark_boosted: some zone up to <paramref name="highest"/> has a watermark boost (a balanced
    /// node is still woken for it: the boost asks kswapd to reclaim ahead of further fallbacks).</summary>
    public static bool PgdatWatermarkBoosted(Node node, ZoneType highest)
    {
        foreach (var z in node.Zones)
        {
            if (z.Type <= highest && z.IsManaged && Volatile.Read(ref z.WatermarkBoost) != 0)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>wakeup_kswapd.</summary>
    public void Wakeup(Zone zone, int order, ZoneType highest)
    {
        if (!enabled || _stop.IsCancellationRequested)
        {
            // No kswapd: a wakeup only drops the boost, as balance_pgdat would once it is met.
            new NoReclaim().WakeupKswapd(zone, order, highest);
            return;
        }
        var node = zone.Node;
        var vec = lru.OfNode(node.Id);
        if (vec.IsEmpty && shrinkers.IsEmpty)
        {
            // Nothing on the node that kswapd could reclaim: its run would end at once, dropping the boost as
            // balance_pgdat does; do that here rather than wake it for it.
            new NoReclaim().WakeupKswapd(zone, order, highest);
            return;
        }
        lock (_wakeLock)
        {
            // The order and zone asked are kswapd's next run's whatever this wakeup finds (the kernel writes
            // kswapd_order and kswapd_highest_zoneidx first): a wakeup that finds the node hopeless or balanced
            // leaves them for the run a later one starts, so a boosted wakeup for a lower zone then balances the
            // zones asked before it too.
            EnsureWakeState();
            _order![node.Id] = Math.Max(_order[node.Id], order);
            _highest![node.Id] = (ZoneType)Math.Max((int)_highest[node.Id], (int)highest);
        }
        if (vec.KswapdFailures >= Vmscan.MaxReclaimRetries)
        {
            return;
        }
        if (PgdatBalanced(node, order, highest) && !PgdatWatermarkBoosted(node, highest))
        {
            return;
        }
        lock (_wakeLock)
        {
            if (_stop.IsCancellationRequested)
            {
                return;
            }
            if (_pending![node.Id] && Deferred)
            {
                // Already woken and not yet run: the kernel's waitqueue_active test finds kswapd awake, so the order
                // and zone above are all a wakeup adds (no mm_vmscan_wakeup_kswapd).
                return;
            }
            _wakeups++;
            SetPendingLocked(node.Id, true);
            if (threaded)
            {
                if (_threads![node.Id] is null)
                {
                    int nid = node.Id;
                    var t = new Thread(() => KswapdMain(nid)) { IsBackground = true, Name = $"kswapd{nid}" };
                    _threads[nid] = t;
                    t.Start();
                }
                if (_wake![node.Id].CurrentCount == 0)
                {
                    _wake[node.Id].Release();
                }
            }
        }
        RunPending();
    }

    /// <summary>Synchronous mode: when set, a wakeup's work waits for <see cref="RunDeferred"/> instead of running at
    /// the next defined point, as a real kswapd runs beside the task that woke it (a trace replay runs it when the
    /// traced kernel's kswapd reclaimed). Read and written by the one thread that drives a synchronous machine.</summary>
    public bool Deferred { get; set; }

    // The per-node wake state (and the threads' semaphores), made at the first wakeup. Under the wake lock.
    private void EnsureWakeState()
    {
        if (_pending is not null)
        {
            return;
        }
        int n = pa.Nodes.Length;
        _order = new int[n];
        _highest = new ZoneType[n];
        _pending = new bool[n];
        if (threaded)
        {
            _threads = new Thread?[n];
            _wake = [.. Enumerable.Range(0, n).Select(_ => new SemaphoreSlim(0, 1))];
        }
    }

    /// <summary>Synchronous, deferred mode (a replay aligned to a traced kernel, whose kswapd's work is the trace's):
    /// the node's kswapd is awake (<paramref name="awake"/>: as if woken, so a wakeup finds its waitqueue empty and is
    /// not counted) or back asleep on its waitqueue, its pending work dropped unrun.</summary>
    public void SetAwake(int nid, bool awake)
    {
        lock (_wakeLock)
        {
            if (threaded || !Deferred)
            {
                return;
            }
            EnsureWakeState();
            SetPendingLocked(nid, awake);
            if (!awake)
            {
                _order![nid] = 0;
                _highest![nid] = 0;
            }
        }
    }

    /// <summary>Synchronous mode: runs every pending wakeup's work now, if the calling thread may (not in reclaim,
    /// holding none of this layer's locks) and the work is not <see cref="Deferred"/>. Nothing in threaded mode.</summary>
    public void RunPending()
    {
        if (!Deferred)
        {
            RunDeferred();
        }
    }

    /// <summary>Synchronous mode: runs every pending wakeup's work now, deferred or not, if the calling thread may.</summary>
    public void RunDeferred()
    {
        if (threaded || MmCurrent.Memalloc || locks.AnyHeldByCurrentThread)
        {
            return;
        }
        while (TakePending(-1) is { } work)
        {
            MmCurrent.Memalloc = true;
            try
            {
                Run(work.Nid, work.Order, work.Highest, CancellationToken.None);
            }
            finally
            {
                MmCurrent.Memalloc = false;
            }
            // kcompactd's timer, at a defined point: its proactive check after each kswapd run on the node.
            kcompactd.ProactiveCheck(work.Nid);
        }
    }

    /// <summary>Takes the pending wakeup of node <paramref name="nid"/> (−1: the first pending node), marking the
    /// daemon busy; null when none is pending.</summary>
    private (int Nid, int Order, ZoneType Highest)? TakePending(int nid)
    {
        lock (_wakeLock)
        {
            if (_pending is null)
            {
                return null;
            }
            if (nid < 0)
            {
                nid = Array.IndexOf(_pending, true);
            }
            if (nid < 0 || !_pending[nid])
            {
                return null;
            }
            var work = (nid, _order![nid], _highest![nid]);
            _order[nid] = 0;
            _highest[nid] = 0;
            SetPendingLocked(nid, false);
            _busy++;
            return work;
        }
    }

    private void KswapdMain(int nid)
    {
        var token = _stop.Token;
        MmCurrent.Memalloc = true; // PF_MEMALLOC | PF_KSWAPD for the thread's life
        while (true)
        {
            try
            {
                _wake![nid].Wait(token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            // A second release for a wakeup the previous run already took finds nothing pending.
            if (TakePending(nid) is { } work)
            {
                Run(nid, work.Order, work.Highest, token);
            }
        }
    }

    /// <summary>One wakeup's work: balance_pgdat, then kswapd_try_to_sleep; a node still unbalanced (and not
    /// hopeless) gets no sleep and another round at once, as kswapd's loop does. Counts the rounds and clears the
    /// busy mark.</summary>
    private void Run(int nid, int order, ZoneType highest, CancellationToken token)
    {
        var node = pa.Nodes[nid];
        // Woken from its sleep: the CPUs' vmstat drift is held below the low-to-min distance while kswapd runs.
        Vmstat.SetPgdatPercpuThreshold(node, pressure: true);
        try
        {
            while (true)
            {
                int reclaimOrder = BalancePgdat(node, order, highest, token);
                lock (_wakeLock)
                {
                    _runs++;
                }
                if (KswapdTryToSleep(node, order, reclaimOrder, highest) || token.IsCancellationRequested)
                {
                    return;
                }
                // kswapd_high_wmark_hit_quickly: not even a short sleep; the next round is for order 0 unless a
                // wakeup asked more meanwhile (balance_pgdat already gave up the order it could not meet).
                order = 0;
            }
        }
        finally
        {
            lock (_wakeLock)
            {
                _busy--;
            }
        }
    }

    /// <summary>kswapd_try_to_sleep with prepare_kswapd_sleep: a node balanced for the order reclaimed for (or
    /// hopeless: kswapd_failures at MAX_RECLAIM_RETRIES) sleeps, clearing direct compaction's skip bits and
    /// waking kcompactd for the order asked; otherwise kswapd does not sleep (kswapd_high_wmark_hit_quickly).</summary>
    private bool KswapdTryToSleep(Node node, int allocOrder, int reclaimOrder, ZoneType highest)
    {
        var vec = lru.OfNode(node.Id);
        bool balanced = PgdatBalanced(node, reclaimOrder, highest);
        if (balanced || vec.KswapdFailures >= Vmscan.MaxReclaimRetries)
        {
            if (balanced)
            {
                Interlocked.Increment(ref _balancedRuns);
            }
            kcompactd.KswapdSleeping(node.Id);
            kcompactd.Wakeup(node.Id, allocOrder);
            Vmstat.SetPgdatPercpuThreshold(node, pressure: false);
            return true;
        }
        using (locks.EnterAll())
        {
            events.Stats.KswapdHighWmarkHitQuickly++;
        }
        return false;
    }

    /// <summary>set_reclaim_active and clear_reclaim_active: the node's managed zones up to the one kswapd balances
    /// for keep fewer pages on their per-CPU lists while it runs.</summary>
    private static void SetReclaimActive(Node node, ZoneType highest, bool active)
    {
        foreach (var z in node.Zones)
        {
            if (z.Type <= highest && z.IsManaged)
            {
                z.ReclaimActive = active;
            }
        }
    }

    /// <summary>balance_pgdat: reclaim at falling priority until the node is balanced at the high watermark. The
    /// priority stays while a pass scans at least its target (kswapd_shrink_node) and reclaims something; a
    /// pending watermark boost is reclaimed without swapping, dropped at once if the node is unbalanced anyway,
    /// and given up when a pass frees nothing. A run that reclaims nothing counts a kswapd failure. Returns the order
    /// it reclaimed for.</summary>
    private int BalancePgdat(Node node, int order, ZoneType highest, CancellationToken token)
    {
        var vec = lru.OfNode(node.Id);
        var sc = new ScanControl { Gfp = Gfp.Kernel, Order = order, ReclaimIdx = highest, Kswapd = true };
        long scannedBefore;
        using (locks.EnterAll())
        {
            events.Stats.Pageoutrun++;
            scannedBefore = events.Stats.PgscanKswapd;
        }
        var zoneBoosts = new long[node.Zones.Length];
        long nrBoostReclaim = 0;
        for (int i = 0; i < node.Zones.Length; i++)
        {
            var z = node.Zones[i];
            if (z.Type <= highest && z.IsManaged)
            {
                zoneBoosts[i] = Volatile.Read(ref z.WatermarkBoost);
                nrBoostReclaim += zoneBoosts[i];
            }
        }
        bool boosted = nrBoostReclaim != 0;
    restart:
        SetReclaimActive(node, highest, true);
        sc.Priority = Vmscan.DefPriority;
        do
        {
            long reclaimedBefore = sc.NrReclaimed;
            bool raisePriority = true;
            bool balanced = PgdatBalanced(node, sc.Order, highest);
            if (!balanced && nrBoostReclaim != 0)
            {
                // The node needs real reclaim: the boost waits for a later run.
                nrBoostReclaim = 0;
                goto restart;
            }
            if (nrBoostReclaim == 0 && balanced)
            {
                goto done;
            }
            if (nrBoostReclaim != 0 && sc.Priority == Vmscan.DefPriority - 2)
            {
                raisePriority = false;
            }
            sc.NoSwap = nrBoostReclaim != 0;
            sc.NrScanned = 0;
            using (locks.EnterAll())
            {
                vmscan.KswapdAgeNode(vec, ref sc);
                if (KswapdShrinkNode(node, vec, highest, ref sc))
                {
                    raisePriority = false;
                }
            }
            long reclaimed = sc.NrReclaimed - reclaimedBefore;
            nrBoostReclaim -= Math.Min(nrBoostReclaim, reclaimed);
            if (nrBoostReclaim != 0 && reclaimed == 0)
            {
                break;
            }
            if (raisePriority || reclaimed == 0)
            {
                sc.Priority--;
            }
        }
        while (sc.Priority >= 1 && !token.IsCancellationRequested);
        if (sc.NrReclaimed == 0)
        {
            vec.KswapdFailures++;
        }
    done:
        SetReclaimActive(node, highest, false);
        if (boosted)
        {
            for (int i = 0; i < node.Zones.Length; i++)
            {
                var z = node.Zones[i];
                if (zoneBoosts[i] != 0)
                {
                    lock (z.Lock)
                    {
                        z.WatermarkBoost -= Math.Min(z.WatermarkBoost, zoneBoosts[i]);
                    }
                }
            }
            // There is likely room now: kcompactd defragments pageblocks.
            kcompactd.Wakeup(node.Id, pa.Mem.PageblockOrder);
        }
        if (sc.NrReclaimed > 0)
        {
            vec.KswapdFailures = 0;
        }
        if (node.Zones.Any(z => z.IsManaged && z.Type > highest))
        {
            using (locks.EnterAll())
            {
                _lowerZoneScanned += events.Stats.PgscanKswapd - scannedBefore;
                _lowerZoneRuns++;
            }
        }
        return sc.Order; // the order it reclaimed for: 0 once kswapd_shrink_node gave the high order up
    }

    /// <summary>kswapd_shrink_node: a pass over the node's lists and shrinkers with a target of the zones' high
    /// watermarks; a high order is dropped once twice its size was reclaimed (compact_gap). Returns whether the
    /// pass scanned its target (no need to raise the priority). Under the reclaim locks.</summary>
    private bool KswapdShrinkNode(Node node, Lruvec vec, ZoneType highest, ref ScanControl sc)
    {
        sc.NrToReclaim = 0;
        foreach (var z in node.Zones)
        {
            if (z.Type <= highest && z.IsManaged)
            {
                sc.NrToReclaim += Math.Max(z.WmarkPages(Zone.WmarkHigh), Vmscan.SwapClusterMax);
            }
        }
        vmscan.ShrinkNodeAndSlab(node, ref sc);
        if (sc.Order > 0 && sc.NrReclaimed >= Compaction.CompactGap(sc.Order))
        {
            sc.Order = 0;
        }
        return sc.NrScanned >= sc.NrToReclaim;
    }

    /// <summary>Stops the threads and joins them; no wakeup is answered after.</summary>
    public void Dispose()
    {
        DaemonThreads.StopAndJoin(_wakeLock, _stop, () => _threads);
        lock (_wakeLock)
        {
            // A wakeup posted just before the stop was never taken: a stopped kswapd has nothing pending.
            if (_pending is not null)
            {
                Array.Clear(_pending);
                Volatile.Write(ref _pendingNodes, 0);
            }
        }
    }
}
