// The ftrace text reader (the output of /sys/kernel/tracing/trace, format from
// kernel/trace/trace_output.c and the 6.1 kmem/percpu event templates): one streaming
// pass over plain, gzip or xz input, in a reused byte buffer, so memory stays bounded
// whatever the trace's length. This file owns the input, the line splitting, the header
// and the counters; TraceReader.Parse.cs parses a line (TraceLinePrefix its prefix,
// TraceFieldReader its fields). Not thread-safe: one reader per thread.
using System.IO.Compression;
using System.Text;
using Kmem.Trace;
using SharpCompress.Compressors.Xz;

namespace Kmem;

/// <summary>How a trace's bytes are compressed (found from the magic bytes).</summary>
public enum TraceCompression
{
    /// <summary>Plain text.</summary>
    None,
    /// <summary>gzip (<c>.gz</c>).</summary>
    Gzip,
    /// <summary>xz (<c>.xz</c>).</summary>
    Xz,
}

/// <summary>
/// Reads an ftrace kmem trace (the text of <c>/sys/kernel/tracing/trace</c> recorded with the
/// kmem and percpu events of Linux 6.1), plain or compressed with gzip or xz, one event at a time.
/// </summary>
/// <remarks>
/// <para>
/// Usage: open a file and loop until <see cref="TryRead"/> returns false.
/// <code>
/// using var reader = TraceReader.Open("trace.txt.xz", new TraceReaderOptions { StopAtMarker = "SNAPSHOT_FILE slabinfo" });
/// while (reader.TryRead(out TraceEvent e))
/// {
///     if (e.Kind == TraceEventKind.Kmalloc) { /* e.Ptr, e.BytesReq, e.BytesAlloc, e.Gfp, e.CallSite … */ }
/// }
/// Console.WriteLine($"{reader.Events} events on {reader.Cpus} CPUs, {reader.BadLines} bad lines");
/// </code>
/// The format is found from the first bytes (gzip, xz or text), whatever the name says. The header
/// (<c># tracer:</c>, <c># entries-in-buffer/entries-written: A/B   #P:N</c>) is read when the reader
/// is created, so <see cref="Cpus"/> is known before the first event. Each line is the common prefix
/// (<c>TASK-PID [(TGID)] [CPU] FLAGS SECONDS.MICROS: EVENT: FIELDS</c>, with 4 or 5 latency flag
/// characters or none) and one of the 6.1 events of <see cref="TraceEventKind"/>; fields are
/// expected in the kernel's order. Unknown event names are counted in <see cref="UnknownEvents"/>
/// and skipped; <c>CPU:N [LOST M EVENTS]</c> lines are added to <see cref="LostEvents"/>.
/// </para>
/// <para>
/// A malformed line throws <see cref="TraceFormatException"/> naming the file, the line number, the
/// line and what was expected (a gfp mask no allocation can carry is malformed too); with
/// <see cref="TraceReaderOptions.SkipBad"/> it is counted in <see cref="BadLines"/> instead. Input that
/// is no ftrace capture throws as well: an empty file, or one whose lines hold neither the
/// <c># tracer:</c> header nor a single event (when the reader is created, or at the end of the input).
/// A UTF-8 byte order mark before the first line is skipped. Truncated or corrupt compressed data always throws
/// <see cref="TraceFormatException"/>; a gzip file's end is checked against its last member's size
/// field, so a file of several concatenated gzip members is reported as truncated. Parsing a line
/// allocates nothing in the common case: call sites, comms, cache names and gfp texts are interned,
/// numbers are read from the bytes in place.
/// </para>
/// </remarks>
public sealed partial class TraceReader : IDisposable
{
    /// <summary>Lines longer than this are malformed (the kernel's own lines stay far below it).</summary>
    public const int MaxLineLength = 1 << 20;

    // Grows (to MaxLineLength at most) only for a longer line than it holds.
    private const int BufferSize = 1 << 18;

    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private readonly Stream _input;
    private readonly TraceSource? _source;
    private long _decompressTicks;
    private readonly long _inputLength;
    private readonly bool _skipBad;
    private readonly string? _stopAt;
    private byte[] _buf;
    private int _pos;
    private int _end;
    private bool _eof;
    private long _decompressed;
    private bool _pending;
    private int _lineStart;
    private int _pendingStart;
    private int _pendingLength;
    private bool _stopped;
    private bool _disposed;

    private readonly SpanIntern _comms = new();
    private readonly SpanIntern _sites = new();
    private readonly SpanIntern _names = new();
    private readonly SpanIntern _gfps = new();
    private readonly Dictionary<string, long> _unknown = new(StringComparer.Ordinal);
    private readonly SpanIntern _unknownNames = new();
    private readonly long[] _kindCounts = new long[(int)TraceEventKind.ReclaimRetryZone + 1];
    private readonly List<string> _markerTexts = [];
    private bool _checkedCapture;

    /// <summary>Opens a trace file (plain text, <c>.gz</c> or <c>.xz</c>, told apart by their first bytes).</summary>
    /// <param name="path">The file.</param>
    /// <param name="options">Options, or null for the defaults.</param>
    /// <returns>A reader positioned after the header.</returns>
    /// <exception cref="TraceFormatException">The file is compressed in a way this reader does not know, or its compressed data is corrupt.</exception>
    public static TraceReader Open(string path, TraceReaderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        try
        {
            return new TraceReader(file, path, options, leaveOpen: false);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Reads a trace from a stream (plain text, gzip or xz, told apart by the first bytes).</summary>
    /// <param name="stream">The trace's bytes.</param>
    /// <param name="fileName">The name used in error messages.</param>
    /// <param name="options">Options, or null for the defaults.</param>
    /// <param name="leaveOpen">Leave <paramref name="stream"/> open when the reader is disposed.</param>
    /// <exception cref="TraceFormatException">The data is compressed in a way this reader does not know, or is corrupt.</exception>
    public TraceReader(Stream stream, string fileName = "(stream)", TraceReaderOptions? options = null, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(fileName);
        _stream = stream;
        _leaveOpen = leaveOpen;
        FileName = fileName;
        _skipBad = options?.SkipBad ?? false;
        _stopAt = string.IsNullOrEmpty(options?.StopAtMarker) ? null : options.StopAtMarker;
        _buf = new byte[BufferSize];
        _inputLength = stream.CanSeek ? stream.Length - stream.Position : -1;

        // Sniff the magic bytes; for plain text they simply stay at the start of the buffer.
        int head = 0;
        while (head < TraceSniff.HeadLength)
        {
            int n = stream.Read(_buf, head, TraceSniff.HeadLength - head);
            if (n == 0)
            {
                break;
            }
            head += n;
        }
        var headBytes = _buf.AsSpan(0, head);
        Compression = TraceSniff.Detect(headBytes);
        if (TraceSniff.Unsupported(headBytes) is string other)
        {
            throw new TraceFormatException(fileName, 0, null, $"{other}-compressed data is not supported: use plain text, gzip or xz", null);
        }
        var announced = TraceSniff.FromExtension(fileName);
        if (announced != TraceCompression.None && announced != Compression)
        {
            throw new TraceFormatException(fileName, 0, null,
                $"the name says {Describe(announced)} but the data does not start with the {Describe(announced)} magic bytes (truncated or not compressed?)", null);
        }
        if (Compression == TraceCompression.None)
        {
            _input = stream;
            _end = head;
            _decompressed = head;
        }
        else
        {
            // The managed xz decoder reads its input in small pieces: give it a buffer in front of the file.
            // liblzma's decoder, where it loads, is the faster one (NativeXzStream).
            var source = new TraceSource(_buf.AsSpan(0, head).ToArray(), new BufferedStream(stream, 1 << 16));
            try
            {
                _input = Compression == TraceCompression.Gzip
                    ? new GZipStream(source, CompressionMode.Decompress)
                    : NativeXzStream.IsAvailable ? new NativeXzStream(source) : new XZStream(source);
            }
            catch (Exception ex) when (ex is not TraceFormatException)
            {
                throw Corrupt(ex);
            }
            _source = source;
        }
        ReadHeader();
    }

    /// <summary>The name given for the trace (the path for <see cref="Open"/>).</summary>
    public string FileName { get; }

    /// <summary>How the input was compressed.</summary>
    public TraceCompression Compression { get; }

    /// <summary>The tracer named by the header (<c># tracer: nop</c>), or null when there is no header.</summary>
    public string? Tracer { get; private set; }

    /// <summary>The number of CPUs from the header's <c>#P:N</c>; 0 when the trace has no such header.</summary>
    public int Cpus { get; private set; }

    /// <summary>entries-in-buffer from the header; -1 when absent.</summary>
    public long EntriesInBuffer { get; private set; } = -1;

    /// <summary>entries-written from the header; -1 when absent. Larger than <see cref="EntriesInBuffer"/> when the ring buffer wrapped.</summary>
    public long EntriesWritten { get; private set; } = -1;

    /// <summary>Wall time spent in the gzip or xz decoder so far, in seconds (0 for plain text): what a
    /// replay's speed excludes, so that it measures the text's events.</summary>
    /// <remarks>A follower of a shared parse (SharedTrace) decodes nothing itself: its figure is the part of the decoding
    /// that held it up, the time it waited for the parsing thread up to the time that thread spent decoding.</remarks>
    public double DecompressSeconds => (double)(_shared is null ? _decompressTicks : Math.Min(_shared.WaitTicks, _sharedSource!._decompressTicks))
        / System.Diagnostics.Stopwatch.Frequency;

    /// <summary>Bytes of trace text read so far (after decompression), read ahead included.</summary>
    public long BytesRead => _sharedSource?.BytesRead ?? _decompressed;

    /// <summary>Bytes of the input consumed so far (the compressed bytes for gzip and xz), read ahead included: with <see cref="InputLength"/>, how far through the file the reader is.</summary>
    public long InputBytesRead => _sharedSource?.InputBytesRead ?? _source?.Total ?? _decompressed;

    /// <summary>The input's length in bytes when the stream can tell it (a file can); otherwise -1.</summary>
    public long InputLength => _inputLength;

    /// <summary>Lines read so far, header and comments included.</summary>
    public long Lines { get; private set; }

    /// <summary>Events returned so far (markers included).</summary>
    public long Events { get; private set; }

    /// <summary>Malformed lines skipped (only with <see cref="TraceReaderOptions.SkipBad"/>).</summary>
    public long BadLines { get; private set; }

    /// <summary>Trace markers seen, including the one that stopped the stream.</summary>
    public long Markers { get; private set; }

    /// <summary>Events the kernel reported lost (<c>CPU:N [LOST M EVENTS]</c> lines).</summary>
    public long LostEvents { get; private set; }

    /// <summary>Events of unknown names, skipped, by name.</summary>
    public IReadOnlyDictionary<string, long> UnknownEvents => _unknown;

    /// <summary>The number of the line of the marker that ended the stream (<see cref="TraceReaderOptions.StopAtMarker"/>); 0 when none did.</summary>
    public long StopLine { get; private set; }

    /// <summary>The text of the marker that ended the stream, or null.</summary>
    public string? StopMarker { get; private set; }

    /// <summary>How many distinct marker texts <see cref="MarkerTexts"/> keeps.</summary>
    public const int MaxMarkerTexts = 32;

    /// <summary>The texts of the trace markers read so far, each once, in order of first sight (the first
    /// <see cref="MaxMarkerTexts"/>): what <see cref="TraceReaderOptions.StopAtMarker"/> can match.</summary>
    public IReadOnlyList<string> MarkerTexts => _markerTexts;

    /// <summary>Events of one kind returned so far.</summary>
    /// <param name="kind">The kind.</param>
    /// <returns>The count.</returns>
    public long CountOf(TraceEventKind kind) => (uint)kind < (uint)_kindCounts.Length ? _kindCounts[(int)kind] : 0;

    /// <summary>Reads the next event.</summary>
    /// <param name="e">The event; default when there is none.</param>
    /// <returns>False at the end of the trace, or once the stop marker was seen.</returns>
    /// <exception cref="TraceFormatException">A malformed line (without <see cref="TraceReaderOptions.SkipBad"/>), or corrupt compressed data.</exception>
    public bool TryRead(out TraceEvent e)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_shared is not null)
        {
            return TryReadShared(out e);
        }
        while (!_stopped && NextLine(out var line))
        {
            if (line.IsEmpty || line[0] == '#')
            {
                ReadComment(line);
                continue;
            }
            e = default;
            switch (ParseLine(line, ref e, out string? expected))
            {
                case LineResult.Event:
                    if (e.Kind == TraceEventKind.Marker)
                    {
                        Markers++;
                        if (_markerTexts.Count < MaxMarkerTexts && !_markerTexts.Contains(e.Text!))
                        {
                            _markerTexts.Add(e.Text!);
                        }
                        if (_stopAt is not null && e.Text!.Contains(_stopAt, StringComparison.Ordinal))
                        {
                            _stopped = true;
                            StopLine = Lines;
                            StopMarker = e.Text;
                            break;
                        }
                    }
                    Events++;
                    _kindCounts[(int)e.Kind]++;
                    return true;
                case LineResult.Skipped:
                    break;
                default:
                    if (!_skipBad)
                    {
                        throw new TraceFormatException(FileName, Lines, Encoding.UTF8.GetString(line), expected!);
                    }
                    BadLines++;
                    break;
            }
        }
        if (!_stopped && !_checkedCapture)
        {
            _checkedCapture = true;
            CheckWasCapture();
        }
        e = default;
        return false;
    }

    /// <summary>The remaining events, as an enumeration over <see cref="TryRead"/>.</summary>
    /// <returns>The events, read lazily; enumerate once.</returns>
    public IEnumerable<TraceEvent> ReadAll()
    {
        while (TryRead(out var e))
        {
            yield return e;
        }
    }

    /// <summary>Closes the input (and the stream, unless it was given with leaveOpen).</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _shared?.Leave();
        if (!ReferenceEquals(_input, _stream))
        {
            _input.Dispose();
        }
        if (!_leaveOpen)
        {
            _stream.Dispose();
        }
    }

    // The header: comment lines up to the first event line, which is kept for TryRead. Input that ends
    // before any event line is a capture only when it has ftrace's "# tracer:" header (a trace of nothing).
    private void ReadHeader()
    {
        while (NextLine(out var line))
        {
            if (line.IsEmpty || line[0] == '#')
            {
                ReadComment(line);
                continue;
            }
            _pending = true;
            _pendingStart = _lineStart;
            _pendingLength = line.Length;
            Lines--;
            return;
        }
        if (Tracer is null)
        {
            throw new TraceFormatException(FileName, 0, null, _decompressed == 0
                ? $"the {(Compression == TraceCompression.None ? "file" : "decompressed data")} is empty: {NotACapture}"
                : $"{Lines} comment or blank lines, no '# tracer:' header and no event: {NotACapture}", null);
        }
        _checkedCapture = true;
    }

    private const string NotACapture = "not an ftrace capture (expected the text of /sys/kernel/tracing/trace: "
        + "a '# tracer:' header, then kmem and percpu event lines)";

    // At the end of the input: lines were read, but neither a header nor one event (nor an unknown
    // event, nor a lost-events line) says they came from ftrace; they were all skipped as malformed.
    private void CheckWasCapture()
    {
        if (Tracer is null && Events == 0 && _unknown.Count == 0 && LostEvents == 0)
        {
            throw new TraceFormatException(FileName, 0, null,
                $"none of its {Lines} lines is an ftrace event line and it has no '# tracer:' header ({BadLines} malformed): {NotACapture}", null);
        }
    }

    private void ReadComment(ReadOnlySpan<byte> line)
    {
        if (line.StartsWith("# tracer: "u8))
        {
            Tracer = Encoding.UTF8.GetString(line["# tracer: "u8.Length..].Trim((byte)' '));
            return;
        }
        var entries = "# entries-in-buffer/entries-written: "u8;
        if (!line.StartsWith(entries))
        {
            return;
        }
        // "# entries-in-buffer/entries-written: 1826878/1826878   #P:2"
        var rest = line[entries.Length..];
        int slash = rest.IndexOf((byte)'/');
        int hashP = rest.IndexOf("#P:"u8);
        if (slash > 0 && hashP > slash
            && TraceNumbers.TryUnsigned(rest[..slash], out ulong inBuffer)
            && TraceNumbers.TryUnsigned(rest[(slash + 1)..hashP].TrimEnd((byte)' '), out ulong written)
            && TraceNumbers.TryUnsigned(rest[(hashP + 3)..].TrimEnd((byte)' '), out ulong cpus)
            && cpus <= int.MaxValue)
        {
            EntriesInBuffer = (long)inBuffer;
            EntriesWritten = (long)written;
            Cpus = (int)cpus;
        }
    }

    // The next line without its '\n' (and '\r'), counted in Lines.
    private bool NextLine(out ReadOnlySpan<byte> line)
    {
        if (_pending)
        {
            _pending = false;
            Lines++;
            line = _buf.AsSpan(_pendingStart, _pendingLength);
            return true;
        }
        while (true)
        {
            int nl = _buf.AsSpan(_pos, _end - _pos).IndexOf((byte)'\n');
            if (nl >= 0)
            {
                _lineStart = _pos;
                line = _buf.AsSpan(_pos, nl);
                _pos += nl + 1;
                break;
            }
            if (_eof)
            {
                if (_pos == _end)
                {
                    line = default;
                    return false;
                }
                _lineStart = _pos;
                line = _buf.AsSpan(_pos, _end - _pos);
                _pos = _end;
                break;
            }
            Fill();
        }
        if (Lines == 0 && line.StartsWith("\uFEFF"u8))
        {
            // A UTF-8 byte order mark, as some editors save text: not part of the first line.
            line = line[3..];
            _lineStart += 3;
        }
        Lines++;
        if (!line.IsEmpty && line[^1] == '\r')
        {
            line = line[..^1];
        }
        return true;
    }

    private void Fill()
    {
        // Move the partial line to the front, growing the buffer only for a line longer than it.
        if (_pos > 0)
        {
            _buf.AsSpan(_pos, _end - _pos).CopyTo(_buf);
            _end -= _pos;
            _pos = 0;
        }
        if (_end == _buf.Length)
        {
            if (_buf.Length >= MaxLineLength)
            {
                throw new TraceFormatException(FileName, Lines + 1, Encoding.UTF8.GetString(_buf.AsSpan(0, 200)),
                    $"a line of at most {MaxLineLength} bytes (no line break found)");
            }
            Array.Resize(ref _buf, Math.Min(_buf.Length * 2, MaxLineLength));
        }
        int n;
        long started = Compression == TraceCompression.None ? 0 : System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            n = _input.Read(_buf, _end, _buf.Length - _end);
        }
        catch (Exception ex) when (Compression != TraceCompression.None && ex is not TraceFormatException)
        {
            // Decoders throw all sorts (data errors, end of stream, argument checks) on bad input.
            throw Corrupt(ex);
        }
        if (started != 0)
        {
            _decompressTicks += System.Diagnostics.Stopwatch.GetTimestamp() - started;
        }
        if (n == 0)
        {
            _eof = true;
            if (Compression == TraceCompression.Gzip)
            {
                CheckGzipEnd(_source!);
            }
            return;
        }
        _end += n;
        _decompressed += n;
    }

    // The gzip decoder stops quietly when the data ends early; the member trailer's ISIZE
    // (the decompressed size mod 2^32) is what shows the end was real.
    private void CheckGzipEnd(TraceSource source)
    {
        source.Drain();
        if (source.Total < 18 || source.Trailer != (uint)_decompressed)
        {
            throw new TraceFormatException(FileName, Lines + 1, null,
                $"truncated or corrupt gzip data: the data ends after {_decompressed} decompressed bytes without a matching gzip trailer", null);
        }
    }

    private TraceFormatException Corrupt(Exception ex) =>
        new(FileName, Lines + 1, null,
            $"truncated or corrupt {Describe(Compression)} data after {_decompressed} decompressed bytes: {ex.Message}", ex);

    private static string Describe(TraceCompression c) => c switch
    {
        TraceCompression.Gzip => "gzip",
        TraceCompression.Xz => "xz",
        _ => "text",
    };
}
