// One event of an ftrace kmem trace as TraceReader hands it out: the common prefix
// (task, pid, CPU, timestamp) and the fields of the Linux 6.1 templates of
// include/trace/events/kmem.h and percpu.h, plus trace markers. A plain value type:
// strings in it are interned by the reader, so filling one allocates nothing. Fields an
// event does not carry stay at their defaults (0, null, false). Read-only to users (the
// setters are the reader's), so copies may be handed between threads freely. TraceEventNames
// gives the kinds their ftrace names for the replay's counts.
namespace Kmem;

/// <summary>The kind of a trace event: one per Linux 6.1 kmem/percpu tracepoint, plus markers.</summary>
public enum TraceEventKind : byte
{
    /// <summary>No event (the default value).</summary>
    None,
    /// <summary>kmem:kmalloc (6.1 folds kmalloc_node into it, with <c>node=</c>).</summary>
    Kmalloc,
    /// <summary>kmem:kmem_cache_alloc (6.1 folds kmem_cache_alloc_node into it).</summary>
    KmemCacheAlloc,
    /// <summary>kmem:kfree (traced before the NULL check: kfree(NULL) shows ptr 0).</summary>
    Kfree,
    /// <summary>kmem:kmem_cache_free, with the cache's name.</summary>
    KmemCacheFree,
    /// <summary>kmem:mm_page_alloc (pfn 0 and page 0 when the allocation failed).</summary>
    MmPageAlloc,
    /// <summary>kmem:mm_page_free.</summary>
    MmPageFree,
    /// <summary>kmem:mm_page_free_batched (order-0 pages freed as a list).</summary>
    MmPageFreeBatched,
    /// <summary>kmem:mm_page_alloc_zone_locked: a block taken from the buddy lists under zone->lock.</summary>
    MmPageAllocZoneLocked,
    /// <summary>kmem:mm_page_pcpu_drain: a page moved from a per-CPU list back to the buddy lists.</summary>
    MmPagePcpuDrain,
    /// <summary>kmem:mm_page_alloc_extfrag: an allocation fell back to another migrate type's block.</summary>
    MmPageAllocExtfrag,
    /// <summary>percpu:percpu_alloc_percpu.</summary>
    PercpuAllocPercpu,
    /// <summary>percpu:percpu_free_percpu.</summary>
    PercpuFreePercpu,
    /// <summary>percpu:percpu_create_chunk.</summary>
    PercpuCreateChunk,
    /// <summary>percpu:percpu_destroy_chunk.</summary>
    PercpuDestroyChunk,
    /// <summary>percpu:percpu_alloc_percpu_fail.</summary>
    PercpuAllocPercpuFail,
    /// <summary>A trace marker (<c>tracing_mark_write: TEXT</c>), text in <see cref="TraceEvent.Text"/>.</summary>
    Marker,
    /// <summary>vmscan:mm_vmscan_wakeup_kswapd: an allocation woke kswapd (its fields in <see cref="TraceEvent.Text"/>, as for every
    /// vmscan, compaction and oom kind below).</summary>
    MmVmscanWakeupKswapd,
    /// <summary>vmscan:mm_vmscan_kswapd_wake: kswapd starts a round of balance_pgdat.</summary>
    MmVmscanKswapdWake,
    /// <summary>vmscan:mm_vmscan_kswapd_sleep: kswapd goes to sleep.</summary>
    MmVmscanKswapdSleep,
    /// <summary>vmscan:mm_vmscan_direct_reclaim_begin: an allocation enters direct reclaim.</summary>
    MmVmscanDirectReclaimBegin,
    /// <summary>vmscan:mm_vmscan_direct_reclaim_end, with <c>nr_reclaimed=</c>.</summary>
    MmVmscanDirectReclaimEnd,
    /// <summary>vmscan:mm_vmscan_write_folio: reclaim writes a page out (swap-out for anonymous pages); <see cref="TraceEvent.Pfn"/> is set.</summary>
    MmVmscanWriteFolio,
    /// <summary>compaction:mm_compaction_try_to_compact_pages: an allocation tries direct compaction.</summary>
    MmCompactionTryToCompactPages,
    /// <summary>compaction:mm_compaction_end, with <c>status=</c>.</summary>
    MmCompactionEnd,
    /// <summary>compaction:mm_compaction_deferred: compaction of a zone skipped, deferred.</summary>
    MmCompactionDeferred,
    /// <summary>oom:mark_victim: the OOM killer chose a task (<c>pid=</c>, <c>comm=</c>).</summary>
    MarkVictim,
    /// <summary>oom:oom_score_adj_update: a task's oom_score_adj was set (<c>pid=</c>, <c>comm=</c>, <c>oom_score_adj=</c>).</summary>
    OomScoreAdjUpdate,
    /// <summary>compaction:mm_compaction_begin: a compaction run of one zone starts (in a task's context: direct
    /// compaction or a write to /proc/sys/vm/compact_memory).</summary>
    MmCompactionBegin,
    /// <summary>compaction:mm_compaction_isolate_freepages: the free scanner took <c>nr_taken=</c> pages off the buddy
    /// lists in a pageblock (<c>range=(0xSTART ~ 0xEND)</c>).</summary>
    MmCompactionIsolateFreepages,
    /// <summary>oom:reclaim_retry_zone: should_reclaim_retry's look at a zone (<c>zone=</c>, <c>reclaimable=</c>,
    /// <c>available=</c>: the reclaimable pages plus the zone's free pages).</summary>
    ReclaimRetryZone,
}

/// <summary>
/// One parsed trace line. Which properties are set depends on <see cref="Kind"/>; the
/// others keep their default values. Pointers are the trace's own values (kernel virtual
/// addresses, or hashed values when the trace was recorded with hash-ptr on).
/// </summary>
public struct TraceEvent
{
    /// <summary>The event's kind.</summary>
    public TraceEventKind Kind { readonly get; internal set; }

    /// <summary>The line number in the trace (1 for the first line, header lines included).</summary>
    public long LineNumber { readonly get; internal set; }

    /// <summary>The task's comm as printed (for example <c>kworker/u4:0</c> or <c>&lt;idle&gt;</c>); interned.</summary>
    public string Comm { readonly get; internal set; }

    /// <summary>The task's pid.</summary>
    public int Pid { readonly get; internal set; }

    /// <summary>The thread-group id when the trace has the TGID column and knows it; otherwise -1.</summary>
    public int Tgid { readonly get; internal set; }

    /// <summary>The CPU the event was recorded on.</summary>
    public int Cpu { readonly get; internal set; }

    /// <summary>The timestamp in microseconds (the printed seconds.microseconds, as one number).</summary>
    public long Timestamp { readonly get; internal set; }

    /// <summary>call_site (slab and percpu allocations, slab frees): <c>symbol+0xoff/0xsize</c>, with <c> [module]</c> when printed, or a hex address; interned.</summary>
    public string? CallSite { readonly get; internal set; }

    // The call site's entry in its reader's intern table, plus 1 (0: none, or the table was full): one
    // reader's events with equal ids have equal call sites, so the replayer can find a cache without
    // hashing the text.
    internal int CallSiteId { readonly get; set; }

    /// <summary>ptr: the object (slab events) or the percpu pointer (percpu events).</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1720", Justification = "The kernel's field name (ptr=).")]
    public ulong Ptr { readonly get; internal set; }

    /// <summary>bytes_req: the size asked for (kmalloc, kmem_cache_alloc).</summary>
    public ulong BytesReq { readonly get; internal set; }

    /// <summary>bytes_alloc: the size handed out (kmalloc, kmem_cache_alloc, percpu_alloc_percpu).</summary>
    public ulong BytesAlloc { readonly get; internal set; }

    /// <summary>gfp_flags (kmalloc, kmem_cache_alloc, mm_page_alloc, percpu_alloc_percpu).</summary>
    public Gfp Gfp { readonly get; internal set; }

    /// <summary>node: the node asked for, -1 for NUMA_NO_NODE (kmalloc, kmem_cache_alloc).</summary>
    public int Node { readonly get; internal set; }

    /// <summary>accounted: the object is charged to a memory cgroup (kmalloc, kmem_cache_alloc).</summary>
    public bool Accounted { readonly get; internal set; }

    /// <summary>name: the cache's name (kmem_cache_free, and kmem_cache_alloc in kernels that print it); interned.</summary>
    public string? Name { readonly get; internal set; }

    /// <summary>page: the address of the struct page (page events); 0 when an allocation failed.</summary>
    public ulong Page { readonly get; internal set; }

    /// <summary>pfn: the page frame number (page events), read from hex (<c>0x…</c>) or decimal.</summary>
    public ulong Pfn { readonly get; internal set; }

    /// <summary>order (page events); alloc_order for mm_page_alloc_extfrag.</summary>
    public int Order { readonly get; internal set; }

    /// <summary>migratetype (mm_page_alloc, _zone_locked, _pcpu_drain); alloc_migratetype for extfrag. The kernel's number, cast.</summary>
    public MigrateType MigrateType { readonly get; internal set; }

    /// <summary>percpu_refill (mm_page_alloc_zone_locked): the block refilled a per-CPU list.</summary>
    public bool PercpuRefill { readonly get; internal set; }

    /// <summary>fallback_order (mm_page_alloc_extfrag): the order of the block stolen from.</summary>
    public int FallbackOrder { readonly get; internal set; }

    /// <summary>pageblock_order (mm_page_alloc_extfrag).</summary>
    public int PageblockOrder { readonly get; internal set; }

    /// <summary>fallback_migratetype (mm_page_alloc_extfrag): the type of the block stolen from.</summary>
    public MigrateType FallbackMigrateType { readonly get; internal set; }

    /// <summary>fragmenting (mm_page_alloc_extfrag): fallback_order &lt; pageblock_order.</summary>
    public bool Fragmenting { readonly get; internal set; }

    /// <summary>change_ownership (mm_page_alloc_extfrag): the pageblock now belongs to the allocation's type.</summary>
    public bool ChangeOwnership { readonly get; internal set; }

    /// <summary>reserved (percpu_alloc_percpu, _fail): from the reserved chunk.</summary>
    public bool Reserved { readonly get; internal set; }

    /// <summary>is_atomic (percpu_alloc_percpu, _fail).</summary>
    public bool IsAtomic { readonly get; internal set; }

    /// <summary>size (percpu_alloc_percpu, _fail): the size asked for.</summary>
    public ulong Size { readonly get; internal set; }

    /// <summary>align (percpu_alloc_percpu, _fail).</summary>
    public ulong Align { readonly get; internal set; }

    /// <summary>base_addr (percpu events): the chunk's base address.</summary>
    public ulong BaseAddr { readonly get; internal set; }

    /// <summary>off (percpu_alloc_percpu, percpu_free_percpu): the offset in the chunk.</summary>
    public long Off { readonly get; internal set; }

    /// <summary>The marker's text (<see cref="TraceEventKind.Marker"/>), trailing blanks removed.</summary>
    public string? Text { readonly get; internal set; }
}

/// <summary>The ftrace names of the event kinds, as the replay's result counts them.</summary>
internal static class TraceEventNames
{
    /// <summary>The kmem, percpu and marker kinds, counted in every replay's result.</summary>
    public static readonly (TraceEventKind Kind, string Name)[] KmemAndPercpu =
    [
        (TraceEventKind.Kmalloc, "kmalloc"),
        (TraceEventKind.KmemCacheAlloc, "kmem_cache_alloc"),
        (TraceEventKind.Kfree, "kfree"),
        (TraceEventKind.KmemCacheFree, "kmem_cache_free"),
        (TraceEventKind.MmPageAlloc, "mm_page_alloc"),
        (TraceEventKind.MmPageFree, "mm_page_free"),
        (TraceEventKind.MmPageFreeBatched, "mm_page_free_batched"),
        (TraceEventKind.MmPageAllocZoneLocked, "mm_page_alloc_zone_locked"),
        (TraceEventKind.MmPagePcpuDrain, "mm_page_pcpu_drain"),
        (TraceEventKind.MmPageAllocExtfrag, "mm_page_alloc_extfrag"),
        (TraceEventKind.PercpuAllocPercpu, "percpu_alloc_percpu"),
        (TraceEventKind.PercpuFreePercpu, "percpu_free_percpu"),
        (TraceEventKind.PercpuCreateChunk, "percpu_create_chunk"),
        (TraceEventKind.PercpuDestroyChunk, "percpu_destroy_chunk"),
        (TraceEventKind.PercpuAllocPercpuFail, "percpu_alloc_percpu_fail"),
        (TraceEventKind.Marker, "tracing_mark_write"),
    ];
}
