// A reader that follows another one parsed on a thread of its own (SharedTrace.cs): its
// events are the source's, handed over in chunks instead of parsed again, and it counts
// them as the source did (events, kinds); what only the parsing knows (lines, bad lines,
// lost and unknown events, markers, the stop marker) is the source's, taken when the
// trace ends. Read on one thread, like any reader. Part of TraceReader.
using System.Runtime.CompilerServices;

namespace Kmem;

public sealed partial class TraceReader
{
    // Set for a follower: where it is in the shared chunks, and the reader that parses.
    private readonly SharedTrace.Cursor? _shared;
    private readonly TraceReader? _sharedSource;
    // Next()'s event for a reader that parses.
    private TraceEvent _current;

    /// <summary>A follower of <paramref name="source"/>, which a SharedTrace reads on its own thread.</summary>
    internal TraceReader(SharedTrace.Cursor cursor, TraceReader source)
    {
        _shared = cursor;
        _sharedSource = source;
        _stream = _input = Stream.Null;
        _leaveOpen = true;
        _buf = [];
        FileName = source.FileName;
        Compression = source.Compression;
        Tracer = source.Tracer;
        Cpus = source.Cpus;
        EntriesInBuffer = source.EntriesInBuffer;
        EntriesWritten = source.EntriesWritten;
        _inputLength = source._inputLength;
        _skipBad = source._skipBad;
        _stopAt = source._stopAt;
    }

    // The next event where it lies (the chunk's slot, or the reader's own for a reader that parses), or a null
    // reference at the end: the replayer copies it into a local of its own, which needs no GC write barriers, where
    // a copy through TryRead's out parameter (an address that may be on the heap) takes them for a whole event.
    // The reference is good until the next call.
    internal ref readonly TraceEvent Next()
    {
        if (_shared is null)
        {
            return ref TryRead(out _current) ? ref _current : ref Unsafe.NullRef<TraceEvent>();
        }
        ObjectDisposedException.ThrowIf(_disposed, this);
        ref readonly var e = ref _shared.Next();
        if (Unsafe.IsNullRef(in e))
        {
            TakeEnd(_sharedSource!);
            return ref e;
        }
        Events++;
        _kindCounts[(int)e.Kind]++;
        return ref e;
    }

    private bool TryReadShared(out TraceEvent e)
    {
        if (!_shared!.TryRead(out e))
        {
            TakeEnd(_sharedSource!);
            return false;
        }
        Events++;
        _kindCounts[(int)e.Kind]++;
        return true;
    }

    // At the end of the trace (the source's thread is done with it): what only the parsing counted.
    private void TakeEnd(TraceReader source)
    {
        Tracer = source.Tracer;
        Lines = source.Lines;
        BadLines = source.BadLines;
        Markers = source.Markers;
        LostEvents = source.LostEvents;
        StopLine = source.StopLine;
        StopMarker = source.StopMarker;
        _unknown.Clear();
        foreach (var (name, count) in source._unknown)
        {
            _unknown[name] = count;
        }
        _markerTexts.Clear();
        _markerTexts.AddRange(source._markerTexts);
        source._kindCounts.CopyTo(_kindCounts, 0);
    }
}
