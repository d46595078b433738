// Exceptions for the programming errors the kernel would BUG() on. Each carries
// the kernel-style report as its message; with OnBug.Report the same report is
// logged instead and the operation is refused, leaving the state unchanged.
namespace Kmem;

/// <summary>A programming error the kernel would BUG() on; the message is the kernel-style report.</summary>
public class KernelBugException : InvalidOperationException
{
    /// <summary>Creates the exception from its report.</summary>
    public KernelBugException(string report) : base(report) => Report = report;

    /// <summary>Creates the exception from its report and cause.</summary>
    public KernelBugException(string report, Exception inner) : base(report, inner) => Report = report;

    /// <summary>Creates an exception with a generic report.</summary>
    public KernelBugException() : this("kernel BUG") { }

    /// <summary>The kernel-style report, as it is logged.</summary>
    public string Report { get; }
}

/// <summary>The page allocator's "BUG: Bad page state": freeing a page that is not allocated,
/// with the wrong order, or whose state forbids it.</summary>
public sealed class BadPageStateException : KernelBugException
{
    /// <summary>Creates the exception.</summary>
    public BadPageStateException(string report, ulong pfn, string reason) : base(report)
    {
        Pfn = pfn;
        Reason = reason;
    }

    /// <summary>Creates an exception with a generic report.</summary>
    public BadPageStateException() : this("BUG: Bad page state", 0, "unknown") { }

    /// <summary>Creates an exception with a report.</summary>
    public BadPageStateException(string report) : this(report, 0, "unknown") { }

    /// <summary>Creates an exception with a report and a cause.</summary>
    public BadPageStateException(string report, Exception inner) : base(report, inner) => Reason = "unknown";

    /// <summary>The frame.</summary>
    public ulong Pfn { get; }

    /// <summary>Why the page was dumped ("page dumped because: …").</summary>
    public string Reason { get; }
}
