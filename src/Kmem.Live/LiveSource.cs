// What a live session replays and on which machines: the trace's path and how to boot a
// machine for a slab allocator, and the trace's markers (read once, in the background,
// so that the page can offer them as chapters and seek to them). The server reads no
// file but this trace. Immutable after construction except for the markers, published once.
using System.Globalization;

namespace Kmem.Live;

/// <summary>The trace a session replays and how its machines are booted.</summary>
internal sealed class LiveSource
{
    private volatile IReadOnlyList<LiveMarker>? _markers;
    private long _total;

    public LiveSource(string tracePath, Func<SlabAllocator, int, MachineOptions> boot)
    {
        TracePath = tracePath;
        Boot = boot;
    }

    /// <summary>The trace.</summary>
    public string TracePath { get; }

    /// <summary>The machine options for a slab allocator and the trace header's CPU count.</summary>
    public Func<SlabAllocator, int, MachineOptions> Boot { get; }

    /// <summary>The trace's markers, null until <see cref="ScanMarkers"/> has read the trace.</summary>
    public IReadOnlyList<LiveMarker>? Markers => _markers;

    /// <summary>The trace's events (markers included), 0 until the markers are read.</summary>
    public long Total => Interlocked.Read(ref _total);

    /// <summary>What the page names the source.</summary>
    public string Name => Path.GetFileName(TracePath);

    /// <summary>Opens the trace.</summary>
    public TraceReader Open() => TraceReader.Open(TracePath);

    /// <summary>Reads the trace once for its markers and its length. A marker's position is the number of events
    /// before it: where a replay stopped at it (<c>--until</c>) ends.</summary>
    public void ScanMarkers(CancellationToken cancel)
    {
        var markers = new List<LiveMarker>();
        using var reader = Open();
        while (reader.TryRead(out var e))
        {
            if (e.Kind == TraceEventKind.Marker)
            {
                markers.Add(new LiveMarker(e.Text ?? "", reader.Events - 1, e.LineNumber));
            }
            if ((reader.Events & 0xffff) == 0)
            {
                cancel.ThrowIfCancellationRequested();
            }
        }
        Interlocked.Exchange(ref _total, reader.Events);
        _markers = markers;
    }

    /// <summary>An event as one line: its kind, CPU, trace line and the fields that matter for it.</summary>
    public static string Describe(in TraceEvent e)
    {
        var c = CultureInfo.InvariantCulture;
        string head = string.Create(c, $"line {e.LineNumber}, cpu {e.Cpu}: ");
        return head + e.Kind switch
        {
            TraceEventKind.Kmalloc => string.Create(c, $"kmalloc bytes_req={e.BytesReq} bytes_alloc={e.BytesAlloc} gfp={e.Gfp}"),
            TraceEventKind.KmemCacheAlloc => string.Create(c, $"kmem_cache_alloc {e.Name} bytes_alloc={e.BytesAlloc} gfp={e.Gfp}"),
            TraceEventKind.Kfree => string.Create(c, $"kfree ptr=0x{e.Ptr:x}"),
            TraceEventKind.KmemCacheFree => string.Create(c, $"kmem_cache_free {e.Name} ptr=0x{e.Ptr:x}"),
            TraceEventKind.MmPageAlloc => string.Create(c, $"mm_page_alloc pfn=0x{e.Pfn:x} order={e.Order} migratetype={e.MigrateType} gfp={e.Gfp}"),
            TraceEventKind.MmPageFree => string.Create(c, $"mm_page_free pfn=0x{e.Pfn:x} order={e.Order}"),
            TraceEventKind.MmPageFreeBatched => string.Create(c, $"mm_page_free_batched pfn=0x{e.Pfn:x} order={e.Order}"),
            TraceEventKind.MmPageAllocZoneLocked => string.Create(c, $"mm_page_alloc_zone_locked pfn=0x{e.Pfn:x} order={e.Order} percpu_refill={(e.PercpuRefill ? 1 : 0)}"),
            TraceEventKind.MmPagePcpuDrain => string.Create(c, $"mm_page_pcpu_drain pfn=0x{e.Pfn:x} order={e.Order}"),
            TraceEventKind.MmPageAllocExtfrag => string.Create(c, $"mm_page_alloc_extfrag pfn=0x{e.Pfn:x} alloc_order={e.Order} fallback_order={e.FallbackOrder} change_ownership={(e.ChangeOwnership ? 1 : 0)}"),
            TraceEventKind.PercpuAllocPercpu => string.Create(c, $"percpu_alloc_percpu size={e.Size} align={e.Align}"),
            TraceEventKind.PercpuFreePercpu => string.Create(c, $"percpu_free_percpu ptr=0x{e.Ptr:x}"),
            TraceEventKind.Marker => "marker: " + e.Text,
            _ => e.Kind.ToString(),
        };
    }
}
