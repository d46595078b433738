// kmem replay TRACE: boots a machine shaped like the traced one (memory from the
// meminfo.txt beside the trace, CPUs from the header), replays the trace on it and
// prints the summary, the fidelity figures and the chosen /proc files, or one JSON
// object; with --map, pictures of physical memory (ReplayMaps). Also the command's
// default (no arguments): the bundled real trace.
using System.CommandLine;

namespace Kmem.Cli;

/// <summary>The <c>replay</c> subcommand.</summary>
public static class ReplayCommand
{
    /// <summary>The /proc files --proc accepts.</summary>
    public static readonly string[] ProcNames = ["meminfo", "buddyinfo", "pagetypeinfo", "zoneinfo", "slabinfo", "slobinfo", "vmallocinfo", "vmstat", "swaps", "percpu_stats", "unusable_index", "extfrag_index"];

    /// <summary>What one replay run does.</summary>
    /// <param name="Trace">The trace file.</param>
    /// <param name="Machine">The machine options.</param>
    /// <param name="Proc">The /proc files to print.</param>
    /// <param name="Until">--until MARKER, or null.</param>
    /// <param name="CompareProc">--compare-proc.</param>
    /// <param name="SkipBad">--skip-bad.</param>
    /// <param name="Json">--json.</param>
    /// <param name="Busiest">How many of the busiest caches the text lists.</param>
    /// <param name="Map">--map FILE.png, or null.</param>
    /// <param name="MapEvery">--map-every N, or null.</param>
    /// <param name="Mismatches">--mismatches N: list the first N disagreements of each decision kind.</param>
    /// <param name="Timing">--timing: elapsed time and speed on stdout too.</param>
    public sealed record Request(string Trace, MachineChoice Machine, IReadOnlyList<string> Proc, string? Until,
        bool CompareProc, bool SkipBad, bool Json, int Busiest, string? Map = null, long? MapEvery = null, int Mismatches = 0, bool Timing = false);

    /// <summary>Creates the subcommand.</summary>
    public static Command Create(CliContext ctx)
    {
        var trace = new Argument<string>("TRACE") { Description = "the trace: ftrace text of /sys/kernel/tracing/trace with kmem and percpu events, plain, .gz or .xz" };
        var machine = new MachineArgs();
        var proc = ProcOption();
        var until = UntilOption();
        var compareProc = new Option<bool>("--compare-proc") { Description = "compare Kmem's /proc files with the snapshot files beside the trace (slabinfo, buddyinfo, meminfo); stops at the SNAPSHOT_BEGIN marker unless --until says otherwise" };
        var skipBad = new Option<bool>("--skip-bad") { Description = "count malformed lines instead of stopping at the first (exit code 0)" };
        var json = new Option<bool>("--json") { Description = "print one JSON object on stdout instead of text (with --map, its \"maps\" lists the pictures written)" };
        var map = new Option<string?>("--map") { Description = "write a picture of physical memory (a cell per page frame coloured by its use, zones marked, a legend) where the replay ends, as a PNG file", HelpName = "FILE.png" };
        var mismatches = CliValues.Whole(new Option<int>("--mismatches") { Description = "list the first N disagreements of each decision kind (Kmem's allocator against the kernel's), with their trace lines", HelpName = "N" }, 0);
        var mapEvery = CliValues.Whole(new Option<long?>("--map-every") { Description = "with --map, also write FILE-000001.png after N events, FILE-000002.png after 2N, … (markers count as events)", HelpName = "N" }, 1);
        var timing = TimingOption();
        var command = new Command("replay", "Replay a kernel trace on a Kmem machine and show what happened: events, fidelity to the traced kernel, busiest caches, /proc files.")
        {
            trace,
        };
        machine.AddTo(command);
        command.Options.Add(proc);
        command.Options.Add(until);
        command.Options.Add(compareProc);
        command.Options.Add(skipBad);
        command.Options.Add(json);
        command.Options.Add(map);
        command.Options.Add(mapEvery);
        command.Options.Add(mismatches);
        command.Options.Add(timing);
        command.SetAction(parse => Run(ctx, new Request(parse.GetValue(trace)!, machine.Choose(parse), parse.GetValue(proc) ?? [], parse.GetValue(until),
            parse.GetValue(compareProc), parse.GetValue(skipBad), parse.GetValue(json), 10, parse.GetValue(map), parse.GetValue(mapEvery),
            Math.Max(0, parse.GetValue(mismatches)), parse.GetValue(timing))));
        return command;
    }

    /// <summary>--proc NAME (repeatable).</summary>
    public static Option<string[]> ProcOption()
    {
        var proc = new Option<string[]>("--proc") { Description = "a /proc file to print after the run (repeatable): " + string.Join(", ", ProcNames), HelpName = "NAME" };
        proc.AcceptOnlyFromAmong(ProcNames);
        return proc;
    }

    /// <summary>--timing: elapsed times and speeds on stdout (otherwise they go only to a terminal's stderr), so
    /// that stdout is the same bytes run after run unless asked.</summary>
    public static Option<bool> TimingOption() =>
        new("--timing") { Description = "print elapsed times and speeds on stdout (without it they show on stderr when it is a terminal, and stdout is the same bytes run after run)" };

    /// <summary>--until MARKER.</summary>
    public static Option<string?> UntilOption() =>
        new("--until") { Description = "stop at the first trace marker (tracing_mark_write) containing MARKER; a MARKER no marker of the trace contains is bad input (exit code 1, the trace's markers listed)", HelpName = "MARKER" };

    /// <summary>The same trace again on a fresh machine of the same options, aligned to the kernel's revealed
    /// per-CPU list state before each decision (<see cref="TraceReplayOptions.Aligned"/>): only its decisions are kept.</summary>
    /// <remarks>It shares nothing with the main replay but the parsed trace, so it runs beside it on another thread (no
    /// progress bar of its own), reading the events the main replay reads (<paramref name="reader"/>, a follower of the
    /// one parse): on two cores the pair takes the time of one.</remarks>
    private static TraceReplayResult ReplayAligned(Request req, TraceReader reader, TraceCacheNames names)
    {
        using (reader) // a follower stopped early (the replay failed) no longer holds up the main replay
        {
            using var m = TraceReplayer.Boot(req.Machine.Build(req.Trace, reader.Cpus, bootReserve: true));
            var reserve = req.Machine.BootReserve(req.Trace);
            return new TraceReplayer(m, new TraceReplayOptions
            {
                Mismatches = req.Mismatches,
                Aligned = true,
                ReservedFrames = reserve?.Frames,
                RingBufferBytes = reserve?.RingBufferBytes ?? 0,
                CacheNames = names,
            }).Replay(reader);
        }
    }

    /// <summary>Runs one replay and prints it.</summary>
    public static int Run(CliContext ctx, Request req)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(req);
        ReplayMaps? maps;
        try
        {
            maps = ReplayMaps.Create(req.Map, req.MapEvery);
        }
        catch (UsageException e)
        {
            return ctx.Fail(CliContext.Usage, e.Message);
        }
        if (req.Until is "")
        {
            return ctx.Fail(CliContext.Usage, "--until needs a MARKER text to look for");
        }
        if (TraceInput.CheckFile(req.Trace) is string missing)
        {
            return ctx.Fail(CliContext.BadInput, missing);
        }
        string? until = req.Until ?? (req.CompareProc ? "SNAPSHOT_BEGIN" : null);
        TraceReader reader;
        TraceCacheNames names;
        try
        {
            if (TraceInput.CheckArch(req.Trace, req.Machine.Preset) is string wrongArch)
            {
                return ctx.Fail(CliContext.BadInput, wrongArch);
            }
            // Each call site's cache, which 6.1's kmem_cache_alloc leaves out, from the frees of the whole trace (a first
            // pass over the lines it can read; a malformed line is the replay's to report): both replays then allocate
            // from the kernel's caches from the first object on, and a replay that stops at a marker is the same
            // replay up to there.
            names = TraceCacheNames.Scan(req.Trace, TraceCacheNames.ScanOptions);
            reader = TraceReader.Open(req.Trace, new TraceReaderOptions { SkipBad = req.SkipBad, StopAtMarker = until });
        }
        catch (TraceFormatException e)
        {
            return ctx.Fail(CliContext.BadInput, e.Message);
        }
        using (reader)
        {
            Machine m;
            try
            {
                m = TraceReplayer.Boot(req.Machine.Build(req.Trace, reader.Cpus, bootReserve: true));
            }
            catch (Exception e) when (e is UsageException or MachineOptionException)
            {
                return req.Machine.FromTrace(e, req.Trace, reader.Cpus) is string fromTrace
                    ? ctx.Fail(CliContext.BadInput, fromTrace)
                    : ctx.Fail(CliContext.Usage, MachineArgs.Describe(e));
            }
            if (MachineArgs.SmallerThanCapture(req.Machine.Mem, m.MemoryBytes, req.Trace) is string small)
            {
                ctx.Err.WriteLine(small);
            }
            // The text is parsed once, on a thread of its own, for both replays.
            var shared = new SharedTrace(reader, 2);
            var alignedRun = Task.Run(() => ReplayAligned(req, shared.Follower(1), names));
            var events = shared.Follower(0);
            var reserve = req.Machine.BootReserve(req.Trace);
            using (m)
            try
            {
                TraceReplayResult r;
                try
                {
                    r = ReplayProgress.Run(ctx, "replay", progress => new TraceReplayer(m, new TraceReplayOptions
                    {
                        Progress = progress,
                        SnapshotEvery = maps?.Every ?? 0,
                        Snapshot = maps is { Every: > 0 } ? maps.Snapshot : null,
                        Mismatches = req.Mismatches,
                        ReservedFrames = reserve?.Frames,
                        RingBufferBytes = reserve?.RingBufferBytes ?? 0,
                        CacheNames = names,
                    }).Replay(events));
                }
                catch (TraceFormatException e)
                {
                    return ctx.Fail(CliContext.BadInput, e.Message);
                }
                catch (InvalidOperationException e) when (m.Options.Slab != SlabAllocator.Slub)
                {
                    return ctx.Fail(CliContext.Usage, $"--slab {MachineArgs.SlabNames[(int)req.Machine.Slab]}: {e.Message}");
                }
                if (req.Until is not null && events.StopLine == 0)
                {
                    // Replaying to the end instead would report a state the user did not ask for.
                    return ctx.Fail(CliContext.BadInput, TraceInput.NoSuchMarker(req.Trace, req.Until, events));
                }
                TraceReplayResult? aligned;
                try
                {
                    aligned = alignedRun.GetAwaiter().GetResult();
                }
                catch (TraceFormatException e)
                {
                    return ctx.Fail(CliContext.BadInput, e.Message);
                }
                maps?.WriteFinal(m, r);
                TraceProcComparison? cmp = null;
                if (req.CompareProc)
                {
                    string dir = Path.GetDirectoryName(Path.GetFullPath(req.Trace))!;
                    cmp = TraceProcComparison.Compare(m, dir, r);
                    if (cmp.Files.Count == 0)
                    {
                        ctx.Err.WriteLine($"kmem: warning: --compare-proc: no slabinfo.txt, buddyinfo.txt or meminfo.txt in {dir}");
                    }
                }
                if (ctx.ErrIsTerminal && !req.Timing)
                {
                    ReplayReport.WriteTiming(ctx.Err, r); // where the progress bar was
                }
                if (req.Json)
                {
                    ReplayReport.WriteJson(ctx.Out, j =>
                    {
                        ReplayReport.WriteJsonFields(j, m, r, req.Proc, aligned);
                        if (maps is not null)
                        {
                            JsonFields.Strings(j, "maps", maps.Written);
                        }
                        if (cmp is not null)
                        {
                            j.WritePropertyName("compare_proc");
                            CompareProcReport.WriteJson(j, cmp);
                        }
                    });
                }
                else
                {
                    ReplayReport.WriteText(ctx.Out, m, r, req.Busiest, aligned);
                    if (req.Timing)
                    {
                        ReplayReport.WriteTiming(ctx.Out, r);
                    }
                    if (maps is not null)
                    {
                        ctx.Out.WriteLine(maps.Written.Count == 1
                            ? $"memory map: {maps.FinalFile}"
                            : $"memory map: {maps.FinalFile}, and {maps.Written.Count - 1} pictures every {maps.Every} events: {maps.Written[0]} .. {maps.Written[^2]}");
                    }
                    if (cmp is not null)
                    {
                        CompareProcReport.WriteText(ctx.Out, cmp);
                    }
                    ReplayReport.WriteProc(ctx.Out, m, req.Proc);
                }
                return CliContext.Ok;
            }
            finally
            {
                // An early return (bad input, unknown marker, a failed main replay) stops the parsing and still
                // waits for the aligned replay, which fails at the same line or stops at its next chunk of events:
                // nothing may run on once the command returns (nor read the trace once it is closed).
                shared.Dispose();
                Task.WaitAny(alignedRun); // its failure, if any, was reported above or is moot
            }
        }
    }
}
