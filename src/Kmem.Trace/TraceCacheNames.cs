// Which slab cache each kmem_cache_alloc call site of a trace allocates from, read from the
// trace before it is replayed. The cache is an argument of the kernel's call that 6.1's
// kmem_cache_alloc event leaves out; kmem_cache_free prints it (name=). So a first pass
// follows each object from its allocation (call site and bytes_alloc, the key the replay's
// TraceCaches uses) to its free, and the first free that names a site's object names the
// site's cache: the same rule by which a one-pass replay renames a provisional call-site
// cache, applied before the site's first allocation instead of at that free. What it reads
// is the kernel's own state at the allocation (which cache), never the outcome of a decision
// Kmem makes. A site no free names keeps its provisional cache. Immutable once scanned;
// safe to share between replays.
namespace Kmem;

/// <summary>The kernel's cache name for each kmem_cache_alloc call site of a trace, as its frees name them.</summary>
public sealed class TraceCacheNames
{
    private readonly Dictionary<(string CallSite, ulong BytesAlloc), string> _names;

    private TraceCacheNames(Dictionary<(string, ulong), string> names) => _names = names;

    /// <summary>The reader options of a scan of a whole trace: every line it can read (a malformed line is the
    /// replay's to report, and a replay that stops at a marker names its caches as the whole replay does).</summary>
    public static TraceReaderOptions ScanOptions { get; } = new() { SkipBad = true };

    /// <summary>Sites named.</summary>
    public int Count => _names.Count;

    /// <summary>The name of the cache the call site allocates <paramref name="bytesAlloc"/>-byte objects from, or null
    /// when no free in the trace named one of them.</summary>
    public string? NameOf(string callSite, ulong bytesAlloc) => _names.GetValueOrDefault((callSite, bytesAlloc));

    /// <summary>Opens the trace at <paramref name="path"/> with <paramref name="options"/> (<see cref="ScanOptions"/>
    /// for the whole trace) and scans it (<see cref="Scan(TraceReader)"/>).</summary>
    /// <exception cref="TraceFormatException">The trace is malformed (unless the options skip bad lines) or corrupt.</exception>
    public static TraceCacheNames Scan(string path, TraceReaderOptions? options = null)
    {
        using var reader = TraceReader.Open(path, options);
        return Scan(reader);
    }

    /// <summary>Reads <paramref name="reader"/> to its end (or its stop marker) and names every call site whose
    /// objects a kmem_cache_free named: the first such free names it.</summary>
    /// <exception cref="TraceFormatException">A malformed line (unless the reader skips them).</exception>
    public static TraceCacheNames Scan(TraceReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        var names = new Dictionary<(string, ulong), string>();
        // The live kmem_cache_alloc objects by trace address: their site. A kmalloc at an address, or a free without a
        // name, drops it, so a later named free at that address names nothing (as in the replay, whose kmalloc objects
        // belong to no site).
        var live = new Dictionary<ulong, (string CallSite, ulong BytesAlloc)>();
        while (reader.TryRead(out var e))
        {
            switch (e.Kind)
            {
                case TraceEventKind.KmemCacheAlloc:
                    live[e.Ptr] = (e.CallSite ?? "?", e.BytesAlloc);
                    break;
                case TraceEventKind.Kmalloc:
                case TraceEventKind.Kfree:
                    live.Remove(e.Ptr);
                    break;
                case TraceEventKind.KmemCacheFree:
                    if (live.Remove(e.Ptr, out var site) && e.Name is { } name)
                    {
                        names.TryAdd(site, name);
                    }
                    break;
            }
        }
        return new TraceCacheNames(names);
    }
}
