// The frames on the kernel's per-CPU lists, in list order, as the trace reveals them
// (mm/page_alloc.c's pcp->lists): rmqueue_bulk adds a refill's blocks at the tail, an
// allocation takes the head, free_unref_page_commit adds at the head, free_pcppages_bulk
// takes from the tail (each mm_page_pcpu_drain names its frame). What no event shows is
// the bulk allocator (alloc_pages_bulk, vmalloc's pages): it takes from the head, so the
// frames it took are the first ones here. A trace recorded from boot starts with empty
// lists; otherwise a list is known from its first refill on (frames freed onto it before
// are known too, the unknown rest lies behind them and is never handed out from here).
// A freed frame goes to the list of the type it was allocated with (the pageblock's type
// at the free, which 6.1 uses, is not in the trace). Owned by TraceReplayer; used on its
// replaying thread only.
namespace Kmem;

/// <summary>The kernel's per-CPU lists as lists of frames, as far as the trace reveals them.</summary>
internal sealed class PcpContents(Kmem.PageAlloc.PageAllocator pa, int cpus)
{
    private const int Orders = 4, Types = 3;

    private readonly LinkedList<ulong>[] _lists = [.. Enumerable.Range(0, cpus * pa.Zones.Length * Orders * Types).Select(_ => new LinkedList<ulong>())];
    private readonly Dictionary<ulong, LinkedListNode<ulong>> _where = [];
    private readonly Dictionary<ulong, byte> _allocMt = [];

    /// <summary>Allocations from a list whose head was the frame the kernel gave, and those whose head was not.</summary>
    public long HeadMatches, HeadMisses;

    private LinkedList<ulong> List(int cpu, int zone, int order, int mt) => _lists[((cpu * pa.Zones.Length + zone) * Orders + order) * Types + mt];

    private void Forget(ulong pfn)
    {
        if (_where.Remove(pfn, out var node))
        {
            node.List!.Remove(node);
        }
    }

    // A page allocation of order <= 3 the kernel served from this CPU's list (after the refill burst, when one came).
    public void Alloc(int cpu, ulong pfn, int order, MigrateType mt, List<ulong>? burst)
    {
        if (order >= Orders || (int)mt >= Types)
        {
            return;
        }
        _allocMt[pfn] = (byte)mt;
        var list = List(cpu, TraceZones.ZoneOf(pa, pfn).Index, order, (int)mt);
        if (burst is not null)
        {
            Refill(list, burst);
        }
        if (list.First is { } head && head.Value == pfn)
        {
            HeadMatches++;
        }
        else if (list.First is not null)
        {
            HeadMisses++;
        }
        Forget(pfn);
    }

    // rmqueue_bulk ran because the list was empty: whatever the model still held there was not on it.
    private void Refill(LinkedList<ulong> list, List<ulong> burst)
    {
        while (list.First is { } stale)
        {
            _where.Remove(stale.Value);
            list.RemoveFirst();
        }
        foreach (ulong p in burst)
        {
            Forget(p);
            _where[p] = list.AddLast(p);
        }
    }

    private void Take(LinkedList<ulong> list, List<ulong> taken, int pages)
    {
        while (taken.Count < pages && list.First is { } head)
        {
            _where.Remove(head.Value);
            list.RemoveFirst();
            taken.Add(head.Value);
        }
    }

    // free_unref_page_commit: at the head of the list of the frame's type.
    public void Free(int cpu, ulong pfn, int order)
    {
        Forget(pfn);
        if (order >= Orders)
        {
            return;
        }
        int mt = _allocMt.Remove(pfn, out byte m) ? m : 0;
        _where[pfn] = List(cpu, TraceZones.ZoneOf(pa, pfn).Index, order, mt).AddFirst(pfn);
    }

    // mm_page_pcpu_drain: the frame left its list (whichever CPU's list the model had it on).
    public void Drain(ulong pfn) => Forget(pfn);

    /// <summary>alloc_pages_bulk of <paramref name="pages"/> order-0 frames of type <paramref name="mt"/> from the
    /// zone's list on this CPU, with the refill burst it made when the list ran out (or null): the frames it took,
    /// as far as the list is known.</summary>
    public List<ulong> TakeBulk(int cpu, int zone, MigrateType mt, int pages, List<ulong>? burst)
    {
        var taken = new List<ulong>(pages);
        if ((int)mt >= Types)
        {
            return taken;
        }
        var list = List(cpu, zone, 0, (int)mt);
        Take(list, taken, pages); // with a burst, the list ran out: the model's extra frames are dropped by Refill
        if (burst is not null)
        {
            Refill(list, burst);
            Take(list, taken, pages);
        }
        return taken;
    }
}
