// The live view's page in a real browser: Playwright driving Debian's chromium
// (/usr/bin/chromium, headless; Playwright's own browser download is not used). The page
// loads without a console error and draws the map; play advances the event counter and
// pause stops it; a seek to a marker shows the buddyinfo and slabinfo `kmem replay --until`
// prints; the SLOB switch shows SLOB's numbers; hovering a cell describes its frame; compare
// shows SLUB, SLAB and SLOB side by side at the same event; a scenario's phases are chapters and
// its OOM kills marks on the charts. Trait Browser: left out of the default test
// command, run by `dotnet test tests/Kmem.Browser.Tests --filter "Category=Browser"`.
using Microsoft.Playwright;

namespace Kmem.Browser.Tests;

/// <summary>One chromium for the page tests.</summary>
public sealed class ChromiumFixture : IAsyncLifetime
{
    public const string Chromium = "/usr/bin/chromium";

    private IPlaywright? _playwright;

    public IBrowser Browser { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Assert.True(File.Exists(Chromium), $"{Chromium} is missing: apt-get install -y chromium");
        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions { ExecutablePath = Chromium, Headless = true });
    }

    public async Task DisposeAsync()
    {
        if (Browser is not null)
        {
            await Browser.DisposeAsync();
        }
        _playwright?.Dispose();
    }
}

[Trait("Category", "Browser")]
public sealed class PageTests(ChromiumFixture chromium) : IClassFixture<ChromiumFixture>
{
    private static readonly float Patience = 300_000; // an upper bound for a loaded machine; seconds on a quiet one

    /// <summary>A page on <paramref name="url"/> that records console errors and uncaught exceptions.</summary>
    private async Task<(IPage Page, List<string> Errors)> OpenAsync(Uri url)
    {
        var page = await chromium.Browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1600, Height = 1200 } });
        var errors = new List<string>();
        page.Console += (_, m) =>
        {
            if (m.Type == "error")
            {
                lock (errors)
                {
                    errors.Add(m.Text);
                }
            }
        };
        page.PageError += (_, e) =>
        {
            lock (errors)
            {
                errors.Add(e);
            }
        };
        await page.GotoAsync(url.ToString());
        return (page, errors);
    }

    private static async Task<long> PositionAsync(IPage page) => long.Parse(await page.InnerTextAsync("#position"), System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task ThePageLoadsWithoutErrorsAndDrawsTheMap()
    {
        await using var server = await LiveTestServer.StartAsync();
        var (page, errors) = await OpenAsync(server.Url);
        await page.WaitForFunctionAsync("() => document.getElementById('map').width > 0 && document.getElementById('status').textContent === 'paused'",
            null, new PageWaitForFunctionOptions { Timeout = Patience });
        // Every frame is a painted cell, in several colours; the hole at pfn 0 in the legend's colour for holes.
        var painted = await page.EvaluateAsync<int[]>(@"() => {
            const c = document.getElementById('map'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; const colours = new Set();
            for (let i = 0; i < d.length; i += 4) { if (d[i + 3]) { n++; colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]); } }
            return [n, colours.size, (d[0] << 16) | (d[1] << 8) | d[2]];
        }");
        Assert.Equal(131072, painted[0]);
        Assert.True(painted[1] >= 3, $"{painted[1]} colours on the map");
        Assert.Equal((int)MemoryMap.LegendOf(FrameState.Hole).Color, painted[2]);
        // Hovering a cell names its frame: at once its pfn, then what the server reads of it (state, order, migrate type).
        await page.HoverAsync("#map", new PageHoverOptions { Position = new Position { X = 700, Y = 300 } });
        Assert.Matches("^pfn 0x[0-9a-f]+ ", await page.InnerTextAsync("#hover"));
        await page.WaitForFunctionAsync("() => document.getElementById('hover').textContent.includes('refcount')", null, new PageWaitForFunctionOptions { Timeout = Patience });
        string hover = await page.TextContentAsync("#hover") ?? "";
        long pfn = long.Parse(System.Text.RegularExpressions.Regex.Match(hover, @"\((\d+)\)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        using (var http = new HttpClient())
        {
            var f = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync(new Uri(server.Url, $"api/frame?pfn={pfn}"))).RootElement;
            Assert.Contains($"  {f.GetProperty("state").GetString()}  order {f.GetProperty("order").GetInt32()}  {f.GetProperty("migrateType").GetString()}", hover,
                StringComparison.Ordinal);
        }
        Assert.Contains("Node 0, zone    DMA32", await page.InnerTextAsync("#buddyinfo"), StringComparison.Ordinal);
        Assert.False(await page.IsVisibleAsync("#pressure")); // a capture without pressure: no empty panel
        Assert.Empty(errors);
    }

    [Fact]
    public async Task PlayAdvancesTheEventCounterAndPauseStopsIt()
    {
        await using var server = await LiveTestServer.StartAsync();
        var (page, errors) = await OpenAsync(server.Url);
        await page.WaitForFunctionAsync("() => document.getElementById('status').textContent === 'paused'", null, new PageWaitForFunctionOptions { Timeout = Patience });
        Assert.Equal(0, await PositionAsync(page));
        await page.ClickAsync("#play");
        await page.WaitForFunctionAsync("() => Number(document.getElementById('position').textContent) > 1000", null, new PageWaitForFunctionOptions { Timeout = Patience });
        await page.Keyboard.PressAsync(" ");
        await page.WaitForFunctionAsync("() => document.getElementById('status').textContent === 'paused'", null, new PageWaitForFunctionOptions { Timeout = Patience });
        long paused = await PositionAsync(page);
        Assert.True(paused > 1000);
        await Task.Delay(1000);
        Assert.Equal(paused, await PositionAsync(page));
        await page.ClickAsync("#step");
        await page.WaitForFunctionAsync($"() => Number(document.getElementById('position').textContent) === {paused + 1}", null, new PageWaitForFunctionOptions { Timeout = Patience });
        Assert.StartsWith("line ", await page.InnerTextAsync("#event"), StringComparison.Ordinal);
        Assert.Empty(errors);
    }

    /// <summary>Seeks the page to <see cref="LiveTestServer.Marker"/> through the chapter list; returns its position.</summary>
    private static async Task<long> SeekToMarkerAsync(IPage page, Uri url)
    {
        using var http = new HttpClient();
        var (index, position) = await LiveTestServer.MarkerAsync(http, url, LiveTestServer.Marker);
        await page.WaitForFunctionAsync($"() => document.getElementById('markers').options.length > {index}", null, new PageWaitForFunctionOptions { Timeout = Patience });
        await page.SelectOptionAsync("#markers", index.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await page.ClickAsync("#seek");
        await page.WaitForFunctionAsync($"() => Number(document.getElementById('position').textContent) === {position} && document.getElementById('status').textContent === 'paused'",
            null, new PageWaitForFunctionOptions { Timeout = Patience });
        return position;
    }

    [Fact]
    public async Task SeekingToAMarkerShowsTheBuddyinfoAndSlabinfoOfReplayUntil()
    {
        await using var server = await LiveTestServer.StartAsync();
        var (page, errors) = await OpenAsync(server.Url);
        await SeekToMarkerAsync(page, server.Url);
        var expected = LiveTestServer.ReplayUntil("slub", LiveTestServer.Marker, "buddyinfo", "slabinfo");
        Assert.Equal(LiveTestServer.Lines(expected["buddyinfo"]), LiveTestServer.Lines(await page.InnerTextAsync("#buddyinfo")));
        var rows = await page.EvaluateAsync<string[]>(@"() => [...document.querySelectorAll('#slabinfo tbody tr')].map(tr =>
            ['name', 'active_objs', 'num_objs', 'objsize', 'objperslab', 'pagesperslab', 'active_slabs', 'num_slabs']
              .map(c => tr.querySelector(`td[data-col=""${c}""]`).textContent).join(' '))");
        Assert.Equal(LiveTestServer.SlabRows(expected["slabinfo"]), rows.Order(StringComparer.Ordinal).ToList());
        Assert.Contains(LiveTestServer.Marker, await page.InnerTextAsync("#chapter"), StringComparison.Ordinal);
        // The seek published nothing on its way, yet the MemFree line (#2a9d8f) runs from the start of the trace:
        // the chart draws the server's samples, not the updates the page happened to see.
        int[] columns = await page.EvaluateAsync<int[]>(@"() => {
            const c = document.getElementById('memchart'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, xs = new Set();
            for (let i = 0; i < d.length; i += 4) { if (d[i] === 0x2a && d[i + 1] === 0x9d && d[i + 2] === 0x8f && d[i + 3] > 200) { xs.add((i / 4) % c.width); } }
            return [...xs].sort((a, b) => a - b); }");
        Assert.NotEmpty(columns);
        Assert.True(columns[0] < 12, $"the MemFree line starts at x = {columns[0]}");
        Assert.Empty(errors);
    }

    [Fact]
    public async Task TheSlobSwitchShowsSlobsNumbers()
    {
        await using var server = await LiveTestServer.StartAsync();
        var (page, errors) = await OpenAsync(server.Url);
        long position = await SeekToMarkerAsync(page, server.Url);
        await page.ClickAsync("#backends button[data-backend=slob]");
        await page.WaitForFunctionAsync($"() => document.querySelector('#backends button.on')?.dataset.backend === 'slob' && !document.getElementById('slobinfo').hidden"
            + $" && Number(document.getElementById('position').textContent) === {position} && document.getElementById('status').textContent === 'paused'",
            null, new PageWaitForFunctionOptions { Timeout = Patience });
        var expected = LiveTestServer.ReplayUntil("slob", LiveTestServer.Marker, "buddyinfo", "slobinfo");
        Assert.Equal(LiveTestServer.Lines(expected["slobinfo"]), LiveTestServer.Lines(await page.InnerTextAsync("#slobinfo")));
        Assert.Equal(LiveTestServer.Lines(expected["buddyinfo"]), LiveTestServer.Lines(await page.InnerTextAsync("#buddyinfo")));
        Assert.False(await page.IsVisibleAsync("#slabinfo"));
        Assert.Empty(errors);
    }

    [Fact]
    public async Task CompareShowsTheThreeAllocatorsSideBySide()
    {
        await using var server = await LiveTestServer.StartAsync();
        var (page, errors) = await OpenAsync(server.Url);
        long position = await SeekToMarkerAsync(page, server.Url);
        Assert.False(await page.IsVisibleAsync("#columns"));
        await page.Keyboard.PressAsync("c");
        await page.WaitForFunctionAsync($"() => [...document.querySelectorAll('#columns .col .pos')].filter(p => Number(p.textContent) === {position}).length === 3",
            null, new PageWaitForFunctionOptions { Timeout = Patience });
        var backends = await page.EvaluateAsync<string[]>("() => [...document.querySelectorAll('#columns .col')].map(c => c.dataset.backend)");
        Assert.Equal(["slub", "slab", "slob"], backends);
        var expected = LiveTestServer.ReplayUntil("slob", LiveTestServer.Marker, "buddyinfo", "slobinfo");
        Assert.Equal(LiveTestServer.Lines(expected["slobinfo"]), LiveTestServer.Lines(await page.InnerTextAsync("#columns .col[data-backend=slob] pre.slobinfo")));
        Assert.Equal(LiveTestServer.Lines(expected["buddyinfo"]), LiveTestServer.Lines(await page.InnerTextAsync("#columns .col[data-backend=slob] pre.buddyinfo")));
        Assert.Equal(LiveTestServer.Lines(await page.InnerTextAsync("#buddyinfo")), LiveTestServer.Lines(await page.InnerTextAsync("#columns .col[data-backend=slub] pre.buddyinfo")));
        Assert.True(await page.IsVisibleAsync("#columns .col[data-backend=slab] table.slabinfo"));
        // Each column's map is drawn from its own machine's frames.
        var painted = await page.EvaluateAsync<int[]>(@"() => [...document.querySelectorAll('#columns canvas.mini')].map(c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
            for (let i = 3; i < d.length; i += 4) { if (d[i]) { n++; } } return n; })");
        Assert.Equal([131072, 131072, 131072], painted);
        await page.ClickAsync("#compareBtn");
        await page.WaitForFunctionAsync("() => document.getElementById('columns').hidden", null, new PageWaitForFunctionOptions { Timeout = Patience });
        Assert.Empty(errors);
    }

    [Fact]
    public async Task AScenariosPhasesAreChaptersAndItsOomKillsAreMarked()
    {
        await using var server = await LiveTestServer.StartScenarioAsync("pressure");
        var (page, errors) = await OpenAsync(server.Url);
        // The phases are on the timeline and in the chapter list before anything plays.
        await page.WaitForFunctionAsync("() => document.querySelectorAll('#timeline .chapter').length > 2 && document.getElementById('markers').options.length > 2",
            null, new PageWaitForFunctionOptions { Timeout = Patience });
        var chapters = await page.EvaluateAsync<string[]>("() => [...document.getElementById('markers').options].map(o => o.textContent)");
        Assert.StartsWith("start:", chapters[0], StringComparison.Ordinal);
        Assert.StartsWith("end:", chapters[^1], StringComparison.Ordinal);
        await page.SelectOptionAsync("#markers", (chapters.Length - 1).ToString(System.Globalization.CultureInfo.InvariantCulture));
        await page.ClickAsync("#seek");
        await page.WaitForFunctionAsync("() => document.getElementById('chapter').textContent.startsWith('chapter: end:') && document.getElementById('status').textContent === 'paused'",
            null, new PageWaitForFunctionOptions { Timeout = Patience });
        Assert.Matches(@"oom_kill [1-9]", await page.InnerTextAsync("#counters"));
        // The OOM kills between the booted machine and this moment are a dark red bar on the charts (#b23a3a).
        int marked = await page.EvaluateAsync<int>(@"() => {
            const c = document.getElementById('memchart'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 0; i < d.length; i += 4) { if (d[i] === 0xb2 && d[i + 1] === 0x3a && d[i + 2] === 0x3a && d[i + 3] === 255) { n++; } } return n; }");
        Assert.True(marked > 100, $"{marked} pixels of the OOM mark");
        Assert.Empty(errors);
    }

    [Fact]
    public async Task ThePressurePanelShowsTheOomVictimOfBothSides()
    {
        await using var server = await LiveTestServer.StartAsync(LiveTestServer.PressureExcerpt);
        var (page, errors) = await OpenAsync(server.Url);
        await page.WaitForFunctionAsync("() => document.getElementById('status').textContent === 'paused'", null, new PageWaitForFunctionOptions { Timeout = Patience });
        Assert.False(await page.IsVisibleAsync("#pressure")); // nothing has shown pressure on the booted machine
        using var http = new HttpClient();
        var (index, position) = await LiveTestServer.MarkerAsync(http, server.Url, "WORKLOAD_END");
        await page.WaitForFunctionAsync($"() => document.getElementById('markers').options.length > {index}", null, new PageWaitForFunctionOptions { Timeout = Patience });
        await page.SelectOptionAsync("#markers", index.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await page.ClickAsync("#seek");
        await page.WaitForFunctionAsync($"() => Number(document.getElementById('position').textContent) === {position} && document.getElementById('status').textContent === 'paused'"
            + " && !document.getElementById('pressure').hidden", null, new PageWaitForFunctionOptions { Timeout = Patience });
        // The victim of each side, the same task; the kills among the episodes; the phases passed and the one under way.
        Assert.Equal("OOM victims: kernel 207 (pressure) · Kmem 207 (pressure) (same)", await page.InnerTextAsync("#pvictims"));
        Assert.Contains("OOM kill: 207 (pressure)", await page.InnerTextAsync("#pepisodes .pside[data-side=kernel] li.oom"), StringComparison.Ordinal);
        Assert.Contains("OOM kill: 207 (pressure)", await page.InnerTextAsync("#pepisodes .pside[data-side=kmem] li.oom"), StringComparison.Ordinal);
        Assert.StartsWith("phase oom ·", await page.InnerTextAsync("#pinfo"), StringComparison.Ordinal);
        var phases = await page.EvaluateAsync<string[]>("() => [...document.querySelectorAll('#pphases tbody tr')].map(tr => tr.dataset.phase)");
        Assert.Equal(["boot", "compact", "oom"], phases);
        var state = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync(new Uri(server.Url, "api/state"))).RootElement.GetProperty("pressure");
        var oom = state.GetProperty("phases")[2];
        string kills = $"{oom.GetProperty("kernel").GetProperty("OOM kills").GetInt64()} / {oom.GetProperty("kmem").GetProperty("OOM kills").GetInt64()}";
        Assert.Equal("1 / 1", kills);
        var cells = await page.EvaluateAsync<string[]>("() => [...document.querySelectorAll('#pphases tr')].map(tr => [...tr.children].map(c => c.textContent).join('|'))");
        int killsColumn = cells[0].Split('|').ToList().IndexOf("OOM kills");
        Assert.Equal(kills, cells[3].Split('|')[killsColumn]);
        // A chart per zone, its free pages drawn (the line's colour, #2a9d8f, blended at its edges: teal, not the bands' reds).
        int zones = state.GetProperty("zones").GetArrayLength();
        var drawn = await page.EvaluateAsync<int[]>(@"() => [...document.querySelectorAll('#pzones canvas')].map(c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
            for (let i = 0; i < d.length; i += 4) {
                if (d[i + 3] > 200 && d[i + 1] - d[i] > 50 && d[i + 2] - d[i] > 30) { n++; } }
            return n; })");
        Assert.Equal(zones, drawn.Length);
        Assert.All(drawn, n => Assert.True(n > 50, $"{n} pixels of a zone's free pages"));
        Assert.Empty(errors);
    }
}
