// A bulk allocation of unknown size (a refill burst no allocation claimed and no page array
// announced), read from the events after it. alloc_pages_bulk takes its pages from the head of
// the list, where rmqueue_bulk put the burst's blocks in order; so when the kernel next
// allocates a frame of the burst from that list, the burst's frames ahead of it were taken with
// no event (by this bulk or by a later one the list served alone), and when it frees one (on
// whichever CPU), that frame and those ahead of it were. A refill of the same list says it ran
// empty: every frame of the burst still waiting was taken. A drain names a frame still on the
// list (drains take the tail), which leaves the waiting ones. Each frame is given to Kmem as a
// bulk page when the trace reveals it taken, before the event that reveals it is replayed; a
// frame never revealed stays the kernel's list's. One burst waits per CPU: a later one of the
// CPU takes the waiting frames first (its list ran empty, or another list's bulk came, and the
// waiting ones cannot be told apart any more). Owned by KernelPageEvents; replaying thread only.
namespace Kmem;

/// <summary>The frames of a bulk allocation of unknown size still on the kernel's list, per CPU.</summary>
internal sealed class UnknownBulk(int cpus, Action<List<ulong>, MigrateType, int> take)
{
    private readonly List<ulong>?[] _waiting = new List<ulong>?[cpus];
    private readonly MigrateType[] _mt = new MigrateType[cpus];
    private readonly int[] _zone = new int[cpus];

    /// <summary>A burst of order-0 <paramref name="frames"/> (list order) that no allocation claimed, of unknown size.</summary>
    public void Burst(int cpu, int zone, MigrateType mt, List<ulong> frames)
    {
        TakeAll(cpu);
        _waiting[cpu] = [.. frames];
        _mt[cpu] = mt;
        _zone[cpu] = zone;
    }

    /// <summary>Before an event on <paramref name="cpu"/> (<paramref name="zone"/>: a zone_locked event's zone index):
    /// what it reveals of the waiting frames.</summary>
    public void Event(ref TraceEvent e, int cpu, int zone)
    {
        if (e.Kind is TraceEventKind.MmPageFree or TraceEventKind.MmPageFreeBatched)
        {
            // A frame the bulk took may be freed on any CPU.
            for (int c = 0; c < _waiting.Length; c++)
            {
                if (_waiting[c] is { } waiting)
                {
                    TakeAhead(c, waiting, waiting.IndexOf(e.Pfn), inclusive: true);
                }
            }
            return;
        }
        if (_waiting[cpu] is not { } frames)
        {
            return;
        }
        switch (e.Kind)
        {
            case TraceEventKind.MmPageAlloc when e.Order == 0:
                TakeAhead(cpu, frames, frames.IndexOf(e.Pfn), inclusive: false);
                break;
            case TraceEventKind.MmPageAllocZoneLocked when e.PercpuRefill && e.Order == 0 && e.MigrateType == _mt[cpu] && zone == _zone[cpu]:
                TakeAll(cpu); // the list ran empty
                break;
            case TraceEventKind.MmPagePcpuDrain:
                frames.Remove(e.Pfn);
                Forget(cpu);
                break;
        }
    }

    // The frames ahead of index i (and frame i too when inclusive) were taken; frame i leaves the waiting ones anyway.
    private void TakeAhead(int cpu, List<ulong> frames, int i, bool inclusive)
    {
        if (i < 0)
        {
            return;
        }
        int n = inclusive ? i + 1 : i;
        if (n > 0)
        {
            var taken = frames.GetRange(0, n);
            take(taken, _mt[cpu], 0);
        }
        frames.RemoveRange(0, i + 1);
        Forget(cpu);
    }

    // No frame of the CPU's burst waits any more.
    private void Forget(int cpu)
    {
        if (_waiting[cpu] is { Count: 0 })
        {
            _waiting[cpu] = null;
        }
    }

    private void TakeAll(int cpu)
    {
        if (_waiting[cpu] is { Count: > 0 } frames)
        {
            take(frames, _mt[cpu], 0);
        }
        _waiting[cpu] = null;
    }
}
