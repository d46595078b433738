// The state that decides a user page's kswapd wakeup and direct reclaim (part of
// PressureReplay): Kmem's free pages in the allocation's preferred zone against its low
// and min watermarks (with boost) and whether its kswapd was awake, read before the
// fault and named in a mismatch's detail. In an aligned replay that state follows what
// the trace reveals, never the decision's own event:
// - the watermarks are the capture's (zoneinfo.txt beside the trace: min, low, high per zone),
//   and the per-CPU lists' high follows the low mark as zone_pcp_update makes it;
// - free pages follow the kernel's reclaim: a user page the kernel's kswapd freed (or wrote
//   out) is paged out in Kmem at once (Vmscan.ReclaimTracedPage), and Kmem's kswapd reclaims
//   nothing of its own; the pages a task's direct reclaim freed (its frees between
//   mm_vmscan_direct_reclaim_begin and _end) are held until that task's next page
//   allocation: Kmem's direct reclaim, if Kmem decides to enter it, reclaims them
//   (Vmscan.TracedReclaim), otherwise they are paged out after the allocation. Kmem
//   decides at the state before the kernel's reclaim for it, as the kernel did;
// - the NR_FREE_PAGES counter the watermark checks read is Kmem's free pages (the CPUs' vmstat diffs
//   are not revealed: KernelFreePages);
// - the watermark boost is the kernel's: boost_watermark at each of its fallback steals below
//   a pageblock (mm_page_alloc_extfrag), with ZONE_BOOSTED_WATERMARK for the next rmqueue in
//   the zone; a run of balance_pgdat drops, when it ends, the boost it began with (a run
//   ends at kswapd's next mm_vmscan_kswapd_wake, its _sleep, or Kmem's node balanced); Kmem's
//   own steals boost nothing;
// - kswapd is awake from its mm_vmscan_kswapd_wake (or Kmem's own wakeup) until Kmem's node
//   is balanced (balance_pgdat's end, after which it naps on its waitqueue), a run the traced
//   kswapd began has gone silent (TracedKswapd), or its mm_vmscan_kswapd_sleep.
// Used on the replaying thread only.
using Kmem.PageAlloc;
using Kmem.Physical;
using Kmem.Reclaim;

namespace Kmem;

internal sealed partial class PressureReplay
{
    /// <summary>Kmem's state before a user page's fault: the preferred zone's free pages, watermarks and boost, and
    /// whether kswapd was awake (woken and not yet run, or running).
    /// <para><paramref name="LowerMin"/>, <paramref name="LowerLow"/>: the best margin of a lower zone's free pages over its
    /// min (low) watermark with boost and its lowmem reserve for a user page's request (highest zone Movable) (above 0: that zone passes
    /// zone_watermark_fast for order 0; null without a lower zone).</para></summary>
    private readonly record struct WakeState(long Free, long Counter, long Min, long Low, long Boost, bool KswapdAwake, long? LowerMin = null, long? LowerLow = null)
    {
        public override string ToString() =>
            $"Kmem free {Free} (counter {Counter}; min {Min}, low {Low}, boost {Boost}), kswapd {(KswapdAwake ? "awake" : "asleep")}"
            + (LowerMin is long lm && LowerLow is long ll ? $"; lower zones' margin over min {lm}, over low {ll}" : "");
    }

    // The zone a user page's allocation tries first: the highest managed zone (GFP_HIGHUSER_MOVABLE).
    private Zone? _userZone;

    private Zone? UserZone => _userZone ??= _m.PageAllocator.Zones.LastOrDefault(z => z.IsManaged);

    private WakeState ReadWakeState()
    {
        if (UserZone is not { } z)
        {
            return default;
        }
        long boost = Volatile.Read(ref z.WatermarkBoost);
        long? lowerMin = null, lowerLow = null;
        foreach (var lower in z.Node.Zones)
        {
            if (lower.IsManaged && lower.Type < z.Type)
            {
                long free = Volatile.Read(ref lower.VmstatFreePages) - lower.LowmemReserve[(int)ZoneType.Movable]; // GFP_HIGHUSER_MOVABLE
                lowerMin = Math.Max(lowerMin ?? long.MinValue, free - lower.WmarkPages(Zone.WmarkMin));
                lowerLow = Math.Max(lowerLow ?? long.MinValue, free - lower.WmarkPages(Zone.WmarkLow));
            }
        }
        return new WakeState(Volatile.Read(ref z.FreePages), Volatile.Read(ref z.VmstatFreePages), z.Watermark[Zone.WmarkMin] + boost, z.Watermark[Zone.WmarkLow] + boost, boost,
            _m.Mm.KswapdIsRunning(z.Node), lowerMin, lowerLow);
    }

    // Aligned: the pages each task's direct reclaim freed in the kernel, not yet reclaimed in Kmem; the task whose
    // allocation Kmem is making (whose held pages Kmem's direct reclaim takes).
    private readonly Dictionary<int, List<(UserTask Task, ulong Va)>> _heldDirect = [];
    private int _allocatingPid = -1;

    public long TracedReclaimed { get; private set; }

    private KernelFreePages? _kernelFree;

    /// <summary>Pages Kmem holds (aligned) so its free pages are the kernel's at each decision.</summary>
    public long HeldFreePages => _kernelFree?.HeldFreePages ?? 0;

    private void StartAligned()
    {
        _kernelFree = new KernelFreePages(_m, () => UserZone);
        _m.Mm.KswapdDeferred = true;
        _m.Mm.Vmscan.TracedReclaim = AlignedDirectReclaim;
        CaptureWatermarks.Apply(_m, _directory);
    }

    // Vmscan.TracedReclaim: the allocating task's held pages paged out; without any, what Kmem holds for the kernel's
    // free pages goes back (a batch of SWAP_CLUSTER_MAX); only when it holds nothing either, or nothing could be
    // reclaimed, does Kmem's own reclaim choose.
    private long AlignedDirectReclaim()
    {
        long freed = 0;
        if (_heldDirect.Remove(_allocatingPid, out var held))
        {
            foreach (var (t, va) in held)
            {
                freed += PageOut(t, va, kswapd: false) ? 1 : 0;
            }
        }
        if (freed == 0 && _m.Mm.NrSwapPages > 0 && _m.Mm.Lruvecs.Any(v => v.Count[(int)LruList.InactiveAnon] + v.Count[(int)LruList.ActiveAnon] > 0))
        {
            // Reclaim could free pages here (anonymous pages and swap to put them in), and the kernel's shows none:
            // what Kmem holds for the kernel's free pages stands in. Without, Kmem's reclaim fails as the kernel's did.
            freed = _kernelFree!.ReleaseHeldFree(Vmscan.SwapClusterMax);
        }
        return freed > 0 ? freed : -1;
    }

    // A user page the kernel's reclaim freed: kswapd's is paged out in Kmem now, a direct reclaim's is held for the task.
    private void AlignedReclaimFree(UserTask t, ulong va, int directPid)
    {
        if (directPid >= 0)
        {
            if (!_heldDirect.TryGetValue(directPid, out var held))
            {
                held = [];
                _heldDirect[directPid] = held;
            }
            held.Add((t, va));
            return;
        }
        PageOut(t, va, kswapd: true);
    }

    private bool PageOut(UserTask t, ulong va, bool kswapd)
    {
        if (t.Alive && t.Task!.FollowPage(va) is var pfn && pfn != PhysMem.NoPfn && _m.Mm.Vmscan.ReclaimTracedPage(pfn, kswapd))
        {
            TracedReclaimed++;
            return true;
        }
        return false;
    }

    // After the task's allocation: the pages its direct reclaim freed that Kmem's did not take.
    private void ReleaseHeldDirect(int pid)
    {
        if (_heldDirect.Remove(pid, out var held))
        {
            foreach (var (t, va) in held)
            {
                _ = PageOut(t, va, kswapd: false);
            }
        }
    }

    // Aligned: the kernel's watermark boost per zone (by index), and whether its ZONE_BOOSTED_WATERMARK awaits the
    // zone's next rmqueue.
    private long[]? _kernelBoost;
    private bool[]? _boostOwed;

    // Every event: Kmem's boost is the kernel's (a steal of Kmem's own boosts nothing); an extfrag below a pageblock
    // boosts the zone of its frame (boost_watermark: a pageblock more, up to watermark_boost_factor of the high mark).
    private void AlignBoost(ref TraceEvent e)
    {
        var zones = _m.PageAllocator.Zones;
        _kernelBoost ??= new long[zones.Length];
        _boostOwed ??= new bool[zones.Length];
        bool extfrag = e.Kind == TraceEventKind.MmPageAllocExtfrag;
        if (extfrag && e.FallbackOrder < _m.PageAllocator.Mem.PageblockOrder
            && e.Pfn < _m.PageAllocator.Mem.MaxPfn && _m.PageAllocator.ZoneOf((uint)e.Pfn) is { } z && _m.Options.WatermarkBoostFactor > 0)
        {
            long pageblock = 1L << _m.PageAllocator.Mem.PageblockOrder;
            long maxBoost = z.Watermark[Zone.WmarkHigh] * _m.Options.WatermarkBoostFactor / 10000;
            if (pageblock * 4 <= z.ManagedPages && maxBoost > 0)
            {
                _kernelBoost[z.Index] = Math.Min(_kernelBoost[z.Index] + pageblock, Math.Max(pageblock, maxBoost));
                _boostOwed[z.Index] = true;
            }
        }
        ApplyKernelBoost(extfrag);
    }

    // Kmem's boost and ZONE_BOOSTED_WATERMARK set to the kernel's (after anything of Kmem's that may have stolen).
    private void ApplyKernelBoost(bool extfrag = false)
    {
        var zones = _m.PageAllocator.Zones;
        if (_kernelBoost is null || _boostOwed is null)
        {
            return;
        }
        for (int i = 0; i < zones.Length; i++)
        {
            var zone = zones[i];
            // The flag owed was taken by Kmem's rmqueue (which woke kswapd for it), or is still owed.
            _boostOwed[i] &= zone.BoostedWatermark || extfrag;
            if (zone.WatermarkBoost != _kernelBoost[i] || zone.BoostedWatermark != _boostOwed[i])
            {
                lock (zone.Lock)
                {
                    zone.WatermarkBoost = _kernelBoost[i];
                }
                zone.BoostedWatermark = _boostOwed[i];
            }
        }
    }

    // The boost each zone had when kswapd's current run of balance_pgdat began (the kernel's), which the run's end drops.
    private long[]? _runBoost;

    // A run of balance_pgdat ends (the kernel's next mm_vmscan_kswapd_wake or its _sleep, or Kmem's node balanced):
    // the boosts it began with are gone; a new run (<starting>) begins with the boosts there are now.
    private void KswapdRunEnds(Node node, bool starting)
    {
        if (_kernelBoost is null)
        {
            return;
        }
        _runBoost ??= new long[_kernelBoost.Length];
        foreach (var z in node.Zones)
        {
            int i = z.Index;
            if (i < _kernelBoost.Length)
            {
                _kernelBoost[i] -= Math.Min(_kernelBoost[i], _runBoost[i]);
                _runBoost[i] = starting ? _kernelBoost[i] : 0;
            }
        }
        ApplyKernelBoost();
    }

    // mm_vmscan_kswapd_wake / _sleep: the traced kswapd's state is Kmem's.
    private void AlignKswapd(string text, bool awake)
    {
        int nid = (int)(Field(text, "nid=") ?? 0);
        if (nid >= 0 && nid < _m.PageAllocator.Nodes.Length)
        {
            _m.Mm.KswapdSetAwake(nid, awake);
            KswapdRunEnds(_m.PageAllocator.Nodes[nid], starting: awake);
            _kernelRun = awake;
        }
    }

    /// <summary>The traced kswapd (KernelPageEvents feeds it every event).</summary>
    public TracedKswapd? TracedKswapd { get; init; }

    // Kmem's kswapd is awake for a run the traced kswapd began (its mm_vmscan_kswapd_wake).
    private bool _kernelRun;

    // Before a user page's decision: an awake kswapd whose node is balanced (at the high watermarks with their boost),
    // or the traced kswapd's run gone silent, has ended its balance_pgdat, dropping the boost it began with, and naps on
    // its waitqueue, where a wakeup finds it.
    private void SettleKswapd()
    {
        if (UserZone is not { } z || !_m.Mm.KswapdIsRunning(z.Node))
        {
            return;
        }
        var node = z.Node;
        if (KswapdDaemon.PgdatBalanced(node, 0, z.Type) || (_kernelRun && TracedKswapd is { Running: false }))
        {
            _kernelRun = false;
            _m.Mm.KswapdSetAwake(node.Id, false);
            KswapdRunEnds(node, starting: false);
        }
    }
}
