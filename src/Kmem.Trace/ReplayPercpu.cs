// The percpu events of a replay (mm/percpu.c's percpu_alloc_percpu and percpu_free_percpu):
// each allocation is replayed on Kmem's per-CPU allocator (the reserved area when the trace
// says reserved=1), keyed by the trace's pointer; a free frees Kmem's area for that pointer.
// A free of a pointer never seen allocated was allocated before tracing began (counted); an
// allocation at a pointer still live missed its free (counted, the old area freed). Owned by
// TraceReplayer; used on its replaying thread only.
namespace Kmem;

/// <summary>Kmem's per-CPU areas for the trace's pointers, and the counts of the replay's percpu events.</summary>
internal sealed class ReplayPercpu(Machine m)
{
    private readonly Dictionary<ulong, PercpuPtr> _ptrs = [];

    /// <summary>Allocations replayed, frees of pointers never seen allocated, allocations at a live pointer.</summary>
    public long Allocs, UntrackedFrees, MissedFrees;

    /// <summary>Allocation events that failed in the trace (no pointer) and in Kmem.</summary>
    public long TraceFailures, KmemFailures;

    /// <summary>Areas live now.</summary>
    public int Live => _ptrs.Count;

    public void Alloc(ref TraceEvent e)
    {
        if (e.Ptr == 0)
        {
            TraceFailures++;
            return;
        }
        if (_ptrs.Remove(e.Ptr, out var stale))
        {
            MissedFrees++;
            m.FreePercpu(stale);
        }
        var p = e.Reserved
            ? m.AllocReservedPercpu((nuint)e.Size, (nuint)Math.Max(e.Align, 1))
            : m.AllocPercpuGfp((nuint)e.Size, (nuint)Math.Max(e.Align, 1), ReplayGfp.Of(e.Gfp));
        if (p.IsNull)
        {
            KmemFailures++;
            return;
        }
        Allocs++;
        _ptrs[e.Ptr] = p;
    }

    public void Free(ulong ptr)
    {
        if (ptr == 0)
        {
            return; // free_percpu(NULL)
        }
        if (!_ptrs.Remove(ptr, out var p))
        {
            UntrackedFrees++;
            return;
        }
        m.FreePercpu(p);
    }
}
