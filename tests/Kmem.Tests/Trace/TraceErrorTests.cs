// Bad input on purpose: each kind of malformed line must name the file, the line number,
// the line and what was expected; SkipBad counts them instead; unknown events are counted,
// never fatal; truncated or corrupt gzip and xz data give a clean TraceFormatException;
// StopAtMarker ends the stream at the right line.
using System.IO.Compression;
using System.Text;

namespace Kmem.Tests.Trace;

public class TraceErrorTests
{
    private const string Header = "# tracer: nop\n#\n# entries-in-buffer/entries-written: 3/3   #P:4\n";
    private const string Good = "          <idle>-0       [000] d..1.     0.000000: kmalloc: call_site=tracepoint_add_func+0xf7/0x3f0 ptr=ff3f709d0838d540 bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false\n";

    [Theory]
    [InlineData("          <idle>-0       [000] d..1.     0.000000: kmalloc: call_site=tracepoint_add_func+0xf7/0x3f0 ptr=ff3f709d0838d540 bytes_req=64 gfp_flags=GFP_KERNEL node=-1 accounted=false",
        "kmalloc: expected bytes_alloc=<number>")]
    [InlineData("          <idle>-0       [000] d..1.     0.000000: kmalloc: call_site=tracepoint_add_func+0xf7/0x3f0 ptr=ff3f709d0838d540 bytes_req=6x4 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false",
        "kmalloc: expected bytes_req=<number>, found 'bytes_req=6x4'")]
    [InlineData("          <idle>-0       [000] d..1.     0.000000: kmalloc: call_site=tracepoint_add_func+0xf7/0x3f0 ptr=ff3f709d0838d540 bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL|__GFP_BOGUS node=-1 accounted=false",
        "kmalloc: expected gfp_flags=<flags>")]
    [InlineData("          <idle>-0       [000] d..1.     0.000000: mm_page_alloc: page=fffacca84020f700 pfn=0xg3dc order=1 migratetype=0 gfp_flags=GFP_KERNEL",
        "mm_page_alloc: expected pfn=<0xhex or decimal>, found 'pfn=0xg3dc'")]
    [InlineData("          <idle>-0       [000] d..1.     0.000000: kfree: call_site=x+0x1/0x2 ptr=zz",
        "kfree: expected ptr=<hex pointer>")]
    [InlineData("          <idle>-0       [000] d..1.     0.000000: kmem_cache_free: call_site=x+0x1/0x2 ptr=ff3f709d083e2550",
        "kmem_cache_free: expected name=<cache name>")]
    [InlineData("          <idle>-0       [000] d..1.     0.000000: kmalloc: call_site=x+0x1/0x2 ptr=ff3f709d0838d540 bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=maybe",
        "kmalloc: expected accounted=true|false")]
    [InlineData("          <idle>-0       [000] d..4.     0.000000: mm_page_alloc_extfrag: page=fffacca840220000 pfn=0x8800 alloc_order=0 fallback_order=10 alloc_migratetype=0",
        "mm_page_alloc_extfrag: expected pageblock_order=<number>")]
    [InlineData("          <idle>-0       [000",
        "no [CPU] field")]
    [InlineData("          <idle>-0       [000] d..1.",
        "SECONDS.MICROS: timestamp")]
    [InlineData("          <idle>-0       [000] d..1.     0.0000x0: kfree: call_site=x ptr=0",
        "SECONDS.MICROS: timestamp")]
    [InlineData("          <idle>       [000] d..1.     0.000000: kfree: call_site=x ptr=0",
        "TASK-PID before [CPU]")]
    [InlineData("          <idle>-0       [000] d..1..     0.000000: kfree: call_site=x ptr=0",
        "4 or 5 latency flag characters")]
    [InlineData("          <idle>-0       [000] d..1.     0.000000",
        "SECONDS.MICROS: timestamp")]
    public void AMalformedLineNamesTheFileTheLineAndWhatWasExpected(string bad, string expected)
    {
        var ex = TraceData.Error(Header + Good + bad + "\n" + Good);
        Assert.Equal("test.txt", ex.FileName);
        Assert.Equal(5, ex.LineNumber);
        Assert.Equal(bad, ex.Line);
        Assert.Contains(expected, ex.Expected, StringComparison.Ordinal);
        Assert.Contains("test.txt: line 5: ", ex.Message, StringComparison.Ordinal);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Contains(bad, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AVeryLongBadLineIsCutInTheMessage()
    {
        string bad = "   a-1 [000] ..... 1.000000: kfree: call_site=" + new string('x', 5000);
        var ex = TraceData.Error(bad + "\n");
        Assert.True(ex.Message.Length < 1000);
        Assert.Equal(TraceFormatException.MaxShownLine + 1, ex.Line!.Length);
    }

    [Fact]
    public void SkipBadCountsMalformedLinesAndGoesOn()
    {
        string text = Header + Good
            + "          <idle>-0       [000] d..1.     0.000000: kmalloc: call_site=x+0x1/0x2 ptr=1 bytes_req=64\n"
            + "garbage\n"
            + "          <idle>-0       [000] d..1.     0.000000: mm_page_free: page=1 pfn=12z order=0\n"
            + Good;
        using var reader = TraceData.Reader(text, new TraceReaderOptions { SkipBad = true });
        var events = reader.ReadAll().ToList();
        Assert.Equal(2, events.Count);
        Assert.Equal(3, reader.BadLines);
        Assert.Equal(2, reader.Events);
        Assert.Equal(8, reader.Lines);
        Assert.Equal(8, events[1].LineNumber);
    }

    [Fact]
    public void UnknownEventsAreCountedByNameAndSkipped()
    {
        string text = Header + Good
            + "            bash-1  [001] .....  1.000000: rss_stat: mm_id=1 curr=1 type=MM_ANONPAGES size=4096B\n"
            + "            bash-1  [001] .....  1.000001: kmalloc_node: call_site=x ptr=1 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL node=0\n"
            + "            bash-1  [001] .....  1.000002: rss_stat: mm_id=1 curr=1 type=MM_FILEPAGES size=8192B\n"
            + Good;
        using var reader = TraceData.Reader(text);
        Assert.Equal(2, reader.ReadAll().Count());
        Assert.Equal(2, reader.UnknownEvents["rss_stat"]);
        Assert.Equal(1, reader.UnknownEvents["kmalloc_node"]);
        Assert.Equal(0, reader.BadLines);
        Assert.Equal(4, reader.Cpus);
    }

    [Fact]
    public void LostEventLinesAreCountedNotFatal()
    {
        using var reader = TraceData.Reader(Good + "CPU:1 [LOST 123 EVENTS]\n##### CPU 1 buffer started ####\n" + Good);
        Assert.Equal(2, reader.ReadAll().Count());
        Assert.Equal(123, reader.LostEvents);
    }

    [Fact]
    public void StopAtMarkerEndsTheStreamAtTheFirstMarkerContainingIt()
    {
        using var reader = TraceReader.Open(TraceData.SampleLinesPath, new TraceReaderOptions { StopAtMarker = "PHASE par" });
        var events = reader.ReadAll().ToList();
        Assert.Equal(47, events[^1].LineNumber);
        Assert.Equal("PHASE modules", events[^1].Text);
        Assert.Equal(48, reader.StopLine);
        Assert.Equal("PHASE parallel", reader.StopMarker);
        Assert.Equal(3, reader.Markers);
        Assert.False(reader.TryRead(out _));
        Assert.Equal(48, reader.Lines);
    }

    [Fact]
    public void WithoutAMatchingMarkerTheWholeTraceIsRead()
    {
        using var reader = TraceReader.Open(TraceData.SampleLinesPath, new TraceReaderOptions { StopAtMarker = "NO_SUCH_MARKER" });
        Assert.Equal(64, reader.ReadAll().Count());
        Assert.Equal(0, reader.StopLine);
        Assert.Null(reader.StopMarker);
    }

    [Fact]
    public void GzipInputIsReadLikeText()
    {
        byte[] gz = Gzip(File.ReadAllBytes(TraceData.SampleLinesPath));
        using var reader = new TraceReader(new MemoryStream(gz), "sample.gz");
        Assert.Equal(TraceCompression.Gzip, reader.Compression);
        Assert.Equal(64, reader.ReadAll().Count());
        Assert.Equal(2, reader.Cpus);
    }

    [Fact]
    public void ACorruptGzipIsACleanError()
    {
        byte[] gz = Gzip(Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat(Good, 2000))));
        byte[] badHeader = (byte[])gz.Clone();
        badHeader[2] = 7; // the compression method: only 8 (deflate) exists
        var ex = ReadToEnd(badHeader, "corrupt.gz");
        Assert.Contains("corrupt.gz", ex.Message, StringComparison.Ordinal);
        Assert.Contains("truncated or corrupt gzip", ex.Message, StringComparison.Ordinal);

        // Damage inside the deflate data may first come out as garbled lines, caught by the
        // parser, or as a data or CRC error from the decoder: a clean error either way.
        for (int i = gz.Length / 2; i < gz.Length / 2 + 16; i++)
        {
            gz[i] ^= 0x5a;
        }
        ex = ReadToEnd(gz, "corrupt.gz");
        Assert.Contains("corrupt.gz", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ATruncatedGzipIsACleanError()
    {
        byte[] gz = Gzip(Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat(Good, 2000))));
        var ex = ReadToEnd(gz.AsSpan(0, gz.Length * 2 / 3).ToArray(), "short.gz");
        Assert.Contains("short.gz", ex.Message, StringComparison.Ordinal);
        Assert.Contains("truncated or corrupt gzip", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ATruncatedXzIsACleanError()
    {
        byte[] head = new byte[100_000];
        using (var file = File.OpenRead(TraceData.RealTrace(TraceData.I386)))
        {
            file.ReadExactly(head);
        }
        string path = Path.Combine(Path.GetTempPath(), $"kmem-trace-{Guid.NewGuid():N}.txt.xz");
        File.WriteAllBytes(path, head);
        try
        {
            using var reader = TraceReader.Open(path);
            var ex = Assert.Throws<TraceFormatException>(() =>
            {
                while (reader.TryRead(out _))
                {
                }
            });
            Assert.Contains(path, ex.Message, StringComparison.Ordinal);
            Assert.Contains("truncated or corrupt xz", ex.Message, StringComparison.Ordinal);
            Assert.True(reader.Events > 1000);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void ANameThatPromisesCompressionOverPlainTextIsAnError()
    {
        var ex = Assert.Throws<TraceFormatException>(() => new TraceReader(new MemoryStream(Encoding.UTF8.GetBytes(Good)), "trace.txt.xz"));
        Assert.Contains("trace.txt.xz", ex.Message, StringComparison.Ordinal);
        Assert.Contains("xz", ex.Expected, StringComparison.Ordinal);
    }

    [Fact]
    public void CompressionIsFoundFromTheMagicBytesWhateverTheName()
    {
        byte[] gz = Gzip(Encoding.UTF8.GetBytes(Good));
        using var reader = new TraceReader(new MemoryStream(gz), "trace.txt");
        Assert.Equal(TraceCompression.Gzip, reader.Compression);
        Assert.Single(reader.ReadAll());
    }

    private static TraceFormatException ReadToEnd(byte[] data, string name) =>
        Assert.Throws<TraceFormatException>(() =>
        {
            using var reader = new TraceReader(new MemoryStream(data), name);
            while (reader.TryRead(out _))
            {
            }
        });

    private static byte[] Gzip(byte[] data)
    {
        var output = new MemoryStream();
        using (var gz = new GZipStream(output, CompressionLevel.Optimal, leaveOpen: true))
        {
            gz.Write(data);
        }
        return output.ToArray();
    }

    [Fact]
    public void ALineLongerThanTheBufferIsReadWhole()
    {
        string text = new('x', 600_000);
        var events = TraceData.Events(Good + "            init-1       [000] .....     7.763235: tracing_mark_write: " + text + "\n" + Good);
        Assert.Equal(3, events.Count);
        Assert.Equal(text, events[1].Text);
    }

    [Fact]
    public void ALineLongerThanTheLimitIsAnError()
    {
        var ex = TraceData.Error(Good + new string('x', TraceReader.MaxLineLength + 10) + "\n");
        Assert.Equal(2, ex.LineNumber);
        Assert.Contains("a line of at most", ex.Expected, StringComparison.Ordinal);
    }
}
