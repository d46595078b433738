// The pressure panel's figures as the server sends them, for the oom phase of the pressure
// capture (captures/linux-6.1-pressure-Q/excerpt-oom), against what a plain replay of the
// same trace on the same machine reports (TraceReplayResult.Pressure): no panel before either
// side shows pressure; at the last marker, the phases passed are the report's and the phase
// under way has the report's counts so far; at the end, the table and the /proc/vmstat per
// phase are the report's, the totals of each side are its phases' sums, both OOM victims are
// the report's and are episodes, and the zones' free pages and watermarks add up to the
// report's and the machine's own figures. A scenario shows Kmem's side only; a capture
// without pressure shows no panel (ServerTests).
using System.Text.Json;

namespace Kmem.Browser.Tests;

public sealed class PressureTests
{
    private static readonly Lazy<TraceReplayResult> s_report = new(() => LiveTestServer.Replay(LiveTestServer.PressureExcerpt));

    private static Dictionary<string, long> Counts(JsonElement e) => e.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt64());

    private static Dictionary<string, long> Sum(IEnumerable<IReadOnlyDictionary<string, long>> phases, IEnumerable<string> names) =>
        names.ToDictionary(n => n, n => phases.Sum(p => p.GetValueOrDefault(n)));

    private static void SamePhase(TracePressurePhase expected, JsonElement got)
    {
        Assert.Equal(expected.Phase, got.GetProperty("phase").GetString());
        Assert.True(got.GetProperty("ended").GetBoolean(), expected.Phase);
        Assert.Equal(expected.Kernel, Counts(got.GetProperty("kernel")));
        Assert.Equal(expected.Kmem, Counts(got.GetProperty("kmem")));
        Assert.Equal(expected.KmemMinFreePages, got.GetProperty("kmemMinFree").GetInt64());
        Assert.Equal(expected.KmemVictims, got.GetProperty("kmemVictims").EnumerateArray().Select(v => v.GetString()));
    }

    [Fact]
    public async Task ThePanelCarriesTheReplaysOwnReportForTheExcerpt()
    {
        var report = Assert.IsType<TracePressure>(s_report.Value.Pressure);
        await using var server = await LiveTestServer.StartAsync(LiveTestServer.PressureExcerpt);
        using var http = new HttpClient();
        var booted = await LiveTestServer.StateAsync(http, server.Url, _ => true, TimeSpan.FromSeconds(60));
        Assert.False(booted.TryGetProperty("pressure", out _), "a panel on the booted machine, before any pressure");

        // At the last marker: the phases passed are the report's; the one under way has its counts so far.
        var (index, position) = await LiveTestServer.MarkerAsync(http, server.Url, "WORKLOAD_END");
        await LiveTestServer.ControlAsync(http, server.Url, $"cmd=seek&marker={index}");
        var at = await LiveTestServer.StateAsync(http, server.Url, s => s.GetProperty("position").GetInt64() == position
            && !s.GetProperty("playing").GetBoolean() && !s.GetProperty("seeking").GetBoolean(), TimeSpan.FromSeconds(120));
        var p = at.GetProperty("pressure");
        Assert.Equal("oom", p.GetProperty("phase").GetString());
        Assert.True(p.GetProperty("kernel").GetBoolean());
        var phases = p.GetProperty("phases").EnumerateArray().ToList();
        Assert.Equal(["boot", "compact", "oom"], phases.Select(ph => ph.GetProperty("phase").GetString()));
        SamePhase(report.Phases[0], phases[0]);
        SamePhase(report.Phases[1], phases[1]);
        var oom = report.Phases.Single(ph => ph.Phase == "oom");
        Assert.False(phases[2].GetProperty("ended").GetBoolean());
        static Dictionary<string, long> SoFar(IReadOnlyDictionary<string, long> d) => d.Where(kv => kv.Key != "free pages at end").ToDictionary();
        Assert.Equal(SoFar(oom.Kernel), SoFar(Counts(phases[2].GetProperty("kernel"))));
        Assert.Equal(SoFar(oom.Kmem), SoFar(Counts(phases[2].GetProperty("kmem"))));
        Assert.Equal(["207 (pressure)"], p.GetProperty("kernelVictims").EnumerateArray().Select(v => v.GetString()));
        Assert.Equal(report.KmemVictims, p.GetProperty("kmemVictims").EnumerateArray().Select(v => v.GetString()));

        // At the end: the table is the report's, the totals its phases' sums.
        await LiveTestServer.ControlAsync(http, server.Url, "cmd=play");
        var end = await LiveTestServer.StateAsync(http, server.Url, s => s.GetProperty("ended").GetBoolean(), TimeSpan.FromSeconds(180));
        p = end.GetProperty("pressure");
        phases = p.GetProperty("phases").EnumerateArray().ToList();
        Assert.Equal(report.Phases.Count, phases.Count);
        for (int i = 0; i < phases.Count; i++)
        {
            SamePhase(report.Phases[i], phases[i]);
        }
        var vmstat = p.GetProperty("vmstat").EnumerateArray().Select(v => (v.GetProperty("phase").GetString()!, v.GetProperty("name").GetString()!,
            v.GetProperty("kernel").ValueKind == JsonValueKind.Null ? (long?)null : v.GetProperty("kernel").GetInt64(), v.GetProperty("kmem").GetInt64()));
        Assert.Equal(report.Vmstat.Select(v => (v.Phase, v.Name, v.Kernel, v.Kmem)), vmstat);
        var kernelTotals = Counts(p.GetProperty("kernelTotals"));
        var kmemTotals = Counts(p.GetProperty("kmemTotals"));
        Assert.Equal(Sum(report.Phases.Select(ph => ph.Kernel), kernelTotals.Keys), kernelTotals);
        Assert.Equal(Sum(report.Phases.Select(ph => ph.Kmem), kmemTotals.Keys), kmemTotals);
        Assert.Equal(7, kmemTotals.Count);
        Assert.Equal(1, kernelTotals["OOM kills"]);
        Assert.True(kernelTotals["kswapd runs"] > 0 && kernelTotals["direct reclaims"] > 0, "the excerpt has kswapd runs and direct reclaims");
        Assert.Equal(report.KernelVictims, p.GetProperty("kernelVictims").EnumerateArray().Select(v => v.GetString()));
        Assert.Equal(report.KmemVictims, p.GetProperty("kmemVictims").EnumerateArray().Select(v => v.GetString()));

        // Both OOM kills are episodes, each naming its side's victim at the trace line it happened.
        var episodes = p.GetProperty("episodes").EnumerateArray().ToList();
        Assert.InRange(episodes.Count, 1, 20);
        foreach (var (side, victim) in new[] { ("kernel", report.KernelVictims[0]), ("kmem", report.KmemVictims[0]) })
        {
            var kill = Assert.Single(episodes, e => e.GetProperty("side").GetString() == side && e.GetProperty("kind").GetString() == "OOM kill");
            Assert.Equal(victim, kill.GetProperty("who").GetString());
            Assert.InRange(kill.GetProperty("position").GetInt64(), 1, position);
            Assert.True(kill.GetProperty("line").GetInt64() > 0);
        }
        Assert.Equal(episodes.Select(e => e.GetProperty("position").GetInt64()).Order(), episodes.Select(e => e.GetProperty("position").GetInt64()));

        // The zones: watermarks summing to the report's, free pages summing to the machine's nr_free_pages, sampled
        // from the start at multiples of the interval.
        var zones = p.GetProperty("zones").EnumerateArray().ToList();
        Assert.Equal(report.WatermarkMin, zones.Sum(z => z.GetProperty("min").GetInt64()));
        Assert.Equal(report.WatermarkLow, zones.Sum(z => z.GetProperty("low").GetInt64()));
        Assert.Equal(report.WatermarkHigh, zones.Sum(z => z.GetProperty("high").GetInt64()));
        Assert.Equal(end.GetProperty("counters").GetProperty("nr_free_pages").GetInt64(), zones.Sum(z => z.GetProperty("free").GetInt64()));
        long every = p.GetProperty("sampleEvery").GetInt64();
        long events = end.GetProperty("position").GetInt64();
        foreach (var z in zones)
        {
            int n = z.GetProperty("samples").GetArrayLength();
            Assert.InRange(n, 2, 256);
            Assert.Equal(events / every + 1, n);
        }
    }

    [Fact]
    public async Task TheScenarioShowsKmemsSideOnly()
    {
        await using var server = await LiveTestServer.StartScenarioAsync("fragmentation");
        using var http = new HttpClient();
        var markers = await LiveTestServer.StateAsync(http, server.Url, s => s.TryGetProperty("markers", out var m) && m.GetArrayLength() == 4,
            TimeSpan.FromSeconds(60));
        long order4 = markers.GetProperty("markers")[2].GetProperty("position").GetInt64();
        var before = await StepToAsync(http, server.Url, order4 - 1);
        Assert.False(before.TryGetProperty("pressure", out _), "a panel before the order-4 allocation compacted");
        var at = await StepToAsync(http, server.Url, order4);
        var p = at.GetProperty("pressure");
        Assert.False(p.GetProperty("kernel").GetBoolean());
        Assert.Empty(p.GetProperty("kernelTotals").EnumerateObject());
        long stalls = at.GetProperty("counters").GetProperty("compact_stall").GetInt64();
        Assert.True(stalls > 0);
        Assert.Equal(stalls, p.GetProperty("kmemTotals").GetProperty("direct compactions").GetInt64());
        // The order-4 allocation's slow path, at its step: direct compaction (and the direct reclaim before it, if any).
        var episodes = p.GetProperty("episodes").EnumerateArray().ToList();
        Assert.All(episodes, e => Assert.Equal(("kmem", order4), (e.GetProperty("side").GetString(), e.GetProperty("position").GetInt64())));
        var compaction = Assert.Single(episodes, e => e.GetProperty("kind").GetString() == "compaction");
        Assert.Equal(stalls, compaction.GetProperty("count").GetInt64());
        Assert.Equal(at.GetProperty("counters").GetProperty("compact_success").GetInt64() > 0 ? "success" : "fail", compaction.GetProperty("result").GetString());
        Assert.Equal(at.GetProperty("counters").GetProperty("allocstall").GetInt64(), p.GetProperty("kmemTotals").GetProperty("direct reclaims").GetInt64());
        Assert.Equal(episodes.Where(e => e.GetProperty("kind").GetString() == "direct reclaim").Sum(e => e.GetProperty("count").GetInt64()),
            p.GetProperty("kmemTotals").GetProperty("direct reclaims").GetInt64());
        var phases = p.GetProperty("phases").EnumerateArray().ToList();
        Assert.Equal(["fill", "scatter", "order-4"], phases.Select(ph => ph.GetProperty("phase").GetString()));
        Assert.Equal(stalls, phases[^1].GetProperty("kmem").GetProperty("direct compactions").GetInt64());
    }

    private static async Task<JsonElement> StepToAsync(HttpClient http, Uri url, long position)
    {
        var now = await LiveTestServer.StateAsync(http, url, s => !s.GetProperty("seeking").GetBoolean(), TimeSpan.FromSeconds(60));
        long n = position - now.GetProperty("position").GetInt64();
        Assert.True(n > 0);
        await LiveTestServer.ControlAsync(http, url, $"cmd=step&n={n}");
        return await LiveTestServer.StateAsync(http, url, s => s.GetProperty("position").GetInt64() == position && !s.GetProperty("seeking").GetBoolean()
            && !s.GetProperty("playing").GetBoolean(), TimeSpan.FromSeconds(60));
    }
}
