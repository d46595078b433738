// The LRU lists (mm/swap.c lru_cache_add, folio_add_lru, lru_note_cost's
// lists; include/linux/mm_inline.h folio_lru_list): one lruvec per node with
// the four evictable lists, their counts per node and per zone, and the
// reverse map of a user frame (page->mapping and page->index as side tables
// indexed by pfn). A user frame has one owner (no fork, no shared mappings): a
// task and the virtual page that maps it (anon), or a cached file and the index
// (page cache); the side tables are made on first use, so a machine without
// tasks or files never pays for them.
// Invariants (Validate): every PG_lru frame is on exactly the list its flags
// name, and the lists' counts equal their lengths.
// Locking: Lock is lru_lock (last of the four owner locks, LockOrder.cs); every
// method takes it, so an owner higher in the order may call in while holding
// its own. Counts are read without it by the reports.
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Reclaim;

/// <summary>struct lruvec of one node: the four evictable LRU lists and their sizes.</summary>
internal sealed class Lruvec(int nid)
{
    public readonly int Nid = nid;
    public readonly PfnList[] Lists = [PfnList.Empty, PfnList.Empty, PfnList.Empty, PfnList.Empty];
    public readonly long[] Count = new long[4];
    /// <summary>kswapd_failures: balance_pgdat runs without progress (kswapd stops trying at 16).</summary>
    public int KswapdFailures;
    /// <summary>anon_cost, file_cost: recent reclaim cost of each type (lru_note_cost), halved as they grow
    /// past a quarter of the lists.</summary>
    public long AnonCost, FileCost;

    /// <summary>Whether the four lists are empty (read without the lock).</summary>
    public bool IsEmpty
    {
        get
        {
            for (int l = 0; l < 4; l++)
            {
                if (Volatile.Read(ref Count[l]) != 0)
                {
                    return false;
                }
            }
            return true;
        }
    }
}

/// <summary>The LRU lists of every node and the reverse map of user frames.</summary>
internal sealed class Lruvecs
{
    private readonly PhysMem _mem;
    private readonly PageAllocator _pa;
    private readonly Lruvec[] _vecs;
    private object?[]? _owner;
    private ulong[]? _index;

    public Lruvecs(PhysMem mem, PageAllocator pa)
    {
        _mem = mem;
        _pa = pa;
        _vecs = [.. pa.Nodes.Select(n => new Lruvec(n.Id))];
        ZoneLru = new long[pa.Zones.Length, 4];
    }

    /// <summary>lru_lock (see LockOrder.cs).</summary>
    public Lock Lock { get; } = new();

    /// <summary>Per node.</summary>
    public IReadOnlyList<Lruvec> Vecs => _vecs;

    /// <summary>Per zone (by Zone.Index) and LRU list: pages (nr_zone_inactive_anon …).</summary>
    public long[,] ZoneLru { get; }

    public Lruvec Of(uint pfn) => _vecs[_pa.ZoneOf(pfn).Node.Id];

    public Lruvec OfNode(int nid) => _vecs[nid];

    /// <summary>page->mapping: the task or cached file that owns a user frame, or null.</summary>
    public object? OwnerOf(uint pfn) => _owner is { } o ? o[pfn] : null;

    /// <summary>page->index: the virtual address (anon) or file index (page cache) of a user frame.</summary>
    public ulong IndexOf(uint pfn) => _index![pfn];

    public void SetOwner(uint pfn, object owner, ulong index)
    {
        lock (Lock)
        {
            if (_owner is null)
            {
                _owner = new object?[_mem.MaxPfn];
                _index = new ulong[_mem.MaxPfn];
            }
            _owner[pfn] = owner;
            _index![pfn] = index;
        }
    }

    private void ClearOwner(uint pfn)
    {
        if (_owner is not null)
        {
            _owner[pfn] = null;
            _index![pfn] = 0;
        }
    }

    /// <summary>lru_cache_add: a new user page goes to the inactive list of its kind, at the head.</summary>
    public void LruAdd(uint pfn, bool anon)
    {
        lock (Lock)
        {
            ref PageFrame f = ref _mem.Frame(pfn);
            f.Flags |= PageFlags.Lru | (anon ? PageFlags.SwapBacked : 0);
            f.Flags &= ~PageFlags.Active;
            AddToList(pfn, anon ? LruList.InactiveAnon : LruList.InactiveFile, head: true);
        }
    }

    /// <summary>The list a PG_lru frame is on, from its flags (folio_lru_list).</summary>
    public LruList ListOf(uint pfn)
    {
        var flags = _mem.Frame(pfn).Flags;
        int file = (flags & PageFlags.SwapBacked) == 0 ? 2 : 0;
        return (LruList)(file + ((flags & PageFlags.Active) != 0 ? 1 : 0));
    }

    public void AddToList(uint pfn, LruList lru, bool head)
    {
        lock (Lock)
        {
            var vec = Of(pfn);
            ref PfnList list = ref vec.Lists[(int)lru];
            if (head)
            {
                list.AddHead(_mem, pfn);
            }
            else
            {
                list.AddTail(_mem, pfn);
            }
            vec.Count[(int)lru]++;
            ZoneLru[_mem.ZoneIndexOf(pfn), (int)lru]++;
        }
    }

    public void RemoveFromList(uint pfn, LruList lru)
    {
        lock (Lock)
        {
            var vec = Of(pfn);
            vec.Lists[(int)lru].Remove(_mem, pfn);
            vec.Count[(int)lru]--;
            ZoneLru[_mem.ZoneIndexOf(pfn), (int)lru]--;
        }
    }

    /// <summary>Takes a user frame off its LRU list and clears this layer's flags and owner, ready to be freed.</summary>
    public void LruDel(uint pfn)
    {
        lock (Lock)
        {
            ref PageFrame f = ref _mem.Frame(pfn);
            if ((f.Flags & PageFlags.Lru) != 0)
            {
                RemoveFromList(pfn, ListOf(pfn));
            }
            f.Flags &= ~(PageFlags.Lru | PageFlags.Active | PageFlags.Referenced | PageFlags.SwapBacked | PageFlags.Dirty
                | PageFlags.Uptodate | PageFlags.Writeback | PageFlags.Reclaim | PageFlags.Workingset);
            f.MapCount = 0;
            f.Private = 0;
            ClearOwner(pfn);
        }
    }

    /// <summary>Clears this layer's state of a page already off its list (isolated) before it is freed.</summary>
    public void LruDelIsolated(uint pfn)
    {
        _mem.Frame(pfn).Flags &= ~PageFlags.Lru;
        LruDel(pfn);
    }

    /// <summary>Moves a frame between lists (activate/deactivate), keeping the flags in step.</summary>
    public void MoveToList(uint pfn, LruList to, bool head = true)
    {
        lock (Lock)
        {
            RemoveFromList(pfn, ListOf(pfn));
            ref PageFrame f = ref _mem.Frame(pfn);
            if (((int)to & 1) != 0)
            {
                f.Flags |= PageFlags.Active;
            }
            else
            {
                f.Flags &= ~PageFlags.Active;
            }
            AddToList(pfn, to, head);
        }
    }

    /// <summary>putback: an isolated page goes back on the list its flags name.</summary>
    public void Putback(uint pfn, bool head = true)
    {
        lock (Lock)
        {
            _mem.Frame(pfn).Flags |= PageFlags.Lru;
            AddToList(pfn, ListOf(pfn), head);
        }
    }

    /// <summary>Moves the LRU place and the owner of a migrated page to its new frame (the caller copied the
    /// bytes and the flags; the new frame gets PG_lru, the old one loses it and its owner).</summary>
    public void Migrate(uint from, uint to, LruList lru, object owner, ulong index)
    {
        lock (Lock)
        {
            SetOwner(to, owner, index);
            RemoveFromList(from, lru);
            _mem.Frame(to).Flags |= PageFlags.Lru;
            AddToList(to, lru, head: true);
            ClearOwner(from);
        }
    }

    /// <summary>Checks every list against its count and every frame's flags; throws on the first mismatch.</summary>
    public void Validate()
    {
        lock (Lock)
        {
            foreach (var vec in _vecs)
            {
                for (int l = 0; l < 4; l++)
                {
                    long n = 0;
                    for (uint p = vec.Lists[l].Head; p != PhysMem.NoPfn; p = _mem.Frame(p).Next)
                    {
                        var f = _mem.Frame(p);
                        if ((f.Flags & PageFlags.Lru) == 0 || ListOf(p) != (LruList)l)
                        {
                            throw new InvalidOperationException($"pfn 0x{p:x} on LRU list {(LruList)l} has flags {f.Flags}");
                        }
                        n++;
                    }
                    if (n != vec.Count[l])
                    {
                        throw new InvalidOperationException($"node {vec.Nid} LRU list {(LruList)l}: count {vec.Count[l]}, length {n}");
                    }
                }
            }
        }
    }
}
