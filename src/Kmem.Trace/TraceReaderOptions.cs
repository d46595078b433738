// The knobs of TraceReader: what to do with a malformed line (the command's --skip-bad)
// and which trace marker ends the stream (--until). Read once when the reader is
// created; immutable after construction, so one instance may serve several readers.
namespace Kmem;

/// <summary>Options for <see cref="TraceReader"/>.</summary>
public sealed class TraceReaderOptions
{
    /// <summary>
    /// Count malformed lines in <see cref="TraceReader.BadLines"/> and skip them instead of
    /// throwing <see cref="TraceFormatException"/> (the command's <c>--skip-bad</c>). Default false.
    /// Corrupt compressed data, and a line longer than <see cref="TraceReader.MaxLineLength"/>, are always errors.
    /// </summary>
    public bool SkipBad { get; init; }

    /// <summary>
    /// End the stream at the first trace marker whose text contains this string (ordinal
    /// comparison; the command's <c>--until</c>). The stopping marker itself is not returned;
    /// see <see cref="TraceReader.StopLine"/>. Null (the default) reads to the end.
    /// </summary>
    public string? StopAtMarker { get; init; }
}
