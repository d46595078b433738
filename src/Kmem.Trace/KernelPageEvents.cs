// The kernel's side of the page decisions, read from the events around each one on the
// same CPU: a refill burst (a run of zone_locked percpu_refill=1) belongs to the allocation
// of its first frame; a steal (mm_page_alloc_extfrag) to the allocation it came in; drains
// to the page free they follow (TraceDecisions); a burst no allocation claims, and a
// vmalloc page array (kmalloc from __vmalloc_node_range, a pointer per page) no burst
// follows, are the bulk allocator (alloc_pages_bulk, no mm_page_alloc): the frames it took
// (PcpContents) go to the replayer, which gives them to Kmem as order-0 pages. In aligned
// runs the same events move the PcpListModel; every event goes to the TracedKswapd. Owned by
// TraceReplayer; used on its replaying thread only.
namespace Kmem;

/// <summary>Reads the kernel's page decisions and the bulk allocator's pages from the trace's events.</summary>
internal sealed class KernelPageEvents
{
    private readonly Kmem.PageAlloc.PageAllocator _pa;
    private readonly TraceDecisions _decisions;
    private readonly PcpListModel? _model;
    private readonly Action<List<ulong>, MigrateType, int> _replayBulk;
    private readonly PcpDrift? _drift;
    // Per CPU: the refill burst in progress, a steal not yet claimed by an allocation, a frame the buddy lists
    // gave straight (percpu_refill=0), the pages vmalloc's bulk allocation is about to take (or 0).
    private readonly RefillBurst[] _bursts;
    private readonly (bool Yes, bool Ownership)[] _steal;
    // Per CPU: the steals themselves, not yet claimed (aligned runs put Kmem's buddy lists where they left the kernel's).
    private readonly List<KernelSteal>[] _steals;
    private readonly ulong[] _directPfn;
    private readonly int[] _vmallocBulk;
    // Bursts of bulk allocations of unknown size, their frames given to Kmem as the trace reveals them taken.
    private readonly UnknownBulk _unknownBulk;
    private bool _started;

    /// <summary>Bursts no allocation claimed; drains after no page free (drain_all_pages).</summary>
    public long BulkBursts, UnattributedDrains;

    /// <summary>The kernel's per-CPU lists frame by frame.</summary>
    public PcpContents Contents { get; }

    /// <summary>The traced kswapd, fed every event here.</summary>
    public TracedKswapd Kswapd { get; }

    public KernelPageEvents(Kmem.PageAlloc.PageAllocator pa, int cpus, TraceDecisions decisions, PcpListModel? model, TracedKswapd kswapd,
        Action<List<ulong>, MigrateType, int> replayBulk, PcpDrift? drift = null)
    {
        Kswapd = kswapd;
        _drift = drift;
        _pa = pa;
        _decisions = decisions;
        _model = model;
        _replayBulk = replayBulk;
        _bursts = [.. Enumerable.Range(0, cpus).Select(_ => new RefillBurst())];
        _steal = new (bool, bool)[cpus];
        _steals = [.. Enumerable.Range(0, cpus).Select(_ => new List<KernelSteal>())];
        _directPfn = new ulong[cpus];
        Array.Fill(_directPfn, ulong.MaxValue);
        _vmallocBulk = new int[cpus];
        _unknownBulk = new UnknownBulk(cpus, replayBulk);
        Contents = new PcpContents(pa, cpus);
    }

    public bool BurstOpen(int cpu) => _bursts[cpu].Open;

    // Before each event is dispatched: the kernel's side of decisions the previous events left open.
    public void BeforeEvent(ref TraceEvent e, int cpu)
    {
        var kind = e.Kind;
        if (!_started)
        {
            _started = true;
            if (e.Timestamp == 0)
            {
                _model?.StartAtBoot();
                _drift?.StartAtBoot();
            }
        }
        Kswapd.Event(in e);
        _model?.AlignReclaimActive();
        var burst = _bursts[cpu];
        switch (kind)
        {
            case TraceEventKind.MmPageAllocZoneLocked:
                if (!e.PercpuRefill)
                {
                    _directPfn[cpu] = e.Pfn;
                    break;
                }
                if (burst.Open && (!burst.Growing || burst.Order != e.Order || burst.Mt != e.MigrateType))
                {
                    FinishBulk(cpu);
                }
                if (!burst.Open)
                {
                    burst.Start(e.Order, e.MigrateType, e.LineNumber, _steal[cpu], _steals[cpu]);
                    _steal[cpu] = default;
                    _steals[cpu].Clear();
                }
                burst.Pfns.Add(e.Pfn);
                burst.Growing = true;
                break;
            case TraceEventKind.MmPageAllocExtfrag:
                var steal = new KernelSteal(e.Pfn, e.Order, e.FallbackOrder, e.MigrateType, e.FallbackMigrateType, e.ChangeOwnership,
                    burst.Open ? burst.Pfns.Count : 0);
                if (burst.Open)
                {
                    burst.Steal = (true, e.ChangeOwnership);
                    burst.Steals.Add(steal);
                }
                else
                {
                    _steal[cpu] = (true, e.ChangeOwnership);
                    _steals[cpu].Add(steal);
                }
                break;
            case TraceEventKind.MmPagePcpuDrain:
                Contents.Drain(e.Pfn);
                if (_decisions.LastFree(cpu) is { } f)
                {
                    _model?.Drain(cpu, e.Pfn, e.Order, e.MigrateType, f.KernelPages, f.Order);
                    _drift?.KernelDrain(cpu, e.Pfn, e.Order, f.KernelPages, f.Order);
                    f.KernelPages += 1 << e.Order;
                }
                else
                {
                    UnattributedDrains++;
                    _model?.Drain(cpu, e.Pfn, e.Order, e.MigrateType, -1, 0);
                    _drift?.Kernel(cpu, e.Pfn, -(1 << e.Order), DriftClass.Drain);
                }
                break;
            case TraceEventKind.MmPageAlloc:
                if (burst.Open && burst.Pfns[0] != e.Pfn)
                {
                    FinishBulk(cpu);
                }
                break;
            case TraceEventKind.MmPageFree:
            case TraceEventKind.MmPageFreeBatched:
                if (burst.Open && burst.Pfns.Contains(e.Pfn))
                {
                    FinishBulk(cpu); // a frame of the burst is freed: something took it, no allocation event did
                }
                break;
            case TraceEventKind.Kfree:
            case TraceEventKind.KmemCacheFree:
                break; // frees an interrupt made between the refill and its allocation (softirq RCU callbacks)
            case TraceEventKind.Marker:
                if (e.Text is { } text && text.StartsWith("PHASE ", StringComparison.Ordinal))
                {
                    _decisions.StartPhase(text[6..].Trim());
                }
                goto default;
            default:
                if (burst.Open)
                {
                    FinishBulk(cpu);
                }
                break;
        }
        // After the switch: an event that ends a burst (FinishBulk) can reveal the bulk's frames taken at once.
        _unknownBulk.Event(ref e, cpu, kind == TraceEventKind.MmPageAllocZoneLocked ? TraceZones.ZoneOf(_pa, e.Pfn).Index : -1);
        if (kind is not (TraceEventKind.MmPageAllocZoneLocked or TraceEventKind.MmPageAllocExtfrag))
        {
            burst.Growing = false;
        }
        if (kind is not (TraceEventKind.MmPagePcpuDrain or TraceEventKind.MmPageFreeBatched))
        {
            _decisions.ResolveFrees(cpu);
            _drift?.Resolve(cpu);
        }
        // A page free ends the wait as any other event does: alloc_pages_bulk runs right after the page array's kmalloc
        // and shows nothing, so a page freed on this CPU after that kmalloc (a vfree of the area just before, whose
        // pages then go to the list's head) was freed after the bulk took its pages; waiting past it would take the
        // freed frames as the bulk's and leave the frames the bulk did take untracked until their free.
        if (_vmallocBulk[cpu] > 0 && kind is not (TraceEventKind.MmPageAllocZoneLocked or TraceEventKind.MmPageAllocExtfrag
            or TraceEventKind.Kfree or TraceEventKind.KmemCacheFree))
        {
            // No refill burst came: the bulk took every page from the list, or it fell back to single
            // allocations (memcg accounting, watermarks): then this is the first of their mm_page_alloc events,
            // with vmalloc's __GFP_HIGHMEM | __GFP_NOWARN.
            bool single = kind == TraceEventKind.MmPageAlloc && e.Order == 0 && (e.Gfp & (Gfp.HighMem | Gfp.NoWarn)) == (Gfp.HighMem | Gfp.NoWarn);
            if (!single)
            {
                var zone = TraceZones.Highest(_pa, Gfp.Kernel | Gfp.HighMem);
                _model?.BulkFromList(cpu, zone, MigrateType.Unmovable, _vmallocBulk[cpu]);
                int zoneIndex = Array.FindIndex(_pa.Zones, z => z.Type == zone);
                _drift?.KernelZone(cpu, zoneIndex, -_vmallocBulk[cpu], DriftClass.Bulk);
                _replayBulk(Contents.TakeBulk(cpu, zoneIndex, MigrateType.Unmovable, _vmallocBulk[cpu], null), MigrateType.Unmovable, _vmallocBulk[cpu]);
            }
            _vmallocBulk[cpu] = 0;
        }
        if (kind == TraceEventKind.Kmalloc && e.CallSite is { } site && site.StartsWith("__vmalloc_node_range+", StringComparison.Ordinal))
        {
            _vmallocBulk[cpu] = VmallocBulkPages(e.BytesReq, e.Ptr);
        }
    }

    // __vmalloc_area_node kmallocs the area's page array (a pointer per page) just before vm_area_alloc_pages asks
    // alloc_pages_bulk for the order-0 pages: the array's size says how many. A single page, or an array larger
    // than a page (vmalloc'ed itself), is not a bulk this replay can place.
    private static int VmallocBulkPages(ulong bytesReq, ulong ptr)
    {
        ulong pointer = ptr > uint.MaxValue ? 8UL : 4UL;
        ulong pages = bytesReq / pointer;
        return bytesReq % pointer == 0 && pages >= 2 && bytesReq <= 4096 ? (int)pages : 0;
    }

    // The kernel's decision for a page allocation, taken from the events before it (called by PageAlloc).
    public (sbyte Refill, bool Steal, bool Ownership, int Blocks, KernelSteal[]? Steals) KernelPageDecision(ref TraceEvent e, int cpu)
    {
        var burst = _bursts[cpu];
        sbyte refill;
        (bool Yes, bool Ownership) steal;
        int blocks = 0;
        KernelSteal[]? steals;
        if (burst.Open && burst.Pfns[0] == e.Pfn)
        {
            refill = 1;
            steal = burst.Steal;
            blocks = burst.Pfns.Count;
            steals = Claimed(burst.Steals, blocks);
            Contents.Alloc(cpu, e.Pfn, e.Order, e.MigrateType, burst.Pfns);
            burst.Close();
        }
        else
        {
            refill = (sbyte)(e.Order <= 3 && _directPfn[cpu] != e.Pfn ? 0 : -1);
            steal = _steal[cpu];
            steals = Claimed(_steals[cpu], refill == 0 ? 0 : 1); // a buddy allocation's one block came after its steals
            if (refill == 0)
            {
                Contents.Alloc(cpu, e.Pfn, e.Order, e.MigrateType, null);
            }
        }
        _steal[cpu] = default;
        _steals[cpu].Clear();
        _directPfn[cpu] = ulong.MaxValue;
        return (refill, steal.Yes, steal.Ownership, blocks, steals);
    }

    // The steals an allocation claims, each with the blocks taken after it before the next (of `blocks` in all).
    private static KernelSteal[]? Claimed(List<KernelSteal> steals, int blocks)
    {
        if (steals.Count == 0)
        {
            return null;
        }
        var claimed = new KernelSteal[steals.Count];
        for (int i = 0; i < claimed.Length; i++)
        {
            int end = i + 1 < claimed.Length ? steals[i + 1].BlocksBefore : blocks;
            claimed[i] = steals[i] with { BlocksAfter = Math.Max(0, end - steals[i].BlocksBefore) };
        }
        return claimed;
    }

    // A burst no allocation claimed: alloc_pages_bulk took pages from the list (vmalloc's pages). Kmem takes
    // as many order-0 pages, of the burst's zone and migrate type, keyed by the burst's frames.
    public void FinishBulk(int cpu)
    {
        var burst = _bursts[cpu];
        int pages = _vmallocBulk[cpu];
        _vmallocBulk[cpu] = 0;
        _model?.Bulk(cpu, burst.Pfns[0], burst.Order, burst.Mt, burst.Pfns.Count, pages);
        if (burst.Order < 4 && (int)burst.Mt < Kmem.PageAlloc.Zone.PcpTypes)
        {
            _drift?.KernelBulk(cpu, burst.Pfns[0], burst.Order, burst.Pfns.Count, pages);
        }
        if (burst.Order == 0)
        {
            BulkBursts++;
            // With the bulk's size known, the frames it took: the list's, then the burst's first ones; the rest of
            // the burst stays on the list for later allocations. Otherwise the frames wait until the trace reveals
            // them taken (UnknownBulk).
            int zone = TraceZones.ZoneOf(_pa, burst.Pfns[0]).Index;
            if (pages > 0)
            {
                _replayBulk(Contents.TakeBulk(cpu, zone, burst.Mt, pages, burst.Pfns), burst.Mt, pages);
            }
            else
            {
                _unknownBulk.Burst(cpu, zone, burst.Mt, burst.Pfns);
            }
        }
        burst.Close();
    }
}
