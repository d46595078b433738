// struct per_cpu_pages: one CPU's cache of free pages for one zone, with a list
// per (order, migrate type) for orders 0..PAGE_ALLOC_COSTLY_ORDER and, with THP,
// one list for pageblock-order pages (NR_PCP_LISTS = 13).
// Locking: the pcp lock is a try-lock, as in 6.1 (pcp_spin_trylock): two threads
// can hold the same CPU id, and the loser goes straight to the buddy lists under
// zone->lock instead of waiting. Drains from another CPU take it with a spin.
// Count is in pages (an order-k entry adds 2^k). Stats are written only under
// the lock and summed by readers without it.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Kmem.Physical;

namespace Kmem.PageAlloc;

/// <summary>Page-allocator event counts, kept where the lock that guards the path already is.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct PageAllocStats
{
    public long PgAlloc, PgFree, NumaHit, NumaMiss, NumaForeign, NumaLocal, NumaOther;
    /// <summary>Tracepoint counts: mm_page_alloc_zone_locked, mm_page_pcpu_drain, mm_page_alloc_extfrag.</summary>
    public long AllocZoneLocked, PcpDrain, AllocExtfrag;
    /// <summary>Blocks rmqueue_bulk moved from the buddy lists to a per-CPU list (the kernel's zone_locked events with percpu_refill=1).</summary>
    public long PcpRefill;

    public void Add(in PageAllocStats o)
    {
        PgAlloc += o.PgAlloc;
        PgFree += o.PgFree;
        NumaHit += o.NumaHit;
        NumaMiss += o.NumaMiss;
        NumaForeign += o.NumaForeign;
        NumaLocal += o.NumaLocal;
        NumaOther += o.NumaOther;
        AllocZoneLocked += o.AllocZoneLocked;
        PcpDrain += o.PcpDrain;
        AllocExtfrag += o.AllocExtfrag;
        PcpRefill += o.PcpRefill;
    }
}

/// <summary>Counters updated outside any pcp lock, with Interlocked.</summary>
internal sealed class ZoneCounters
{
    public PageAllocStats Stats;
}

[InlineArray(PerCpuPages.NrPcpLists)]
internal struct PcpListHeads
{
    private PfnList _list;
}

/// <summary>One CPU's page lists for one zone.</summary>
internal sealed class PerCpuPages
{
    public const int NrPcpLists = 13;
    /// <summary>PAGE_ALLOC_COSTLY_ORDER.</summary>
    public const int CostlyOrder = 3;

    private int _lock;
    public int Count;
    public int High;
    public int Batch;
    public int FreeFactor;
    public PcpListHeads Lists;
    public PageAllocStats Stats;
#pragma warning disable CS0169, IDE0051 // padding against false sharing with the next CPU's lists
    private readonly long _pad0, _pad1, _pad2, _pad3, _pad4, _pad5, _pad6, _pad7;
#pragma warning restore CS0169, IDE0051

    public PerCpuPages()
    {
        for (int i = 0; i < NrPcpLists; i++)
        {
            Lists[i] = PfnList.Empty;
        }
    }

    /// <summary>nr_pcp_high: the count at which a free spills; none kept for a high-order free after frees without
    /// allocation, and at most four batches while kswapd reclaims the zone (<paramref name="reclaimActive"/>,
    /// ZONE_RECLAIM_ACTIVE: pages on the lists are pages reclaim cannot see).</summary>
    public int NrPcpHigh(bool reclaimActive, bool freeHigh)
    {
        if (High == 0 || freeHigh)
        {
            return 0;
        }
        return reclaimActive ? Math.Min(Batch << 2, High) : High;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryLock() => Interlocked.CompareExchange(ref _lock, 1, 0) == 0;

    /// <summary>Takes the lock, waiting if another thread holds it (drains, reports).</summary>
    public void LockSpin()
    {
        var spin = new SpinWait();
        while (!TryLock())
        {
            spin.SpinOnce();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Unlock()
    {
        VmBug.On(Count < 0 || Volatile.Read(ref _lock) == 0); // a negative count, or unlocking a free lock
        Volatile.Write(ref _lock, 0);
    }

    /// <summary>order_to_pindex.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int OrderToPindex(int mt, int order) =>
        order > CostlyOrder ? NrPcpLists - 1 : order * Zone.PcpTypes + mt;

    /// <summary>pindex_to_order.</summary>
    public static int PindexToOrder(int pindex, int pageblockOrder) =>
        pindex == NrPcpLists - 1 ? pageblockOrder : pindex / Zone.PcpTypes;
}
