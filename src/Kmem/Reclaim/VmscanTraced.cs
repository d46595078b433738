// Reclaim of a given page (mm/vmscan.c reclaim_pages, the path MADV_PAGEOUT takes): an
// anonymous page on an LRU list is isolated and paged out whatever its references, and
// counted as kswapd's or direct reclaim's scan and steal (a page it writes out as two
// scans and a rotation, as its write, completion and second scan would have been). A replay aligned to a traced
// kernel reclaims with it the pages the kernel's reclaim freed, as the trace shows them,
// instead of Kmem's own choice (TracedReclaim stands in for direct reclaim's choice), so
// its memory follows the kernel's.
// Locking: ReclaimTracedPage takes the reclaim locks (reentrant: TracedReclaim's callback
// runs under them).
using Kmem.Physical;

namespace Kmem.Reclaim;

internal sealed partial class Vmscan
{
    /// <summary>Set by a replay aligned to a traced kernel: direct reclaim frees what the kernel's freed for the
    /// allocation now reclaiming (with <see cref="ReclaimTracedPage"/>) instead of Kmem's choice, and returns the pages
    /// freed, or −1 to leave it to Kmem's reclaim. Called under the reclaim locks, on the reclaiming thread.</summary>
    public Func<long>? TracedReclaim { get; set; }

    /// <summary>Reclaims one given anonymous page (reclaim_pages) as kswapd's (or direct reclaim's) work; false when
    /// it is not an anonymous page on an LRU list (already reclaimed, isolated, or not a user page).</summary>
    public bool ReclaimTracedPage(uint pfn, bool kswapd)
    {
        var sc = new ScanControl { Gfp = Gfp.Kernel, Kswapd = kswapd, Priority = DefPriority };
        using (_locks.EnterAll())
        {
            ref PageFrame f = ref _mem.Frame(pfn);
            if ((f.Flags & (PageFlags.Lru | PageFlags.SwapBacked)) != (PageFlags.Lru | PageFlags.SwapBacked))
            {
                return false;
            }
            _lru.RemoveFromList(pfn, _lru.ListOf(pfn));
            f.Flags &= ~(PageFlags.Lru | PageFlags.Referenced | PageFlags.Active);
            _memory.TestClearYoung(pfn);
            long written = _events.Stats.NrVmscanWrite;
            bool freed = PageoutAnon(pfn, ref sc, sync: true) == PageRef.Reclaim;
            if (!freed)
            {
                _lru.Putback(pfn);
            }
            // The kernel's free of a page it wrote out ends its second scan: both scans and the rotation between.
            int scans = _events.Stats.NrVmscanWrite > written ? 2 : 1;
            ref var s = ref _events.Stats;
            s.Pgrotated += scans - 1;
            (kswapd ? ref s.PgscanKswapd : ref s.PgscanDirect) += scans;
            s.PgscanAnon += scans;
            if (freed)
            {
                (kswapd ? ref s.PgstealKswapd : ref s.PgstealDirect)++;
                s.PgstealAnon++;
            }
            return freed;
        }
    }
}
