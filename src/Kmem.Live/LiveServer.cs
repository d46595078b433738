// kmem serve's web server (ASP.NET Core on Kestrel): one page and its API.
//   GET  /                 the page; /app.js, /app.css its script and style (embedded resources)
//   GET  /api/state        the latest update, whole (every frame), as JSON
//   GET  /api/updates      Server-Sent Events: the latest update whole, then every update (deltas)
//   GET  /api/cache?name=  one slab cache's slabs: /sys/kernel/slab's slabs, partial, cpu_slabs (SLUB)
//   GET  /api/frame?pfn=   one frame: zone, state, order, migrate type, slab cache, flags (the map's hover)
//   GET  /api/compare      the other slab allocators at the main run's moment (compare on), as a JSON array
//   POST /api/control?cmd= play [speed], pause, speed value, step [n], seek marker|position, restart, backend name,
//                          compare on=1|0
// The host is built empty (no configuration files, no environment, no logging providers),
// so the server reads no file but the trace; a bad request gets a 4xx with a line saying
// why, an unknown path 404, a wrong method 405. Stopping disposes the session, which stops
// the replay thread and releases its machine.
using System.Reflection;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Kmem.Live;

/// <summary>The live view: a web server replaying a trace on a Kmem machine for a page in the browser.</summary>
/// <remarks>
/// <code>
/// await using var server = await LiveServer.StartAsync(new LiveServerOptions
/// {
///     TracePath = "trace.txt.xz",
///     Boot = (slab, cpus) => new MachineOptions { Memory = "512M", Cpus = Math.Max(cpus, 1), Slab = slab },
/// });
/// Console.WriteLine(server.Url);
/// </code>
/// </remarks>
public sealed class LiveServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly LiveSession _session;
    private int _disposed;

    private LiveServer(WebApplication app, LiveSession session, Uri url)
    {
        _app = app;
        _session = session;
        Url = url;
    }

    /// <summary>The page's address.</summary>
    public Uri Url { get; }

    internal LiveSession Session => _session;

    /// <summary>Starts the server and the session (paused on the booted machine).</summary>
    /// <exception cref="IOException">The address is in use or cannot be bound.</exception>
    /// <exception cref="FileNotFoundException">The trace is missing.</exception>
    /// <exception cref="ArgumentException">The scenario is not one of pressure, fragmentation, highmem.</exception>
    public static async Task<LiveServer> StartAsync(LiveServerOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        LiveSource source;
        if (options.Scenario is not null)
        {
            var scenario = LiveScenario.Of(options.Scenario)
                ?? throw new ArgumentException($"no scenario \"{options.Scenario}\"; the scenarios are {string.Join(", ", LiveScenario.Names)}", nameof(options));
            source = new LiveSource(scenario, options.Boot);
        }
        else if (options.TracePath is null || !File.Exists(options.TracePath))
        {
            throw new FileNotFoundException($"{options.TracePath}: no such file", options.TracePath);
        }
        else
        {
            source = new LiveSource(options.TracePath, options.Boot) { ReservedFrames = options.ReservedFrames, RingBufferBytes = options.RingBufferBytes };
        }
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "Kmem.Live" });
        builder.WebHost.UseKestrelCore().ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Listen(options.Host, options.Port);
        });
        builder.Services.AddRoutingCore();
        var app = builder.Build();
        var session = new LiveSession(source, options.Slab, options.UpdatesPerSecond);
        Map(app, session);
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            await app.DisposeAsync().ConfigureAwait(false);
            session.Dispose();
            throw new IOException($"cannot listen on {options.Host}:{options.Port}: {e.Message}", e);
        }
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        session.Start();
        return new LiveServer(app, session, new Uri(address.Replace("[::]", "localhost", StringComparison.Ordinal) + "/"));
    }

    private static void Map(WebApplication app, LiveSession session)
    {
        app.UseRouting();
        MapAsset(app, "/", "index.html", "text/html; charset=utf-8");
        MapAsset(app, "/app.js", "app.js", "text/javascript; charset=utf-8");
        MapAsset(app, "/app.css", "app.css", "text/css; charset=utf-8");
        app.MapGet("/api/state", async ctx =>
        {
            string? json = session.FullJson();
            if (json is null)
            {
                ctx.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
                await ctx.Response.WriteAsync("the machine is still booting\n").ConfigureAwait(false);
                return;
            }
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync(json).ConfigureAwait(false);
        });
        app.MapGet("/api/updates", ctx => Stream(ctx, session));
        app.MapGet("/api/cache", ctx => Cache(ctx, session));
        app.MapGet("/api/frame", ctx => Frame(ctx, session));
        app.MapGet("/api/compare", async ctx =>
        {
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync(session.CompareJson()).ConfigureAwait(false);
        });
        app.MapPost("/api/control", async ctx =>
        {
            var q = ctx.Request.Query;
            string? cmd = q["cmd"];
            string? why = cmd is null ? "give cmd=play|pause|speed|step|seek|restart|backend" : session.Control(cmd, k => q[k].FirstOrDefault());
            ctx.Response.StatusCode = why is null ? StatusCodes.Status204NoContent : StatusCodes.Status400BadRequest;
            if (why is not null)
            {
                await ctx.Response.WriteAsync(why + "\n").ConfigureAwait(false);
            }
        });
    }

    private static void MapAsset(WebApplication app, string path, string resource, string contentType)
    {
        byte[] bytes = ReadResource(resource);
        app.MapGet(path, ctx =>
        {
            ctx.Response.ContentType = contentType;
            ctx.Response.Headers.CacheControl = "no-cache";
            return ctx.Response.Body.WriteAsync(bytes, ctx.RequestAborted).AsTask();
        });
    }

    /// <summary>An embedded file of the page.</summary>
    internal static byte[] ReadResource(string name)
    {
        using var s = Assembly.GetExecutingAssembly().GetManifestResourceStream("Kmem.Live." + name)
            ?? throw new InvalidOperationException($"the page's {name} is not embedded in Kmem.Live");
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }

    private static async Task Stream(HttpContext ctx, LiveSession session)
    {
        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        LiveSession.Subscriber sub;
        try
        {
            sub = session.Subscribe();
        }
        catch (ObjectDisposedException)
        {
            ctx.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
            return;
        }
        try
        {
            await ctx.Response.WriteAsync(": kmem live\n\n", ctx.RequestAborted).ConfigureAwait(false);
            await ctx.Response.Body.FlushAsync(ctx.RequestAborted).ConfigureAwait(false);
            var reader = sub.Queue.Reader;
            while (await reader.WaitToReadAsync(ctx.RequestAborted).ConfigureAwait(false))
            {
                var sb = new StringBuilder();
                while (reader.TryRead(out string? json))
                {
                    sb.Append("data: ").Append(json).Append("\n\n");
                }
                await ctx.Response.WriteAsync(sb.ToString(), ctx.RequestAborted).ConfigureAwait(false);
                await ctx.Response.Body.FlushAsync(ctx.RequestAborted).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            // the page went away
        }
        finally
        {
            session.Unsubscribe(sub);
        }
    }

    private static async Task Cache(HttpContext ctx, LiveSession session)
    {
        string? name = ctx.Request.Query["name"];
        if (string.IsNullOrEmpty(name) || name.Length > 64 || name.Any(c => char.IsControl(c) || c == '/'))
        {
            ctx.Response.StatusCode = StatusCodes.Status400BadRequest;
            await ctx.Response.WriteAsync("give name=CACHE, a slab cache's name\n").ConfigureAwait(false);
            return;
        }
        string? text = session.Run is { } run ? await run.AskAsync(m => CacheText(m, name)).ConfigureAwait(false) : null;
        if (text is null)
        {
            ctx.Response.StatusCode = StatusCodes.Status404NotFound;
            await ctx.Response.WriteAsync($"no slab cache \"{name}\" on this machine\n").ConfigureAwait(false);
            return;
        }
        ctx.Response.ContentType = "text/plain; charset=utf-8";
        await ctx.Response.WriteAsync(text).ConfigureAwait(false);
    }

    private static async Task Frame(HttpContext ctx, LiveSession session)
    {
        if (!ulong.TryParse(ctx.Request.Query["pfn"], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out ulong pfn))
        {
            ctx.Response.StatusCode = StatusCodes.Status400BadRequest;
            await ctx.Response.WriteAsync("give pfn=N, a frame number\n").ConfigureAwait(false);
            return;
        }
        FrameDetails? frame = session.Run is { } run ? await run.AskAsync(m => FrameInfo.Describe(m, pfn)).ConfigureAwait(false) : null;
        if (frame is null)
        {
            ctx.Response.StatusCode = StatusCodes.Status404NotFound;
            await ctx.Response.WriteAsync($"no frame {pfn} on this machine\n").ConfigureAwait(false);
            return;
        }
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(System.Text.Json.JsonSerializer.Serialize(frame, LiveUpdate.Json)).ConfigureAwait(false);
    }

    /// <summary>A cache's slabs as /sys/kernel/slab reports them (SLUB), else its /proc/slabinfo line.</summary>
    private static string? CacheText(Machine m, string name)
    {
        if (m.Options.Slab == SlabAllocator.Slob)
        {
            return null;
        }
        string? row = m.Proc.Slabinfo().Split('\n').FirstOrDefault(l => l.StartsWith(name + " ", StringComparison.Ordinal));
        if (row is null)
        {
            return null;
        }
        var sb = new StringBuilder();
        sb.Append("slabinfo: ").Append(row.Trim()).Append('\n');
        if (m.SysSlab.Available)
        {
            foreach (string attr in (string[])["slabs", "partial", "cpu_slabs", "slabs_cpu_partial", "objects"])
            {
                try
                {
                    sb.Append(attr).Append(": ").Append(m.SysSlab.Read(name, attr).TrimEnd()).Append('\n');
                }
                catch (ArgumentException)
                {
                    break; // a name slabinfo shows but sysfs files under an id only
                }
            }
        }
        return sb.ToString();
    }

    /// <summary>Stops the server and the replay, and releases the machine.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _session.Dispose();
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
