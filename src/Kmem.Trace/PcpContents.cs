// The frames on the kernel's per-CPU lists, in list order, as the trace reveals them
// (mm/page_alloc.c's pcp->lists): rmqueue_bulk adds a refill's blocks at the tail, an
// allocation takes the head, free_unref_page_commit adds at the head, free_pcppages_bulk
// takes from the tail (each mm_page_pcpu_drain names its frame). What no event shows is
// the bulk allocator (alloc_pages_bulk, vmalloc's pages): it takes from the head, so the
// frames it took are the first ones here. A trace recorded from boot starts with empty
// lists; otherwise a list is known from its first refill on (frames freed onto it before
// are known too, the unknown rest lies behind them and is never handed out from here).
// A freed frame goes to the list of the type it was allocated with (the pageblock's type
// at the free, which 6.1 uses, is not in the trace). The lists are doubly linked through
// one pool of nodes (indices, freed nodes reused) and a frame's node is found by one hash
// lookup, so a free or a drain allocates nothing. Owned by TraceReplayer; used on its
// replaying thread only.
namespace Kmem;

/// <summary>The kernel's per-CPU lists as lists of frames, as far as the trace reveals them.</summary>
internal sealed class PcpContents
{
    private const int Orders = 4, Types = 3;

    private readonly Kmem.PageAlloc.PageAllocator _pa;
    // Per list (cpu, zone, order, type): its first and last node, -1 when empty.
    private readonly int[] _first, _last;
    // The nodes: a frame, its list and its neighbours (-1 at the ends); a free node's Next chains the free ones.
    private Node[] _nodes = new Node[256];
    private int _used, _free = -1;
    private readonly Dictionary<ulong, int> _where = [];
    private readonly Dictionary<ulong, byte> _allocMt = [];

    /// <summary>Allocations from a list whose head was the frame the kernel gave, and those whose head was not.</summary>
    public long HeadMatches, HeadMisses;

    public PcpContents(Kmem.PageAlloc.PageAllocator pa, int cpus)
    {
        _pa = pa;
        int lists = cpus * pa.Zones.Length * Orders * Types;
        _first = new int[lists];
        _last = new int[lists];
        Array.Fill(_first, -1);
        Array.Fill(_last, -1);
    }

    private int List(int cpu, int zone, int order, int mt) => ((cpu * _pa.Zones.Length + zone) * Orders + order) * Types + mt;

    private int NewNode(ulong pfn, int list)
    {
        int n = _free;
        if (n >= 0)
        {
            _free = _nodes[n].Next;
        }
        else
        {
            if (_used == _nodes.Length)
            {
                Array.Resize(ref _nodes, _nodes.Length * 2);
            }
            n = _used++;
        }
        _nodes[n] = new Node { Pfn = pfn, List = list, Prev = -1, Next = -1 };
        return n;
    }

    // Takes node n off its list and gives it back to the pool (its frame's _where entry is the caller's).
    private void Unlink(int n)
    {
        ref var node = ref _nodes[n];
        if (node.Prev >= 0)
        {
            _nodes[node.Prev].Next = node.Next;
        }
        else
        {
            _first[node.List] = node.Next;
        }
        if (node.Next >= 0)
        {
            _nodes[node.Next].Prev = node.Prev;
        }
        else
        {
            _last[node.List] = node.Prev;
        }
        node.Next = _free;
        _free = n;
    }

    private void AddFirst(int list, ulong pfn)
    {
        int n = NewNode(pfn, list);
        int old = _first[list];
        _nodes[n].Next = old;
        if (old >= 0)
        {
            _nodes[old].Prev = n;
        }
        else
        {
            _last[list] = n;
        }
        _first[list] = n;
        _where[pfn] = n;
    }

    private void AddLast(int list, ulong pfn)
    {
        int n = NewNode(pfn, list);
        int old = _last[list];
        _nodes[n].Prev = old;
        if (old >= 0)
        {
            _nodes[old].Next = n;
        }
        else
        {
            _first[list] = n;
        }
        _last[list] = n;
        _where[pfn] = n;
    }

    // Takes the list's first frame off it.
    private ulong RemoveFirst(int list)
    {
        int n = _first[list];
        ulong pfn = _nodes[n].Pfn;
        _where.Remove(pfn);
        Unlink(n);
        return pfn;
    }

    private void Forget(ulong pfn)
    {
        if (_where.Remove(pfn, out int n))
        {
            Unlink(n);
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
        int list = List(cpu, TraceZones.ZoneOf(_pa, pfn).Index, order, (int)mt);
        if (burst is not null)
        {
            Refill(list, burst);
        }
        int head = _first[list];
        if (head >= 0 && _nodes[head].Pfn == pfn)
        {
            HeadMatches++;
        }
        else if (head >= 0)
        {
            HeadMisses++;
        }
        Forget(pfn);
    }

    // rmqueue_bulk ran because the list was empty: whatever the model still held there was not on it.
    private void Refill(int list, List<ulong> burst)
    {
        while (_first[list] >= 0)
        {
            RemoveFirst(list);
        }
        foreach (ulong p in burst)
        {
            Forget(p);
            AddLast(list, p);
        }
    }

    private void Take(int list, List<ulong> taken, int pages)
    {
        while (taken.Count < pages && _first[list] >= 0)
        {
            taken.Add(RemoveFirst(list));
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
        AddFirst(List(cpu, TraceZones.ZoneOf(_pa, pfn).Index, order, mt), pfn);
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
        int list = List(cpu, zone, 0, (int)mt);
        Take(list, taken, pages); // with a burst, the list ran out: the model's extra frames are dropped by Refill
        if (burst is not null)
        {
            Refill(list, burst);
            Take(list, taken, pages);
        }
        return taken;
    }

    private struct Node
    {
        public ulong Pfn;
        public int List, Prev, Next;
    }
}
