// Trace replay: drives a Kmem machine with the events of a recorded Linux 6.1 kmem
// trace, in one streaming pass. Slab events (kmalloc, kfree, kmem_cache_alloc/free)
// drive the slab layer; page events drive the page allocator only for frames that are
// not slab pages (TraceReplayer.Pages.cs); zone_locked, pcpu_drain and extfrag are
// consequences, only counted. Each event runs pinned to its CPU (modulo the machine's).
// Kmem picks its own addresses: the trace's are keys of maps to Kmem's, so memory is
// bounded by what the trace holds live, not by its length. Caches are identified (and
// objects moved between them) by TraceCaches, counted for --compare-proc by
// TraceCacheCounter (TraceReplayer.Caches.cs hands them the state); decisions are compared in
// TraceReplayer.Decisions.cs and counted by TraceDecisions. Not thread-safe: one
// replayer, one thread, one machine.
using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Kmem;

/// <summary>
/// Replays an ftrace kmem trace (read by <see cref="TraceReader"/>) on a <see cref="Machine"/>.
/// </summary>
/// <remarks>
/// <code>
/// using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
/// using var reader = TraceReader.Open("trace.txt.xz", new TraceReaderOptions { StopAtMarker = "SNAPSHOT_FILE slabinfo" });
/// TraceReplayResult r = new TraceReplayer(m).Replay(reader);
/// Console.WriteLine($"{r.Events} events, kmalloc size classes {r.KmallocSizeClassMatch:P1} as in the kernel");
/// Console.Write(m.Proc.Read("slabinfo"));
/// </code>
/// <para>What drives the machine: kmalloc and kmem_cache_alloc allocate (kmalloc with the trace's bytes_req
/// and gfp_flags, a cache allocation from the cache identified by call site and bytes_alloc); kfree and
/// kmem_cache_free free the object Kmem gave for the trace's pointer. A free of a pointer the replay never
/// saw allocated (allocated before tracing began) is counted in <see cref="TraceReplayResult.UntrackedFrees"/>.
/// mm_page_alloc, mm_page_free and mm_page_free_batched drive the page allocator, except for slab pages:
/// a page allocation whose frame the next slab allocation on the same CPU falls into is the slab layer's,
/// which Kmem's own slab layer replaces (the trace's direct-map base, needed to turn an object address into
/// a pfn, is inferred from such pairs: the base is aligned to 1 GiB on x86, with or without KASLR).
/// mm_page_alloc_zone_locked, mm_page_pcpu_drain and mm_page_alloc_extfrag are counted beside Kmem's own
/// counts (<see cref="TraceReplayResult.Consequences"/>), never replayed. percpu_alloc_percpu and
/// percpu_free_percpu drive the per-CPU allocator (the reserved area when the trace says reserved=1); chunk
/// events are its consequences, counted.</para>
/// <para>Deterministic: the same trace on a machine booted with the same options and seed ends in the
/// same state, so its /proc files are byte-identical.</para>
/// </remarks>
public sealed partial class TraceReplayer
{
    private const ulong GiB = 1UL << 30;

    private readonly Machine _m;
    private readonly TraceCaches _caches;
    private readonly SlabAlignment _slabAlign;
    private readonly ReservedRelease _reserved;
    private readonly TraceReplayOptions _options;
    private readonly Dictionary<ulong, LiveObject> _objects = new(1 << 16);
    private readonly LiveObjectPages _livePages = new(); // _objects' keys per page: they are added and removed through it
    private readonly ReplayPercpu _percpuEvents;
    private readonly Dictionary<string, long> _untrackedByCache = new(StringComparer.Ordinal);
    private TraceReader? _reader;

    private long _kmallocEvents, _kmallocMatches, _pageAllocEvents, _pageMtMatches;
    private long _untrackedFrees, _untrackedPageFrees, _missedFrees, _traceFailures, _kmemFailures, _kmemServedTraceFailures;
    private long _pagesReplayed, _slabPageAllocs, _percpu, _moved, _ringBufferPages;
    private long _traceRefills;
    private long _bytesReq, _bytesAlloc;
    private long _slabPagesPeak;

    /// <summary>Creates a replayer for <paramref name="machine"/>.</summary>
    /// <param name="machine">The machine the trace drives; its CPUs stand for the trace's (CPU n runs on n modulo the machine's count).</param>
    /// <param name="options">Options, or null for the defaults.</param>
    /// <exception cref="ArgumentException"><see cref="TraceReplayOptions.SnapshotEvery"/> is negative, or a
    /// <see cref="TraceReplayOptions.Snapshot"/> is given without a positive SnapshotEvery.</exception>
    public TraceReplayer(Machine machine, TraceReplayOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        _m = machine;
        _options = options ?? new TraceReplayOptions();
        if (_options.SnapshotEvery < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), _options.SnapshotEvery, "TraceReplayOptions.SnapshotEvery must be 0 (never) or more");
        }
        if (_options.Snapshot is not null && _options.SnapshotEvery == 0)
        {
            throw new ArgumentException("TraceReplayOptions.Snapshot needs SnapshotEvery > 0", nameof(options));
        }
        _held = new HeldPageAllocs(machine.NrCpus);
        _deferred = new DeferredPageFrees[machine.NrCpus];
        _afterBatched = new bool[machine.NrCpus];
        for (int i = 0; i < _deferred.Length; i++)
        {
            _deferred[i] = new DeferredPageFrees(i, PageFreeEvent);
        }
        _cpuEvents = new long[machine.NrCpus];
        _kmem = machine.Options.PageAllocObserver as DecisionRecorder;
        bool slabKinds = machine.Options.Slab != SlabAllocator.Slob;
        _decisions = new TraceDecisions(machine.NrCpus, _options.Mismatches, slabKinds);
        InitDecisions(machine.NrCpus);
        _caches = new TraceCaches(machine) { LivePages = _livePages, Names = _options.CacheNames };
        _slabAlign = new SlabAlignment(machine, _options.Aligned && slabKinds);
        _reserved = new ReservedRelease(machine, _options.ReservedFrames);
        _percpuEvents = new ReplayPercpu(machine);
        _tables = new ReplayPageTables(machine, pfn => _pages.Remove(pfn, out var b) ? b.Page : Page.Null, _pages.ContainsKey) { FinishAtMmdrop = t => _pressure!.Exited.FinishAtMmdrop(t) };
    }

    /// <summary>The machine being driven.</summary>
    public Machine Machine => _m;

    /// <summary>The reader of the replay in progress (for progress reports), or null before <see cref="Replay"/>.</summary>
    public TraceReader? Reader => _reader;

    /// <summary>Events replayed so far (markers included).</summary>
    public long Events => _reader?.Events ?? 0;

    /// <summary>Replays every event of <paramref name="reader"/> up to its end (or its stop marker).</summary>
    /// <param name="reader">The trace; its options decide <c>--skip-bad</c> and <c>--until</c>.</param>
    /// <returns>What happened.</returns>
    /// <exception cref="TraceFormatException">A malformed line (without SkipBad), or corrupt compressed data;
    /// the machine keeps the state of the events before it.</exception>
    /// <exception cref="InvalidOperationException">The machine has no slab layer (a backend not part of this
    /// build), or <see cref="Replay"/> was already called on this replayer.</exception>
    /// <remarks>Exceptions thrown by the <see cref="TraceReplayOptions.Progress"/> and
    /// <see cref="TraceReplayOptions.Snapshot"/> callbacks end the replay and reach the caller unchanged.</remarks>
    public TraceReplayResult Replay(TraceReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        if (_reader is not null)
        {
            throw new InvalidOperationException("a TraceReplayer replays one trace; create another for the next");
        }
        _ = _m.SlabCaches; // throws for a slab backend this build lacks, before any event
        _reader = reader;
        StartPressure(reader);
        _m.Mm.TablePageSource = _drift is null ? _tables.Take : TakeTable;
        _m.Mm.TablePageReturn = _tables.ReturnFrame;
        var ringBuffer = PreTraceRingBuffer.Hold(_m, _options.RingBufferBytes);
        _ringBufferPages = ringBuffer.Count;
        _pressure!.AdoptUntraced(ringBuffer);
        _kmem?.Reset();
        var before = ReplayConsequences.Read(_m);
        double decompressBefore = reader.DecompressSeconds;
        var sw = Stopwatch.StartNew();
        var progress = _options.Progress;
        var snapshot = _options.Snapshot;
        long progressEvery = Math.Max(1, _options.ProgressEvery);
        long snapshotEvery = _options.SnapshotEvery;
        long nextProgress = progress is null ? long.MaxValue : progressEvery;
        long nextSnapshot = snapshot is null ? long.MaxValue : snapshotEvery;
        // One comparison per event decides whether either callback is due.
        long nextCall = Math.Min(nextProgress, nextSnapshot);
        // Pinned to each event's CPU; consecutive events of one CPU share one pin (events come in runs per CPU).
        int pinned = -1;
        var scope = default(CpuScope);
        try
        {
            int nrCpus = _m.NrCpus;
            for (ref readonly var next = ref reader.Next(); !Unsafe.IsNullRef(in next); next = ref reader.Next())
            {
                var e = next; // a copy on the stack: no write barriers (TraceReader.Next)
                if (LiveObserver is not null)
                {
                    LiveBeforeEvent(in e);
                }
                int cpu = e.Cpu;
                if ((uint)cpu >= (uint)nrCpus)
                {
                    cpu %= nrCpus; // a trace of more CPUs than the machine has (no division in the common case)
                }
                if (cpu != pinned)
                {
                    if (pinned >= 0)
                    {
                        scope.Dispose();
                    }
                    scope = _m.OnCpu(cpu);
                    pinned = cpu;
                }
                _drift?.Enter(DriftClass.Other);
                if (_held.TryTakeDue(cpu, _cpuEvents[cpu], out var due))
                {
                    ReplayPageAlloc(due);
                }
                _cpuEvents[cpu]++;
                if (_deferred[cpu].Count != 0 && e.Kind is not (TraceEventKind.MmPageFree or TraceEventKind.MmPageFreeBatched)
                    && !(e.Kind == TraceEventKind.MmPagePcpuDrain && _afterBatched[cpu]))
                {
                    FlushDeferredFrees(cpu, _deferred[cpu].Count);
                }
                _pressure!.BeforeEvent(ref e); // vmscan, compaction, oom events, markers, swapon/swapoff (Pressure/)
                BeforeEvent(ref e, cpu); // the kernel's side: bursts (bulk pages are replayed with or without observers), drains
                _drift?.Enter(e.Kind switch
                {
                    TraceEventKind.Kmalloc or TraceEventKind.Kfree or TraceEventKind.KmemCacheAlloc or TraceEventKind.KmemCacheFree => DriftClass.SlabPage,
                    TraceEventKind.PercpuAllocPercpu or TraceEventKind.PercpuFreePercpu => DriftClass.Percpu,
                    _ => DriftClass.Other,
                });
                Dispatch(ref e, cpu);
                if (reader.Events >= nextCall)
                {
                    // Between two events: the snapshot sees the machine after event nextSnapshot and before the next.
                    long events = reader.Events;
                    if (events >= nextSnapshot)
                    {
                        nextSnapshot += snapshotEvery;
                        snapshot!(this);
                    }
                    if (events >= nextProgress)
                    {
                        nextProgress += progressEvery;
                        progress!(this);
                    }
                    nextCall = Math.Min(nextProgress, nextSnapshot);
                }
            }
        }
        catch
        {
            _m.Mm.TablePageReturn = null; // on success it stays until the replay's tasks are done (FinishPressure)
            throw;
        }
        finally
        {
            if (pinned >= 0)
            {
                scope.Dispose();
            }
            _m.Mm.TablePageSource = null;
        }
        SettleHeldBack();
        FinishPressure();
        _decisions.Finish();
        sw.Stop();
        var after = ReplayConsequences.Read(_m);
        var result = BuildResult(reader, sw.Elapsed.TotalSeconds, reader.DecompressSeconds - decompressBefore, before, after);
        // After the result, whose per-CPU drift would count these frees as the last phase's.
        _m.Mm.TablePageReturn = null;
        _tables.FreeSpares();
        return result;
    }

    // ReplayPageTables.Take, telling PcpDrift when the fault allocates a table of its own.
    private Page TakeTable(TaskStruct? task, bool highPte)
    {
        var page = _tables.Take(task, highPte);
        if (_tables.LastTakeAllocated)
        {
            _drift!.OwnTable();
        }
        return page;
    }

    private void Dispatch(ref TraceEvent e, int cpu)
    {
        switch (e.Kind)
        {
            case TraceEventKind.KmemCacheAlloc:
                CacheAlloc(ref e, cpu);
                break;
            case TraceEventKind.KmemCacheFree:
                Free(e.Ptr, e.Name, cpu, e.LineNumber);
                break;
            case TraceEventKind.Kmalloc:
                KmallocEvent(ref e, cpu);
                break;
            case TraceEventKind.Kfree:
                Free(e.Ptr, null, cpu, e.LineNumber);
                break;
            case TraceEventKind.MmPageAlloc:
                PageAlloc(ref e, cpu);
                break;
            case TraceEventKind.MmPageFree:
                ReplayHeldBefore(cpu);
                _pressure!.NoteFree(ref e);
                _deferred[cpu].Add((e.Pfn, e.Order, e.LineNumber));
                _afterBatched[cpu] = false;
                break;
            case TraceEventKind.MmPageFreeBatched:
                _pressure!.NoteFree(ref e);
                BatchedFree(e.Pfn, e.Order, cpu, e.LineNumber);
                _afterBatched[cpu] = true;
                break;
            case TraceEventKind.MmPageAllocZoneLocked:
                if (e.PercpuRefill)
                {
                    _traceRefills++;
                }
                break;
            case TraceEventKind.PercpuAllocPercpu:
                _percpuEvents.Alloc(ref e);
                break;
            case TraceEventKind.PercpuFreePercpu:
                _percpuEvents.Free(e.Ptr);
                break;
            case TraceEventKind.PercpuCreateChunk:
            case TraceEventKind.PercpuDestroyChunk:
            case TraceEventKind.PercpuAllocPercpuFail:
                _percpu++;
                break;
            default:
                break; // markers; pcpu_drain and extfrag are counted by the reader
        }
    }

    // ---------------------------------------------------------------- slab events

    // The start of a slab allocation event: whether the kernel took a new slab for it (a held page allocation is
    // its slab page), and the address's entry among the live objects, for the caller to fill in, with one hash lookup
    // (nothing in between may touch _objects). An address still live is one whose free the trace missed: released first.
    private ref LiveObject BeginSlabAlloc(ref TraceEvent e, int cpu, out bool kernelNewSlab)
    {
        kernelNewSlab = _held.Any(cpu) && MatchHeld(cpu, e.Ptr);
        ref var entry = ref _livePages.Add(_objects, e.Ptr, out bool live);
        if (live)
        {
            _missedFrees++;
            _caches.NoteMissedFree(entry.Slot);
            Release(e.Ptr, entry);
        }
        return ref entry;
    }

    private void KmallocEvent(ref TraceEvent e, int cpu)
    {
        if (e.Ptr == 0)
        {
            _traceFailures++;
            return;
        }
        ref var entry = ref BeginSlabAlloc(ref e, cpu, out bool kernelNewSlab);
        _kmem?.Reset();
        if (_preTrace is not null && e.BytesAlloc <= Machine.KmallocMaxCacheSize)
        {
            string slab = _caches.KmallocSlot(e.Gfp, e.BytesAlloc).Name;
            BeginPreTrace(ref e, slab, KmallocOrder(slab), kernelNewSlab); // ended by End below
        }
        nint p;
        try
        {
            p = _m.KmallocNode((nuint)e.BytesReq, ReplayGfp.Of(e.Gfp), Node(e.Node));
        }
        finally
        {
            _preTrace?.End(_kmem!.NewSlabs);
        }
        _kmallocEvents++;
        if (p == 0)
        {
            _kmemFailures++;
            entry = default;
            return;
        }
        if (_kmem is not null && e.BytesAlloc <= Machine.KmallocMaxCacheSize)
        {
            string name = _caches.KmallocName(e.BytesAlloc);
            _decisions.Decide(DecisionKind.NewSlab, kernelNewSlab, _kmem.NewSlabs > 0, e.LineNumber, name);
            var (steals, stole) = (kernelNewSlab ? _slabPageSteals : null, _kmem.StealTypes); // read before the alignment resets it
            _slabAlign.AlignNewSlab(_kmem, kernelNewSlab, null, name, e.BytesReq, e.Gfp, Node(e.Node));
            if (kernelNewSlab && _kmem.NewSlabs == 0)
            {
                _preTrace?.Exhaust(_kmem, p, null, name, e.BytesReq, e.Gfp, Node(e.Node));
            }
            AlignKernelSteals(steals, stole);
        }
        ulong ks = _m.Ksize(p);
        if (ks == e.BytesAlloc)
        {
            _kmallocMatches++;
        }
        var slot = _caches.KmallocSlot(e.Gfp, ks);
        _counter.SlabPage(kernelNewSlab, _slabPagePfn, slot.Index);
        slot.Allocs++;
        slot.Live++;
        _bytesReq += (long)e.BytesReq;
        _bytesAlloc += (long)ks;
        entry = new LiveObject(p, slot.Index, 0);
        NotePeak();
    }

    private void CacheAlloc(ref TraceEvent e, int cpu)
    {
        if (e.Ptr == 0)
        {
            _traceFailures++;
            return;
        }
        // The entry is filled in below: CacheSiteSlot leaves _objects alone.
        ref var entry = ref BeginSlabAlloc(ref e, cpu, out bool kernelNewSlab);
        var slot = CacheSiteSlot(ref e, kernelNewSlab, out var site);
        _kmem?.Reset();
        BeginPreTrace(ref e, slot.Name, slot.Cache!.Order, kernelNewSlab);
        nint p;
        try
        {
            p = _m.KmemCacheAllocNode(slot.Cache!, ReplayGfp.Of(e.Gfp), Node(e.Node));
        }
        finally
        {
            _preTrace?.End(_kmem!.NewSlabs);
        }
        if (p == 0)
        {
            _kmemFailures++;
            entry = default;
            return;
        }
        if (_kmem is not null)
        {
            _decisions.Decide(DecisionKind.NewSlab, kernelNewSlab, _kmem.NewSlabs > 0, e.LineNumber, slot.Name);
            var (steals, stole) = (kernelNewSlab ? _slabPageSteals : null, _kmem.StealTypes); // read before the alignment resets it
            _slabAlign.AlignNewSlab(_kmem, kernelNewSlab, slot.Cache, slot.Name, 0, e.Gfp, Node(e.Node));
            if (kernelNewSlab && _kmem.NewSlabs == 0)
            {
                _preTrace?.Exhaust(_kmem, p, slot.Cache, slot.Name, 0, e.Gfp, Node(e.Node));
            }
            AlignKernelSteals(steals, stole);
        }
        slot.Allocs++;
        slot.Live++;
        slot.Provisional?.Add(e.Ptr);
        _bytesReq += (long)e.BytesReq;
        _bytesAlloc += slot.Cache!.Size;
        entry = new LiveObject(p, slot.Index, site.Index);
        NotePeak();
    }

    private void Free(ulong ptr, string? name, int cpu, long line)
    {
        if (ptr <= (ulong)Machine.ZeroSizePtr)
        {
            return; // kfree(NULL) and kfree(ZERO_SIZE_PTR) are traced and do nothing
        }
        // A free that names its site's cache moves the site's objects, this one included, into the named cache
        // first: the free is then Kmem's free from the kernel's cache, not from the provisional stand-in.
        if (name is not null && _objects.TryGetValue(ptr, out var named) && named.Site != 0)
        {
            NameSite(_caches.Sites[named.Site], name);
        }
        if (!_livePages.Remove(_objects, ptr, out var obj))
        {
            NoteUntrackedFree(ptr, name);
            _slabAlign.FreePlaceholder(name);
            _preTrace?.UntrackedFree(name);
            return;
        }
        _kmem?.Reset();
        Release(ptr, obj);
        if (_kmem is not null && obj.Ptr != 0 && _caches.Slots[obj.Slot].ObjectSize != 0)
        {
            if (SlabAlignment.KernelSlabPredatesTrace(_slabPages, _held.Base, ptr))
            {
                _decisions.SlabFreeUnknown(); // what the kernel's slab still holds is unknown: not compared
            }
            else
            {
                // The kernel's answer is the next event on this CPU; the state read now is the detail of a disagreement.
                bool freed = _kmem.SlabsFreed > 0;
                var state = freed ? new SlabFreeState(KernelLive: KernelSlabLive(ptr)) : SlabFreeState.OfKmemSlab(_m, obj.Ptr);
                _decisions.OpenSlabFree(cpu, freed, line, state);
            }
        }
    }

    // Gives an object back to Kmem (a placeholder of a failed allocation has nothing to give).
    private void Release(ulong tracePtr, LiveObject obj)
    {
        if (obj.Ptr == 0)
        {
            return;
        }
        var slot = _caches.Slots[obj.Slot];
        slot.Provisional?.Remove(tracePtr);
        if (slot.Cache is null)
        {
            _m.Kfree(obj.Ptr);
        }
        else
        {
            _m.KmemCacheFree(slot.Cache, obj.Ptr);
        }
        slot.Frees++;
        slot.Live--;
        if (slot.Retired && slot.Live == 0)
        {
            _caches.DestroyRetired(slot);
        }
    }

    private int Node(int node) => node >= 0 && node < _m.NrNodes ? node : -1;

    private void NotePeak()
    {
        long pages = ReplayConsequences.SlabPages(_m);
        if (pages > _slabPagesPeak)
        {
            _slabPagesPeak = pages;
        }
    }

    // ---------------------------------------------------------------- results

    private TraceReplayResult BuildResult(TraceReader reader, double seconds, double decompressSeconds,
        (long ZoneLocked, long Refill, long Drain, long Extfrag) before, (long ZoneLocked, long Refill, long Drain, long Extfrag) after)
    {
        var counts = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var (kind, name) in TraceEventNames.KmemAndPercpu)
        {
            counts[name] = reader.CountOf(kind);
        }
        PressureReplay.AddCounts(reader, counts);
        var consequences = ReplayConsequences.Totals(reader, _traceRefills, before, after);
        var caches = _caches.Slots.Skip(1)
            .Where(s => s.Allocs > 0 || s.Live > 0 || s.Frees > 0)
            .Select(s => new TraceCacheUse(s.Name, s.ObjectSize, s.Allocs, s.Frees, s.Live, s.CallSites))
            .OrderByDescending(c => c.Allocations).ThenBy(c => c.Name, StringComparer.Ordinal)
            .ToList();
        long slabEnd = ReplayConsequences.SlabPages(_m);
        return new TraceReplayResult
        {
            FileName = reader.FileName,
            Events = reader.Events,
            Lines = reader.Lines,
            Seconds = seconds,
            DecompressSeconds = decompressSeconds,
            BadLines = reader.BadLines,
            UnknownEvents = new SortedDictionary<string, long>(reader.UnknownEvents.ToDictionary(), StringComparer.Ordinal),
            LostEvents = reader.LostEvents,
            StopMarker = reader.StopMarker,
            StopLine = reader.StopLine,
            EventCounts = counts,
            KmallocEvents = _kmallocEvents,
            KmallocSizeClassMatch = _kmallocEvents > 0 ? (double)_kmallocMatches / _kmallocEvents : 0,
            PageAllocEvents = _pageAllocEvents,
            PageMigratetypeMatch = _pageAllocEvents > 0 ? (double)_pageMtMatches / _pageAllocEvents : 0,
            UntrackedFrees = _untrackedFrees,
            UntrackedFreesByCache = new SortedDictionary<string, long>(_untrackedByCache, StringComparer.Ordinal),
            UntrackedPageFrees = _untrackedPageFrees,
            MissedFrees = _missedFrees + _percpuEvents.MissedFrees,
            TraceAllocFailures = _traceFailures + _percpuEvents.TraceFailures,
            KmemServedTraceFailures = _kmemServedTraceFailures,
            PreTraceRingBufferPages = _ringBufferPages,
            KmemAllocFailures = _kmemFailures + _percpuEvents.KmemFailures,
            PageAllocsReplayed = _pagesReplayed,
            SlabPageAllocs = _slabPageAllocs,
            DirectMapBase = _held.Base,
            PercpuEventsNotReplayed = _percpu,
            PercpuAllocsReplayed = _percpuEvents.Allocs,
            UntrackedPercpuFrees = _percpuEvents.UntrackedFrees,
            LivePercpu = _percpuEvents.Live,
            MovedObjects = _moved,
            Consequences = consequences,
            SlabBytesPeak = Math.Max(_slabPagesPeak, slabEnd) * Machine.PageSize,
            SlabBytesEnd = slabEnd * Machine.PageSize,
            LiveObjects = _objects.Count,
            BytesRequested = _bytesReq,
            BytesAllocated = _bytesAlloc,
            Caches = caches,
            Decisions = _kmem is null ? new Dictionary<string, TraceDecision>() : _decisions.Total,
            DecisionsByPhase = _kmem is null ? [] : _decisions.ByPhase,
            PcpDrift = _drift is null ? [] : _drift.Result(_decisions.ByPhase),
            TraceChecks = new SortedDictionary<string, double>(StringComparer.Ordinal)
            {
                ["kmalloc_size_class_match"] = _kmallocEvents > 0 ? (double)_kmallocMatches / _kmallocEvents : 0,
                ["page_migratetype_match"] = _pageAllocEvents > 0 ? (double)_pageMtMatches / _pageAllocEvents : 0,
            },
            BulkRefillBursts = _kernel.BulkBursts,
            BulkPagesReplayed = _bulkPages,
            UnattributedDrains = _kernel.UnattributedDrains,
            BatchedFreesCountedOnce = _batchedOnce,
            PageTablesTakenOver = _tables.TakenOver,
            PageTablesOwn = _tables.Own,
            PageTablesOwnHighPte = _tables.OwnHighPte,
            PageTablesOwnMoved = _tables.OwnMoved,
            PageTablesOwnFrames = _tables.OwnFramesAllocated,
            PreTraceSlabs = _preTrace?.Met ?? 0,
            PreTraceStandIns = _preTrace?.StoodIn ?? 0,
            PreTracePlaceholders = _preTrace?.Placeholders ?? 0,
            CacheCounts = _counter.Build(_caches.Slots, _slabPages, _untrackedByCache),
            Pressure = PressureResult(),
        };
    }

    /// <summary>A live object of the trace: Kmem's pointer (0 when Kmem's allocation failed), its cache slot and call site.</summary>
    internal readonly record struct LiveObject(nint Ptr, int Slot, int Site);
}
