// The kernel's side of the per-decision comparison (TraceDecisions keeps the counts): the
// kernel's decisions are read from the events around each one on the same CPU, Kmem's from
// its own allocators through the DecisionRecorder the machine was booted with
// (TraceReplayer.Boot). A burst of zone_locked percpu_refill=1 events no allocation follows
// is the bulk allocator (alloc_pages_bulk, no mm_page_alloc): replayed as order-0 pages.
// Part of TraceReplayer.
namespace Kmem;

public sealed partial class TraceReplayer
{
    /// <summary>Boots a machine whose page allocator and slab layer report their decisions to the replayer
    /// that will drive it, so <see cref="TraceReplayResult.Decisions"/> can set them against the kernel's.</summary>
    /// <param name="options">The machine's options.</param>
    /// <returns>The machine; give it to one <see cref="TraceReplayer"/>, on the thread that booted it.</returns>
    /// <exception cref="MachineOptionException">An option is invalid.</exception>
    public static Machine Boot(MachineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var recorder = new DecisionRecorder();
        return Machine.Boot(options.WithObservers(recorder, recorder));
    }

    private readonly DecisionRecorder? _kmem;

    private readonly TraceDecisions _decisions;

    // The kernel's per-CPU lists as revealed so far: only in aligned mode.
    private readonly PcpListModel? _pcpModel;
    // The kernel's per-CPU lists frame by frame (both modes): which frames a bulk allocation took.
    private PcpContents _contents = null!;
    // Per CPU: the refill burst in progress, a steal not yet claimed by an allocation, a frame the buddy
    // lists gave straight (percpu_refill=0), the page frees whose drains are still being read, a slab free
    // waiting for the next event to say whether its slab went back.
    private RefillBurst[] _bursts = [];
    private (bool Yes, bool Ownership)[] _steal = [];
    private ulong[] _directPfn = [];
    // Per CPU: the pages vmalloc's bulk allocation is about to take (its page array was just allocated), or 0.
    private int[] _vmallocBulk = [];
    private bool _started;
    private readonly HashSet<ulong> _bulkPfns = [];
    private long _bulkBursts, _bulkPages, _unattributedDrains, _batchedOnce;

    private void InitDecisions(int cpus)
    {
        _bursts = new RefillBurst[cpus];
        for (int i = 0; i < cpus; i++)
        {
            _bursts[i] = new RefillBurst();
        }
        _steal = new (bool, bool)[cpus];
        _directPfn = new ulong[cpus];
        _vmallocBulk = new int[cpus];
        _contents = new PcpContents(_m.PageAllocator, cpus);
        Array.Fill(_directPfn, ulong.MaxValue);
    }

    // Runs before each event is dispatched: the kernel's side of decisions the previous events left open.
    private void BeforeEvent(ref TraceEvent e, int cpu)
    {
        var kind = e.Kind;
        if (!_started)
        {
            _started = true;
            if (e.Timestamp == 0 && _options.Aligned)
            {
                _pcpModel!.StartAtBoot();
            }
        }
        if (_decisions.SlabFreeOpen(cpu))
        {
            bool kernel = kind is TraceEventKind.MmPageFree or TraceEventKind.MmPageFreeBatched && _slabPages.ContainsKey(e.Pfn);
            _decisions.CloseSlabFree(cpu, kernel);
        }
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
                    burst.Start(e.Order, e.MigrateType, e.LineNumber, _steal[cpu]);
                    _steal[cpu] = default;
                }
                burst.Pfns.Add(e.Pfn);
                burst.Growing = true;
                break;
            case TraceEventKind.MmPageAllocExtfrag:
                if (burst.Open)
                {
                    burst.Steal = (true, e.ChangeOwnership);
                }
                else
                {
                    _steal[cpu] = (true, e.ChangeOwnership);
                }
                break;
            case TraceEventKind.MmPagePcpuDrain:
                _contents.Drain(e.Pfn);
                if (_decisions.LastFree(cpu) is { } f)
                {
                    if (_options.Aligned)
                    {
                        _pcpModel!.Drain(cpu, e.Pfn, e.Order, e.MigrateType, f.KernelPages, f.Order);
                    }
                    f.KernelPages += 1 << e.Order;
                }
                else
                {
                    _unattributedDrains++;
                    if (_options.Aligned)
                    {
                        _pcpModel!.Drain(cpu, e.Pfn, e.Order, e.MigrateType, -1, 0);
                    }
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
        if (kind is not (TraceEventKind.MmPageAllocZoneLocked or TraceEventKind.MmPageAllocExtfrag))
        {
            burst.Growing = false;
        }
        if (kind is not (TraceEventKind.MmPagePcpuDrain or TraceEventKind.MmPageFreeBatched))
        {
            _decisions.ResolveFrees(cpu);
        }
        if (_vmallocBulk[cpu] > 0 && kind is not (TraceEventKind.MmPageAllocZoneLocked or TraceEventKind.MmPageAllocExtfrag
            or TraceEventKind.MmPageFree or TraceEventKind.MmPageFreeBatched or TraceEventKind.MmPagePcpuDrain
            or TraceEventKind.Kfree or TraceEventKind.KmemCacheFree))
        {
            // No refill burst came: the bulk took every page from the list, or it fell back to single
            // allocations (memcg accounting, watermarks): then this is the first of their mm_page_alloc events,
            // with vmalloc's __GFP_HIGHMEM | __GFP_NOWARN.
            bool single = kind == TraceEventKind.MmPageAlloc && e.Order == 0 && (e.Gfp & (Gfp.HighMem | Gfp.NoWarn)) == (Gfp.HighMem | Gfp.NoWarn);
            if (!single)
            {
                var zone = TraceZones.Highest(_m.PageAllocator, Gfp.Kernel | Gfp.HighMem);
                if (_options.Aligned)
                {
                    _pcpModel!.BulkFromList(cpu, zone, MigrateType.Unmovable, _vmallocBulk[cpu]);
                }
                int zoneIndex = Array.FindIndex(_m.PageAllocator.Zones, z => z.Type == zone);
                ReplayBulk(_contents.TakeBulk(cpu, zoneIndex, MigrateType.Unmovable, _vmallocBulk[cpu], null), MigrateType.Unmovable);
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
    private (sbyte Refill, bool Steal, bool Ownership, int Blocks) KernelPageDecision(ref TraceEvent e, int cpu)
    {
        var burst = _bursts[cpu];
        sbyte refill;
        (bool Yes, bool Ownership) steal;
        int blocks = 0;
        if (burst.Open && burst.Pfns[0] == e.Pfn)
        {
            refill = 1;
            steal = burst.Steal;
            blocks = burst.Pfns.Count;
            _contents.Alloc(cpu, e.Pfn, e.Order, e.MigrateType, burst.Pfns);
            burst.Close();
        }
        else
        {
            refill = (sbyte)(e.Order <= 3 && _directPfn[cpu] != e.Pfn ? 0 : -1);
            steal = _steal[cpu];
            if (refill == 0)
            {
                _contents.Alloc(cpu, e.Pfn, e.Order, e.MigrateType, null);
            }
        }
        _steal[cpu] = default;
        _directPfn[cpu] = ulong.MaxValue;
        return (refill, steal.Yes, steal.Ownership, blocks);
    }

    // A burst no allocation claimed: alloc_pages_bulk took pages from the list (vmalloc's pages). Kmem takes
    // as many order-0 pages, of the burst's zone and migrate type, keyed by the burst's frames.
    private void FinishBulk(int cpu)
    {
        var burst = _bursts[cpu];
        int pages = _vmallocBulk[cpu];
        _vmallocBulk[cpu] = 0;
        if (_options.Aligned)
        {
            _pcpModel!.Bulk(cpu, burst.Pfns[0], burst.Order, burst.Mt, burst.Pfns.Count, pages);
        }
        if (burst.Order == 0)
        {
            _bulkBursts++;
            // With the bulk's size known, the frames it took: the list's, then the burst's first ones; the rest of
            // the burst stays on the list for later allocations. Otherwise every frame of the burst.
            ReplayBulk(pages > 0 ? _contents.TakeBulk(cpu, TraceZones.ZoneOf(_m.PageAllocator, burst.Pfns[0]).Index, burst.Mt, pages, burst.Pfns) : burst.Pfns, burst.Mt);
        }
        burst.Close();
    }

    // The bulk allocator's frames: Kmem takes as many order-0 pages, of each frame's zone and the bulk's migrate
    // type, keyed by the frames (a frame Kmem already holds for the trace is left alone).
    private void ReplayBulk(List<ulong> pfns, MigrateType mt)
    {
        Gfp type = mt switch
        {
            MigrateType.Movable => Gfp.Movable,
            MigrateType.Reclaimable => Gfp.Reclaimable,
            _ => 0,
        };
        foreach (ulong pfn in pfns)
        {
            if (_pages.ContainsKey(pfn) || _slabPages.ContainsKey(pfn))
            {
                continue;
            }
            var page = _m.AllocPages(Gfp.Kernel | Gfp.NoWarn | TraceZones.ZoneModifiers(_m.PageAllocator, pfn) | type, 0);
            if (page.IsNull)
            {
                _kmemFailures++;
                continue;
            }
            _bulkPages++;
            _pages[pfn] = new PageBlock(page, 0, false);
            _bulkPfns.Add(pfn);
        }
    }

    // Kmem's side of a page allocation it just made for the trace's, set against the kernel's.
    private void DecidePageAlloc(in PendingPage p, Page page)
    {
        var k = _kmem!;
        _decisions.UsePhase(p.Phase);
        if (p.KernelRefill >= 0)
        {
            _decisions.Decide(DecisionKind.PcpRefill, p.KernelRefill == 1, k.Refills > 0, p.Line,
                p.ModelBefore >= 0 ? $"order {p.Order}, list held {p.ModelBefore} blocks by the trace" : $"order {p.Order}, list not revealed", -1, -1);
        }
        _decisions.Decide(DecisionKind.Fallback, p.KernelSteal, k.Fallbacks > 0, p.Line, $"order {p.Order}");
        if (p.KernelSteal && k.Fallbacks > 0)
        {
            _decisions.Decide(DecisionKind.FallbackOwnership, p.KernelOwnership, k.Ownership, p.Line);
        }
        var highest = TraceZones.Highest(_m.PageAllocator, p.Gfp);
        var kernelZone = TraceZones.TypeOf(_m.PageAllocator, p.Pfn);
        var kmemZone = _m.PageZone(page);
        _decisions.DecideZone(p.Line, kernelZone, kmemZone, highest);
        _decisions.UseCurrentPhase();
    }
}
