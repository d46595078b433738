// The per-decision comparison (TraceDecisions keeps the counts): the kernel's decisions are
// read from the events around each one on the same CPU (KernelPageEvents for the page
// events), Kmem's from its own allocators through the DecisionRecorder the machine was
// booted with (TraceReplayer.Boot). The bulk allocator's frames are replayed as order-0 pages.
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
    private PcpListModel? _pcpModel;
    // The kernel's side of the page decisions and the bulk allocator's frames.
    private KernelPageEvents _kernel = null!;
    private readonly HashSet<ulong> _bulkPfns = [];
    private long _bulkPages, _batchedOnce;
    // Aligned: kernel steals Kmem's buddy lists were corrected after (AlignKernelSteals), and those that found no
    // block of a fallback type to steal.
    private long _stealsAligned, _stealsNotAligned;
    // Per zone and type: the blocks the last alignment took off the type's lists for the kernel's allocation (Zone.AlignSteal).
    private readonly List<(uint Pfn, int Order)>?[] _stealStandIns = new List<(uint, int)>?[8 * Kmem.PageAlloc.Zone.PcpTypes];

    private void InitDecisions(int cpus)
    {
        if (_options.Aligned)
        {
            _pcpModel = new PcpListModel(_m.PageAllocator, cpus);
        }
        _kernel = new KernelPageEvents(_m.PageAllocator, cpus, _decisions, _pcpModel, ReplayBulk);
    }

    // Runs before each event is dispatched: a slab free's kernel answer (this event frees its slab's frame or not),
    // then the page events' kernel side.
    private void BeforeEvent(ref TraceEvent e, int cpu)
    {
        if (_decisions.SlabFreeOpen(cpu))
        {
            bool kernel = e.Kind is TraceEventKind.MmPageFree or TraceEventKind.MmPageFreeBatched && _slabPages.ContainsKey(e.Pfn);
            _decisions.CloseSlabFree(cpu, kernel);
        }
        _kernel.BeforeEvent(ref e, cpu);
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
            _decisions.Decide(DecisionKind.PcpRefill, p.KernelRefill == 1, k.Refills > 0, p.Line, (p.Order, p.ModelBefore),
                static s => s.ModelBefore >= 0 ? $"order {s.Order}, list held {s.ModelBefore} blocks by the trace" : $"order {s.Order}, list not revealed");
        }
        _decisions.Decide(DecisionKind.Fallback, p.KernelSteal, k.Fallbacks > 0, p.Line, (p.Order, Steal: k.Fallbacks > 0 ? k.LastSteal : default,
            Zones: _m.PageAllocator.Zones), static s => s.Steal.FallbackOrder == 0 && s.Steal.Mt == 0 && s.Steal.FallbackMt == 0 ? $"order {s.Order}"
                : $"order {s.Order}; Kmem's steal: {s.Zones[s.Steal.Zone].Name} {(MigrateType)s.Steal.Mt} from {(MigrateType)s.Steal.FallbackMt}, block order {s.Steal.FallbackOrder}");
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

    // Aligned: after Kmem's decision for an allocation the kernel stole for, Kmem's buddy lists of that zone and type
    // are put where the kernel's steal left them (Zone.AlignSteal), unless Kmem stole for the same zone and type
    // itself (its lists were empty too, and its steal is its own). A Kmem-only steal is not corrected: the kernel's
    // zone_locked at that allocation says only that its lists held a block, not how many pages.
    // kmemStole: DecisionRecorder.StealTypes of Kmem's allocation (read from the recorder when not given).
    private void AlignKernelSteals(KernelSteal[]? steals, ulong? kmemStole = null)
    {
        if (!_options.Aligned || steals is null || _kmem is not { } k)
        {
            return;
        }
        ulong stole = kmemStole ?? k.StealTypes;
        foreach (var s in steals)
        {
            if ((int)s.Mt >= Kmem.PageAlloc.Zone.PcpTypes || (int)s.FallbackMt >= Kmem.PageAlloc.Zone.PcpTypes)
            {
                continue;
            }
            var zone = TraceZones.ZoneOf(_m.PageAllocator, s.Pfn);
            if ((stole & (1UL << (zone.Index * 8 + (int)s.Mt))) != 0)
            {
                continue;
            }
            _stealsAligned++;
            var standIns = _stealStandIns[zone.Index * Kmem.PageAlloc.Zone.PcpTypes + (int)s.Mt] ??= [];
            if (!zone.AlignSteal(s.Order, s.FallbackOrder, (int)s.Mt, (int)s.FallbackMt, s.Ownership, s.BlocksAfter, standIns))
            {
                _stealsNotAligned++;
            }
        }
    }

    // The objects the trace showed allocated and not yet freed in the kernel's slab holding the trace address (its
    // frame from _slabPages); -1 when the frame is not known. A scan of the live objects: run only where Kmem gave its
    // slab back, a few hundred frees in a trace.
    private int KernelSlabLive(ulong ptr)
    {
        if (!_baseKnown)
        {
            return -1;
        }
        ulong pfn = (ptr - _base) >> 12;
        for (int k = 0; k < Machine.MaxOrder; k++)
        {
            ulong head = pfn & ~((1UL << k) - 1);
            if (_slabPages.TryGetValue(head, out int order) && order >= k)
            {
                ulong start = _base + (head << 12), size = 4096UL << order;
                int live = 0;
                foreach (ulong p in _objects.Keys)
                {
                    live += p - start < size ? 1 : 0;
                }
                return live;
            }
        }
        return -1;
    }
}
