// One parse of a trace for several replays at once (kmem replay's main and aligned runs
// read the same text): a thread of its own reads the trace with one TraceReader and
// hands its events out in chunks, and each replay reads them through a TraceReader of
// its own that follows this one (TraceReader.Shared.cs), so the text is parsed once
// instead of once per replay. A chunk every follower is done with is filled again; the
// parsing thread runs a bounded number of chunks ahead of the slowest follower. A
// follower disposed early stops counting (the others go on); Dispose stops the parsing
// and makes the followers still reading fail. The events are the source reader's, in
// its order, with its counts, markers and errors, so a follower replays exactly what the
// source would have handed out.
// Locking: _gate guards the chunk list, the free chunks, the reader counts and the end;
// a chunk's events are written by the parsing thread before it is published under
// _gate and only read after.
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;

namespace Kmem;

/// <summary>A trace parsed once on a thread of its own and read by several replays.</summary>
internal sealed class SharedTrace : IDisposable
{
    // 4,096 events a chunk take a lock per chunk, not per event; 64 chunks ahead (about 50 MB) let the two replays
    // drift apart without the faster waiting for the slower.
    private const int DefaultChunkEvents = 4096;
    private const int DefaultMaxChunksAhead = 64;

    private readonly int _chunkEvents;
    private readonly int _maxChunksAhead;

    private readonly object _gate = new();
    private readonly TraceReader _source;
    private readonly TraceReader[] _followers;
    private readonly Stack<Chunk> _free = [];
    private readonly Thread _thread;
    private int _readers;
    private int _ahead;
    private Chunk _tail;
    private bool _ended;
    private bool _cancelled;
    private ExceptionDispatchInfo? _error;

    /// <summary>Starts parsing <paramref name="source"/> (opened, its header read) for <paramref name="followers"/> readers.</summary>
    /// <param name="source">The reader that parses; only the parsing thread reads it until this is disposed.</param>
    /// <param name="followers">How many followers read the events.</param>
    /// <param name="chunkEvents">Events per chunk.</param>
    /// <param name="maxChunksAhead">Chunks the parsing may have out before the slowest follower is done with one.</param>
    public SharedTrace(TraceReader source, int followers, int chunkEvents = DefaultChunkEvents, int maxChunksAhead = DefaultMaxChunksAhead)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfLessThan(followers, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkEvents, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxChunksAhead, 2);
        _source = source;
        _readers = followers;
        _chunkEvents = chunkEvents;
        _maxChunksAhead = maxChunksAhead;
        // An empty first chunk that every follower starts on.
        _tail = new Chunk(0) { Readers = followers };
        _ahead = 1;
        _followers = new TraceReader[followers];
        for (int i = 0; i < followers; i++)
        {
            _followers[i] = new TraceReader(new Cursor(this, _tail), source);
        }
        _thread = new Thread(Parse) { IsBackground = true, Name = "kmem trace parser" };
        _thread.Start();
    }

    /// <summary>The reader of follower <paramref name="index"/>: give each replay its own.</summary>
    public TraceReader Follower(int index) => _followers[index];

    /// <summary>Stops the parsing (a follower still reading fails) and waits for the parsing thread.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _cancelled = true;
            Monitor.PulseAll(_gate);
        }
        _thread.Join();
    }

    private void Parse()
    {
        Chunk? chunk = null;
        int n = 0;
        try
        {
            while ((chunk = TakeFree()) is not null)
            {
                var events = chunk.Events;
                bool more = true;
                for (n = 0; n < events.Length && (more = _source.TryRead(out events[n])); n++)
                {
                }
                Publish(chunk, n, end: !more, error: null);
                chunk = null;
                if (!more)
                {
                    return;
                }
            }
        }
        catch (Exception ex)
        {
            // The events before the bad line are handed out first, as the source reader would have.
            Publish(chunk ?? new Chunk(0), chunk is null ? 0 : n, end: true, ExceptionDispatchInfo.Capture(ex));
        }
    }

    // A chunk to fill: a free one, or a new one while fewer than the bound are out; null once cancelled.
    private Chunk? TakeFree()
    {
        lock (_gate)
        {
            while (_ahead >= _maxChunksAhead && !_cancelled)
            {
                Monitor.Wait(_gate);
            }
            if (_cancelled)
            {
                return null;
            }
            _ahead++;
            return _free.Count > 0 ? _free.Pop() : new Chunk(_chunkEvents);
        }
    }

    private void Publish(Chunk chunk, int count, bool end, ExceptionDispatchInfo? error)
    {
        lock (_gate)
        {
            chunk.Count = count;
            chunk.Next = null;
            chunk.Readers = _readers;
            _tail.Next = chunk;
            _tail = chunk;
            _ended = end;
            _error = error;
            Monitor.PulseAll(_gate);
        }
    }

    // The cursor's chunk is read to its end: moves it to the next one with events, waiting for the parsing thread;
    // false at the end of the trace (the source's error, if it ended on one, is thrown).
    private bool Advance(Cursor c)
    {
        lock (_gate)
        {
            while (true)
            {
                var next = c.Chunk.Next;
                if (_cancelled)
                {
                    throw new OperationCanceledException("the shared reading of the trace was stopped");
                }
                if (next is null)
                {
                    if (_ended)
                    {
                        if (_error is not null)
                        {
                            ThrowError(_error);
                        }
                        return false;
                    }
                    long waitFrom = System.Diagnostics.Stopwatch.GetTimestamp();
                    Monitor.Wait(_gate);
                    c.WaitTicks += System.Diagnostics.Stopwatch.GetTimestamp() - waitFrom;
                    continue;
                }
                Done(c.Chunk);
                c.Chunk = next;
                c.Index = 0;
                if (next.Count > 0)
                {
                    return true;
                }
            }
        }
    }

    // Under _gate: one follower less needs the chunk; the last one frees it.
    private void Done(Chunk chunk)
    {
        if (--chunk.Readers == 0)
        {
            _free.Push(chunk);
            _ahead--;
            Monitor.PulseAll(_gate);
        }
    }

    // A follower disposed before the end: the chunks it had yet to read, and those to come, no longer wait for it.
    private void Leave(Cursor c)
    {
        lock (_gate)
        {
            if (c.Left)
            {
                return;
            }
            c.Left = true;
            _readers--;
            for (var chunk = c.Chunk; chunk is not null; chunk = chunk.Next)
            {
                Done(chunk);
            }
        }
    }

    // Each follower throws an exception of its own: the same object thrown on two threads would share its trace.
    private static void ThrowError(ExceptionDispatchInfo error)
    {
        if (error.SourceException is TraceFormatException { FileName.Length: > 0 } tf)
        {
            throw new TraceFormatException(tf.FileName, tf.LineNumber, tf.Line, tf.Expected, tf.InnerException);
        }
        error.Throw();
    }

    /// <summary>Events in the order the source read them.</summary>
    internal sealed class Chunk(int size)
    {
        public readonly TraceEvent[] Events = new TraceEvent[size];
        public int Count;
        public Chunk? Next;
        public int Readers;
    }

    /// <summary>One follower's place in the chunks: read on that follower's thread only.</summary>
    internal sealed class Cursor
    {
        private readonly SharedTrace _shared;

        internal Cursor(SharedTrace shared, Chunk first)
        {
            _shared = shared;
            Chunk = first;
        }

        internal Chunk Chunk { get; set; }

        internal int Index { get; set; }

        internal bool Left { get; set; }

        /// <summary>Stopwatch ticks the follower waited for the parsing thread.</summary>
        internal long WaitTicks { get; set; }

        /// <summary>The next event, or false at the end of the trace.</summary>
        public bool TryRead(out TraceEvent e)
        {
            if (Index >= Chunk.Count && !_shared.Advance(this))
            {
                e = default;
                return false;
            }
            e = Chunk.Events[Index++];
            return true;
        }

        /// <summary>The next event in its chunk's slot (good until the next call), or a null reference at the end of the trace.</summary>
        public ref readonly TraceEvent Next()
        {
            if (Index >= Chunk.Count && !_shared.Advance(this))
            {
                return ref Unsafe.NullRef<TraceEvent>();
            }
            return ref Chunk.Events[Index++];
        }

        /// <summary>The follower stops reading: the parsing no longer waits for it.</summary>
        public void Leave() => _shared.Leave(this);
    }
}
