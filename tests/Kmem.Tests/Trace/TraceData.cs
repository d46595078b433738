// Where the trace tests find their inputs: the real lines copied into Data/sample-lines.txt
// (x86-64 capture B with its header, then i386 capture H), and the real recorded traces
// (see Captures); plus helpers to read a text through a TraceReader.
using System.Text;

namespace Kmem.Tests.Trace;

internal static class TraceData
{
    public const string X64 = Captures.X64;
    public const string I386 = Captures.I386;

    public static string SampleLinesPath => Path.Combine(AppContext.BaseDirectory, "Trace", "Data", "sample-lines.txt");

    /// <summary>The recorded trace of a capture (trace.txt.xz).</summary>
    public static string RealTrace(string capture) => Captures.Trace(capture);

    public static TraceReader Reader(string text, TraceReaderOptions? options = null) =>
        new(new MemoryStream(Encoding.UTF8.GetBytes(text)), "test.txt", options);

    /// <summary>All events of a text.</summary>
    public static List<TraceEvent> Events(string text, TraceReaderOptions? options = null)
    {
        using var reader = Reader(text, options);
        return [.. reader.ReadAll()];
    }

    /// <summary>The one event of a single line.</summary>
    public static TraceEvent One(string line)
    {
        var events = Events(line + "\n");
        return Assert.Single(events);
    }

    /// <summary>The exception a text throws when read to the end.</summary>
    public static TraceFormatException Error(string text)
    {
        using var reader = Reader(text);
        return Assert.Throws<TraceFormatException>(() =>
        {
            while (reader.TryRead(out _))
            {
            }
        });
    }
}
