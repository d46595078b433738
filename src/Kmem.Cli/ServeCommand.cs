// kmem serve [TRACE]: the live view. Starts the Kmem.Live web server on 127.0.0.1 (or
// --host) replaying the trace (the bundled capture when none is given; or --scenario NAME,
// a scenario of kmem scenario told step by step) on a machine booted
// from the same options as kmem replay, prints the page's URL and serves until Ctrl-C (or
// SIGTERM), then stops the replay and releases the machine. The options are checked before
// the server starts: a bad value is a usage error, a missing or foreign trace bad input.
using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using Kmem.Live;

namespace Kmem.Cli;

/// <summary>The serve subcommand.</summary>
public static class ServeCommand
{
    /// <summary>The default port.</summary>
    public const int DefaultPort = 7340;

    /// <summary>Creates the subcommand.</summary>
    public static Command Create(CliContext ctx) => Create(ctx, null);

    /// <summary>Creates the subcommand; <paramref name="started"/> (tests) is called with the server once it listens,
    /// and the command returns when the token it is given is cancelled, as Ctrl-C does.</summary>
    internal static Command Create(CliContext ctx, Func<LiveServer, CancellationToken>? started)
    {
        var trace = new Argument<string?>("TRACE") { Description = "the trace (plain, .gz or .xz); default: the bundled capture", Arity = ArgumentArity.ZeroOrOne };
        var machine = new MachineArgs();
        var port = CliValues.Whole(new Option<int>("--port") { Description = $"TCP port (default {DefaultPort}; 0 picks a free one)", DefaultValueFactory = _ => DefaultPort, HelpName = "N" });
        var scenario = new Option<string?>("--scenario") { Description = "instead of a trace, a scenario of kmem scenario told step by step: pressure, fragmentation or highmem (each boots its own machine; --slab and --seed apply)", HelpName = "pressure|fragmentation|highmem" };
        scenario.AcceptOnlyFromAmong("pressure", "fragmentation", "highmem");
        var host = new Option<string>("--host") { Description = "address to listen on (default 127.0.0.1: this host only)", DefaultValueFactory = _ => "127.0.0.1", HelpName = "ADDRESS" };
        var command = new Command("serve", "Serve the live view: a page that plays the trace on a Kmem machine, frame by frame, "
            + "with the buddy and per-CPU lists, the slab caches, the counters and Kmem's decisions beside the kernel's; "
            + "seek to the trace's markers, switch SLUB, SLAB and SLOB")
        {
            trace, scenario, port, host,
        };
        machine.AddTo(command);
        command.SetAction(parse =>
        {
            string? story = parse.GetValue(scenario);
            if (story is not null && parse.GetValue(trace) is not null)
            {
                return ctx.Fail(CliContext.Usage, "give a TRACE or --scenario NAME, not both");
            }
            return Run(ctx, parse.GetValue(trace) ?? DefaultCommand.BundledTrace, story, machine.Choose(parse), parse.GetValue(host)!, parse.GetValue(port), started);
        });
        return command;
    }

    private static int Run(CliContext ctx, string tracePath, string? scenario, MachineChoice choice, string hostText, int port,
        Func<LiveServer, CancellationToken>? started)
    {
        if (!TryHost(hostText, out IPAddress? host))
        {
            return ctx.Fail(CliContext.Usage, $"--host {hostText}: not an IP address (or localhost)");
        }
        if (port > 65535)
        {
            return ctx.Fail(CliContext.Usage, $"--port {port}: a TCP port is 0 to 65535");
        }
        if (scenario is not null)
        {
            return Serve(ctx, new LiveServerOptions
            {
                Scenario = scenario,
                Boot = (slab, _) => (choice with { Slab = slab }).Build(null, 0),
                Slab = choice.Slab,
                Host = host!,
                Port = port,
            }, started).GetAwaiter().GetResult();
        }
        if (TraceInput.CheckFile(tracePath) is string missing)
        {
            return ctx.Fail(CliContext.BadInput, missing);
        }
        int cpus;
        try
        {
            if (TraceInput.CheckArch(tracePath, choice.Preset) is string wrongArch)
            {
                return ctx.Fail(CliContext.BadInput, wrongArch);
            }
            using var reader = TraceReader.Open(tracePath);
            cpus = reader.Cpus;
        }
        catch (TraceFormatException e)
        {
            return ctx.Fail(CliContext.BadInput, e.Message);
        }
        try
        {
            using var probe = Machine.Boot(choice.Build(tracePath, cpus)); // refuse bad options now, not on the page
        }
        catch (Exception e) when (e is UsageException or MachineOptionException)
        {
            return choice.FromTrace(e, tracePath, cpus) is string fromTrace
                ? ctx.Fail(CliContext.BadInput, fromTrace)
                : ctx.Fail(CliContext.Usage, MachineArgs.Describe(e));
        }
        var reserve = choice.BootReserve(tracePath);
        var options = new LiveServerOptions
        {
            TracePath = tracePath,
            Boot = (slab, traceCpus) => (choice with { Slab = slab }).Build(tracePath, traceCpus, bootReserve: true),
            ReservedFrames = reserve?.Frames,
            RingBufferBytes = reserve?.RingBufferBytes ?? 0,
            Slab = choice.Slab,
            Host = host!,
            Port = port,
        };
        return Serve(ctx, options, started).GetAwaiter().GetResult();
    }

    private static async Task<int> Serve(CliContext ctx, LiveServerOptions options, Func<LiveServer, CancellationToken>? started)
    {
        LiveServer server;
        try
        {
            server = await LiveServer.StartAsync(options).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            return ctx.Fail(CliContext.BadInput, e.Message + (options.Port != 0 ? "; try another --port" : ""));
        }
        await using (server.ConfigureAwait(false))
        {
            using var stop = new CancellationTokenSource();
            void OnCancel(object? sender, ConsoleCancelEventArgs e)
            {
                e.Cancel = true;
                stop.Cancel();
            }
            Console.CancelKeyPress += OnCancel;
            using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
            {
                c.Cancel = true;
                stop.Cancel();
            });
            try
            {
                ctx.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"kmem: the live view of {(options.Scenario is { } name ? "scenario " + name : Path.GetFileName(options.TracePath))} is at {server.Url}"));
                ctx.Out.WriteLine("kmem: open it in a browser; Ctrl-C stops the server");
                ctx.Out.Flush();
                var token = started?.Invoke(server) ?? CancellationToken.None;
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(stop.Token, token);
                try
                {
                    await Task.Delay(Timeout.Infinite, linked.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                }
            }
            finally
            {
                Console.CancelKeyPress -= OnCancel;
            }
        }
        ctx.Out.WriteLine("kmem: stopped; the machine is released");
        return CliContext.Ok;
    }

    private static bool TryHost(string text, out IPAddress? host)
    {
        if (text == "localhost")
        {
            host = IPAddress.Loopback;
            return true;
        }
        return IPAddress.TryParse(text, out host);
    }
}
