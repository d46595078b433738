// A live server on the bundled capture for the tests, booted exactly as `kmem replay` boots
// its machine (the command's own defaults), on a free port of 127.0.0.1; and what
// `kmem replay --until MARKER --proc …` prints, run in-process, for the figures the page
// must show at that marker. The expected figures are computed once per process.
using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Text.Json;
using Kmem.Cli;
using Kmem.Live;

namespace Kmem.Browser.Tests;

internal static class LiveTestServer
{
    /// <summary>The marker the seek tests go to: the first of the capture, some 206,000 events in.</summary>
    public const string Marker = "INIT_START wl=B";

    public static string Trace
    {
        get
        {
            string t = DefaultCommand.BundledTrace;
            Assert.True(File.Exists(t), $"the bundled capture is missing: {t}");
            return t;
        }
    }

    /// <summary>The oom phase of the pressure capture (captures/linux-6.1-pressure-Q/excerpt-oom), beside the test binary.</summary>
    public static string PressureExcerpt
    {
        get
        {
            string t = Path.Combine(AppContext.BaseDirectory, "captures", "linux-6.1-pressure-Q", "excerpt-oom", "trace.txt.xz");
            Assert.True(File.Exists(t), $"the pressure excerpt is missing: {t}");
            return t;
        }
    }

    public static Task<LiveServer> StartAsync(SlabAllocator slab = SlabAllocator.Slub) => StartAsync(Trace, slab);

    /// <summary>A server on <paramref name="trace"/>, its machines booted as `kmem replay` boots them for it.</summary>
    public static Task<LiveServer> StartAsync(string trace, SlabAllocator slab = SlabAllocator.Slub)
    {
        var reserve = MachineChoice.Default.BootReserve(trace);
        return LiveServer.StartAsync(new LiveServerOptions
        {
            TracePath = trace,
            Boot = (s, cpus) => (MachineChoice.Default with { Slab = s }).Build(trace, cpus, bootReserve: true),
            ReservedFrames = reserve?.Frames,
            RingBufferBytes = reserve?.RingBufferBytes ?? 0,
            Slab = slab,
            Port = 0,
        });
    }

    /// <summary>A server playing scenario <paramref name="name"/> of `kmem scenario` at seed 1.</summary>
    public static Task<LiveServer> StartScenarioAsync(string name) =>
        LiveServer.StartAsync(new LiveServerOptions
        {
            Scenario = name,
            Boot = (slab, _) => new MachineOptions { Slab = slab, Seed = 1 },
            Port = 0,
        });

    /// <summary>What a plain replay of <paramref name="trace"/> (no live view) reports, on the machine the server boots.</summary>
    public static TraceReplayResult Replay(string trace)
    {
        using var reader = TraceReader.Open(trace);
        using var m = TraceReplayer.Boot((MachineChoice.Default with { Slab = SlabAllocator.Slub }).Build(trace, reader.Cpus, bootReserve: true));
        var reserve = MachineChoice.Default.BootReserve(trace);
        return new TraceReplayer(m, new TraceReplayOptions
        {
            ReservedFrames = reserve?.Frames,
            RingBufferBytes = reserve?.RingBufferBytes ?? 0,
            CacheNames = TraceCacheNames.Scan(trace, TraceCacheNames.ScanOptions), // as kmem replay and the server name caches
        }).Replay(reader);
    }

    private static readonly ConcurrentDictionary<string, Lazy<Dictionary<string, string>>> s_expected = new();

    /// <summary>The /proc files `kmem replay --slab SLAB --until MARKER --proc …` prints, by name.</summary>
    public static Dictionary<string, string> ReplayUntil(string slab, string marker, params string[] proc) =>
        s_expected.GetOrAdd(slab + "|" + marker + "|" + string.Join(',', proc), _ => new Lazy<Dictionary<string, string>>(() =>
        {
            var args = new List<string> { "replay", Trace, "--slab", slab, "--until", marker };
            foreach (string p in proc)
            {
                args.Add("--proc");
                args.Add(p);
            }
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            int code = Program.Run([.. args], stdout, stderr);
            Assert.True(code == 0, stderr.ToString());
            return Sections(stdout.ToString());
        })).Value;

    /// <summary>The "# /proc/NAME" sections of the command's output: NAME → its text, up to the blank line that ends it.</summary>
    public static Dictionary<string, string> Sections(string output)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        string[] lines = output.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            if (!lines[i].StartsWith("# /", StringComparison.Ordinal))
            {
                continue;
            }
            string name = lines[i][(lines[i].LastIndexOf('/') + 1)..].Trim();
            int j = i + 1;
            var body = new List<string>();
            while (j < lines.Length && lines[j].Length > 0)
            {
                body.Add(lines[j]);
                j++;
            }
            d[name] = string.Join('\n', body);
        }
        return d;
    }

    /// <summary>Text compared line by line, without the trailing newline.</summary>
    public static string Lines(string text) => text.Replace("\r", "", StringComparison.Ordinal).TrimEnd('\n');

    /// <summary>The slabinfo rows as "name active_objs num_objs objsize objperslab pagesperslab active_slabs num_slabs".</summary>
    public static List<string> SlabRows(string slabinfo) =>
        [.. slabinfo.Split('\n').Where(l => l.Length > 0 && !l.StartsWith("slabinfo", StringComparison.Ordinal) && !l.StartsWith('#'))
            .Select(l =>
            {
                string[] w = l.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                int data = Array.IndexOf(w, "slabdata");
                return string.Join(' ', w[0], w[1], w[2], w[3], w[4], w[5], w[data + 1], w[data + 2]);
            }).Order(StringComparer.Ordinal)];

    /// <summary>GET /api/state until <paramref name="until"/> holds of it (or the time is up).</summary>
    public static async Task<JsonElement> StateAsync(HttpClient http, Uri url, Func<JsonElement, bool> until, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            using var r = await http.GetAsync(new Uri(url, "api/state"));
            if (r.IsSuccessStatusCode)
            {
                var s = await r.Content.ReadFromJsonAsync<JsonElement>();
                if (until(s))
                {
                    return s;
                }
            }
            Assert.True(DateTime.UtcNow < deadline, "the live view did not reach the expected state in time");
            await Task.Delay(100);
        }
    }

    /// <summary>POST /api/control?QUERY, expecting 204.</summary>
    public static async Task ControlAsync(HttpClient http, Uri url, string query)
    {
        using var r = await http.PostAsync(new Uri(url, "api/control?" + query), null);
        Assert.True(r.StatusCode == System.Net.HttpStatusCode.NoContent, $"{query}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
    }

    /// <summary>The index of the marker whose text is <paramref name="text"/>, once the server has read them.</summary>
    public static async Task<(int Index, long Position)> MarkerAsync(HttpClient http, Uri url, string text)
    {
        var s = await StateAsync(http, url, s => s.TryGetProperty("markers", out _), TimeSpan.FromSeconds(300));
        var markers = s.GetProperty("markers").EnumerateArray().ToList();
        int i = markers.FindIndex(m => m.GetProperty("text").GetString() == text);
        Assert.True(i >= 0, $"no marker \"{text}\"");
        return (i, markers[i].GetProperty("position").GetInt64());
    }
}
