// The mm_page_free events one CPU holds back until the next event says whether they were
// single frees or part of a list (TraceReplayer.Pages.cs), oldest first. A queue over one
// array with a moving head: free_unref_page_list frees hundreds of pages in one go, and its
// mm_page_free_batched events then take them from the front one by one, which a list that
// shifts its tail on every removal made quadratic. It also remembers the last frames it
// committed as single frees: an interrupt's event in the middle of a list free (a softirq's
// kmem_cache_free) commits the list's waiting mm_page_free events before their
// mm_page_free_batched events come, which then are the same frees, not new ones. Owned by
// TraceReplayer; used on its replaying thread only.
namespace Kmem;

/// <summary>A CPU's waiting mm_page_free events: frame, order and trace line, in arrival order.</summary>
internal sealed class DeferredPageFrees
{
    private (ulong Pfn, int Order, long Line)[] _items = new (ulong, int, long)[16];
    private int _head;
    // The last frames committed as single frees (a ring; 0 is never a traced frame's pfn here: pfn 0 is reserved).
    private readonly ulong[] _committed = new ulong[64];
    private int _nextCommitted;

    /// <summary>How many wait.</summary>
    public int Count { get; private set; }

    /// <summary>The i-th waiting free, 0 the oldest.</summary>
    public (ulong Pfn, int Order, long Line) this[int i] => _items[_head + i];

    public void Add((ulong Pfn, int Order, long Line) free)
    {
        if (_head + Count == _items.Length)
        {
            Grow();
        }
        _items[_head + Count] = free;
        Count++;
    }

    /// <summary>Drops the <paramref name="n"/> oldest.</summary>
    public void RemoveFirst(int n)
    {
        _head += n;
        Count -= n;
        if (Count == 0)
        {
            _head = 0;
        }
    }

    /// <summary>The waiting free of <paramref name="pfn"/> was committed as a single free.</summary>
    public void NoteCommitted(ulong pfn)
    {
        _committed[_nextCommitted] = pfn;
        _nextCommitted = (_nextCommitted + 1) % _committed.Length;
    }

    /// <summary>Whether <paramref name="pfn"/> is one of the last frames committed as single frees (then forgotten).</summary>
    public bool TakeCommitted(ulong pfn)
    {
        int i = Array.IndexOf(_committed, pfn);
        if (i < 0 || pfn == 0)
        {
            return false;
        }
        _committed[i] = 0;
        return true;
    }

    /// <summary>The position of the first waiting free of <paramref name="pfn"/>, or -1.</summary>
    public int IndexOf(ulong pfn)
    {
        var items = _items.AsSpan(_head, Count);
        for (int i = 0; i < items.Length; i++)
        {
            if (items[i].Pfn == pfn)
            {
                return i;
            }
        }
        return -1;
    }

    // At the array's end: slide the waiting ones to the front when that frees half of it, else double it.
    private void Grow()
    {
        var items = Count <= _items.Length / 2 ? _items : new (ulong, int, long)[_items.Length * 2];
        Array.Copy(_items, _head, items, 0, Count);
        _items = items;
        _head = 0;
    }
}
