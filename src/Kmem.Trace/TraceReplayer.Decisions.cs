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
    // Free-running only: how far Kmem's per-CPU counts stray from the kernel's, and why.
    private PcpDrift? _drift;
    // The kernel's side of the page decisions and the bulk allocator's frames.
    private KernelPageEvents _kernel = null!;
    private readonly HashSet<ulong> _bulkPfns = [];
    // Per zone: pages Kmem took for bulk allocations beyond the frames the trace revealed (ReplayBulk).
    private Stack<Page>[] _bulkUnkeyed = [];
    private long _bulkPages, _batchedOnce;
    // Aligned: Kmem's buddy lists corrected after the kernel's steals.
    private StealAlignment? _steals;

    private void InitDecisions(int cpus)
    {
        _bulkUnkeyed = [.. _m.PageAllocator.Zones.Select(_ => new Stack<Page>())];
        var kswapd = new TracedKswapd();
        _pcpModel = _options.Aligned ? new PcpListModel(_m.PageAllocator, cpus, kswapd) : null;
        if (!_options.Aligned && _kmem is not null)
        {
            _drift = new PcpDrift(_m.PageAllocator, cpus, _decisions);
            _kmem.Drift = _drift;
            // SLOB keeps no slab per cache (it reports none): nothing a token could stand in for.
            _preTrace = _m.Options.Slab != SlabAllocator.Slob ? new PreTraceSlabs(_m, _kmem) : null;
        }
        _kernel = new KernelPageEvents(_m.PageAllocator, cpus, _decisions, _pcpModel, kswapd, ReplayBulk, _drift);
        _steals = _options.Aligned && _kmem is not null ? new StealAlignment(_m.PageAllocator) : null;
    }

    // The trace's second of the last vmstat_update.
    private long _vmstatSecond = -1;

    // Runs before each event is dispatched: vmstat_update at each new second of the trace's clock, a slab free's
    // kernel answer (this event frees its slab's frame or not), then the page events' kernel side.
    private void BeforeEvent(ref TraceEvent e, int cpu)
    {
        long second = e.Timestamp / 1_000_000;
        if (second != _vmstatSecond)
        {
            // vmstat_update: each CPU folds its counter diffs every stat_interval (a second, rounded to whole ones).
            _vmstatSecond = second;
            Kmem.PageAlloc.Vmstat.Refresh(_m.PageAllocator.Zones);
        }
        if (_decisions.SlabFreeOpen(cpu))
        {
            bool kernel = e.Kind is TraceEventKind.MmPageFree or TraceEventKind.MmPageFreeBatched && _slabPages.ContainsKey(e.Pfn);
            _decisions.CloseSlabFree(cpu, kernel);
        }
        _kernel.BeforeEvent(ref e, cpu);
    }

    // The bulk allocator's frames: Kmem takes as many order-0 pages, of each frame's zone and the bulk's migrate
    // type, keyed by the frames (a frame Kmem already holds for the trace is left alone). A bulk of known size
    // (`pages`, vmalloc's page array) that took more pages than the frames the trace revealed on the list (a list
    // whose frames it does not know) takes the rest too, unkeyed, from the zone vmalloc asks for: alloc_pages_bulk
    // took them from the list all the same. They wait in _bulkUnkeyed until the kernel frees a frame the replay
    // never saw allocated (of that zone, order 0): that free is one of them (or a page allocated before tracing,
    // which no event can tell apart), and Kmem frees one of its own there, as the kernel did.
    private void ReplayBulk(List<ulong> pfns, MigrateType mt, int pages)
    {
        using var drift = new DriftScope(_drift, DriftClass.Bulk);
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
            var page = _m.AllocPages(ReplayGfp.Bulk | TraceZones.ZoneModifiers(_m.PageAllocator, pfn) | type, 0);
            if (page.IsNull)
            {
                _kmemFailures++;
                continue;
            }
            _bulkPages++;
            _pages[pfn] = new PageBlock(page, 0, false);
            _bulkPfns.Add(pfn);
        }
        for (int i = pfns.Count; i < pages; i++)
        {
            var page = _m.AllocPages(ReplayGfp.Bulk | Gfp.HighMem | type, 0);
            if (page.IsNull)
            {
                _kmemFailures++;
                continue;
            }
            _bulkPages++;
            int zone = _m.PageAllocator.ZoneOf(page.RawPfn).Index;
            _bulkUnkeyed[zone].Push(page);
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
        _decisions.Decide(DecisionKind.Fallback, p.KernelSteal, k.Fallbacks > 0, p.Line, (p.Order, k.Fallbacks > 0 ? k.LastSteal : default, _m.PageAllocator), StealAlignment.Detail);
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

    // Aligned: after Kmem's decision for an allocation the kernel stole for, Kmem's buddy lists put where the steal
    // left the kernel's. kmemStole: DecisionRecorder.StealTypes of Kmem's allocation (the recorder's when not given).
    private void AlignKernelSteals(KernelSteal[]? steals, ulong? kmemStole = null) => _steals?.Align(steals, kmemStole ?? _kmem!.StealTypes);

    // The objects the trace showed allocated and not yet freed in the kernel's slab holding the trace address.
    private int KernelSlabLive(ulong ptr) => _held.Base is ulong b ? SlabFreeState.KernelSlabLive(_livePages, _slabPages, b, ptr) : -1;
}
