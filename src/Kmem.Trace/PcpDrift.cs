// How far Kmem's per-CPU page counts stray from the kernel's in a free-running replay, and
// which events move them apart (mm/page_alloc.c's pcp->count, per CPU and zone). The kernel's
// count is rebuilt from its events: a trace recorded from boot starts with empty lists; an
// allocation of order <= 3 from the list takes its pages (a refill burst adds its blocks
// first), a free of order <= 3 adds them (free_unref_page_commit), each mm_page_pcpu_drain
// takes its block, and the bulk allocator (alloc_pages_bulk, no mm_page_alloc) takes the
// pages vmalloc's page array announced (of unknown size: the count is unknown until the next
// reveal). A drain reveals the count: free_unref_page_commit drained because the count reached
// high (an order-0 free: exactly high before the drain, high less what it drained after), or,
// for a high-order free after one without an allocation between (free_high, the model's
// free_factor), nr_pcp_free drained the whole count (0 after). The revealed count is set
// against Kmem's once the free's drains are read; what the events did not account for lands in
// the "unseen" class. Kmem's count is read from its own lists at each change of class (the
// replayer says which kind of call it is making), less the pages Kmem's own refills added and
// its drains took, which are classes of their own: so each class's pages say how much of the
// difference Kmem − kernel its events made. Owned by TraceReplayer; replaying thread only.
namespace Kmem;

/// <summary>What moved a per-CPU count: the replay's call or the trace's event that did.</summary>
internal enum DriftClass
{
    /// <summary>Everything not named below (reclaim and compaction the pressure replay drives, markers).</summary>
    Other,
    /// <summary>Page allocations and frees the replay mirrors on Kmem's page allocator.</summary>
    Page,
    /// <summary>Slab pages: the kernel's (mm_page_alloc/free of a slab frame) and those of Kmem's own slab layer.</summary>
    SlabPage,
    /// <summary>User pages (Kmem's tasks: the pressure replay).</summary>
    User,
    /// <summary>User page tables: the kernel's (GFP_PGTABLE_USER frames, which Kmem's tasks take over) and those
    /// Kmem's tasks allocate themselves.</summary>
    PageTable,
    /// <summary>Frees of frames the trace never showed allocated (the kernel put them on its list; Kmem, free-running,
    /// a stand-in: TraceReplayer.FreeStandIn).</summary>
    Untracked,
    /// <summary>Frees of frames the boot reserve gave Kmem back (ReservedRelease).</summary>
    Reserved,
    /// <summary>The bulk allocator's pages.</summary>
    Bulk,
    /// <summary>The per-CPU allocator's chunk pages (Kmem's own).</summary>
    Percpu,
    /// <summary>Refills (rmqueue_bulk), each side's own.</summary>
    Refill,
    /// <summary>Drains (free_pcppages_bulk), each side's own.</summary>
    Drain,
    /// <summary>Kernel pages no event showed, found at a reveal (the count the events gave was off by that much).</summary>
    Unseen,
    /// <summary>The counts when the trace starts (a trace from boot: the kernel's lists are empty).</summary>
    Start,
}

/// <summary>The drift of Kmem's per-CPU counts from the kernel's, by phase and by what caused it.</summary>
internal sealed class PcpDrift
{
    public const int Classes = (int)DriftClass.Start + 1;

    private readonly Kmem.PageAlloc.PageAllocator _pa;
    private readonly TraceDecisions _decisions;
    private readonly int _zones;
    // Per (cpu, zone): Kmem's list (a zone's pagesets are made at boot and kept), read at every change of class.
    private readonly Kmem.PageAlloc.PerCpuPages[] _pcp;
    // Per (cpu, zone): Kmem's count at the last reading, and the pages its own refills added and drains took since.
    private readonly int[] _kmem, _kmemRefill, _kmemDrain;
    // Per (cpu, zone): the kernel's count by its events (-1 unknown); a drain revealed it and the reveal awaits the
    // free's last drain; that free was a free_high one (nr_pcp_free drained everything).
    private readonly int[] _kernel;
    private readonly bool[] _reveal, _freeHigh;
    // Per (cpu, zone): the kernel's free_factor (halved by each allocation from the list, raised by nr_pcp_free).
    private readonly int[] _ff;
    private DriftClass _class;
    private readonly List<Tally> _phases = [new Tally()];

    public PcpDrift(Kmem.PageAlloc.PageAllocator pa, int cpus, TraceDecisions decisions)
    {
        _pa = pa;
        _decisions = decisions;
        _zones = pa.Zones.Length;
        int n = cpus * _zones;
        _kmem = new int[n];
        _kmemRefill = new int[n];
        _kmemDrain = new int[n];
        _kernel = new int[n];
        Array.Fill(_kernel, -1);
        _reveal = new bool[n];
        _freeHigh = new bool[n];
        _ff = new int[n];
        _pcp = new Kmem.PageAlloc.PerCpuPages[n];
        for (int fi = 0; fi < n; fi++)
        {
            _pcp[fi] = pa.Zones[fi % _zones].Pcp[fi / _zones];
            _kmem[fi] = _pcp[fi].Count;
        }
    }

    private Tally Now
    {
        get
        {
            while (_phases.Count <= _decisions.Phase)
            {
                _phases.Add(new Tally());
            }
            return _phases[_decisions.Phase];
        }
    }

    private int Index(int cpu, ulong tracePfn) => cpu * _zones + TraceZones.ZoneOf(_pa, tracePfn).Index;

    // A trace recorded from boot: the kernel's lists were empty; Kmem's hold what its own boot left there.
    public void StartAtBoot()
    {
        Array.Fill(_kernel, 0);
        var t = Now;
        foreach (int c in _kmem)
        {
            t.Kmem[(int)DriftClass.Start] += c;
        }
    }

    // Kmem's count since the last reading, less its own refills and drains, goes to the current class.
    private void Read()
    {
        Tally? t = null;
        for (int fi = 0; fi < _kmem.Length; fi++)
        {
            int c = _pcp[fi].Count;
            int d = c - _kmem[fi];
            if (d == 0 && _kmemRefill[fi] == 0 && _kmemDrain[fi] == 0)
            {
                continue;
            }
            t ??= Now;
            t.Kmem[(int)_class] += d - _kmemRefill[fi] + _kmemDrain[fi];
            t.Kmem[(int)DriftClass.Refill] += _kmemRefill[fi];
            t.Kmem[(int)DriftClass.Drain] -= _kmemDrain[fi];
            _kmemRefill[fi] = _kmemDrain[fi] = 0;
            _kmem[fi] = c;
        }
    }

    /// <summary>Kmem's calls from here on are of class <paramref name="c"/>; returns the class before.</summary>
    public DriftClass Enter(DriftClass c)
    {
        Read();
        var prev = _class;
        _class = c;
        return prev;
    }

    /// <summary>What Kmem's counts did since the last reading was of class <paramref name="c"/>.</summary>
    public void Settle(DriftClass c)
    {
        var prev = _class;
        _class = c;
        Read();
        _class = prev;
    }

    /// <summary>A kernel page free was replayed: what Kmem's lists did since the last reading was of class
    /// <paramref name="c"/> (the kind of frame it was), the class before the free (<paramref name="before"/>) is the
    /// current one again, and the kernel's list gained the pages (order &lt;= 3: free_unref_page).</summary>
    public void Freed(int cpu, ulong tracePfn, int order, DriftClass c, DriftClass before)
    {
        Settle(c);
        Enter(before);
        if (order <= Kmem.PageAlloc.PerCpuPages.CostlyOrder)
        {
            Kernel(cpu, tracePfn, 1 << order, c);
        }
    }

    public void KmemRefill(int zoneIndex, int cpu, int pages) => _kmemRefill[cpu * _zones + zoneIndex] += pages;

    public void KmemDrain(int zoneIndex, int cpu, int pages) => _kmemDrain[cpu * _zones + zoneIndex] += pages;

    /// <summary>The kernel's list of the frame's zone on this CPU gained (or lost) <paramref name="pages"/>.</summary>
    public void Kernel(int cpu, ulong tracePfn, int pages, DriftClass c) => KernelAt(cpu * _zones + TraceZones.ZoneOf(_pa, tracePfn).Index, pages, c);

    public void KernelZone(int cpu, int zoneIndex, int pages, DriftClass c)
    {
        if (zoneIndex >= 0)
        {
            KernelAt(cpu * _zones + zoneIndex, pages, c);
        }
    }

    private void KernelAt(int fi, int pages, DriftClass c)
    {
        Now.Kernel[(int)c] += pages;
        if (_kernel[fi] >= 0)
        {
            _kernel[fi] = Math.Max(0, _kernel[fi] + pages);
        }
    }

    /// <summary>The kernel's allocation of order &lt;= 3 from the CPU's list (rmqueue_pcplist: free_factor halved), after
    /// the refill burst that added <paramref name="refillPages"/> when the list was empty.</summary>
    public void KernelAlloc(int cpu, ulong tracePfn, int order, int refillPages, DriftClass c)
    {
        int fi = Index(cpu, tracePfn);
        _ff[fi] >>= 1;
        if (refillPages > 0)
        {
            KernelAt(fi, refillPages, DriftClass.Refill);
        }
        KernelAt(fi, -(1 << order), c);
    }

    /// <summary>A refill burst no allocation claimed: alloc_pages_bulk refilled the list with the burst and took
    /// <paramref name="pages"/> order-0 pages from it (0: an unknown number).</summary>
    public void KernelBulk(int cpu, ulong tracePfn, int order, int blocks, int pages)
    {
        int fi = Index(cpu, tracePfn);
        KernelAt(fi, blocks << order, DriftClass.Refill);
        if (pages > 0)
        {
            KernelAt(fi, -pages, DriftClass.Bulk);
        }
        else
        {
            _kernel[fi] = -1;
        }
    }

    /// <summary>A task of Kmem's allocated a table of its own in a fault (one order-0 page, read with the fault's class).</summary>
    public void OwnTable()
    {
        var t = Now;
        t.Kmem[(int)_class] += 1;
        t.Kmem[(int)DriftClass.PageTable] -= 1;
    }

    /// <summary>The kernel's pages of a frame move from one class to another (a page allocation found to be a slab page).</summary>
    public void Reclass(int pages, DriftClass from, DriftClass to)
    {
        var t = Now;
        t.Kernel[(int)from] -= pages;
        t.Kernel[(int)to] += pages;
    }

    /// <summary>An mm_page_pcpu_drain of a free: the first of them reveals the count before it (high, or for a
    /// free_high free the whole count, known once the last is read).</summary>
    public void KernelDrain(int cpu, ulong tracePfn, int order, int drainedSoFar, int freeOrder)
    {
        int fi = Index(cpu, tracePfn);
        if (drainedSoFar == 0)
        {
            // free_unref_page_commit: free_high for a high-order free while free_factor is set (nr_pcp_free then
            // returns pcp->count and leaves free_factor); otherwise the count had reached high, and nr_pcp_free
            // raised free_factor while batch << free_factor stayed below high - batch.
            var pcp = _pcp[fi];
            bool freeHigh = _ff[fi] != 0 && freeOrder > 0 && freeOrder <= Kmem.PageAlloc.PerCpuPages.CostlyOrder;
            _freeHigh[fi] = freeHigh;
            _reveal[fi] = true;
            if (!freeHigh)
            {
                Rebase(fi, pcp.High);
                if ((pcp.Batch << _ff[fi]) < pcp.High - pcp.Batch)
                {
                    _ff[fi]++;
                }
            }
        }
        KernelAt(fi, -(1 << order), DriftClass.Drain);
    }

    // The count the events gave is replaced by the revealed one; the difference is pages no event showed.
    private void Rebase(int fi, int revealed)
    {
        if (_kernel[fi] >= 0)
        {
            Now.Kernel[(int)DriftClass.Unseen] += revealed - _kernel[fi];
        }
        _kernel[fi] = revealed;
    }

    /// <summary>The CPU's drains for its last free are all read: each revealed count is set against Kmem's.</summary>
    public void Resolve(int cpu)
    {
        for (int fi = cpu * _zones; fi < (cpu + 1) * _zones; fi++)
        {
            if (!_reveal[fi])
            {
                continue;
            }
            _reveal[fi] = false;
            if (_freeHigh[fi])
            {
                Rebase(fi, 0);
            }
            var t = Now;
            int diff = _pcp[fi].Count - _kernel[fi];
            t.Reveals++;
            t.Equal += diff == 0 ? 1 : 0;
            t.WithinBatch += Math.Abs(diff) < _pcp[fi].Batch ? 1 : 0;
            t.AbsDiff += Math.Abs(diff);
            t.Diff += diff;
        }
    }

    /// <summary>A kernel refill: its list was empty. Whether Kmem's same list is, just before Kmem's allocation.</summary>
    public void ListReveal(int cpu, ulong tracePfn, int order, int mt)
    {
        var zone = TraceZones.ZoneOf(_pa, tracePfn);
        if (order > Kmem.PageAlloc.PerCpuPages.CostlyOrder || mt >= Kmem.PageAlloc.Zone.PcpTypes)
        {
            return;
        }
        var list = zone.Pcp[cpu].Lists[Kmem.PageAlloc.PerCpuPages.OrderToPindex(mt, order)];
        int blocks = 0;
        for (uint pfn = list.Head; pfn != Kmem.Physical.PhysMem.NoPfn && blocks < 4096; pfn = _pa.Mem.Frame(pfn).Next)
        {
            blocks++;
        }
        var t = Now;
        t.ListReveals++;
        t.ListEmpty += blocks == 0 ? 1 : 0;
        t.ListBlocks += blocks;
    }

    /// <summary>The tallies, phase by phase (phase names from the decisions).</summary>
    public List<TracePcpDrift> Result(List<TraceDecisionPhase> phases)
    {
        Read();
        var result = new List<TracePcpDrift>();
        for (int i = 0; i < _phases.Count && i < phases.Count; i++)
        {
            var t = _phases[i];
            var classes = new Dictionary<string, TraceDriftClass>();
            for (int c = 0; c < Classes; c++)
            {
                if (t.Kernel[c] != 0 || t.Kmem[c] != 0)
                {
                    classes[Name((DriftClass)c)] = new TraceDriftClass(t.Kernel[c], t.Kmem[c]);
                }
            }
            result.Add(new TracePcpDrift(phases[i].Phase, t.Reveals, t.Equal, t.WithinBatch, t.AbsDiff, t.Diff,
                t.ListReveals, t.ListEmpty, t.ListBlocks, classes));
        }
        return result;
    }

    public static string Name(DriftClass c) => c switch
    {
        DriftClass.Page => "page",
        DriftClass.SlabPage => "slab_page",
        DriftClass.User => "user_page",
        DriftClass.PageTable => "page_table",
        DriftClass.Untracked => "untracked_free",
        DriftClass.Reserved => "reserved_release",
        DriftClass.Bulk => "bulk",
        DriftClass.Percpu => "percpu",
        DriftClass.Refill => "refill",
        DriftClass.Drain => "drain",
        DriftClass.Unseen => "unseen",
        DriftClass.Start => "start",
        _ => "other",
    };

    private sealed class Tally
    {
        public readonly long[] Kernel = new long[Classes], Kmem = new long[Classes];
        public long Reveals, Equal, WithinBatch, AbsDiff, Diff, ListReveals, ListEmpty, ListBlocks;
    }
}

/// <summary>Kmem's calls are of one class until this is disposed, then of the class before (nothing without a drift).</summary>
internal readonly struct DriftScope : IDisposable
{
    private readonly PcpDrift? _drift;
    private readonly DriftClass _before;

    public DriftScope(PcpDrift? drift, DriftClass c)
    {
        _drift = drift;
        _before = drift?.Enter(c) ?? default;
    }

    public void Dispose() => _drift?.Enter(_before);
}
