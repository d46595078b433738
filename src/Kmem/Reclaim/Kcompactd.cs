// kcompactd (mm/compaction.c kcompactd, kcompactd_do_work,
// proactive_compact_node): per node, on a machine booted with background
// daemons. kswapd wakes it after balancing a node for a high-order request; it
// also checks the node's fragmentation score (the share of free memory not in
// pageblock-order blocks, weighted by zone size) and compacts while the score
// is above the proactive high mark, each zone down to the low mark:
// low = max(100 − compaction_proactiveness, 5), high = min(low + 10, 100);
// not while kswapd runs, and a run that did not lower the score puts the
// next check 64 intervals off.
// As kswapd (Kswapd.cs), it runs one of two ways:
// - Threaded (no seed): a thread per node, started with the first user memory,
//   woken by kswapd, and checking the score every 500 ms
//   (HPAGE_FRAG_CHECK_INTERVAL_MSEC).
// - Synchronous (a seed): kswapd's wakeup runs the work at once on kswapd's
//   run, and the proactive check happens at a defined point instead of a
//   timer: after each kswapd run on the node.
// Shutdown with its own stop token; Machine.Dispose joins the threads.
// Locking: the wake state is under _wakeLock (never held while compacting);
// the work takes the four owner locks in the order of LockOrder.cs.
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Reclaim;

/// <summary>The kcompactd daemons of one machine.</summary>
internal sealed class KcompactdDaemon(PhysMem mem, PageAllocator pa, Compaction compaction, VmEvents events, ReclaimLocks locks,
    bool enabled, bool threaded) : IDisposable
{
    /// <summary>HPAGE_FRAG_CHECK_INTERVAL_MSEC.</summary>
    private const int ProactiveIntervalMs = 500;

    private readonly Lock _wakeLock = new();
    private readonly CancellationTokenSource _stop = new();
    private Thread?[]? _threads;
    private SemaphoreSlim[]? _wake;
    private int[]? _order;
    private bool _started;

    /// <summary>fragmentation_score_node: Σ zone score × zone present pages / (node present pages + 1).</summary>
    public long FragmentationScoreNode(Node node)
    {
        long present = node.Zones.Sum(z => z.PresentPages);
        long score = 0;
        foreach (var z in node.Zones)
        {
            if (z.IsPopulated)
            {
                score += Fragmentation.ExtfragForOrder(z, mem.PageblockOrder) * z.PresentPages / (present + 1);
            }
        }
        return score;
    }

    /// <summary>Starts kcompactd (idempotent): with the first user memory, as the daemon has nothing to move
    /// before; in threaded mode its threads.</summary>
    public void Start()
    {
        if (!enabled || Volatile.Read(ref _started))
        {
            return;
        }
        if (!threaded)
        {
            Volatile.Write(ref _started, true);
            return;
        }
        lock (_wakeLock)
        {
            if (_threads is not null || _stop.IsCancellationRequested)
            {
                return;
            }
            int n = pa.Nodes.Length;
            _wake = [.. Enumerable.Range(0, n).Select(_ => new SemaphoreSlim(0, 1))];
            _order = new int[n];
            var threads = new Thread?[n];
            for (int nid = 0; nid < n; nid++)
            {
                int id = nid;
                threads[id] = new Thread(() => KcompactdMain(id)) { IsBackground = true, Name = $"kcompactd{id}" };
                threads[id]!.Start();
            }
            _threads = threads;
            Volatile.Write(ref _started, true);
        }
    }

    /// <summary>wakeup_kcompactd: after kswapd balanced the node for a high-order request. Synchronous mode runs
    /// the work now (the caller is kswapd's run, at a defined point).</summary>
    public void Wakeup(int nid, int order)
    {
        if (order <= 0 || !Volatile.Read(ref _started) || _stop.IsCancellationRequested)
        {
            return;
        }
        if (!threaded)
        {
            KcompactdDoWork(pa.Nodes[nid], order);
            return;
        }
        lock (_wakeLock)
        {
            if (_wake is null)
            {
                return;
            }
            _order![nid] = Math.Max(_order[nid], order);
            if (_wake[nid].CurrentCount == 0)
            {
                _wake[nid].Release();
            }
        }
    }

    /// <summary>Synchronous mode's timer: the proactive check of node <paramref name="nid"/>.</summary>
    public void ProactiveCheck(int nid)
    {
        if (!threaded && Volatile.Read(ref _started) && !_stop.IsCancellationRequested)
        {
            ProactiveTick(pa.Nodes[nid]);
        }
    }

    // The proactive checks still to skip per node: a run that did not lower the node's score waits
    // 1 << COMPACT_MAX_DEFER_SHIFT intervals for the next (kcompactd's longer timeout).
    private readonly int[] _proactiveDefer = new int[pa.Nodes.Length];

    /// <summary>kcompactd's timeout: should_proactive_compact_node (proactiveness on, kswapd not running, the node's
    /// score above the high mark), then proactive_compact_node, deferred when the score did not go down.</summary>
    private void ProactiveTick(Node node)
    {
        var defer = _proactiveDefer;
        if (defer[node.Id] > 0)
        {
            defer[node.Id]--;
            return;
        }
        if (compaction.CompactionProactiveness == 0 || compaction.KswapdIsRunning(node)
            || FragmentationScoreNode(node) <= compaction.FragmentationScoreWmark(low: false))
        {
            return;
        }
        long prevScore = FragmentationScoreNode(node);
        ProactiveCompactNode(node);
        if (FragmentationScoreNode(node) >= prevScore)
        {
            defer[node.Id] = (1 << Compaction.CompactMaxDeferShift) - 1;
        }
    }

    private void KcompactdMain(int nid)
    {
        var node = pa.Nodes[nid];
        var token = _stop.Token;
        while (!token.IsCancellationRequested)
        {
            bool woken;
            try
            {
                woken = _wake![nid].Wait(ProactiveIntervalMs, token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            if (woken)
            {
                int order;
                lock (_wakeLock)
                {
                    order = _order![nid];
                    _order[nid] = 0;
                }
                KcompactdDoWork(node, order);
            }
            else
            {
                ProactiveTick(node);
            }
        }
    }

    /// <summary>kswapd going to sleep on a balanced node: skip bits left by direct compaction are cleared.</summary>
    public void KswapdSleeping(int nid)
    {
        using (locks.EnterAll())
        {
            compaction.ResetIsolationSuitable(pa.Nodes[nid]);
        }
    }

    /// <summary>kcompactd_do_work: compact each zone of the node that cannot serve the order yet (not deferred,
    /// compaction suitable), deferring the zone after a failed run.</summary>
    private void KcompactdDoWork(Node node, int order)
    {
        bool was = MmCurrent.Memalloc;
        MmCurrent.Memalloc = true;
        try
        {
            using (locks.EnterAll())
            {
                events.Stats.CompactDaemonWake++;
                foreach (var zone in node.Zones)
                {
                    if (zone.IsManaged)
                    {
                        compaction.KcompactdZone(zone, order, proactive: false);
                    }
                }
            }
        }
        finally
        {
            MmCurrent.Memalloc = was;
        }
    }

    /// <summary>proactive_compact_node: each populated zone compacted (sync-light, whole zone, skip hints ignored)
    /// until its score is at the low mark. Not a kcompactd wakeup, so no compact_daemon_* counts.</summary>
    private void ProactiveCompactNode(Node node)
    {
        bool was = MmCurrent.Memalloc;
        MmCurrent.Memalloc = true;
        try
        {
            using (locks.EnterAll())
            {
                foreach (var zone in node.Zones)
                {
                    if (zone.IsManaged)
                    {
                        compaction.KcompactdZone(zone, -1, proactive: true);
                    }
                }
            }
        }
        finally
        {
            MmCurrent.Memalloc = was;
        }
    }

    /// <summary>Stops the threads and joins them.</summary>
    public void Dispose()
    {
        DaemonThreads.StopAndJoin(_wakeLock, _stop, () => _threads);
    }
}
