// Aligned decisions (TraceReplayOptions.Aligned): before Kmem decides for an event,
// its per-CPU page lists are put where the kernel's were just before that event, as
// far as the trace's earlier events reveal them; the event's own outcome is never
// used. What is revealed, per CPU, zone, order and migrate type:
//   a trace recorded from boot (first event at uptime 0): every list empty at the start;
//   a refill that an allocation claimed: the list was empty, then held the blocks
//     the burst took, less the one the allocation took;
//   an allocation from the list (no refill): one block fewer;
//   a free of order <= 3 to the list (the type the frame was allocated with): one more;
//     a reserved frame's first free (TraceReplayOptions.ReservedFrames) too, Kmem's count
//     aligned before it as before any free;
//   each mm_page_pcpu_drain: that block left its list;
//   a bulk allocation of known size (vmalloc's page array): that many order-0 blocks
//     fewer, plus the burst it made when the list ran out; of unknown size: the list
//     is unknown until its next refill.
// The CPU's count: after a drain, high less the pages drained; a model count at or above
// high at a free the kernel did not drain at is wrong by an amount the trace does not tell
// (pages taken with no event), so it is unknown until the next drain; an unknown count is the
// sum of the CPU's lists when every one of them is known and that sum is below high. free_factor is known from boot on: halved by every pcp allocation
// (not by the bulk allocator), raised by a drain as nr_pcp_free raises it (with Kmem's
// batch and high). Unknown lists are left as Kmem has them. Aligned here: pcp_refill and
// pcp_drain; new_slab and slab_freed are aligned by TraceReplayer.SlabAlign, fallback by
// TraceReplayer.AlignKernelSteals (Zone.AlignSteal); zone is not corrected.
// "high" above is nr_pcp_high's: four batches (at most high) while the kernel's kswapd reclaims
// (ZONE_RECLAIM_ACTIVE, set for balance_pgdat's run: TracedKswapd.Running, for every zone, since
// its events name none). Kmem's zones take the kernel's flag before each event.
// Owned by TraceReplayer and used on its replaying thread only.
namespace Kmem;

/// <summary>The kernel's per-CPU page lists as the trace reveals them, and Kmem's lists set to match.</summary>
internal sealed class PcpListModel
{
    private const int ModelOrders = 4, ModelTypes = 3;

    private readonly Kmem.PageAlloc.PageAllocator _pa;
    private readonly int[] _model;
    private readonly int[] _modelFf;
    private readonly int[] _modelTotal;
    // Per CPU and zone: how many of its lists are unknown, and the pages of the known ones (kept at every write of
    // _model through SetList, so ListSum is a read instead of a walk of the twelve lists at every free).
    private readonly int[] _unknownLists;
    private readonly int[] _knownPages;
    private readonly Dictionary<ulong, byte> _frameMt = [];
    private readonly TracedKswapd _kswapd;

    public PcpListModel(Kmem.PageAlloc.PageAllocator pa, int cpus, TracedKswapd kswapd)
    {
        _pa = pa;
        _kswapd = kswapd;
        int zones = pa.Zones.Length;
        _model = new int[cpus * zones * ModelOrders * ModelTypes];
        Array.Fill(_model, -1);
        _modelFf = new int[cpus * zones];
        _modelTotal = new int[cpus * zones];
        Array.Fill(_modelTotal, -1);
        _unknownLists = new int[cpus * zones];
        Array.Fill(_unknownLists, ModelOrders * ModelTypes);
        _knownPages = new int[cpus * zones];
    }

    /// <summary>Every event, before it is dispatched: Kmem's zones take the kernel's ZONE_RECLAIM_ACTIVE.</summary>
    public void AlignReclaimActive()
    {
        foreach (var zone in _pa.Zones)
        {
            bool active = ReclaimActiveIn(zone);
            if (zone.ReclaimActive != active)
            {
                zone.ReclaimActive = active;
            }
        }
    }

    // The kernel's ZONE_RECLAIM_ACTIVE for the zone.
    private bool ReclaimActiveIn(Kmem.PageAlloc.Zone zone) => _kswapd.Running && zone.IsManaged;

    // nr_pcp_high as the kernel had it for this CPU's lists of the zone (free_high aside).
    private int KernelHigh(Kmem.PageAlloc.Zone zone, int cpu) => zone.Pcp[cpu].NrPcpHigh(ReclaimActiveIn(zone), freeHigh: false);

    // A trace recorded from boot (its first event at uptime 0): the per-CPU lists were empty then (the boot
    // pagesets hold nothing; the zones' own pagesets start empty), so every list and count is known from the start.
    public void StartAtBoot()
    {
        Array.Fill(_model, 0);
        Array.Fill(_modelTotal, 0);
        Array.Fill(_unknownLists, 0);
        Array.Fill(_knownPages, 0);
    }

    // Every write of a list's blocks (-1: unknown) goes through here, to keep _unknownLists and _knownPages.
    private void SetList(int li, int blocks)
    {
        int old = _model[li];
        int fi = li / (ModelOrders * ModelTypes);
        int order = li / ModelTypes % ModelOrders;
        if (old < 0)
        {
            _unknownLists[fi]--;
        }
        else
        {
            _knownPages[fi] -= old << order;
        }
        if (blocks < 0)
        {
            _unknownLists[fi]++;
        }
        else
        {
            _knownPages[fi] += blocks << order;
        }
        _model[li] = blocks < 0 ? -1 : blocks;
    }

    private void AddTotal(int fi, int pages)
    {
        if (_modelTotal[fi] >= 0)
        {
            _modelTotal[fi] = Math.Max(0, _modelTotal[fi] + pages);
        }
    }

    private int ListIndex(int cpu, int zone, int order, int mt) => ((cpu * _pa.Zones.Length + zone) * ModelOrders + order) * ModelTypes + mt;

    // The kernel's page allocation of order <= 3 and type mt on this CPU: the list's state before it, then after.
    public (int Before, int Ff) Alloc(int cpu, ulong pfn, int order, MigrateType mt, sbyte refill, int burstBlocks)
    {
        if (order >= ModelOrders || (int)mt >= ModelTypes || refill < 0)
        {
            return (-1, -1);
        }
        var zone = TraceZones.ZoneOf(_pa, pfn);
        int li = ListIndex(cpu, zone.Index, order, (int)mt);
        int before = _model[li];
        int fi = cpu * _pa.Zones.Length + zone.Index;
        int ff = _modelFf[fi];
        _modelFf[fi] = ff >> 1;
        SetList(li, refill == 1 ? burstBlocks - 1 : before > 0 ? before - 1 : -1);
        AddTotal(fi, refill == 1 ? (burstBlocks - 1) << order : -(1 << order));
        _frameMt[pfn] = (byte)mt;
        return (before, ff);
    }

    // A refill burst no allocation claimed: the bulk allocator's. With the bulk's size known (vmalloc's page
    // array said how many pages it asked for), the list ran out after `before` pages, took the burst's blocks
    // and gave the rest of the bulk from them; otherwise the list is unknown until its next refill.
    public void Bulk(int cpu, ulong pfn, int order, MigrateType mt, int blocks, int pages)
    {
        int zone = TraceZones.ZoneOf(_pa, pfn).Index;
        int fi = cpu * _pa.Zones.Length + zone;
        if (pages <= 0 || order != 0 || (int)mt >= ModelTypes)
        {
            if (order < ModelOrders && (int)mt < ModelTypes)
            {
                SetList(ListIndex(cpu, zone, order, (int)mt), -1);
            }
            _modelTotal[fi] = -1;
            return;
        }
        int li = ListIndex(cpu, zone, 0, (int)mt);
        int after = _model[li] + blocks - pages;
        SetList(li, _model[li] >= 0 && after >= 0 ? after : -1);
        AddTotal(fi, blocks - pages);
    }

    // A bulk allocation of `pages` order-0 pages the list served alone (no event shows it): alloc_pages_bulk takes
    // them from the head of the zone's list of the type, without touching free_factor.
    public void BulkFromList(int cpu, ZoneType zoneType, MigrateType mt, int pages)
    {
        int zone = -1;
        foreach (var z in _pa.Zones)
        {
            if (z.Type == zoneType)
            {
                zone = z.Index;
            }
        }
        if (zone < 0 || (int)mt >= ModelTypes)
        {
            return;
        }
        int li = ListIndex(cpu, zone, 0, (int)mt);
        int before = _model[li];
        SetList(li, before >= pages ? before - pages : -1); // fewer than asked would have refilled: then unknown
        AddTotal(cpu * _pa.Zones.Length + zone, -pages);
    }

    // A kernel page free of order <= 3 lands on its CPU's list (drains that follow are applied one by one).
    public void Free(int cpu, ulong pfn, int order)
    {
        byte mt = _frameMt.Remove(pfn, out byte m) ? m : (byte)0;
        if (order >= ModelOrders || mt >= ModelTypes)
        {
            return;
        }
        int zone = TraceZones.ZoneOf(_pa, pfn).Index;
        AddTotal(cpu * _pa.Zones.Length + zone, 1 << order);
        int li = ListIndex(cpu, zone, order, mt);
        if (_model[li] >= 0)
        {
            SetList(li, _model[li] + 1);
        }
    }

    public void Drain(int cpu, ulong pfn, int order, MigrateType mt, int drainedSoFar, int freeOrder)
    {
        var zone = TraceZones.ZoneOf(_pa, pfn);
        if (order < ModelOrders && (int)mt < ModelTypes)
        {
            int li = ListIndex(cpu, zone.Index, order, (int)mt);
            if (_model[li] > 0)
            {
                SetList(li, _model[li] - 1);
            }
        }
        int fi = cpu * _pa.Zones.Length + zone.Index;
        if (drainedSoFar == 0)
        {
            // The free that drains brought the count to high (it was below before it), unless it was a high-order
            // free after a free without allocation (free_high): that one drains the whole count, whatever it was.
            bool freeHigh = _modelFf[fi] != 0 && freeOrder > 0 && freeOrder < ModelOrders;
            _modelTotal[fi] = freeHigh ? -1 : KernelHigh(zone, cpu);
        }
        AddTotal(fi, -(1 << order));
        if (_modelTotal[fi] < 0 && drainedSoFar == 0 && _modelFf[fi] != 0 && freeOrder > 0)
        {
            _modelTotal[fi] = 0; // free_high: nr_pcp_free returned pcp->count, the lists are empty after it
            return;
        }
        // nr_pcp_free raises free_factor once per drain, when batch << free_factor is still below high - batch.
        if (drainedSoFar == 0)
        {
            var pcp = zone.Pcp[cpu];
            if ((pcp.Batch << _modelFf[fi]) < KernelHigh(zone, cpu) - pcp.Batch)
            {
                _modelFf[fi]++;
            }
        }
    }

    // The count as the sum of the CPU's lists of the zone when every one is known (-1 otherwise): what a count the
    // drains no longer vouch for falls back to.
    private int ListSum(int cpu, int zone)
    {
        int fi = cpu * _pa.Zones.Length + zone;
        VmBug.On(_knownPages[fi] != WalkListSum(cpu, zone) && _unknownLists[fi] == 0);
        return _unknownLists[fi] > 0 ? -1 : _knownPages[fi];
    }

    // ListSum by walking the lists, to check the kept sums in the DebugVm build.
    private int WalkListSum(int cpu, int zone)
    {
        int sum = 0;
        for (int order = 0; order < ModelOrders; order++)
        {
            for (int mt = 0; mt < ModelTypes; mt++)
            {
                int blocks = _model[ListIndex(cpu, zone, order, mt)];
                if (blocks < 0)
                {
                    return -1;
                }
                sum += blocks << order;
            }
        }
        return sum;
    }

    // Before Kmem's page allocation: its list as the kernel's was (when known) and the kernel's free_factor.
    public void AlignForAlloc(ulong pfn, int order, Gfp gfp, int before, int ff, int cpu)
    {
        if (before < 0 && ff < 0)
        {
            return;
        }
        var zone = TraceZones.ZoneOf(_pa, pfn);
        if (before >= 0)
        {
            Kmem.PageAlloc.PcpAlign.AlignPcpList(_pa.Mem, zone, cpu, order, (int)GfpFlags.GfpMigratetype(gfp), before);
        }
        if (ff >= 0)
        {
            Kmem.PageAlloc.PcpAlign.AlignPcpFreeFactor(zone, cpu, ff);
        }
    }

    // Before Kmem's page free: every list of the frame's zone on this CPU the kernel's state is known for, and free_factor.
    // Returns whether the count was revealed (false: unknown, Kmem's own kept or, at high or above, high - 1 taken).
    // kmemPage null: a reserved frame about to be released (one of Kmem's reserved pages of the zone, Movable).
    public bool AlignForFree(int cpu, ulong tracePfn, Page? kmemPage)
    {
        var model = TraceZones.ZoneOf(_pa, tracePfn);
        var zone = kmemPage is { } page ? _pa.ZoneOf(page.RawPfn) : model;
        int fi = cpu * _pa.Zones.Length + model.Index;
        if (zone != model)
        {
            return false; // Kmem's page is in another zone: the kernel's count says nothing of that zone's lists
        }
        // Every earlier free on this CPU either drained (the count is then known) or left the count below high:
        // a count the model has at high or above is one the kernel cannot have had. The model overcounted (a page
        // taken with no event: a bulk allocation of unknown size) by an amount the trace does not tell, so the
        // count is unknown until the next drain reveals it; taking high - 1 instead would drain at every free.
        // While kswapd reclaims, a refill can leave the count above the lower high: only the full high is a bound.
        int high = model.Pcp[cpu].High;
        if (_modelTotal[fi] >= high && high > 0)
        {
            _modelTotal[fi] = -1;
        }
        int total = _modelTotal[fi];
        if (total < 0)
        {
            total = ListSum(cpu, model.Index);
            if (total >= high)
            {
                total = -1;
            }
        }
        bool revealed = total >= 0;
        if (total < 0 && high > 0 && zone.Pcp[cpu].Count >= high)
        {
            total = high - 1; // not revealed, but below high all the same: Kmem's list alignment can overfill it
        }
        if (total >= 0)
        {
            int mt = kmemPage is { } pg ? (int)_pa.Mem.PageblockMigratetype(pg.RawPfn) : (int)MigrateType.Movable;
            Kmem.PageAlloc.PcpAlign.AlignPcpCount(_pa.Mem, zone, cpu, total, mt < ModelTypes ? mt : 0);
        }
        Kmem.PageAlloc.PcpAlign.AlignPcpFreeFactor(zone, cpu, _modelFf[fi]);
        return revealed;
    }
}
