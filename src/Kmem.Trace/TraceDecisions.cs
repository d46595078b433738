// Per-decision fidelity: for each event where the kernel and Kmem both decided
// something, whether they decided alike. The kernel's decision is read from the
// events around it on the same CPU; Kmem's from its own allocators through the
// DecisionRecorder the machine was booted with (TraceReplayer.Boot).
//   pcp_refill  a page allocation of order <= 3: the kernel refilled when the
//               zone_locked percpu_refill=1 burst just before it starts at its pfn
//               (rmqueue_bulk adds at the tail, the allocation takes the head);
//               allocations straight from the buddy lists (percpu_refill=0) are not
//               pcp decisions. The bulk allocator (alloc_pages_bulk, no mm_page_alloc)
//               is no decision: KernelPageEvents replays its frames.
//   pcp_drain   a page free: the kernel drained when mm_page_pcpu_drain events
//               follow it on its CPU (for a list free, its mm_page_free_batched).
//   zone        the zone of Kmem's page against the zone of the kernel's pfn; "yes"
//               is a page below the highest zone the gfp allows.
//   fallback    a page allocation: mm_page_alloc_extfrag since the CPU's last one;
//   fallback_ownership  when both stole: whether the pageblock changed hands.
//   new_slab    a slab allocation: the kernel's slab page recognised for it.
//   slab_freed  a slab free: the next event on the CPU frees one of the kernel's slab frames. Not
//               compared (counted as unknown_state) when the object's kernel slab is no frame the trace
//               showed allocated: that slab predates the trace and may hold objects allocated before
//               tracing began, whose number no event has revealed.
//   kswapd_wake, direct_reclaim, compaction, oom_victim  the pressure kinds, decided at user pages by
//               Pressure/PressureReplay.cs; listed only where compared.
// Free-running, Kmem's state evolves on its own; aligned (PcpListModel, TraceReplayer.SlabAlign),
// it is corrected after each event to what the trace revealed. Here: the counts per kind and phase, the
// first mismatches, the page frees and slab frees whose kernel side is still being read;
// TraceReplayer reads the events and makes the calls. Used on the replaying thread only.
using System.Runtime.InteropServices;

namespace Kmem;

/// <summary>The decisions compared so far, per kind and per phase of the trace.</summary>
internal sealed class TraceDecisions
{
    private static readonly string[] s_names = ["pcp_refill", "pcp_drain", "zone", "fallback", "fallback_ownership", "new_slab", "slab_freed",
        "kswapd_wake", "direct_reclaim", "compaction", "oom_victim"];
    private const int Kinds = 11;
    // The pressure kinds (Pressure/PressureReplay.cs) are listed only when compared: a trace without pressure shows none.
    private const int FirstPressureKind = (int)DecisionKind.KswapdWake;

    // SLOB has no slab per cache (its pages hold objects of every size class), so its replay compares no slab
    // kind: the kernel's new slab of a SLUB cache has no counterpart in SLOB's decisions.
    private readonly bool _slabKinds;

    private readonly int _mismatches;
    private readonly List<(string Phase, Tally Tally)> _phases = [("boot", new Tally())];
    private Tally _tally;

    // Per CPU: the page frees whose drains are still being read (the last one takes the drains that
    // follow), a slab free waiting for the next event to say whether its slab went back.
    private readonly List<FreeDecision>[] _frees;
    private readonly int[] _lastFree;
    private readonly (bool Open, bool Kmem, long Line, SlabFreeState State)[] _slabFree;

    public TraceDecisions(int cpus, int mismatches, bool slabKinds)
    {
        _mismatches = mismatches;
        _slabKinds = slabKinds;
        _tally = _phases[0].Tally;
        _frees = new List<FreeDecision>[cpus];
        for (int i = 0; i < cpus; i++)
        {
            _frees[i] = [];
        }
        _lastFree = new int[cpus];
        Array.Fill(_lastFree, -1);
        _slabFree = new (bool, bool, long, SlabFreeState)[cpus];
    }

    /// <summary>Every decision of every phase, by kind.</summary>
    public SortedDictionary<string, TraceDecision> Total => Of(_phases.Select(p => p.Tally));

    /// <summary>The decisions of each phase, in the trace's order.</summary>
    public List<TraceDecisionPhase> ByPhase => [.. _phases.Select(p => new TraceDecisionPhase(p.Phase, Of([p.Tally])))];

    public void Decide(DecisionKind kind, bool kernel, bool kmem, long line, string? detail = null, int kernelAmount = -1, int kmemAmount = -1) =>
        Decide(kind, kernel, kmem, line, detail ?? "", static d => d, kernelAmount, kmemAmount);

    // The detail of a mismatch is made from state only when the mismatch is kept: most decisions match and the
    // list is bounded, while decisions come with every page allocation.
    public void Decide<TState>(DecisionKind kind, bool kernel, bool kmem, long line, TState state, Func<TState, string> detail,
        int kernelAmount = -1, int kmemAmount = -1)
    {
        if (!_slabKinds && kind is DecisionKind.NewSlab or DecisionKind.SlabFreed)
        {
            return;
        }
        _tally.Add(kind, kernel, kmem, kernelAmount, kmemAmount);
        if (kernel != kmem && _tally.Mismatches[(int)kind].Count < _mismatches)
        {
            _tally.Mismatches[(int)kind].Add(new TraceMismatch(line, kernel, kmem, detail(state)));
        }
    }

    // The zone: "yes" is a page below the highest zone the gfp allows; matched is the same zone.
    public void DecideZone(long line, ZoneType kernelZone, ZoneType kmemZone, ZoneType highest)
    {
        _tally.Add(DecisionKind.Zone, kernelZone < highest, kmemZone < highest, -1, -1, kernelZone == kmemZone);
        if (kernelZone != kmemZone && _tally.Mismatches[(int)DecisionKind.Zone].Count < _mismatches)
        {
            _tally.Mismatches[(int)DecisionKind.Zone].Add(new TraceMismatch(line, kernelZone < highest, kmemZone < highest, $"kernel {kernelZone}, Kmem {kmemZone}"));
        }
    }

    /// <summary>The phase decisions made now count for (0: boot).</summary>
    public int Phase => _phases.Count - 1;

    // A decision held back (a page allocation pending until its slab question is settled) counts for the phase
    // of its event: UsePhase before it, UseCurrentPhase after.
    public void UsePhase(int phase) => _tally = _phases[phase].Tally;

    public void UseCurrentPhase() => _tally = _phases[^1].Tally;

    // A "PHASE name" marker: the decisions that follow count for that phase.
    public void StartPhase(string name)
    {
        _tally = new Tally();
        _phases.Add((name, _tally));
    }

    /// <summary>The CPU's last page free still taking drains, if any.</summary>
    public FreeDecision? LastFree(int cpu) => _lastFree[cpu] >= 0 ? _frees[cpu][_lastFree[cpu]] : null;

    // A slab free: the kernel's answer is the next event on this CPU.
    // state: what the replay read at the free (SlabFreeState), the detail of a mismatch.
    public void OpenSlabFree(int cpu, bool kmemFreed, long line, SlabFreeState state = default) => _slabFree[cpu] = (true, kmemFreed, line, state);

    // A slab free not compared: the kernel's slab predates the trace, its occupancy unknown.
    public void SlabFreeUnknown() => _tally.Unknown[(int)DecisionKind.SlabFreed]++;

    public bool SlabFreeOpen(int cpu) => _slabFree[cpu].Open;

    public void CloseSlabFree(int cpu, bool kernel)
    {
        ref var sf = ref _slabFree[cpu];
        sf.Open = false;
        Decide(DecisionKind.SlabFreed, kernel, sf.Kmem, sf.Line, sf.State, static st => st.ToString());
    }

    // A page free: the kernel's drains are read from the events that follow; Kmem's outcome is known now.
    // Aligned, countRevealed says whether the CPU's count before the free was the model's (null: not aligned).
    public void OpenFree(int cpu, ulong pfn, int order, long line, bool kmemFreed, int kmemDrained, bool? countRevealed = null)
    {
        var list = _frees[cpu];
        list.Add(new FreeDecision(pfn, order, line, kmemFreed, kmemDrained, countRevealed));
        _lastFree[cpu] = list.Count - 1;
    }

    public void ResolveFrees(int cpu)
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
                Decide(DecisionKind.PcpDrain, f.KernelPages > 0, f.KmemDrained > 0, f.Line,
                    $"kernel drained {f.KernelPages} pages, Kmem {f.KmemDrained}" + f.CountRevealed switch
                    {
                        true => "; count revealed",
                        false => "; count not revealed",
                        null => "",
                    }, f.KernelPages, f.KmemDrained);
            }
        }
        list.Clear();
    }

    private SortedDictionary<string, TraceDecision> Of(IEnumerable<Tally> tallies)
    {
        var sum = new Tally();
        foreach (var t in tallies)
        {
            sum.AddAll(t);
        }
        var d = new SortedDictionary<string, TraceDecision>(StringComparer.Ordinal);
        for (int k = 0; k < Kinds; k++)
        {
            if ((k >= FirstPressureKind || !_slabKinds && k is (int)DecisionKind.NewSlab or (int)DecisionKind.SlabFreed) && sum.Compared[k] == 0)
            {
                continue;
            }
            d[s_names[k]] = new TraceDecision(sum.Compared[k], sum.Matched[k], sum.KernelYes[k], sum.KmemYes[k],
                sum.BothYes[k], sum.AmountCompared[k], sum.AmountEqual[k], [.. sum.Mismatches[k].Take(_mismatches)]) { UnknownState = sum.Unknown[k] };
        }
        return d;
    }

    public void Finish()
    {
        for (int cpu = 0; cpu < _frees.Length; cpu++)
        {
            ResolveFrees(cpu);
            if (_slabFree[cpu].Open)
            {
                CloseSlabFree(cpu, false);
            }
        }
    }

    /// <summary>Decision counts of one phase.</summary>
    public sealed class Tally
    {
        public readonly long[] Compared = new long[Kinds], Matched = new long[Kinds], KernelYes = new long[Kinds],
            KmemYes = new long[Kinds], BothYes = new long[Kinds], AmountCompared = new long[Kinds], AmountEqual = new long[Kinds],
            Unknown = new long[Kinds];
        public readonly List<TraceMismatch>[] Mismatches = [.. Enumerable.Range(0, Kinds).Select(_ => new List<TraceMismatch>())];

        public void Add(DecisionKind kind, bool kernel, bool kmem, int kernelAmount, int kmemAmount, bool? matched = null)
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
                Unknown[k] += t.Unknown[k];
                Mismatches[k].AddRange(t.Mismatches[k]);
            }
        }
    }

    /// <summary>A page free whose kernel drains are still being read.</summary>
    public sealed class FreeDecision(ulong pfn, int order, long line, bool kmemFreed, int kmemDrained, bool? countRevealed)
    {
        public bool? CountRevealed { get; } = countRevealed;
        public ulong Pfn { get; } = pfn;
        public int Order { get; } = order;
        public long Line { get; } = line;
        public bool KmemFreed { get; } = kmemFreed;
        public int KmemDrained { get; } = kmemDrained;
        public int KernelPages { get; set; }
    }
}

/// <summary>The decisions compared, in the order of their names.</summary>
internal enum DecisionKind
{
    PcpRefill,
    PcpDrain,
    Zone,
    Fallback,
    FallbackOwnership,
    NewSlab,
    SlabFreed,
    KswapdWake,
    DirectReclaim,
    Compaction,
    OomVictim,
}
