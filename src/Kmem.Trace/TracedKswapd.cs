// The traced kernel's kswapd as its own events show it: woken from its mm_vmscan_kswapd_wake
// to its mm_vmscan_kswapd_sleep, and in a run of balance_pgdat (its zones ZONE_RECLAIM_ACTIVE)
// while its events keep coming. The run's end is not traced (6.1 traces a wakeup only of a
// kswapd napping on its waitqueue), but a run reclaims and traces in batches of 32 pages, so a
// silence of IdleGap says it has ended. Read by the aligned replay's per-CPU lists
// (PcpListModel) and its kswapd state (PressureReplay.Aligned.cs), and by the free-running
// replay's kswapd schedule (KswapdPace: at the kernel's pace while it runs, at once while
// there is none). Fed every event in trace order by KernelPageEvents, on the replaying thread only.
namespace Kmem;

/// <summary>The traced kswapd: woken or asleep, and whether its run is still going.</summary>
internal sealed class TracedKswapd
{
    /// <summary>The silence, in microseconds, after which a run has ended.</summary>
    public const long IdleGap = 5_000;

    private bool _woken;
    private int _pid = -1;
    private long _last, _now;

    /// <summary>Every event, in trace order, before it is dispatched.</summary>
    public void Event(in TraceEvent e)
    {
        _now = e.Timestamp;
        switch (e.Kind)
        {
            case TraceEventKind.MmVmscanKswapdWake:
                _woken = true;
                _pid = e.Pid;
                _last = _now;
                break;
            case TraceEventKind.MmVmscanKswapdSleep:
                _woken = false;
                break;
            default:
                if (e.Pid == _pid)
                {
                    _last = _now;
                }
                break;
        }
    }

    /// <summary>Woken, and its events still coming: in balance_pgdat.</summary>
    public bool Running => _woken && _now - _last <= IdleGap;
}
