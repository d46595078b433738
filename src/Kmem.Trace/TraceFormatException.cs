// The one error a trace reader throws for bad input: a malformed line, a line too
// long, or compressed data that is truncated or corrupt. It carries where (file, line
// number, the line itself, trimmed) and what was expected, so a command can print it
// as it is and stop; decoder exceptions never escape raw. Immutable.
namespace Kmem;

/// <summary>A trace could not be read: a malformed line, or truncated or corrupt compressed data.</summary>
public class TraceFormatException : Exception
{
    /// <summary>Lines longer than this are cut in <see cref="Line"/> and in the message.</summary>
    public const int MaxShownLine = 300;

    /// <summary>Creates an exception with a message only.</summary>
    public TraceFormatException()
        : this("The trace could not be read.")
    {
    }

    /// <summary>Creates an exception with a message only.</summary>
    /// <param name="message">The message.</param>
    public TraceFormatException(string message)
        : base(message)
    {
        FileName = "";
        Expected = message;
    }

    /// <summary>Creates an exception with a message and the error that caused it.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public TraceFormatException(string message, Exception innerException)
        : base(message, innerException)
    {
        FileName = "";
        Expected = message;
    }

    /// <summary>Creates the exception for a malformed line.</summary>
    /// <param name="fileName">The trace's name as given to the reader.</param>
    /// <param name="lineNumber">The line's number, from 1.</param>
    /// <param name="line">The line's text (cut to <see cref="MaxShownLine"/> characters).</param>
    /// <param name="expected">What was expected, e.g. <c>kmalloc: expected bytes_alloc=&lt;number&gt;</c>.</param>
    public TraceFormatException(string fileName, long lineNumber, string line, string expected)
        : this(fileName, lineNumber, line, expected, null)
    {
    }

    /// <summary>Creates the exception for bad input at a line, with its cause.</summary>
    /// <param name="fileName">The trace's name as given to the reader.</param>
    /// <param name="lineNumber">The line's number, from 1; 0 when the error is not at a line.</param>
    /// <param name="line">The line's text, or null when the error is not in a line.</param>
    /// <param name="expected">What was expected, or what went wrong.</param>
    /// <param name="innerException">The cause, or null.</param>
    public TraceFormatException(string fileName, long lineNumber, string? line, string expected, Exception? innerException)
        : base(Compose(fileName, lineNumber, line, expected), innerException)
    {
        FileName = fileName;
        LineNumber = lineNumber;
        Line = line is null ? null : Cut(line);
        Expected = expected;
    }

    /// <summary>The trace's name as given to the reader (a path, or the name given with a stream).</summary>
    public string FileName { get; }

    /// <summary>The number of the bad line, from 1; 0 when the error is not tied to one line.</summary>
    public long LineNumber { get; }

    /// <summary>The bad line, cut to <see cref="MaxShownLine"/> characters; null when there is none.</summary>
    public string? Line { get; }

    /// <summary>What was expected where the line went wrong, or what went wrong with the data.</summary>
    public string Expected { get; }

    private static string Cut(string line) =>
        line.Length <= MaxShownLine ? line : string.Concat(line.AsSpan(0, MaxShownLine), "…");

    private static string Compose(string fileName, long lineNumber, string? line, string expected)
    {
        string where = lineNumber > 0 ? $"{fileName}: line {lineNumber}: " : $"{fileName}: ";
        return line is null ? where + expected : $"{where}{expected}\n  {Cut(line)}";
    }
}
