// kcompactd (mm/compaction.c kcompactd, kcompactd_do_work,
// proactive_compact_node): one background thread per node, started with the
// first user memory of a machine booted with background threads. kswapd wakes
// it after balancing a node for a high-order request; every 500 ms it also
// checks the node's fragmentation score (the share of free memory not in
// pageblock-order blocks, weighted by zone size) and compacts while the score
// is above the proactive high mark, down to the low mark:
// low = max(100 − compaction_proactiveness, 5), high = min(low + 10, 100).
// Shutdown with kswapd's stop token; Machine.Dispose joins it.
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Reclaim;

internal sealed partial class MmState
{
    /// <summary>HPAGE_FRAG_CHECK_INTERVAL_MSEC.</summary>
    private const int ProactiveIntervalMs = 500;

    private Thread?[]? _kcompactd;
    private SemaphoreSlim[]? _kcompactdWake;
    private int[]? _kcompactdOrder;

    /// <summary>extfrag_for_order: percent of the zone's free pages not in blocks of at least that order.</summary>
    public static long ExtfragForOrder(Zone zone, int order)
    {
        long free = 0, suitable = 0;
        for (int o = 0; o < Arch.MaxOrder; o++)
        {
            long n = zone.NrFree(o);
            free += n << o;
            if (o >= order)
            {
                suitable += n;
            }
        }
        return free == 0 ? 0 : (free - (suitable << order)) * 100 / free;
    }

    /// <summary>fragmentation_score_node: Σ zone score × zone present pages / (node present pages + 1).</summary>
    public long FragmentationScoreNode(Node node)
    {
        long present = node.Zones.Sum(z => z.PresentPages);
        long score = 0;
        foreach (var z in node.Zones)
        {
            if (z.IsPopulated)
            {
                score += ExtfragForOrder(z, _mem.PageblockOrder) * z.PresentPages / (present + 1);
            }
        }
        return score;
    }

    private int ProactiveLow => Math.Max(100 - CompactionProactiveness, 5);

    private int ProactiveHigh => Math.Min(ProactiveLow + 10, 100);

    /// <summary>Starts kcompactd for every node if the machine runs background threads (idempotent).</summary>
    private void StartKcompactd()
    {
        if (!_m.Options.Kswapd || _kcompactd is not null)
        {
            return;
        }
        lock (_kswapdLock)
        {
            if (_kcompactd is not null || _stop.IsCancellationRequested)
            {
                return;
            }
            int n = _pa.Nodes.Length;
            _kcompactdWake = [.. Enumerable.Range(0, n).Select(_ => new SemaphoreSlim(0, 1))];
            _kcompactdOrder = new int[n];
            var threads = new Thread?[n];
            for (int nid = 0; nid < n; nid++)
            {
                int id = nid;
                threads[id] = new Thread(() => KcompactdMain(id)) { IsBackground = true, Name = $"kcompactd{id}" };
                threads[id]!.Start();
            }
            _kcompactd = threads;
        }
    }

    /// <summary>wakeup_kcompactd: after kswapd balanced the node for a high-order request.</summary>
    private void WakeupKcompactd(int nid, int order)
    {
        if (order <= 0 || _kcompactdWake is null)
        {
            return;
        }
        lock (_kswapdLock)
        {
            _kcompactdOrder![nid] = Math.Max(_kcompactdOrder[nid], order);
            if (_kcompactdWake[nid].CurrentCount == 0)
            {
                _kcompactdWake[nid].Release();
            }
        }
    }

    private void KcompactdMain(int nid)
    {
        var node = _pa.Nodes[nid];
        var token = _stop.Token;
        while (!token.IsCancellationRequested)
        {
            bool woken;
            try
            {
                woken = _kcompactdWake![nid].Wait(ProactiveIntervalMs, token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            if (woken)
            {
                int order;
                lock (_kswapdLock)
                {
                    order = _kcompactdOrder![nid];
                    _kcompactdOrder[nid] = 0;
                }
                KcompactdDoWork(node, order);
            }
            else if (CompactionProactiveness > 0 && FragmentationScoreNode(node) > ProactiveHigh)
            {
                ProactiveCompactNode(node);
            }
        }
    }

    /// <summary>kcompactd_do_work: compact each zone of the node that cannot serve the order yet.</summary>
    private void KcompactdDoWork(Node node, int order)
    {
        t_memalloc = true;
        try
        {
            lock (Lock)
            {
                Stats.CompactDaemonWake++;
                foreach (var zone in node.Zones)
                {
                    if (zone.IsManaged && !CompactFinished(zone, order, zone.Type) && CompactionSuitable(zone, order, zone.Type))
                    {
                        CompactZone(zone, order, zone.Type, daemon: true);
                    }
                }
            }
        }
        finally
        {
            t_memalloc = false;
        }
    }

    /// <summary>proactive_compact_node: whole-zone compaction until the node's score is at the low mark.</summary>
    private void ProactiveCompactNode(Node node)
    {
        t_memalloc = true;
        try
        {
            lock (Lock)
            {
                Stats.CompactDaemonWake++;
                foreach (var zone in node.Zones)
                {
                    if (FragmentationScoreNode(node) <= ProactiveLow)
                    {
                        break;
                    }
                    if (zone.IsManaged)
                    {
                        CompactZone(zone, -1, zone.Type, daemon: true);
                    }
                }
            }
        }
        finally
        {
            t_memalloc = false;
        }
    }

    private void StopKcompactd()
    {
        Thread?[]? threads;
        lock (_kswapdLock)
        {
            _stop.Cancel();
            threads = _kcompactd;
        }
        foreach (var t in threads ?? [])
        {
            t?.Join(TimeSpan.FromSeconds(10));
        }
    }
}
