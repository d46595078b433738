// Aligned decisions (TraceReplayOptions.Aligned): before Kmem decides for an event,
// its per-CPU page lists are put where the kernel's were just before that event, as
// far as the trace's earlier events reveal them; the event's own outcome is never
// used. What is revealed, per CPU, zone, order and migrate type:
//   a refill that an allocation claimed: the list was empty, then held the blocks
//     the burst took, less the one the allocation took;
//   an allocation from the list (no refill): one block fewer;
//   a free of order <= 3 to the list (the type the frame was allocated with): one more;
//   each mm_page_pcpu_drain: that block left its list;
//   a bulk-allocator burst: the bulk call took an unknown number: the list is unknown
//     until its next refill.
// free_factor is known from boot on: halved by every pcp allocation, raised by a drain
// as nr_pcp_free raises it (with Kmem's batch and high). Unknown lists are left as
// Kmem has them. Aligned: pcp_refill and pcp_drain. new_slab, slab_freed, zone and
// fallback are not corrected (their deciding state, the slab freelists and the buddy
// lists, is not revealed event by event), so their aligned figures are free-running.
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
    private readonly Dictionary<ulong, byte> _frameMt = [];

    public PcpListModel(Kmem.PageAlloc.PageAllocator pa, int cpus)
    {
        _pa = pa;
        int zones = pa.Zones.Length;
        _model = new int[cpus * zones * ModelOrders * ModelTypes];
        Array.Fill(_model, -1);
        _modelFf = new int[cpus * zones];
        _modelTotal = new int[cpus * zones];
        Array.Fill(_modelTotal, -1);
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
        _model[li] = refill == 1 ? burstBlocks - 1 : before > 0 ? before - 1 : -1;
        AddTotal(fi, refill == 1 ? (burstBlocks - 1) << order : -(1 << order));
        _frameMt[pfn] = (byte)mt;
        return (before, ff);
    }

    public void Bulk(int cpu, ulong pfn, int order, MigrateType mt)
    {
        int zone = TraceZones.ZoneOf(_pa, pfn).Index;
        if (order < ModelOrders && (int)mt < ModelTypes)
        {
            _model[ListIndex(cpu, zone, order, (int)mt)] = -1;
        }
        _modelTotal[cpu * _pa.Zones.Length + zone] = -1;
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
            _model[li]++;
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
                _model[li]--;
            }
        }
        int fi = cpu * _pa.Zones.Length + zone.Index;
        if (drainedSoFar == 0)
        {
            // The free that drains brought the count to high (it was below before it), unless it was a high-order
            // free after a free without allocation (free_high): that one drains the whole count, whatever it was.
            bool freeHigh = _modelFf[fi] != 0 && freeOrder > 0 && freeOrder < ModelOrders;
            _modelTotal[fi] = freeHigh ? -1 : zone.Pcp[cpu].High;
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
            if ((pcp.Batch << _modelFf[fi]) < pcp.High - pcp.Batch)
            {
                _modelFf[fi]++;
            }
        }
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
            _pa.AlignPcpList(zone, cpu, order, (int)GfpFlags.GfpMigratetype(gfp), before);
        }
        if (ff >= 0)
        {
            Kmem.PageAlloc.PageAllocator.AlignPcpFreeFactor(zone, cpu, ff);
        }
    }

    // Before Kmem's page free: every list of the frame's zone on this CPU the kernel's state is known for, and free_factor.
    public void AlignForFree(int cpu, ulong tracePfn, Page kmemPage)
    {
        var model = TraceZones.ZoneOf(_pa, tracePfn);
        var zone = _pa.ZoneOf(kmemPage.RawPfn);
        int total = _modelTotal[cpu * _pa.Zones.Length + model.Index];
        if (total >= 0)
        {
            int mt = (int)_pa.Mem.PageblockMigratetype(kmemPage.RawPfn);
            _pa.AlignPcpCount(zone, cpu, total, mt < ModelTypes ? mt : 0);
        }
        Kmem.PageAlloc.PageAllocator.AlignPcpFreeFactor(zone, cpu, _modelFf[cpu * _pa.Zones.Length + model.Index]);
    }
}
