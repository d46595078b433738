// The live server without a browser: malformed requests are refused with a 4xx and the server
// goes on; the deltas sent while playing, applied to the first whole map, give the map a whole
// snapshot gives, which is the map MemoryMap classifies; seeking to a marker shows the figures
// `kmem replay --until` prints; the frame under the pointer is described; compare mode puts the
// other slab allocators at the same event, with the figures `kmem replay --slab … --until` prints;
// the decisions a step settles add up to the totals; a scenario's phases are its chapters;
// stopping releases the machines and the port.
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Kmem.Live;

namespace Kmem.Browser.Tests;

public sealed class ServerTests
{
    [Fact]
    public async Task MalformedRequestsGetA4xxAndTheServerGoesOn()
    {
        await using var server = await LiveTestServer.StartAsync();
        using var http = new HttpClient();
        var bad = new (HttpMethod Method, string Path, HttpStatusCode Status)[]
        {
            (HttpMethod.Post, "api/control", HttpStatusCode.BadRequest),
            (HttpMethod.Post, "api/control?cmd=explode", HttpStatusCode.BadRequest),
            (HttpMethod.Post, "api/control?cmd=step&n=abc", HttpStatusCode.BadRequest),
            (HttpMethod.Post, "api/control?cmd=step&n=0", HttpStatusCode.BadRequest),
            (HttpMethod.Post, "api/control?cmd=step&n=-5", HttpStatusCode.BadRequest),
            (HttpMethod.Post, "api/control?cmd=step&n=99999999999999999999999", HttpStatusCode.BadRequest),
            (HttpMethod.Post, "api/control?cmd=play&speed=fast", HttpStatusCode.BadRequest),
            (HttpMethod.Post, "api/control?cmd=speed", HttpStatusCode.BadRequest),
            (HttpMethod.Post, "api/control?cmd=seek", HttpStatusCode.BadRequest),
            (HttpMethod.Post, "api/control?cmd=seek&marker=100000", HttpStatusCode.BadRequest),
            (HttpMethod.Post, "api/control?cmd=seek&position=-1", HttpStatusCode.BadRequest),
            (HttpMethod.Post, "api/control?cmd=backend&name=slab2", HttpStatusCode.BadRequest),
            (HttpMethod.Post, "api/control?cmd=backend", HttpStatusCode.BadRequest),
            (HttpMethod.Get, "api/control?cmd=play", HttpStatusCode.MethodNotAllowed),
            (HttpMethod.Post, "api/state", HttpStatusCode.MethodNotAllowed),
            (HttpMethod.Delete, "", HttpStatusCode.MethodNotAllowed),
            (HttpMethod.Get, "api/cache", HttpStatusCode.BadRequest),
            (HttpMethod.Get, "api/cache?name=" + new string('x', 200), HttpStatusCode.BadRequest),
            (HttpMethod.Get, "api/cache?name=..%2F..%2Fetc%2Fpasswd", HttpStatusCode.BadRequest),
            (HttpMethod.Get, "api/cache?name=no_such_cache", HttpStatusCode.NotFound),
            (HttpMethod.Get, "api/frame", HttpStatusCode.BadRequest),
            (HttpMethod.Get, "api/frame?pfn=-1", HttpStatusCode.BadRequest),
            (HttpMethod.Get, "api/frame?pfn=0x10", HttpStatusCode.BadRequest),
            (HttpMethod.Get, "api/frame?pfn=131072", HttpStatusCode.NotFound),
            (HttpMethod.Post, "api/frame?pfn=1", HttpStatusCode.MethodNotAllowed),
            (HttpMethod.Post, "api/control?cmd=compare", HttpStatusCode.BadRequest),
            (HttpMethod.Post, "api/control?cmd=compare&on=yes", HttpStatusCode.BadRequest),
            (HttpMethod.Get, "etc/passwd", HttpStatusCode.NotFound),
            (HttpMethod.Get, "../../etc/passwd", HttpStatusCode.NotFound),
            (HttpMethod.Get, "index.html", HttpStatusCode.NotFound),
        };
        foreach (var (method, path, status) in bad)
        {
            using var request = new HttpRequestMessage(method, new Uri(server.Url, path));
            using var response = await http.SendAsync(request);
            Assert.True(response.StatusCode == status, $"{method} /{path}: {(int)response.StatusCode}, expected {(int)status}");
        }
        // Still serving, still paused on the booted machine.
        var state = await LiveTestServer.StateAsync(http, server.Url, _ => true, TimeSpan.FromSeconds(30));
        Assert.Equal(0, state.GetProperty("position").GetInt64());
        Assert.False(state.GetProperty("playing").GetBoolean());
        using var page = await http.GetAsync(server.Url);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("<canvas id=\"map\"", await page.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task DeltasApplyToTheMapOfAWholeSnapshot()
    {
        await using var server = await LiveTestServer.StartAsync();
        using var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
        using var stream = await http.GetStreamAsync(new Uri(server.Url, "api/updates"));
        using var reader = new StreamReader(stream);
        async Task<JsonElement> NextAsync()
        {
            while (true)
            {
                string? line = await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120));
                Assert.NotNull(line);
                if (line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    return JsonDocument.Parse(line[6..]).RootElement.Clone();
                }
            }
        }
        var first = await NextAsync();
        Assert.True(first.GetProperty("full").GetBoolean());
        byte[] keys = Convert.FromBase64String(first.GetProperty("frames").GetString()!);
        long seq = first.GetProperty("seq").GetInt64();
        byte[] booted = (byte[])keys.Clone();
        await LiveTestServer.ControlAsync(http, server.Url, "cmd=play&speed=40000");
        int deltas = 0, changed = 0;
        while (true)
        {
            var u = await NextAsync();
            long s = u.GetProperty("seq").GetInt64();
            if (u.GetProperty("full").GetBoolean())
            {
                keys = Convert.FromBase64String(u.GetProperty("frames").GetString()!);
            }
            else
            {
                Assert.Equal(seq + 1, s); // a page that misses one resynchronises; this reader must miss none
                int[] runs = [.. u.GetProperty("runs").EnumerateArray().Select(e => e.GetInt32())];
                LiveSnapshot.Apply(keys, runs);
                deltas++;
                changed += runs.Length / 3;
            }
            seq = s;
            if (deltas == 6)
            {
                await LiveTestServer.ControlAsync(http, server.Url, "cmd=pause");
            }
            if (deltas >= 6 && !u.GetProperty("playing").GetBoolean())
            {
                break;
            }
        }
        Assert.True(changed > 0, "the deltas changed no frame");
        Assert.NotEqual(booted, keys);
        var whole = await LiveTestServer.StateAsync(http, server.Url, s => s.GetProperty("seq").GetInt64() == seq, TimeSpan.FromSeconds(30));
        Assert.Equal(Convert.FromBase64String(whole.GetProperty("frames").GetString()!), keys);
        // The whole map is MemoryMap's classification of the paused machine (a sample of frames, each classified on its own).
        var legend = MemoryMap.Legend;
        var mismatches = await server.Session.Run!.AskAsync(m =>
        {
            var bad = new List<string>();
            for (ulong pfn = 0; pfn < m.MaxPfn; pfn += 61)
            {
                var st = MemoryMap.Classify(m, pfn, out int order);
                int key = legend.ToList().IndexOf(MemoryMap.LegendOf(st, st == FrameState.Free ? order : 0));
                if (key != keys[pfn])
                {
                    bad.Add($"pfn {pfn}: {legend[keys[pfn]].Name} on the map, {legend[key].Name} by MemoryMap.Classify");
                }
            }
            return bad;
        });
        Assert.NotNull(mismatches);
        Assert.Empty(mismatches);
    }

    [Fact]
    public async Task SeekingToAMarkerShowsTheFiguresOfReplayUntil()
    {
        await using var server = await LiveTestServer.StartAsync();
        using var http = new HttpClient();
        var (index, position) = await LiveTestServer.MarkerAsync(http, server.Url, LiveTestServer.Marker);
        await LiveTestServer.ControlAsync(http, server.Url, $"cmd=seek&marker={index}");
        var s = await LiveTestServer.StateAsync(http, server.Url,
            s => s.GetProperty("position").GetInt64() == position && !s.GetProperty("playing").GetBoolean(), TimeSpan.FromSeconds(120));
        var expected = LiveTestServer.ReplayUntil("slub", LiveTestServer.Marker, "buddyinfo", "slabinfo");
        Assert.Equal(LiveTestServer.Lines(expected["buddyinfo"]), LiveTestServer.Lines(s.GetProperty("buddyinfo").GetString()!));
        var rows = s.GetProperty("slabinfo").EnumerateArray().Select(r => string.Join(' ', r.GetProperty("name").GetString(),
            r.GetProperty("activeObjs"), r.GetProperty("numObjs"), r.GetProperty("objSize"), r.GetProperty("objPerSlab"),
            r.GetProperty("pagesPerSlab"), r.GetProperty("activeSlabs"), r.GetProperty("numSlabs"))).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(LiveTestServer.SlabRows(expected["slabinfo"]), rows);
        Assert.Equal(LiveTestServer.Marker, s.GetProperty("chapter").GetString());
        // The charted counters were sampled all the way from the booted machine, though the seek published nothing
        // on its way: one sample every `every` events from event 0 up to the position, each counter rising.
        var samples = s.GetProperty("counterSamples");
        long every = samples.GetProperty("every").GetInt64();
        var counters = s.GetProperty("counters");
        foreach (var series in samples.GetProperty("series").EnumerateObject())
        {
            long[] v = [.. series.Value.EnumerateArray().Select(x => x.GetInt64())];
            Assert.Equal(position / every + 1, v.Length);
            if (series.Name is not ("MemFree" or "Slab"))
            {
                Assert.True(v.Zip(v.Skip(1)).All(p => p.First <= p.Second), series.Name + " fell between two samples");
                Assert.InRange(v[^1], v[0], counters.GetProperty(series.Name).GetInt64());
            }
        }
        var pgalloc = samples.GetProperty("series").GetProperty("pgalloc").EnumerateArray().Select(x => x.GetInt64()).ToList();
        Assert.True(pgalloc[^1] > pgalloc[0], "no page allocated between the first sample and the last");
    }

    [Fact]
    public async Task AScenarioPlaysStepByStep()
    {
        await Assert.ThrowsAsync<ArgumentException>(() => LiveServer.StartAsync(new LiveServerOptions
        {
            Scenario = "meltdown",
            Boot = (slab, _) => new MachineOptions { Slab = slab },
        }));
        await using var server = await LiveTestServer.StartScenarioAsync("fragmentation");
        using var http = new HttpClient();
        var booted = await LiveTestServer.StateAsync(http, server.Url, _ => true, TimeSpan.FromSeconds(60));
        Assert.Equal("scenario fragmentation", booted.GetProperty("source").GetString());
        Assert.Equal(16384UL, booted.GetProperty("maxPfn").GetUInt64()); // the scenario's own 64 MiB machine
        await LiveTestServer.ControlAsync(http, server.Url, "cmd=step&n=3");
        var s = await LiveTestServer.StateAsync(http, server.Url, s => s.GetProperty("position").GetInt64() == 3 && !s.GetProperty("playing").GetBoolean(),
            TimeSpan.FromSeconds(60));
        Assert.Equal("keeper and leaver hold 256 pages each", s.GetProperty("event").GetString());
        Assert.StartsWith("fill:", s.GetProperty("chapter").GetString(), StringComparison.Ordinal);
        long free = s.GetProperty("counters").GetProperty("MemFree").GetInt64();
        Assert.True(free < booted.GetProperty("counters").GetProperty("MemFree").GetInt64() - 2 * 256 * 4, $"MemFree {free} kB: the tasks' pages are not there");
        // The scenario's phases are its chapters, read by playing it once; seeking to one shows the machine its step left.
        var withMarkers = await LiveTestServer.StateAsync(http, server.Url, s => s.TryGetProperty("markers", out var m) && m.GetArrayLength() > 0,
            TimeSpan.FromSeconds(60));
        var markers = withMarkers.GetProperty("markers").EnumerateArray().Select(m => (Text: m.GetProperty("text").GetString()!, Position: m.GetProperty("position").GetInt64())).ToList();
        Assert.Equal(["fill", "scatter", "order-4", "compact_memory"], markers.Select(m => m.Text[..m.Text.IndexOf(':', StringComparison.Ordinal)]));
        Assert.Equal(markers[^1].Position, withMarkers.GetProperty("total").GetInt64());
        await LiveTestServer.ControlAsync(http, server.Url, "cmd=seek&marker=2");
        var at = await LiveTestServer.StateAsync(http, server.Url, s => s.GetProperty("position").GetInt64() == markers[2].Position && !s.GetProperty("playing").GetBoolean()
            && !s.GetProperty("seeking").GetBoolean(), TimeSpan.FromSeconds(60));
        Assert.Equal(markers[2].Text, at.GetProperty("chapter").GetString());
        Assert.Equal("PHASE " + markers[2].Text, at.GetProperty("event").GetString());
        Assert.True(at.GetProperty("counters").GetProperty("compact_stall").GetInt64() > 0, "the order-4 allocation compacted directly");
    }

    [Fact]
    public async Task TheFrameUnderThePointerIsDescribed()
    {
        await using var server = await LiveTestServer.StartAsync();
        using var http = new HttpClient();
        var (index, position) = await LiveTestServer.MarkerAsync(http, server.Url, LiveTestServer.Marker);
        await LiveTestServer.ControlAsync(http, server.Url, $"cmd=seek&marker={index}");
        var s = await LiveTestServer.StateAsync(http, server.Url,
            s => s.GetProperty("position").GetInt64() == position && !s.GetProperty("playing").GetBoolean() && !s.GetProperty("seeking").GetBoolean(),
            TimeSpan.FromSeconds(120));
        byte[] keys = Convert.FromBase64String(s.GetProperty("frames").GetString()!);
        var caches = s.GetProperty("slabinfo").EnumerateArray().Select(r => r.GetProperty("name").GetString()).ToHashSet();
        async Task<JsonElement> FrameAsync(long pfn) =>
            JsonDocument.Parse(await http.GetStringAsync(new Uri(server.Url, $"api/frame?pfn={pfn}"))).RootElement.Clone();
        var hole = await FrameAsync(0);
        Assert.Equal(("Hole", "DMA", 0), (hole.GetProperty("state").GetString(), hole.GetProperty("zone").GetString(), hole.GetProperty("order").GetInt32()));
        // A slab frame names a cache of slabinfo; a free frame's order is its key on the map; every frame has a migrate type.
        var legend = MemoryMap.Legend.ToList();
        int slab = Array.IndexOf(keys, (byte)legend.IndexOf(MemoryMap.LegendOf(FrameState.Slab)));
        int firstStateKey = legend.IndexOf(MemoryMap.LegendOf(FrameState.PerCpuList)); // the free orders come first
        var f = await FrameAsync(slab);
        Assert.Equal("Slab", f.GetProperty("state").GetString());
        Assert.Contains(f.GetProperty("cache").GetString(), caches);
        Assert.Contains("Slab", f.GetProperty("flags").GetString(), StringComparison.Ordinal);
        int free = Array.FindLastIndex(keys, k => k < firstStateKey && k > 0);
        var g = await FrameAsync(free);
        Assert.Equal(("Free", (int)keys[free]), (g.GetProperty("state").GetString(), g.GetProperty("order").GetInt32()));
        Assert.True(Enum.TryParse<MigrateType>(g.GetProperty("migrateType").GetString(), out _), g.GetProperty("migrateType").GetString());
        Assert.False(g.TryGetProperty("cache", out _));
    }

    [Fact]
    public async Task CompareShowsTheOtherAllocatorsAtTheSameEvent()
    {
        await using var server = await LiveTestServer.StartAsync();
        using var http = new HttpClient();
        var (index, position) = await LiveTestServer.MarkerAsync(http, server.Url, LiveTestServer.Marker);
        await LiveTestServer.ControlAsync(http, server.Url, "cmd=compare&on=1");
        await LiveTestServer.ControlAsync(http, server.Url, $"cmd=seek&marker={index}");
        var sides = JsonDocument.Parse(await WaitForAsync(async () =>
        {
            string json = await http.GetStringAsync(new Uri(server.Url, "api/compare"));
            var a = JsonDocument.Parse(json).RootElement;
            return a.GetArrayLength() == 2 && a.EnumerateArray().All(u => u.GetProperty("position").GetInt64() == position) ? json : null;
        })).RootElement;
        Assert.Equal(["slab", "slob"], sides.EnumerateArray().Select(u => u.GetProperty("backend").GetString()));
        Assert.All(sides.EnumerateArray(), u => Assert.True(u.GetProperty("side").GetBoolean() && u.GetProperty("full").GetBoolean()));
        var slob = sides[1];
        var expected = LiveTestServer.ReplayUntil("slob", LiveTestServer.Marker, "buddyinfo", "slobinfo");
        Assert.Equal(LiveTestServer.Lines(expected["slobinfo"]), LiveTestServer.Lines(slob.GetProperty("slobinfo").GetString()!));
        Assert.Equal(LiveTestServer.Lines(expected["buddyinfo"]), LiveTestServer.Lines(slob.GetProperty("buddyinfo").GetString()!));
        Assert.Equal(131072, Convert.FromBase64String(slob.GetProperty("frames").GetString()!).Length);
        var main = await LiveTestServer.StateAsync(http, server.Url, s => s.GetProperty("position").GetInt64() == position, TimeSpan.FromSeconds(60));
        Assert.True(main.GetProperty("compare").GetBoolean());
        Assert.Equal("slub", main.GetProperty("backend").GetString());
        // Switching this page to SLOB puts SLUB beside it; compare off stops the others.
        await LiveTestServer.ControlAsync(http, server.Url, "cmd=backend&name=slob");
        await WaitForAsync(async () => (await http.GetStringAsync(new Uri(server.Url, "api/compare"))) is { } j && j.Contains("\"backend\":\"slub\"", StringComparison.Ordinal)
            && !j.Contains("\"backend\":\"slob\"", StringComparison.Ordinal) ? j : null);
        await LiveTestServer.ControlAsync(http, server.Url, "cmd=compare&on=0");
        Assert.Equal("[]", await http.GetStringAsync(new Uri(server.Url, "api/compare")));
        Assert.Null(server.Session.Other(SlabAllocator.Slub));
        await LiveTestServer.StateAsync(http, server.Url, s => !s.GetProperty("compare").GetBoolean(), TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task TheDecisionsOfSingleStepsAddUpToTheTotals()
    {
        await using var server = await LiveTestServer.StartAsync();
        using var http = new HttpClient();
        await LiveTestServer.ControlAsync(http, server.Url, "cmd=step&n=250000");
        static Dictionary<string, JsonElement> Decisions(JsonElement s) =>
            s.GetProperty("decisions").EnumerateArray().ToDictionary(d => d.GetProperty("kind").GetString()!, d => d.Clone());
        var before = Decisions(await LiveTestServer.StateAsync(http, server.Url,
            s => s.GetProperty("position").GetInt64() == 250000 && !s.GetProperty("seeking").GetBoolean(), TimeSpan.FromSeconds(120)));
        var sum = new Dictionary<string, long>();
        long settled = 0;
        for (long pos = 250001; pos <= 250040; pos++)
        {
            await LiveTestServer.ControlAsync(http, server.Url, "cmd=step&n=1");
            var s = await LiveTestServer.StateAsync(http, server.Url, s => s.GetProperty("position").GetInt64() == pos, TimeSpan.FromSeconds(30));
            foreach (var (kind, d) in Decisions(s))
            {
                long compared = d.GetProperty("lastCompared").GetInt64(), matched = d.GetProperty("lastMatched").GetInt64();
                Assert.InRange(matched, 0, compared);
                Assert.InRange(d.GetProperty("lastKernelYes").GetInt64(), 0, compared);
                Assert.InRange(d.GetProperty("lastKmemYes").GetInt64(), 0, compared);
                sum[kind] = sum.GetValueOrDefault(kind) + compared;
                settled += compared;
            }
        }
        var after = Decisions(await LiveTestServer.StateAsync(http, server.Url, _ => true, TimeSpan.FromSeconds(30)));
        Assert.True(settled > 0, "forty events settled no decision");
        Assert.False(after.Count == 0); // (the decisions are there)
        var state = await LiveTestServer.StateAsync(http, server.Url, _ => true, TimeSpan.FromSeconds(30));
        Assert.False(state.TryGetProperty("pressure", out _), "a pressure panel for a capture without pressure");
        foreach (var (kind, d) in after)
        {
            long was = before.TryGetValue(kind, out var b) ? b.GetProperty("compared").GetInt64() : 0;
            Assert.Equal(d.GetProperty("compared").GetInt64() - was, sum.GetValueOrDefault(kind));
        }
    }

    /// <summary>Polls <paramref name="get"/> until it gives a value (or two minutes pass).</summary>
    private static async Task<T> WaitForAsync<T>(Func<Task<T?>> get)
        where T : class
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
        while (true)
        {
            if (await get() is { } v)
            {
                return v;
            }
            Assert.True(DateTime.UtcNow < deadline, "the live view did not reach the expected state in time");
            await Task.Delay(100);
        }
    }

    private static Task<T> WaitForAsync<T>(Func<T?> get)
        where T : class => WaitForAsync(() => Task.FromResult(get()));

    [Fact]
    public async Task StoppingReleasesTheMachineAndThePort()
    {
        var server = await LiveTestServer.StartAsync();
        using var http = new HttpClient();
        await LiveTestServer.StateAsync(http, server.Url, _ => true, TimeSpan.FromSeconds(30));
        await LiveTestServer.ControlAsync(http, server.Url, "cmd=play");
        await LiveTestServer.ControlAsync(http, server.Url, "cmd=compare&on=1");
        var run = server.Session.Run!;
        Assert.NotNull(await run.AskAsync(m => m.Options));
        var others = await WaitForAsync(() => server.Session.Other(SlabAllocator.Slab) is { } a && server.Session.Other(SlabAllocator.Slob) is { } b ? new[] { a, b } : null);
        Assert.NotNull(await others[1].AskAsync(m => m.Options));
        await server.DisposeAsync();
        Assert.Null(await run.AskAsync(m => m.Options));
        foreach (var o in others)
        {
            Assert.Null(await o.AskAsync(m => m.Options));
        }
        Assert.Null(server.Session.Run);
        Assert.Null(server.Session.Other(SlabAllocator.Slob));
        using var client = new TcpClient();
        await Assert.ThrowsAnyAsync<SocketException>(() => client.ConnectAsync(IPAddress.Loopback, server.Url.Port));
    }
}
