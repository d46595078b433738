// kmem compare TRACE: the same trace replayed on SLUB, SLAB and SLOB, side by side
// (slab memory at peak and at the end, internal fragmentation, slab pages, objects per
// slab page, replay speed); a backend this build lacks is shown as unavailable.
using System.CommandLine;
using System.Globalization;

namespace Kmem.Cli;

/// <summary>The <c>compare</c> subcommand.</summary>
public static class CompareCommand
{
    /// <summary>Creates the subcommand.</summary>
    public static Command Create(CliContext ctx)
    {
        var trace = new Argument<string>("TRACE") { Description = "the trace (plain, .gz or .xz)" };
        var machine = new MachineArgs();
        var until = ReplayCommand.UntilOption();
        var skipBad = new Option<bool>("--skip-bad") { Description = "count malformed lines instead of stopping at the first" };
        var json = new Option<bool>("--json") { Description = "print one JSON object on stdout: {\"backends\": [...]}" };
        var timing = ReplayCommand.TimingOption();
        var command = new Command("compare", "Replay a trace on SLUB, SLAB and SLOB and compare slab memory, fragmentation and speed.") { trace };
        command.Options.Add(machine.Mem);
        command.Options.Add(machine.Cpus);
        command.Options.Add(machine.Preset);
        command.Options.Add(machine.Seed);
        machine.AddBootParameters(command);
        command.Options.Add(until);
        command.Options.Add(skipBad);
        command.Options.Add(json);
        command.Options.Add(timing);
        command.SetAction(parse => Run(ctx, parse.GetValue(trace)!, machine, parse, parse.GetValue(until), parse.GetValue(skipBad), parse.GetValue(json), parse.GetValue(timing)));
        return command;
    }

    private static int Run(CliContext ctx, string trace, MachineArgs machine, ParseResult parse, string? until, bool skipBad, bool json, bool timing)
    {
        if (until is "")
        {
            return ctx.Fail(CliContext.Usage, "--until needs a MARKER text to look for");
        }
        if (TraceInput.CheckFile(trace) is string missing)
        {
            return ctx.Fail(CliContext.BadInput, missing);
        }
        var readerOptions = new TraceReaderOptions { SkipBad = skipBad, StopAtMarker = until };
        var choice = machine.Choose(parse, SlabAllocator.Slub);
        int cpus;
        try
        {
            if (TraceInput.CheckArch(trace, choice.Preset) is string wrongArch)
            {
                return ctx.Fail(CliContext.BadInput, wrongArch);
            }
            using var header = TraceReader.Open(trace, readerOptions);
            cpus = header.Cpus;
            if (until is not null)
            {
                // Three replays that each read the whole trace for a marker it lacks would compare the wrong state.
                while (header.TryRead(out _))
                {
                }
                if (header.StopLine == 0)
                {
                    return ctx.Fail(CliContext.BadInput, TraceInput.NoSuchMarker(trace, until, header));
                }
            }
        }
        catch (TraceFormatException e)
        {
            return ctx.Fail(CliContext.BadInput, e.Message);
        }
        MachineOptions options;
        try
        {
            options = choice.Build(trace, cpus);
            Machine.Boot(options).Dispose(); // options checked once, before three replays
        }
        catch (Exception e) when (e is UsageException or MachineOptionException)
        {
            return choice.FromTrace(e, trace, cpus) is string fromTrace
                ? ctx.Fail(CliContext.BadInput, fromTrace)
                : ctx.Fail(CliContext.Usage, MachineArgs.Describe(e));
        }
        IReadOnlyList<SlabBackendRun> runs;
        try
        {
            // Each call site's cache from the trace's frees first (ReplayCommand does the same).
            var names = TraceCacheNames.Scan(trace, TraceCacheNames.ScanOptions);
            runs = ReplayProgress.Run(ctx, "compare", progress =>
                SlabBackendComparison.Compare(trace, options, readerOptions, new TraceReplayOptions { Progress = progress, CacheNames = names }));
        }
        catch (TraceFormatException e)
        {
            return ctx.Fail(CliContext.BadInput, e.Message);
        }
        if (json)
        {
            ReplayReport.WriteJson(ctx.Out, j =>
            {
                j.WriteString("trace", trace);
                j.WriteStartArray("backends");
                foreach (var run in runs)
                {
                    j.WriteStartObject();
                    j.WriteString("slab", Name(run.Slab));
                    if (run.Result is { } r)
                    {
                        j.WriteBoolean("available", true);
                        j.WriteNumber("events", r.Events);
                        j.WriteNumber("slab_bytes_peak", r.SlabBytesPeak);
                        j.WriteNumber("slab_bytes_end", r.SlabBytesEnd);
                        j.WriteNumber("internal_fragmentation", Math.Round(r.InternalFragmentation, 6));
                        j.WriteNumber("slab_pages_end", r.SlabPagesEnd);
                        j.WriteNumber("objects_per_slab_page", Math.Round(r.ObjectsPerSlabPage, 3));
                        j.WriteNumber("events_per_second", Math.Round(r.EventsPerSecond));
                    }
                    else
                    {
                        j.WriteBoolean("available", false);
                        j.WriteString("unavailable", run.Unavailable);
                    }
                    j.WriteEndObject();
                }
                j.WriteEndArray();
            });
            return CliContext.Ok;
        }
        var inv = CultureInfo.InvariantCulture;
        var first = runs.FirstOrDefault(r => r.Result is not null)?.Result;
        ctx.Out.WriteLine(string.Create(inv, $"# kmem compare of {trace}: {first?.Events ?? 0:N0} events on {MachineArgs.NameOf(options.Preset)}, {options.Memory}, {options.Cpus} CPUs"));
        // Speeds vary from run to run: on stdout only with --timing, else on a terminal's stderr.
        string speedHead = timing ? $" {"M events/s",11}" : "";
        ctx.Out.WriteLine($"{"slab",-6} {"peak kB",10} {"end kB",10} {"int. frag",10} {"slab pages",11} {"objs/page",10}{speedHead}");
        foreach (var run in runs)
        {
            if (run.Result is { } r)
            {
                string speed = string.Create(inv, $" {r.EventsPerSecond / 1e6,11:F2}");
                ctx.Out.WriteLine(string.Create(inv, $"{Name(run.Slab),-6} {r.SlabBytesPeak / 1024,10:N0} {r.SlabBytesEnd / 1024,10:N0} {r.InternalFragmentation,10:P1} {r.SlabPagesEnd,11:N0} {r.ObjectsPerSlabPage,10:F1}{(timing ? speed : "")}"));
                if (ctx.ErrIsTerminal && !timing)
                {
                    ctx.Err.WriteLine(string.Create(inv, $"# time: {Name(run.Slab)} {r.Events:N0} events in {r.Seconds:F2} s ({r.EventsPerSecond / 1e6:F2} M events/s)"));
                }
            }
            else
            {
                ctx.Out.WriteLine($"{Name(run.Slab),-6} unavailable: {run.Unavailable}");
            }
        }
        return CliContext.Ok;
    }

    private static string Name(SlabAllocator slab) => MachineArgs.SlabNames[(int)slab];
}
