// When Kmem's kswapd runs in a free-running pressure replay (part of the pressure replay, on its
// replaying thread only). With a seed Kmem's kswapd is synchronous: a run balances the node at
// once. Once the trace shows the kernel's kswapd, Kmem's runs at the kernel's pace, its work its own:
// - while the kernel's kswapd is in a run (TracedKswapd.Running), a wakeup's work waits until the
//   kernel's kswapd has freed as many pages as Kmem's node lacked below its high watermarks (with
//   boost) when it was woken: a run takes as long as reclaiming that much takes on the traced
//   machine (at the latest RunBound events after the wakeup), and the task that woke it goes on
//   meanwhile, as beside a real kswapd, and may fall to the min watermark and reclaim directly;
// - while the kernel's kswapd sleeps there is no pace to follow, and a kswapd woken on a machine
//   with a CPU to spare starts at once: the work runs before the next event (after the allocation
//   that woke it).
// How fast a kswapd reclaims is the machine's, an input of the replay; what it reclaims stays
// Kmem's decision. The aligned replay never engages it: there the kernel's reclaim replaces Kmem's.
using Kmem.PageAlloc;

namespace Kmem;

/// <summary>The schedule of Kmem's deferred kswapd in a free-running pressure replay.</summary>
internal sealed class KswapdPace(Machine m)
{
    /// <summary>Events after a wakeup after which its work runs even if the kernel's kswapd, in a run, freed too little.</summary>
    public const int RunBound = 4096;

    private int _sinceWakeup;
    // The pending wakeup's work: the pages Kmem's node lacked below its high watermarks when it was woken (-1: not yet
    // read), and the pages the kernel's kswapd freed since.
    private long _need = -1, _kernelFreed;

    /// <summary>Whether Kmem's kswapd waits for this schedule (from the trace's first sign of the kernel's kswapd on).</summary>
    public bool Engaged { get; private set; }

    /// <summary>The kernel's kswapd shows in the trace: Kmem's waits for this schedule from now on.</summary>
    public void Engage()
    {
        if (!Engaged && !m.Mm.KswapdThreaded)
        {
            Engaged = true;
            m.Mm.KswapdDeferred = true;
        }
    }

    /// <summary>Every event, before it is dispatched: whether Kmem's pending kswapd work runs now.</summary>
    public bool RunsNow(in TraceEvent e, TracedKswapd? kernel)
    {
        if (!Engaged)
        {
            return false;
        }
        if (!m.Mm.KswapdHasPending)
        {
            _sinceWakeup = 0;
            _need = -1;
            return false;
        }
        if (_need < 0)
        {
            _need = Need();
            _kernelFreed = 0;
        }
        if (e.Kind is TraceEventKind.MmPageFree or TraceEventKind.MmPageFreeBatched && e.Comm.StartsWith("kswapd", StringComparison.Ordinal))
        {
            _kernelFreed += 1L << Math.Max(0, e.Order);
        }
        if (_kernelFreed >= _need || kernel is { Running: false } || ++_sinceWakeup >= RunBound)
        {
            _sinceWakeup = 0;
            _need = -1;
            return true;
        }
        return false;
    }

    /// <summary>The replay's end: Kmem's kswapd no longer waits (the caller runs what is pending).</summary>
    public void Disengage()
    {
        if (Engaged)
        {
            Engaged = false;
            m.Mm.KswapdDeferred = false;
        }
    }

    // The pages Kmem's managed zones lack below their high watermarks (with boost), read at a wakeup.
    private long Need()
    {
        long need = 0;
        foreach (var z in m.PageAllocator.Zones)
        {
            if (z.IsManaged)
            {
                need += Math.Max(0, z.WmarkPages(Zone.WmarkHigh) - Volatile.Read(ref z.FreePages));
            }
        }
        return need;
    }
}
