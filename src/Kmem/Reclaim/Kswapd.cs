// kswapd (mm/vmscan.c kswapd, balance_pgdat, wakeup_kswapd): one background
// thread per node, started on the first wakeup. It is woken from the
// allocation slow path when the node is not balanced (a zone fell below its low
// watermark, so the fast path failed), reclaims until some eligible zone is
// above its high watermark (plus boost) for the requested order, then sleeps.
// After MAX_RECLAIM_RETRIES rounds without progress it stops answering wakeups
// until direct reclaim frees something on the node (kswapd_failures).
// Shutdown: Machine.Dispose sets the stop flag, wakes every thread and joins it
// (bounded wait). Locking: the wake state (requested order, pending wakeup,
// busy thread count) is under _kswapdLock, so "idle" (nothing pending, nothing
// running) is one consistent reading; reclaim itself takes MmState.Lock per
// shrink_node pass, so tasks run between passes.
using Kmem.PageAlloc;

namespace Kmem.Reclaim;

internal sealed partial class MmState
{
    private readonly Lock _kswapdLock = new();
    private Thread?[]? _kswapd;
    private SemaphoreSlim[]? _kswapdWake;
    private readonly CancellationTokenSource _stop = new();
    private int[]? _kswapdOrder;
    private ZoneType[]? _kswapdHighest;
    private bool[]? _kswapdPending;
    private int _kswapdBusy;
    private long _kswapdRuns, _kswapdWakeups, _kswapdBalancedRuns;

    /// <summary>Rounds of balance_pgdat finished (for observers waiting on kswapd).</summary>
    public long KswapdRuns => Volatile.Read(ref _kswapdRuns);

    /// <summary>Rounds of balance_pgdat that ended with the node balanced (a zone above its high watermark):
    /// kswapd's own verdict, taken before it sleeps.</summary>
    public long KswapdBalancedRuns => Volatile.Read(ref _kswapdBalancedRuns);

    /// <summary>Wakeups that reached a kswapd thread (the node was not balanced), as the
    /// mm_vmscan_wakeup_kswapd tracepoint would count them.</summary>
    public long KswapdWakeups => Volatile.Read(ref _kswapdWakeups);

    /// <summary>Whether every kswapd sleeps with no wakeup pending: read under the wake lock, so a thread that
    /// has been woken but not yet started its run does not count as asleep.</summary>
    public bool KswapdIdle
    {
        get
        {
            lock (_kswapdLock)
            {
                return _kswapdBusy == 0 && (_kswapdPending is null || !_kswapdPending.Contains(true));
            }
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
            if (PageAllocator.ZoneWatermarkOk(z, order, z.WmarkPages(Zone.WmarkHigh), highest, 0, Volatile.Read(ref z.FreePages)))
            {
                return true;
            }
        }
        return !any;
    }

    /// <summary>wakeup_kswapd.</summary>
    public void WakeupKswapd(Zone zone, int order, ZoneType highest)
    {
        if (!_m.Options.Kswapd || IsDisposed)
        {
            // No kswapd threads: a wakeup only drops the boost, as balance_pgdat would once it is met.
            new NoReclaim().WakeupKswapd(zone, order, highest);
            return;
        }
        var node = zone.Node;
        var vec = _lruvecs[node.Id];
        if (IsEmpty(vec) && _shrinkers.Count == 0)
        {
            // Nothing on the node that kswapd could reclaim: its run would end at once, dropping the boost as
            // balance_pgdat does; do that here rather than wake a thread for it.
            new NoReclaim().WakeupKswapd(zone, order, highest);
            return;
        }
        if (vec.KswapdFailures >= MaxReclaimRetries)
        {
            return;
        }
        if (PgdatBalanced(node, order, highest) && zone.WatermarkBoost == 0)
        {
            return;
        }
        lock (_kswapdLock)
        {
            if (_stop.IsCancellationRequested)
            {
                return;
            }
            if (_kswapd is null)
            {
                int n = _pa.Nodes.Length;
                _kswapd = new Thread?[n];
                _kswapdWake = [.. Enumerable.Range(0, n).Select(_ => new SemaphoreSlim(0, 1))];
                _kswapdOrder = new int[n];
                _kswapdHighest = new ZoneType[n];
                _kswapdPending = new bool[n];
            }
            _kswapdOrder![node.Id] = Math.Max(_kswapdOrder[node.Id], order);
            _kswapdHighest![node.Id] = (ZoneType)Math.Max((int)_kswapdHighest[node.Id], (int)highest);
            if (_kswapd[node.Id] is null)
            {
                int nid = node.Id;
                var t = new Thread(() => KswapdMain(nid)) { IsBackground = true, Name = $"kswapd{nid}" };
                _kswapd[nid] = t;
                t.Start();
            }
            _kswapdWakeups++;
            _kswapdPending![node.Id] = true;
            if (_kswapdWake![node.Id].CurrentCount == 0)
            {
                _kswapdWake[node.Id].Release();
            }
        }
    }

    private void KswapdMain(int nid)
    {
        var node = _pa.Nodes[nid];
        var token = _stop.Token;
        while (true)
        {
            try
            {
                _kswapdWake![nid].Wait(token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            int order;
            ZoneType highest;
            lock (_kswapdLock)
            {
                if (!_kswapdPending![nid])
                {
                    continue; // a second release for a wakeup the previous run already took
                }
                order = _kswapdOrder![nid];
                highest = _kswapdHighest![nid];
                _kswapdOrder[nid] = 0;
                _kswapdHighest[nid] = 0;
                _kswapdPending[nid] = false;
                _kswapdBusy++;
            }
            try
            {
                BalancePgdat(node, order, highest, token);
            }
            finally
            {
                lock (_kswapdLock)
                {
                    _kswapdBusy--;
                    _kswapdRuns++;
                }
            }
        }
    }

    /// <summary>balance_pgdat: reclaim at falling priority until the node is balanced at the high watermark.</summary>
    private void BalancePgdat(Node node, int order, ZoneType highest, CancellationToken token)
    {
        var vec = _lruvecs[node.Id];
        var sc = new ScanControl { Gfp = Gfp.Kernel, Order = order, ReclaimIdx = highest, Kswapd = true };
        bool balanced = false;
        lock (Lock)
        {
            Stats.Pageoutrun++;
        }
        int priority = DefPriority;
        int rounds = 0;
        while (!token.IsCancellationRequested && priority >= 1 && rounds++ < 10_000)
        {
            bool boosted = node.Zones.Any(z => z.WatermarkBoost != 0);
            if (PgdatBalanced(node, order, highest) && !boosted)
            {
                balanced = true;
                break;
            }
            long target = 0;
            foreach (var z in node.Zones)
            {
                if (z.Type <= highest && z.IsManaged)
                {
                    target += Math.Max(z.WmarkPages(Zone.WmarkHigh), SwapClusterMax);
                }
            }
            sc.Priority = priority;
            sc.NrToReclaim = target;
            long before = sc.NrReclaimed;
            t_memalloc = true;
            try
            {
                lock (Lock)
                {
                    ShrinkNode(vec, ref sc);
                    sc.NrReclaimed += ShrinkSlab(sc.Gfp, node.Id, priority);
                }
            }
            finally
            {
                t_memalloc = false;
            }
            if (sc.NrReclaimed == before)
            {
                priority--;
                if (boosted && priority < DefPriority - 2)
                {
                    // The boost could not be met by light reclaim: drop it, as balance_pgdat does at the end.
                    ClearBoost(node);
                }
            }
        }
        ClearBoost(node);
        if (balanced)
        {
            Interlocked.Increment(ref _kswapdBalancedRuns);
            WakeupKcompactd(node.Id, order);
        }
        if (!balanced && !PgdatBalanced(node, order, highest))
        {
            vec.KswapdFailures++;
        }
        else
        {
            vec.KswapdFailures = 0;
        }
    }

    private static bool IsEmpty(Lruvec vec)
    {
        for (int l = 0; l < 4; l++)
        {
            if (Volatile.Read(ref vec.Count[l]) != 0)
            {
                return false;
            }
        }
        return true;
    }

    private static void ClearBoost(Node node)
    {
        foreach (var z in node.Zones)
        {
            if (z.WatermarkBoost != 0)
            {
                lock (z.Lock)
                {
                    z.WatermarkBoost = 0;
                }
            }
        }
    }

    private void StopKswapd()
    {
        Thread?[]? threads;
        lock (_kswapdLock)
        {
            _stop.Cancel();
            threads = _kswapd;
        }
        foreach (var t in threads ?? [])
        {
            t?.Join(TimeSpan.FromSeconds(10));
        }
    }
}
