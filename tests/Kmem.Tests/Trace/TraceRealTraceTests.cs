// The reader on the recorded traces themselves: the first 100,000 lines of each .xz parse
// with no bad line, and the count of every event kind equals a count made independently
// (decompressing again and counting ": name: " in the text). The full traces are for the Soak
// run only; the parse speed is measured by bench/Kmem.Bench's ReplayBenchmarks, never in a test.
using SharpCompress.Compressors.Xz;

namespace Kmem.Tests.Trace;

public class TraceRealTraceTests
{
    private const int Slice = 100_000;

    private static readonly (TraceEventKind Kind, string Name)[] s_names =
    [
        (TraceEventKind.Kmalloc, "kmalloc"), (TraceEventKind.KmemCacheAlloc, "kmem_cache_alloc"),
        (TraceEventKind.Kfree, "kfree"), (TraceEventKind.KmemCacheFree, "kmem_cache_free"),
        (TraceEventKind.MmPageAlloc, "mm_page_alloc"), (TraceEventKind.MmPageFree, "mm_page_free"),
        (TraceEventKind.MmPageFreeBatched, "mm_page_free_batched"),
        (TraceEventKind.MmPageAllocZoneLocked, "mm_page_alloc_zone_locked"),
        (TraceEventKind.MmPagePcpuDrain, "mm_page_pcpu_drain"),
        (TraceEventKind.MmPageAllocExtfrag, "mm_page_alloc_extfrag"),
        (TraceEventKind.PercpuAllocPercpu, "percpu_alloc_percpu"),
        (TraceEventKind.PercpuFreePercpu, "percpu_free_percpu"),
        (TraceEventKind.PercpuCreateChunk, "percpu_create_chunk"),
        (TraceEventKind.PercpuDestroyChunk, "percpu_destroy_chunk"),
        (TraceEventKind.PercpuAllocPercpuFail, "percpu_alloc_percpu_fail"),
        (TraceEventKind.Marker, "tracing_mark_write"),
    ];

    [Theory]
    [InlineData(TraceData.X64, 2)]
    [InlineData(TraceData.I386, 1)]
    public void TheFirstHundredThousandLinesParseAndCountAsTheTextSays(string capture, int cpus)
    {
        string path = TraceData.RealTrace(capture);
        var counted = new long[s_names.Length];
        using (var reader = TraceReader.Open(path))
        {
            Assert.Equal(TraceCompression.Xz, reader.Compression);
            Assert.Equal(cpus, reader.Cpus);
            var slot = new int[(int)TraceEventKind.Marker + 1];
            for (int k = 0; k < s_names.Length; k++)
            {
                slot[(int)s_names[k].Kind] = k;
            }
            while (reader.TryRead(out var e) && e.LineNumber <= Slice)
            {
                counted[slot[(int)e.Kind]]++;
            }
            Assert.Equal(0, reader.BadLines);
            Assert.Empty(reader.UnknownEvents);
        }

        var expected = new long[s_names.Length];
        using (var xz = new XZStream(File.OpenRead(path)))
        using (var text = new StreamReader(xz, bufferSize: 1 << 20))
        {
            string[] patterns = [.. s_names.Select(n => $": {n.Name}: ")];
            for (int i = 0; i < Slice && text.ReadLine() is string line; i++)
            {
                for (int k = 0; k < patterns.Length; k++)
                {
                    if (line.Contains(patterns[k], StringComparison.Ordinal))
                    {
                        expected[k]++;
                        break;
                    }
                }
            }
        }
        Assert.Equal(expected, counted);
        Assert.True(expected.Sum() > Slice - 20);
    }

    [Fact]
    [Trait("Category", "Soak")]
    public void TheWholeTracesParseWithoutABadLine()
    {
        foreach (string capture in new[] { TraceData.X64, TraceData.I386 })
        {
            using var reader = TraceReader.Open(TraceData.RealTrace(capture));
            while (reader.TryRead(out _))
            {
            }
            Assert.Equal(0, reader.BadLines);
            Assert.Equal(reader.EntriesWritten, reader.Events);
        }
    }
}
