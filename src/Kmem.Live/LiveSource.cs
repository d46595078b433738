// What a live session replays and on which machines: the trace's path and how to boot a
// machine for a slab allocator, and the trace's markers (read once, in the background,
// so that the page can offer them as chapters and seek to them). That first reading also
// keeps the trace's text in memory, deflated at the fastest level in blocks of 1 MiB: a
// compressed capture costs more to decode (xz) than to replay, so every replay (a seek, a
// restart, a backend switch, and the first run too, which follows the reading as its
// blocks come) reads the kept copy: the trace is decoded once. The server reads no file
// but this trace. Immutable after construction except for the markers, published once,
// and the kept blocks, appended under _blocks' lock until the reading ends.
using System.Globalization;
using System.IO.Compression;
using SharpCompress.Compressors.Xz;

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

    /// <summary>A scenario told step by step instead of a trace; <see cref="Boot"/> gives only the seed.</summary>
    public LiveSource(LiveScenario scenario, Func<SlabAllocator, int, MachineOptions> boot)
    {
        Scenario = scenario;
        TracePath = "";
        Boot = boot;
    }

    /// <summary>The scenario, or null for a trace.</summary>
    public LiveScenario? Scenario { get; }

    /// <summary>The trace ("" for a scenario).</summary>
    public string TracePath { get; }

    /// <summary>The machine options for a slab allocator and the trace header's CPU count.</summary>
    public Func<SlabAllocator, int, MachineOptions> Boot { get; }

    /// <summary>The reserved frames the trace releases (LiveServerOptions.ReservedFrames), or null.</summary>
    public IReadOnlySet<ulong>? ReservedFrames { get; init; }

    /// <summary>The recorded kernel's per-CPU ring buffer size (LiveServerOptions.RingBufferBytes), or 0.</summary>
    public long RingBufferBytes { get; init; }

    /// <summary>The trace's markers, null until <see cref="ScanMarkers"/> has read the trace.</summary>
    public IReadOnlyList<LiveMarker>? Markers => _markers;

    /// <summary>The trace's events (markers included), 0 until the markers are read.</summary>
    public long Total => Interlocked.Read(ref _total);

    /// <summary>What the page names the source.</summary>
    public string Name => Scenario is { } s ? "scenario " + s.Name : Path.GetFileName(TracePath);

    /// <summary>The kept text's blocks, each deflated on its own; appended by the reading, read by the runs.</summary>
    private readonly List<byte[]> _blocks = [];
    private bool _keeping;
    private bool _kept;
    private string? _keepFailed;

    private const int BlockBytes = 1 << 20;

    /// <summary>Whether replays read the kept copy (<see cref="ScanMarkers"/> has started keeping it).</summary>
    public bool Kept
    {
        get
        {
            lock (_blocks)
            {
                return _keeping;
            }
        }
    }

    /// <summary>Opens the trace: the kept copy (waiting for blocks still being read) once the reading started, else
    /// the file.</summary>
    public TraceReader Open(TraceReaderOptions? options = null) =>
        Kept ? new TraceReader(new KeptStream(this), TextPath, options) : TraceReader.Open(TracePath, options);

    private TraceCacheNames? _cacheNames;

    /// <summary>Each call site's cache as the trace's frees name it (TraceCacheNames.Scan over the whole trace, as
    /// kmem replay reads it), read once, by the first replay that asks.</summary>
    public TraceCacheNames CacheNames
    {
        get
        {
            lock (_blocks)
            {
                if (_cacheNames is { } known)
                {
                    return known;
                }
            }
            TraceCacheNames names;
            using (var reader = Open(TraceCacheNames.ScanOptions))
            {
                names = TraceCacheNames.Scan(reader);
            }
            lock (_blocks)
            {
                return _cacheNames ??= names;
            }
        }
    }

    /// <summary>The kept copy's name: the trace's path without a compression suffix. A path, not only a name, since
    /// a pressure replay reads the capture's files beside the trace (meta/phase/vmstat-after-NAME.txt, vmstat.txt).</summary>
    private string TextPath => Path.Combine(Path.GetDirectoryName(Path.GetFullPath(TracePath)) ?? "", TextName);

    /// <summary>Marks the kept copy as coming: from now on <see cref="Open"/> reads it. Before <see cref="ScanMarkers"/>.</summary>
    public void KeepText()
    {
        lock (_blocks)
        {
            _keeping = true;
        }
    }

    /// <summary>Block <paramref name="i"/> of the kept copy, waiting for it while the reading goes on; null past the
    /// end. Throws when the reading failed before it.</summary>
    private byte[]? Block(int i)
    {
        lock (_blocks)
        {
            while (i >= _blocks.Count && !_kept && _keepFailed is null)
            {
                Monitor.Wait(_blocks);
            }
            if (i < _blocks.Count)
            {
                return _blocks[i];
            }
            return _keepFailed is null ? null : throw new IOException("the trace could not be read to its end: " + _keepFailed);
        }
    }

    private void AddBlock(ReadOnlySpan<byte> text)
    {
        var block = new MemoryStream();
        using (var deflate = new DeflateStream(block, CompressionLevel.Fastest, leaveOpen: true))
        {
            deflate.Write(text);
        }
        lock (_blocks)
        {
            _blocks.Add(block.ToArray());
            Monitor.PulseAll(_blocks);
        }
    }

    private void EndBlocks(string? failed)
    {
        lock (_blocks)
        {
            _kept = failed is null;
            _keepFailed = failed;
            Monitor.PulseAll(_blocks);
        }
    }

    /// <summary>The trace's name without a compression suffix: the reader checks a suffix against the data.</summary>
    private string TextName => Name.EndsWith(".xz", StringComparison.Ordinal) || Name.EndsWith(".gz", StringComparison.Ordinal) ? Name[..^3] : Name;

    /// <summary>The trace's text: the file, decompressed by its magic bytes (xz, gzip) or as it is.</summary>
    private Stream OpenText()
    {
        var file = new FileStream(TracePath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        Span<byte> magic = stackalloc byte[6];
        int n = file.ReadAtLeast(magic, 6, throwOnEndOfStream: false);
        file.Position = 0;
        if (n == 6 && magic.SequenceEqual((ReadOnlySpan<byte>)[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))
        {
            return new XZStream(file);
        }
        return n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b ? new GZipStream(file, CompressionMode.Decompress) : file;
    }

    /// <summary>Plays the scenario once on a machine of its own (<paramref name="slab"/>) for its chapters (the steps
    /// that open a phase) and its length in steps. A phase's step tells what it did, so its chapter's position is
    /// the number of steps up to and including it: a seek there shows the machine the step left.</summary>
    public void ScanScenario(SlabAllocator slab, CancellationToken cancel)
    {
        var scenario = Scenario!;
        var markers = new List<LiveMarker>();
        using var m = Machine.Boot(scenario.Options(slab, Boot(slab, 0).Seed ?? 1));
        using var cpu = m.OnCpu(0);
        long steps = 0;
        foreach (string step in scenario.Steps(m))
        {
            cancel.ThrowIfCancellationRequested();
            steps++;
            if (step.StartsWith("PHASE ", StringComparison.Ordinal))
            {
                markers.Add(new LiveMarker(step[6..], steps, steps));
            }
        }
        Interlocked.Exchange(ref _total, steps);
        _markers = markers;
    }

    /// <summary>Reads the trace once for its markers and its length, keeping its text (after <see cref="KeepText"/>).
    /// A marker's position is the number of events before it: where a replay stopped at it (<c>--until</c>) ends.</summary>
    public void ScanMarkers(CancellationToken cancel)
    {
        var markers = new List<LiveMarker>();
        var pending = new MemoryStream(BlockBytes + (1 << 16));
        string? failed = "the reading stopped";
        try
        {
            using (var reader = new TraceReader(new TeeStream(OpenText(), pending, this), TextName))
            {
                ScanEvents(reader, markers, cancel);
            }
            failed = null;
        }
        catch (Exception e)
        {
            failed = e.Message;
            throw;
        }
        finally
        {
            if (pending.Length > 0)
            {
                AddBlock(pending.GetBuffer().AsSpan(0, (int)pending.Length)); // what was read: a run meets a bad line itself
            }
            EndBlocks(failed);
        }
        _markers = markers;
    }

    private void ScanEvents(TraceReader reader, List<LiveMarker> markers, CancellationToken cancel)
    {
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
    }

    /// <summary>A stream read from start to end: what the trace reader needs, and nothing else.</summary>
    private abstract class ReadOnlyStream : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public abstract override int Read(Span<byte> buffer);

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>A read-only stream that copies what is read from it to a buffer, kept as a block once it holds
    /// <see cref="BlockBytes"/>.</summary>
    private sealed class TeeStream(Stream inner, MemoryStream sink, LiveSource source) : ReadOnlyStream
    {
        public override int Read(Span<byte> buffer)
        {
            int n = inner.Read(buffer);
            sink.Write(buffer[..n]);
            if (sink.Length >= BlockBytes)
            {
                source.AddBlock(sink.GetBuffer().AsSpan(0, (int)sink.Length));
                sink.SetLength(0);
            }
            return n;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }
            base.Dispose(disposing);
        }
    }

    /// <summary>The kept copy as a stream: its blocks inflated one after the other, waiting for those still coming.</summary>
    private sealed class KeptStream(LiveSource source) : ReadOnlyStream
    {
        private int _next;
        private Stream? _block;

        public override int Read(Span<byte> buffer)
        {
            while (true)
            {
                if (_block is null)
                {
                    if (source.Block(_next) is not { } bytes)
                    {
                        return 0;
                    }
                    _next++;
                    _block = new DeflateStream(new MemoryStream(bytes, writable: false), CompressionMode.Decompress);
                }
                int n = _block.Read(buffer);
                if (n > 0 || buffer.IsEmpty)
                {
                    return n;
                }
                _block.Dispose();
                _block = null;
            }
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _block?.Dispose();
            }
            base.Dispose(disposing);
        }
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
