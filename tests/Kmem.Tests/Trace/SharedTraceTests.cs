// A trace parsed once for several replays (SharedTrace): each follower reads exactly the
// events and end counts a reader of its own would (stop marker included), a bad line
// reaches every follower after the events before it, a follower that stops early holds
// no other up, and disposing stops a follower waiting for events. Small chunks and a
// small bound make the chunk hand-over and the waiting happen within a few lines.
namespace Kmem.Tests.Trace;

public class SharedTraceTests
{
    private const string Header = "# tracer: nop\n#\n# entries-in-buffer/entries-written: 3/3   #P:4\n";
    private const string Good = "          <idle>-0       [000] d..1.     0.000000: kmalloc: call_site=tracepoint_add_func+0xf7/0x3f0 ptr=ff3f709d0838d540 bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false\n";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData(1, 2)]
    [InlineData(5, 2)]
    [InlineData(4096, 64)]
    public async Task EachFollowerReadsWhatItsOwnReaderWould(int chunkEvents, int maxChunksAhead)
    {
        var options = new TraceReaderOptions { StopAtMarker = "PHASE par" };
        using var own = TraceReader.Open(TraceData.SampleLinesPath, options);
        var expected = own.ReadAll().ToList();
        using var source = TraceReader.Open(TraceData.SampleLinesPath, options);
        using var shared = new SharedTrace(source, 2, chunkEvents, maxChunksAhead);
        var reads = Enumerable.Range(0, 2).Select(i => Task.Run(() => shared.Follower(i).ReadAll().ToList())).ToArray();
        var read = await Task.WhenAll(reads).WaitAsync(Patience);
        for (int i = 0; i < 2; i++)
        {
            var f = shared.Follower(i);
            Assert.Equal(expected, read[i]);
            Assert.Equal(own.Events, f.Events);
            Assert.Equal(own.Lines, f.Lines);
            Assert.Equal(own.Markers, f.Markers);
            Assert.Equal(own.StopLine, f.StopLine);
            Assert.Equal(own.StopMarker, f.StopMarker);
            Assert.Equal(own.MarkerTexts, f.MarkerTexts);
            Assert.Equal(own.Cpus, f.Cpus);
            Assert.Equal(own.FileName, f.FileName);
            foreach (var kind in Enum.GetValues<TraceEventKind>())
            {
                Assert.Equal(own.CountOf(kind), f.CountOf(kind));
            }
            Assert.False(f.TryRead(out _));
            Assert.InRange(f.DecompressSeconds, 0, source.DecompressSeconds); // only decoding that held it up
        }
        Assert.Equal(48, shared.Follower(0).StopLine);
    }

    [Fact]
    public void ABadLineReachesEveryFollowerAfterTheEventsBeforeIt()
    {
        string bad = "          <idle>-0       [000] d..1.     0.000000: kfree: call_site=x+0x1/0x2 ptr=zz";
        string text = Header + Good + Good + Good + bad + "\n" + Good;
        var expected = TraceData.Error(text);
        using var source = TraceData.Reader(text);
        // Room for every chunk, so that the followers can be read one after the other on this thread.
        using var shared = new SharedTrace(source, 2, chunkEvents: 2, maxChunksAhead: 8);
        for (int i = 0; i < 2; i++)
        {
            var f = shared.Follower(i);
            for (int n = 0; n < 3; n++)
            {
                Assert.True(f.TryRead(out var e));
                Assert.Equal(4 + n, e.LineNumber);
            }
            var ex = Assert.Throws<TraceFormatException>(() => f.TryRead(out _));
            Assert.Equal(expected.Message, ex.Message);
            Assert.Equal(7, ex.LineNumber);
        }
    }

    [Fact]
    public async Task AFollowerThatStopsEarlyHoldsNoOtherUp()
    {
        string text = Header + string.Concat(Enumerable.Repeat(Good, 200));
        using var source = TraceData.Reader(text);
        using var shared = new SharedTrace(source, 2, chunkEvents: 4, maxChunksAhead: 2);
        var early = shared.Follower(1);
        for (int n = 0; n < 3; n++)
        {
            Assert.True(early.TryRead(out _));
        }
        early.Dispose();
        int rest = await Task.Run(() => shared.Follower(0).ReadAll().Count()).WaitAsync(Patience);
        Assert.Equal(200, rest);
        Assert.Equal(203, shared.Follower(0).Lines);
    }

    [Fact]
    public async Task DisposingStopsAFollowerWaitingForEvents()
    {
        string text = Header + string.Concat(Enumerable.Repeat(Good, 200));
        using var source = TraceData.Reader(text);
        var shared = new SharedTrace(source, 2, chunkEvents: 4, maxChunksAhead: 2);
        // Follower 1 never reads: follower 0 gets the chunks out so far and then waits for it.
        var reading = Task.Run(() => shared.Follower(0).ReadAll().Count());
        await Task.Delay(50);
        shared.Dispose();
        await Assert.ThrowsAsync<OperationCanceledException>(() => reading.WaitAsync(Patience));
    }
}
