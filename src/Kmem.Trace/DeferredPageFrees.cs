// The mm_page_free events one CPU holds back until the next event says whether they were
// single frees or part of a list (TraceReplayer.Pages.cs), oldest first. A queue over one
// array with a moving head: free_unref_page_list frees hundreds of pages in one go, and its
// mm_page_free_batched events then take them from the front one by one, which a list that
// shifts its tail on every removal made quadratic. It also remembers the last frames it
// committed as single frees: an interrupt's event in the middle of a list free (a softirq's
// kmem_cache_free) commits the list's waiting mm_page_free events before their
// mm_page_free_batched events come, which then are the same frees, not new ones; a frame
// allocated again is forgotten, so its next batched free is a free of its own. Owned by
// TraceReplayer; used on its replaying thread only.
namespace Kmem;

/// <summary>A CPU's waiting mm_page_free events: frame, order and trace line, in arrival order.</summary>
/// <param name="cpu">The CPU whose frees wait here.</param>
/// <param name="commit">Replays one free: frame, order, CPU, trace line (TraceReplayer.PageFreeEvent).</param>
internal sealed class DeferredPageFrees(int cpu = 0, Action<ulong, int, int, long>? commit = null)
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

    /// <summary>Commits the <paramref name="count"/> oldest waiting frees as single frees, oldest first.</summary>
    public void Flush(int count)
    {
        for (int i = 0; i < count; i++)
        {
            var (pfn, order, line) = this[i];
            NoteCommitted(pfn);
            commit?.Invoke(pfn, order, cpu, line);
        }
        RemoveFirst(count);
    }

    /// <summary>mm_page_free_batched: the commit of a waiting mm_page_free of the frame, the waiting frees before it
    /// being single ones; the commit of an mm_page_free an interrupt's event already committed (the waiting frees
    /// left waiting: they are the rest of the same list); or a free of its own when none waits. Returns whether it
    /// was the second event of a free counted once.</summary>
    public bool Batched(ulong pfn, int order, long line)
    {
        int i = IndexOf(pfn);
        if (i < 0 && TakeCommitted(pfn))
        {
            return true;
        }
        if (i < 0)
        {
            Flush(Count);
            commit?.Invoke(pfn, order, cpu, line);
            return false;
        }
        Flush(i);
        var (_, freeOrder, freeLine) = this[0];
        RemoveFirst(1);
        commit?.Invoke(pfn, freeOrder, cpu, freeLine);
        return true;
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

    /// <summary>The frame was allocated again (on any CPU): a batched free of it from now on is a free of its own, not
    /// the second event of a free already committed, so every CPU forgets it.</summary>
    public static void Reallocated(DeferredPageFrees[] cpus, ulong pfn)
    {
        if (pfn == 0)
        {
            return; // 0 marks the ring's empty slots (a corrupt trace may name pfn 0)
        }
        foreach (var d in cpus)
        {
            for (int i; (i = Array.IndexOf(d._committed, pfn)) >= 0;)
            {
                d._committed[i] = 0;
            }
        }
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
