// The live view's window on a replay in progress: an observer called on the replaying
// thread before each event is handled (the machine is then between two events, so it
// can be looked at, and the replay paused by blocking there), and the decisions compared
// so far. In live mode the replayer also settles at every marker what it still holds
// back (page allocations not yet known to be slab pages, page frees waiting for their
// batch), as a replay stopped at that marker does at its end: the machine at a marker
// is then exactly the one `kmem replay --until MARKER` leaves, however the view got there.
// SettleHeldBack is also what every replay does at its end. Not thread-safe: set before
// Replay, read on the replaying thread.
namespace Kmem;

/// <summary>Watches a replay event by event, on the replaying thread.</summary>
internal interface ILiveReplayObserver
{
    /// <summary>Called after <paramref name="r"/> read <paramref name="e"/> and before it handles it: the
    /// machine has handled the events before it (<see cref="TraceReplayer.Events"/> - 1 of them);
    /// <paramref name="pressure"/> is the replay's pressure side (its report as it stands, for the view).</summary>
    void BeforeEvent(TraceReplayer r, PressureReplay pressure, in TraceEvent e);
}

public sealed partial class TraceReplayer
{
    /// <summary>The live observer; set before <see cref="Replay"/>. Settles held-back pages at each marker.</summary>
    internal ILiveReplayObserver? LiveObserver { get; set; }

    /// <summary>Every decision compared so far, by kind (as <see cref="TraceReplayResult.Decisions"/> counts them).</summary>
    internal IReadOnlyDictionary<string, TraceDecision> DecisionsSoFar => _decisions.Total;

    private void LiveBeforeEvent(in TraceEvent e)
    {
        if (e.Kind == TraceEventKind.Marker)
        {
            SettleHeldBack();
        }
        LiveObserver!.BeforeEvent(this, _pressure!, in e);
    }

    /// <summary>Gives Kmem what the replayer still holds back, as the end of a replay does: the page allocations
    /// not yet known to be slab pages, then each CPU's page frees waiting for their batch.</summary>
    private void SettleHeldBack()
    {
        FlushAllHeld();
        for (int cpu = 0; cpu < _deferred.Length; cpu++)
        {
            using (_m.OnCpu(cpu))
            {
                FlushDeferredFrees(cpu, _deferred[cpu].Count);
            }
        }
    }
}
