// What a trace replay found: counts of the trace's events and of what Kmem did with
// them, the fidelity figures (how often Kmem's choice equals the recorded kernel's),
// and the consequences (events the kernel recorded as side effects, never replayed,
// beside Kmem's own count of the same thing). A snapshot taken when the replay ends;
// immutable afterwards.
namespace Kmem;

/// <summary>A consequence counted on both sides: the events of one kind in the trace and Kmem's own count of the same thing.</summary>
/// <param name="Trace">Events of this kind in the replayed part of the trace.</param>
/// <param name="Kmem">What Kmem counted during the replay.</param>
public readonly record struct TraceConsequence(long Trace, long Kmem);

/// <summary>One slab cache as the replay used it (a kmem_cache identified from the trace, or a kmalloc size class).</summary>
/// <param name="Name">The cache's name: the name a <c>kmem_cache_free</c> gave it, a provisional
/// <c>call_site/size</c> name while none did, or <c>kmalloc-N</c> (with the kernel's cg-, rcl-, dma- variants) for kmalloc.</param>
/// <param name="ObjectSize">bytes_alloc: the object size in the trace.</param>
/// <param name="Allocations">Allocations replayed.</param>
/// <param name="Frees">Frees replayed.</param>
/// <param name="Live">Objects still allocated when the replay stopped.</param>
/// <param name="CallSites">Distinct call sites that allocated from it.</param>
public readonly record struct TraceCacheUse(string Name, ulong ObjectSize, long Allocations, long Frees, long Live, int CallSites);

/// <summary>The outcome of <see cref="TraceReplayer.Replay"/>.</summary>
public sealed class TraceReplayResult
{
    /// <summary>The trace's name.</summary>
    public required string FileName { get; init; }

    /// <summary>Events read (markers included).</summary>
    public required long Events { get; init; }

    /// <summary>Lines read, header included.</summary>
    public required long Lines { get; init; }

    /// <summary>Wall time of the replay, parsing and decompression included, in seconds.</summary>
    public required double Seconds { get; init; }

    /// <summary>The part of <see cref="Seconds"/> spent decoding gzip or xz (0 for plain text).</summary>
    public double DecompressSeconds { get; init; }

    /// <summary>Events per second replayed from the text, parsing included and decompression not
    /// (<see cref="Events"/> / (<see cref="Seconds"/> − <see cref="DecompressSeconds"/>)).</summary>
    public double EventsPerSecond => Seconds - DecompressSeconds > 0 ? Events / (Seconds - DecompressSeconds) : 0;

    /// <summary>Malformed lines skipped (only with <see cref="TraceReaderOptions.SkipBad"/>).</summary>
    public required long BadLines { get; init; }

    /// <summary>Events of unknown names, by name; skipped.</summary>
    public required IReadOnlyDictionary<string, long> UnknownEvents { get; init; }

    /// <summary>Events the kernel reported lost (ring buffer overruns).</summary>
    public required long LostEvents { get; init; }

    /// <summary>The marker that stopped the replay (<see cref="TraceReaderOptions.StopAtMarker"/>), or null.</summary>
    public required string? StopMarker { get; init; }

    /// <summary>The line of <see cref="StopMarker"/>; 0 when the whole trace was replayed.</summary>
    public required long StopLine { get; init; }

    /// <summary>Events by kind (kmem and percpu tracepoint names, <c>tracing_mark_write</c> for markers).</summary>
    public required IReadOnlyDictionary<string, long> EventCounts { get; init; }

    /// <summary>kmalloc events replayed (failed ones in the trace excepted).</summary>
    public required long KmallocEvents { get; init; }

    /// <summary>Share (0..1) of <see cref="KmallocEvents"/> whose Kmem size class (ksize) equals the trace's bytes_alloc.</summary>
    public required double KmallocSizeClassMatch { get; init; }

    /// <summary>mm_page_alloc events seen (failed ones excepted), slab pages included.</summary>
    public required long PageAllocEvents { get; init; }

    /// <summary>Share (0..1) of <see cref="PageAllocEvents"/> whose migrate type from gfp_flags
    /// (<see cref="GfpFlags.GfpMigratetype"/>) equals the trace's migratetype.</summary>
    public required double PageMigratetypeMatch { get; init; }

    /// <summary>Slab frees (kfree, kmem_cache_free) of objects not allocated in the replayed trace: allocated
    /// before tracing began. Counted, not errors.</summary>
    public required long UntrackedFrees { get; init; }

    /// <summary>Untracked kmem_cache_free events by the cache name they carry.</summary>
    public required IReadOnlyDictionary<string, long> UntrackedFreesByCache { get; init; }

    /// <summary>The replay's own counts by cache name, which --compare-proc attributes differences with.</summary>
    internal IReadOnlyDictionary<string, TraceCacheCounts> CacheCounts { get; init; } = new Dictionary<string, TraceCacheCounts>();

    /// <summary>Page frees of frames not allocated in the replayed trace (allocated before tracing began).</summary>
    public required long UntrackedPageFrees { get; init; }

    /// <summary>Slab allocations at an address the trace still had allocated (its free was not traced, as for
    /// kmem_cache_free_bulk); the old object is freed first.</summary>
    public required long MissedFrees { get; init; }

    /// <summary>Allocations that failed in the trace (ptr 0, pfn 0); not replayed, but for costly-order page
    /// allocations of a trace under memory pressure, which Kmem attempts as the kernel did (their decisions are
    /// compared).</summary>
    public required long TraceAllocFailures { get; init; }

    /// <summary>Pages of the recorded kernel's trace ring buffer that predate the trace, held before the first event
    /// (<see cref="TraceReplayOptions.RingBufferBytes"/>); 0 when none was given.</summary>
    public long PreTraceRingBufferPages { get; init; }

    /// <summary>Costly-order page allocations that failed in the trace and that Kmem's attempt served (the page goes
    /// back at once: the kernel's task got nothing).</summary>
    public required long KmemServedTraceFailures { get; init; }

    /// <summary>Allocations that succeeded in the trace but failed on Kmem.</summary>
    public required long KmemAllocFailures { get; init; }

    /// <summary>Page allocations the replay gave to the page allocator (frames that were not slab pages).</summary>
    public required long PageAllocsReplayed { get; init; }

    /// <summary>mm_page_alloc events recognised as slab pages (or large kmalloc pages): Kmem's slab layer makes its own.</summary>
    public required long SlabPageAllocs { get; init; }

    /// <summary>The trace's direct-map base (PAGE_OFFSET, page_offset_base under KASLR) as inferred from
    /// object/pfn pairs; null when none was found (hashed pointers, or no slab page allocated in the trace).</summary>
    public required ulong? DirectMapBase { get; init; }

    /// <summary>Percpu events counted but not replayed: percpu_create_chunk and percpu_destroy_chunk (consequences
    /// of allocations), percpu_alloc_percpu_fail.</summary>
    public required long PercpuEventsNotReplayed { get; init; }

    /// <summary>percpu_alloc_percpu events replayed on the per-CPU allocator.</summary>
    public required long PercpuAllocsReplayed { get; init; }

    /// <summary>percpu_free_percpu of areas not allocated in the replayed trace (allocated before tracing began).</summary>
    public required long UntrackedPercpuFrees { get; init; }

    /// <summary>Per-CPU areas the replay holds when it stopped.</summary>
    public required long LivePercpu { get; init; }

    /// <summary>Objects moved from a provisional cache to the cache a later kmem_cache_free named.</summary>
    public required long MovedObjects { get; init; }

    /// <summary>Consequences by tracepoint name: mm_page_alloc_zone_locked, pcp_refill (zone_locked with
    /// percpu_refill=1), mm_page_pcpu_drain, mm_page_alloc_extfrag (fallback steals).</summary>
    public required IReadOnlyDictionary<string, TraceConsequence> Consequences { get; init; }

    /// <summary>Slab memory at its highest during the replay, in bytes (slab pages, large kmalloc included, as
    /// the kernel's NR_SLAB_*_B counts them).</summary>
    public required long SlabBytesPeak { get; init; }

    /// <summary>Slab memory when the replay stopped, in bytes.</summary>
    public required long SlabBytesEnd { get; init; }

    /// <summary>Slab pages when the replay stopped.</summary>
    public long SlabPagesEnd => SlabBytesEnd / Machine.PageSize;

    /// <summary>Slab objects (kmalloc and kmem_cache) the replay holds when it stopped.</summary>
    public required long LiveObjects { get; init; }

    /// <summary>Objects per slab page at the end: <see cref="LiveObjects"/> / <see cref="SlabPagesEnd"/>.</summary>
    public double ObjectsPerSlabPage => SlabPagesEnd > 0 ? (double)LiveObjects / SlabPagesEnd : 0;

    /// <summary>Bytes asked for by the replayed slab allocations (the trace's bytes_req).</summary>
    public required long BytesRequested { get; init; }

    /// <summary>Bytes Kmem handed out for them (ksize for kmalloc, the cache's object size otherwise).</summary>
    public required long BytesAllocated { get; init; }

    /// <summary>Internal fragmentation: (bytes_alloc − bytes_req) / bytes_alloc over the replayed slab allocations, with Kmem's bytes_alloc.</summary>
    public double InternalFragmentation => BytesAllocated > 0 ? (double)(BytesAllocated - BytesRequested) / BytesAllocated : 0;

    /// <summary>The caches the replay used, busiest (most allocations) first.</summary>
    public required IReadOnlyList<TraceCacheUse> Caches { get; init; }

    /// <summary>Kmem's own decisions against the kernel's, by kind (pcp_refill, pcp_drain, zone, fallback,
    /// fallback_ownership, new_slab, slab_freed), with Kmem's state evolving on its own; empty when the machine
    /// was not booted by <see cref="TraceReplayer.Boot"/> (nothing observed Kmem's allocators).</summary>
    public IReadOnlyDictionary<string, TraceDecision> Decisions { get; init; } = new Dictionary<string, TraceDecision>();

    /// <summary><see cref="Decisions"/> phase by phase (boot, then each <c>PHASE</c> marker).</summary>
    public IReadOnlyList<TraceDecisionPhase> DecisionsByPhase { get; init; } = [];

    /// <summary>Checks of the trace against itself and of Kmem's tables that cannot measure Kmem's choices:
    /// page_migratetype_match (gfp_migratetype of an event's gfp_flags against its own migratetype),
    /// kmalloc_size_class_match (the size_index table). Shares, 0..1.</summary>
    public IReadOnlyDictionary<string, double> TraceChecks { get; init; } = new Dictionary<string, double>();

    /// <summary>The pressure timeline, vmstat totals and OOM victims, kernel against Kmem (Pressure/): null when the trace
    /// has no vmscan, compaction or oom event and no user page.</summary>
    public TracePressure? Pressure { get; init; }

    /// <summary>Refill bursts no mm_page_alloc followed (the bulk page allocator, alloc_pages_bulk, which takes
    /// pages from the per-CPU lists without that event), and the order-0 pages replayed for them.</summary>
    public long BulkRefillBursts { get; init; }

    /// <summary>Pages the replay allocated for <see cref="BulkRefillBursts"/>.</summary>
    public long BulkPagesReplayed { get; init; }

    /// <summary>mm_page_pcpu_drain events that followed no page free on their CPU (drain_all_pages, a CPU's
    /// lists drained from a worker): no per-free decision to compare them with.</summary>
    public long UnattributedDrains { get; init; }

    /// <summary>mm_page_free_batched events of a frame its mm_page_free had already freed (6.1 traces both for a
    /// page freed as part of a list): counted once.</summary>
    public long BatchedFreesCountedOnce { get; init; }

    /// <summary>Page-table frames of the traced kernel (GFP_PGTABLE_USER, and with __GFP_HIGHMEM the PTE tables of
    /// CONFIG_HIGHPTE) that Kmem's tasks took as their tables
    /// instead of allocating their own (the replay's user pages: docs/trace-replay.md).</summary>
    public long PageTablesTakenOver { get; init; }

    /// <summary>Page tables Kmem's tasks allocated themselves: no table frame of the kernel's was waiting, at a fault
    /// or when the kernel freed a frame whose table still mapped pages in Kmem (its entries moved to the new one).</summary>
    public long PageTablesOwn { get; init; }

    /// <summary>Of <see cref="PageTablesOwn"/>, the HIGHPTE PTE tables (CONFIG_HIGHPTE): allocated at a fault no
    /// HIGHPTE frame of the kernel's waited for, or moved to (the rest are GFP_PGTABLE_USER tables).</summary>
    public long PageTablesOwnHighPte { get; init; }

    /// <summary>Of <see cref="PageTablesOwn"/>, the frames a table moved to when the kernel freed the frame it had
    /// taken while the table still mapped pages in Kmem's task (the rest were allocated at a fault or a new task's
    /// PGD that no frame of the kernel's waited for).</summary>
    public long PageTablesOwnMoved { get; init; }

    /// <summary>The frames taken for <see cref="PageTablesOwn"/>: a table of Kmem's own takes a spare frame an earlier
    /// one gave back when there is one, else a frame straight off a zone's buddy lists (the page allocator's only when
    /// no zone has one), so none passes through the per-CPU lists.</summary>
    public long PageTablesOwnFrames { get; init; }

    /// <summary>Free-running: the kernel's slabs from before tracing that the trace met (an object allocated in a slab no
    /// event showed allocated); 0 for an aligned run.</summary>
    public long PreTraceSlabs { get; init; }

    /// <summary>Free-running: Kmem's slabs taken in their place, straight off the buddy lists (a cache's first slabs,
    /// as many as it has such slabs of the kernel's).</summary>
    public long PreTraceStandIns { get; init; }

    /// <summary>Free-running: objects Kmem's stand-ins held free that the kernel's slabs from before tracing did not
    /// (taken as placeholders once the kernel took a new slab where Kmem served a stand-in's object).</summary>
    public long PreTracePlaceholders { get; init; }

    /// <summary>How far Kmem's per-CPU page counts strayed from the kernel's, phase by phase, and which events moved
    /// them apart; empty for an aligned run or a machine not booted by <see cref="TraceReplayer.Boot"/>.</summary>
    public IReadOnlyList<TracePcpDrift> PcpDrift { get; init; } = [];
}

/// <summary>One disagreement between Kmem's decision and the kernel's.</summary>
/// <param name="Line">The trace line of the event whose decision it was.</param>
/// <param name="Kernel">The kernel's answer (did the thing the kind names).</param>
/// <param name="Kmem">Kmem's answer.</param>
/// <param name="Detail">What each side did, briefly (amounts, zones).</param>
public readonly record struct TraceMismatch(long Line, bool Kernel, bool Kmem, string Detail);

/// <summary>Kmem's decisions of one kind set against the kernel's, over the events where both decided.</summary>
/// <param name="Compared">Events where the kernel and Kmem both made this decision.</param>
/// <param name="Matched">Events where they decided alike.</param>
/// <param name="KernelYes">Events where the kernel did what the kind names (refilled, drained, stole, …).</param>
/// <param name="KmemYes">Events where Kmem did.</param>
/// <param name="BothYes">Events where both did.</param>
/// <param name="AmountCompared">Events where both did and the amount is known on both sides (blocks refilled, pages drained).</param>
/// <param name="AmountEqual">Of those, the events where the amounts are equal.</param>
/// <param name="Mismatches">The first disagreements (as many as <see cref="TraceReplayOptions.Mismatches"/> asks).</param>
public sealed record TraceDecision(long Compared, long Matched, long KernelYes, long KmemYes, long BothYes,
    long AmountCompared, long AmountEqual, IReadOnlyList<TraceMismatch> Mismatches)
{
    /// <summary>Matched / Compared (0 when nothing was compared).</summary>
    public double Ratio => Compared > 0 ? (double)Matched / Compared : 0;

    /// <summary>BothYes / KernelYes: how many of the kernel's "yes" Kmem also made (0 when the kernel made none).</summary>
    public double Recall => KernelYes > 0 ? (double)BothYes / KernelYes : 0;

    /// <summary>BothYes / KmemYes: how many of Kmem's "yes" the kernel also made (0 when Kmem made none).</summary>
    public double Precision => KmemYes > 0 ? (double)BothYes / KmemYes : 0;

    /// <summary>Events left out of <see cref="Compared"/> because, when they were decided, the trace had revealed
    /// that the kernel's deciding state was unknown (slab_freed: the kernel's slab predates the trace and may
    /// hold objects allocated before tracing began).</summary>
    public long UnknownState { get; init; }
}

/// <summary>The decisions of one phase of the trace: <c>boot</c> up to the first <c>PHASE</c> marker, then one per marker.</summary>
/// <param name="Phase">boot, or the marker's text after <c>PHASE </c>.</param>
/// <param name="Decisions">By kind, as <see cref="TraceReplayResult.Decisions"/>.</param>
public sealed record TraceDecisionPhase(string Phase, IReadOnlyDictionary<string, TraceDecision> Decisions);

/// <summary>The drift of Kmem's per-CPU page counts from the kernel's in one phase of a free-running replay.</summary>
/// <param name="Phase">boot, or the marker's text after <c>PHASE </c>.</param>
/// <param name="Reveals">Kernel drains that revealed a CPU's count (high less what was drained, or 0 after a free_high drain).</param>
/// <param name="Equal">Of those, where Kmem's count of the same CPU and zone was equal.</param>
/// <param name="WithinBatch">Where it was less than a batch away.</param>
/// <param name="AbsDiff">The sum of |Kmem − kernel| over the reveals.</param>
/// <param name="Diff">The sum of Kmem − kernel over the reveals.</param>
/// <param name="ListReveals">Kernel refills (the kernel's list was empty), just before Kmem's allocation for them.</param>
/// <param name="ListEmpty">Of those, where Kmem's list of the same CPU, zone, order and type was empty too.</param>
/// <param name="ListBlocks">The blocks Kmem's list held at those refills, summed.</param>
/// <param name="Classes">Pages added to (or, negative, taken from) the per-CPU lists, by what did it, on each side.</param>
public sealed record TracePcpDrift(string Phase, long Reveals, long Equal, long WithinBatch, long AbsDiff, long Diff,
    long ListReveals, long ListEmpty, long ListBlocks, IReadOnlyDictionary<string, TraceDriftClass> Classes);

/// <summary>Pages one class of events put on the per-CPU lists (negative: took), the kernel's and Kmem's.</summary>
/// <param name="KernelPages">The kernel's, from its events.</param>
/// <param name="KmemPages">Kmem's, from its lists.</param>
public readonly record struct TraceDriftClass(long KernelPages, long KmemPages);
