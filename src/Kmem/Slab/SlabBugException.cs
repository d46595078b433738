// The exception for a bad free to the slab layer: a double free, a pointer that
// is not an object's start, an object freed to the wrong cache, a pointer the
// slab layer never handed out. The message is the kernel-style report.
namespace Kmem;

/// <summary>A slab misuse the kernel would report with slab_err/object_err or BUG(): the report names the
/// address (kernel-style, PAGE_OFFSET-based) and the cache.</summary>
public sealed class SlabBugException : KernelBugException
{
    /// <summary>Creates the exception.</summary>
    public SlabBugException(string report, ulong address, string cache) : base(report)
    {
        Address = address;
        Cache = cache;
    }

    /// <summary>Creates an exception with a generic report.</summary>
    public SlabBugException() : this("BUG: slab misuse", 0, "") { }

    /// <summary>Creates an exception with a report.</summary>
    public SlabBugException(string report) : this(report, 0, "") { }

    /// <summary>Creates an exception with a report and a cause.</summary>
    public SlabBugException(string report, Exception inner) : base(report, inner) => Cache = "";

    /// <summary>The address, as the kernel prints it.</summary>
    public ulong Address { get; }

    /// <summary>The cache's name ("(none)" when the pointer is not in any cache).</summary>
    public string Cache { get; }
}
