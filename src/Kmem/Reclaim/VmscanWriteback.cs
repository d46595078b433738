// Swap-out writeback of reclaim (mm/vmscan.c pageout, mm/page_io.c
// swap_writepage/end_swap_bio_write, mm/filemap.c folio_end_writeback, mm/swap.c
// folio_rotate_reclaimable): shrink_folio_list starts a dirty anonymous page's
// write with PG_reclaim and PG_writeback set and keeps the page; the write
// completes later, as a block device's does, and its completion clears
// PG_writeback and PG_reclaim and moves a page that is back on its LRU list, clean
// and evictable, to the inactive tail (lru_move_tail_fn, pgrotated), where the
// next scan of the list frees it (clean, unmapped, in the swap cache).
// When a write completes: after the shrink_inactive_list batch that started it,
// once its pages are back on their list (the bytes are on the swap file already:
// Kmem's write itself is synchronous, only its completion is deferred). So no page
// is under writeback outside a reclaim pass.
// Invariants: a pfn in _underWriteback has PG_writeback set and is counted in
// NR_WRITEBACK; every other anonymous page has PG_writeback clear.
// Locking: under the reclaim locks, like the rest of a reclaim pass.
using Kmem.Physical;

namespace Kmem.Reclaim;

internal sealed partial class Vmscan
{
    /// <summary>Pages whose swap write was started and has not completed, in the order started.</summary>
    private readonly List<uint> _underWriteback = [];

    /// <summary>pageout: PG_reclaim (rotate it once written) and PG_writeback set, the bytes to the swap slot, the
    /// page clean; the completion is <see cref="EndWriteback"/>.</summary>
    private void StartWriteback(uint pfn, ulong swapEntry)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        f.Flags |= PageFlags.Writeback | PageFlags.Reclaim;
        _events.NrWriteback++;
        _swap.SwapWritePage(swapEntry, pfn);
        _events.Stats.NrVmscanWrite++;
        f.Flags &= ~PageFlags.Dirty;
        _underWriteback.Add(pfn);
    }

    /// <summary>end_swap_bio_write → folio_end_writeback for one page: PG_writeback cleared; a page reclaim wrote
    /// (PG_reclaim) loses the flag and, when it is on an LRU list, clean and evictable, goes to the inactive tail
    /// (folio_rotate_reclaimable), counted as pgrotated.</summary>
    private void EndWriteback(uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        _underWriteback.Remove(pfn);
        f.Flags &= ~PageFlags.Writeback;
        _events.NrWriteback--;
        if ((f.Flags & PageFlags.Reclaim) == 0)
        {
            return;
        }
        f.Flags &= ~PageFlags.Reclaim;
        if ((f.Flags & (PageFlags.Lru | PageFlags.Dirty | PageFlags.Unevictable | PageFlags.Locked)) == PageFlags.Lru)
        {
            // lru_move_tail_fn: to the tail of the inactive list of its kind, whatever list it was on.
            var inactive = (f.Flags & PageFlags.SwapBacked) != 0 ? LruList.InactiveAnon : LruList.InactiveFile;
            _lru.MoveToList(pfn, inactive, head: false);
            _events.Stats.Pgrotated++;
        }
    }

    /// <summary>The completions of every write reclaim started and has not seen complete, in the order started.</summary>
    private void EndWritebacks()
    {
        while (_underWriteback.Count > 0)
        {
            EndWriteback(_underWriteback[0]);
        }
    }
}
