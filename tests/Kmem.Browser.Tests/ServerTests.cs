// The live server without a browser: malformed requests are refused with a 4xx and the server
// goes on; the deltas sent while playing, applied to the first whole map, give the map a whole
// snapshot gives, which is the map MemoryMap classifies; seeking to a marker shows the figures
// `kmem replay --until` prints; stopping releases the machine and the port.
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
        var mismatches = server.Session.Run!.WithMachine(m =>
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
    }

    [Fact]
    public async Task AScenarioPlaysStepByStep()
    {
        await Assert.ThrowsAsync<ArgumentException>(() => LiveServer.StartAsync(new LiveServerOptions
        {
            Scenario = "meltdown",
            Boot = (slab, _) => new MachineOptions { Slab = slab },
        }));
        await using var server = await LiveServer.StartAsync(new LiveServerOptions
        {
            Scenario = "fragmentation",
            Boot = (slab, _) => new MachineOptions { Slab = slab, Seed = 1 },
            Port = 0,
        });
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
    }

    [Fact]
    public async Task StoppingReleasesTheMachineAndThePort()
    {
        var server = await LiveTestServer.StartAsync();
        using var http = new HttpClient();
        await LiveTestServer.StateAsync(http, server.Url, _ => true, TimeSpan.FromSeconds(30));
        await LiveTestServer.ControlAsync(http, server.Url, "cmd=play");
        var run = server.Session.Run!;
        Assert.NotNull(run.WithMachine(m => m.Options));
        await server.DisposeAsync();
        Assert.Null(run.WithMachine(m => m.Options));
        Assert.Null(server.Session.Run);
        using var client = new TcpClient();
        await Assert.ThrowsAnyAsync<SocketException>(() => client.ConnectAsync(IPAddress.Loopback, server.Url.Port));
    }
}
