// Per-decision fidelity: for each event where the kernel and Kmem both decided
// something, whether they decided alike. The kernel's decision is read from the
// events around it on the same CPU; Kmem's from its own allocators through the
// DecisionRecorder the machine was booted with (TraceReplayer.Boot).
//   pcp_refill  a page allocation of order <= 3: the kernel refilled when the
//               zone_locked percpu_refill=1 burst just before it starts at its pfn
//               (rmqueue_bulk adds at the tail, the allocation takes the head);
//               allocations straight from the buddy lists (percpu_refill=0) are not
//               pcp decisions. A burst no allocation follows is the bulk allocator
//               (alloc_pages_bulk, no mm_page_alloc): replayed as order-0 pages.
//   pcp_drain   a page free: the kernel drained when mm_page_pcpu_drain events
//               follow it on its CPU (for a list free, its mm_page_free_batched).
//   zone        the zone of Kmem's page against the zone of the kernel's pfn; "yes"
//               is a page below the highest zone the gfp allows.
//   fallback    a page allocation: mm_page_alloc_extfrag since the CPU's last one;
//   fallback_ownership  when both stole: whether the pageblock changed hands.
//   new_slab    a slab allocation: the kernel's slab page recognised for it.
//   slab_freed  a slab free: the next event on the CPU frees one of the kernel's slab frames.
// Kmem's state evolves on its own (free-running). Part of TraceReplayer.
using System.Runtime.InteropServices;

namespace Kmem;

public sealed partial class TraceReplayer
{
    private enum Kind
    {
        PcpRefill,
        PcpDrain,
        Zone,
        Fallback,
        FallbackOwnership,
        NewSlab,
        SlabFreed,
    }

    private static readonly string[] s_decisionNames = ["pcp_refill", "pcp_drain", "zone", "fallback", "fallback_ownership", "new_slab", "slab_freed"];
    private const int Kinds = 7;

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

    // The kernel's per-CPU lists as revealed so far: only in aligned mode.
    private readonly PcpListModel? _pcpModel;
    private readonly List<(string Phase, Tally Tally)> _phases = [("boot", new Tally())];
    private Tally _tally = null!;

    // Per CPU: the refill burst in progress, a steal not yet claimed by an allocation, a frame the buddy
    // lists gave straight (percpu_refill=0), the page frees whose drains are still being read, a slab free
    // waiting for the next event to say whether its slab went back.
    private Burst[] _bursts = [];
    private (bool Yes, bool Ownership)[] _steal = [];
    private ulong[] _directPfn = [];
    private List<FreeDecision>[] _frees = [];
    private int[] _lastFree = [];
    private (bool Open, bool Kmem, long Line)[] _slabFree = [];
    private readonly HashSet<ulong> _bulkPfns = [];
    private long _bulkBursts, _bulkPages, _unattributedDrains, _batchedOnce;

    private void InitDecisions(int cpus)
    {
        _tally = _phases[0].Tally;
        _bursts = new Burst[cpus];
        for (int i = 0; i < cpus; i++)
        {
            _bursts[i] = new Burst();
        }
        _steal = new (bool, bool)[cpus];
        _directPfn = new ulong[cpus];
        Array.Fill(_directPfn, ulong.MaxValue);
        _frees = new List<FreeDecision>[cpus];
        for (int i = 0; i < cpus; i++)
        {
            _frees[i] = [];
        }
        _lastFree = new int[cpus];
        Array.Fill(_lastFree, -1);
        _slabFree = new (bool, bool, long)[cpus];
    }

    private void Decide(Kind kind, bool kernel, bool kmem, long line, string? detail = null, int kernelAmount = -1, int kmemAmount = -1)
    {
        _tally.Add(kind, kernel, kmem, kernelAmount, kmemAmount);
        if (kernel != kmem && _tally.Mismatches[(int)kind].Count < _options.Mismatches)
        {
            _tally.Mismatches[(int)kind].Add(new TraceMismatch(line, kernel, kmem, detail ?? ""));
        }
    }

    // Runs before each event is dispatched: the kernel's side of decisions the previous events left open.
    private void BeforeEvent(ref TraceEvent e, int cpu)
    {
        var kind = e.Kind;
        ref var sf = ref _slabFree[cpu];
        if (sf.Open)
        {
            sf.Open = false;
            bool kernel = kind is TraceEventKind.MmPageFree or TraceEventKind.MmPageFreeBatched && _slabPages.ContainsKey(e.Pfn);
            Decide(Kind.SlabFreed, kernel, sf.Kmem, sf.Line);
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
                if (_lastFree[cpu] >= 0)
                {
                    var f = _frees[cpu][_lastFree[cpu]];
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
                break;
            case TraceEventKind.Marker:
                if (e.Text is { } text && text.StartsWith("PHASE ", StringComparison.Ordinal))
                {
                    _tally = new Tally();
                    _phases.Add((text[6..].Trim(), _tally));
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
            ResolveFrees(cpu);
        }
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
            burst.Close();
        }
        else
        {
            refill = (sbyte)(e.Order <= 3 && _directPfn[cpu] != e.Pfn ? 0 : -1);
            steal = _steal[cpu];
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
        if (_options.Aligned)
        {
            _pcpModel!.Bulk(cpu, burst.Pfns[0], burst.Order, burst.Mt);
        }
        if (burst.Order == 0)
        {
            _bulkBursts++;
            Gfp gfp = Gfp.Kernel | Gfp.NoWarn | ZoneGfp(burst.Pfns[0]) | (burst.Mt switch
            {
                MigrateType.Movable => Gfp.Movable,
                MigrateType.Reclaimable => Gfp.Reclaimable,
                _ => 0,
            });
            foreach (ulong pfn in burst.Pfns)
            {
                if (_pages.ContainsKey(pfn) || _slabPages.ContainsKey(pfn))
                {
                    continue;
                }
                var page = _m.AllocPages(gfp, 0);
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
        burst.Close();
    }

    private Gfp ZoneGfp(ulong tracePfn) => TraceZone(tracePfn) switch
    {
        ZoneType.Dma => Gfp.Dma,
        ZoneType.Dma32 => Gfp.Dma32,
        ZoneType.HighMem or ZoneType.Movable => Gfp.HighMem | Gfp.Movable,
        _ => 0,
    };

    // The zone the trace's frame lies in, by Kmem's zone spans (the same memory map as the kernel's).
    private ZoneType TraceZone(ulong tracePfn)
    {
        var zones = _m.PageAllocator.Zones;
        foreach (var z in zones)
        {
            if (z.IsPopulated && tracePfn >= z.StartPfn && tracePfn < z.EndPfn)
            {
                return z.Type;
            }
        }
        ZoneType last = ZoneType.Normal;
        foreach (var z in zones)
        {
            if (z.IsPopulated && tracePfn >= z.EndPfn)
            {
                last = z.Type;
            }
        }
        return last;
    }

    // The highest populated zone a gfp allows (gfp_zone, then the zonelist's first populated zone).
    private ZoneType HighestZone(Gfp gfp)
    {
        ZoneType want = (gfp & Gfp.Dma) != 0 ? ZoneType.Dma
            : (gfp & Gfp.Dma32) != 0 ? ZoneType.Dma32
            : (gfp & Gfp.HighMem) != 0 ? ((gfp & Gfp.Movable) != 0 ? ZoneType.Movable : ZoneType.HighMem)
            : ZoneType.Normal;
        ZoneType best = ZoneType.Dma;
        foreach (var z in _m.PageAllocator.Zones)
        {
            if (z.IsManaged && z.Type <= want && z.Type >= best)
            {
                best = z.Type;
            }
        }
        return best;
    }

    // Kmem's side of a page allocation it just made for the trace's, set against the kernel's.
    private void DecidePageAlloc(in PendingPage p, Page page)
    {
        var k = _kmem!;
        if (p.KernelRefill >= 0)
        {
            Decide(Kind.PcpRefill, p.KernelRefill == 1, k.Refills > 0, p.Line, $"order {p.Order}", -1, -1);
        }
        Decide(Kind.Fallback, p.KernelSteal, k.Fallbacks > 0, p.Line, $"order {p.Order}");
        if (p.KernelSteal && k.Fallbacks > 0)
        {
            Decide(Kind.FallbackOwnership, p.KernelOwnership, k.Ownership, p.Line);
        }
        var highest = HighestZone(p.Gfp);
        var kernelZone = TraceZone(p.Pfn);
        var kmemZone = _m.PageZone(page);
        _tally.Add(Kind.Zone, kernelZone < highest, kmemZone < highest, -1, -1, kernelZone == kmemZone);
        if (kernelZone != kmemZone && _tally.Mismatches[(int)Kind.Zone].Count < _options.Mismatches)
        {
            _tally.Mismatches[(int)Kind.Zone].Add(new TraceMismatch(p.Line, kernelZone < highest, kmemZone < highest, $"kernel {kernelZone}, Kmem {kmemZone}"));
        }
    }

    // A page free: the kernel's drains are read from the events that follow; Kmem's outcome is known now.
    private void OpenFree(int cpu, ulong pfn, int order, long line, bool kmemFreed, int kmemDrained)
    {
        var list = _frees[cpu];
        list.Add(new FreeDecision(pfn, order, line, kmemFreed, kmemDrained));
        _lastFree[cpu] = list.Count - 1;
    }

    private void ResolveFrees(int cpu)
    {
        var list = _frees[cpu];
        _lastFree[cpu] = -1;
        if (list.Count == 0)
        {
            return;
        }
        foreach (var f in CollectionsMarshal.AsSpan(list))
        {
            if (f.KmemFreed)
            {
                Decide(Kind.PcpDrain, f.KernelPages > 0, f.KmemDrained > 0, f.Line,
                    $"kernel drained {f.KernelPages} pages, Kmem {f.KmemDrained}", f.KernelPages, f.KmemDrained);
            }
        }
        list.Clear();
    }

    private SortedDictionary<string, TraceDecision> DecisionsOf(IEnumerable<Tally> tallies)
    {
        var sum = new Tally();
        foreach (var t in tallies)
        {
            sum.AddAll(t);
        }
        var d = new SortedDictionary<string, TraceDecision>(StringComparer.Ordinal);
        for (int k = 0; k < Kinds; k++)
        {
            d[s_decisionNames[k]] = new TraceDecision(sum.Compared[k], sum.Matched[k], sum.KernelYes[k], sum.KmemYes[k],
                sum.BothYes[k], sum.AmountCompared[k], sum.AmountEqual[k], [.. sum.Mismatches[k].Take(_options.Mismatches)]);
        }
        return d;
    }

    private void FinishDecisions()
    {
        for (int cpu = 0; cpu < _frees.Length; cpu++)
        {
            ResolveFrees(cpu);
            if (_slabFree[cpu].Open)
            {
                _slabFree[cpu].Open = false;
                Decide(Kind.SlabFreed, false, _slabFree[cpu].Kmem, _slabFree[cpu].Line);
            }
        }
    }

    /// <summary>Decision counts of one phase.</summary>
    private sealed class Tally
    {
        public readonly long[] Compared = new long[Kinds], Matched = new long[Kinds], KernelYes = new long[Kinds],
            KmemYes = new long[Kinds], BothYes = new long[Kinds], AmountCompared = new long[Kinds], AmountEqual = new long[Kinds];
        public readonly List<TraceMismatch>[] Mismatches = [.. Enumerable.Range(0, Kinds).Select(_ => new List<TraceMismatch>())];

        public void Add(Kind kind, bool kernel, bool kmem, int kernelAmount, int kmemAmount, bool? matched = null)
        {
            int k = (int)kind;
            Compared[k]++;
            if (matched ?? kernel == kmem)
            {
                Matched[k]++;
            }
            KernelYes[k] += kernel ? 1 : 0;
            KmemYes[k] += kmem ? 1 : 0;
            if (kernel && kmem)
            {
                BothYes[k]++;
                if (kernelAmount >= 0 && kmemAmount >= 0)
                {
                    AmountCompared[k]++;
                    AmountEqual[k] += kernelAmount == kmemAmount ? 1 : 0;
                }
            }
        }

        public void AddAll(Tally t)
        {
            for (int k = 0; k < Kinds; k++)
            {
                Compared[k] += t.Compared[k];
                Matched[k] += t.Matched[k];
                KernelYes[k] += t.KernelYes[k];
                KmemYes[k] += t.KmemYes[k];
                BothYes[k] += t.BothYes[k];
                AmountCompared[k] += t.AmountCompared[k];
                AmountEqual[k] += t.AmountEqual[k];
                Mismatches[k].AddRange(t.Mismatches[k]);
            }
        }
    }

    /// <summary>A run of zone_locked percpu_refill=1 events on one CPU: one rmqueue_bulk.</summary>
    private sealed class Burst
    {
        public readonly List<ulong> Pfns = [];
        public int Order;
        public MigrateType Mt;
        public long Line;
        public bool Growing;
        public (bool Yes, bool Ownership) Steal;

        public bool Open => Pfns.Count > 0;

        public void Start(int order, MigrateType mt, long line, (bool, bool) steal)
        {
            Pfns.Clear();
            Order = order;
            Mt = mt;
            Line = line;
            Steal = steal;
        }

        public void Close()
        {
            Pfns.Clear();
            Growing = false;
            Steal = default;
        }
    }

    /// <summary>A page free whose kernel drains are still being read.</summary>
    private sealed class FreeDecision(ulong pfn, int order, long line, bool kmemFreed, int kmemDrained)
    {
        public ulong Pfn { get; } = pfn;
        public int Order { get; } = order;
        public long Line { get; } = line;
        public bool KmemFreed { get; } = kmemFreed;
        public int KmemDrained { get; } = kmemDrained;
        public int KernelPages { get; set; }
    }
}
