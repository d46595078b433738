// The quick comparison: every workload for every contender in one process and
// one run, timed with a Stopwatch (warm-up and calibration first, then the
// repetitions round-robin across contenders so that drift on the host hits all
// alike), memory efficiency from child processes, Kmem's boot times; printed as
// one text table, Markdown or JSON. Entry point for `kmem bench` and for
// `Kmem.Bench --quick`. Runs on the calling thread plus two worker threads.
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Kmem.Physical;

namespace Kmem.Bench;

/// <summary>The options of a quick run.</summary>
internal sealed record QuickOptions
{
    public bool Json { get; init; }
    public bool Markdown { get; init; }
    public int Repetitions { get; init; } = 9;
    public double RepetitionMs { get; init; } = 20;
    public double WarmUpMs { get; init; } = 150;
    public string[]? Contenders { get; init; }
    public string[]? Workloads { get; init; }
    public bool Memory { get; init; } = true;
    public bool Boot { get; init; } = true;
    public bool PinKmemThreads { get; init; }
    public (string Contender, string Workload)? MemoryChild { get; init; }

    public const string Usage =
        "options: --json | --markdown, --repetitions N (default 9, at least 1), --contenders NAME,NAME (names as in the table), "
        + "--workloads TEXT,TEXT (rows whose name contains one of them), --no-memory, --no-boot, "
        + "--pin-kmem (pin Kmem's threads to the machine's CPUs: SLUB without thread magazines)";

    /// <summary>Parses the arguments; a wrong one throws <see cref="ArgumentException"/> naming it.</summary>
    public static QuickOptions Parse(IReadOnlyList<string> args)
    {
        var o = new QuickOptions();
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            string Value()
            {
                if (i + 1 >= args.Count)
                {
                    throw new ArgumentException($"{a} needs a value; {Usage}");
                }
                return args[++i];
            }
            o = a switch
            {
                "--quick" => o,
                "--json" => o with { Json = true },
                "--markdown" => o with { Markdown = true },
                "--no-memory" => o with { Memory = false },
                "--no-boot" => o with { Boot = false },
                "--pin-kmem" => o with { PinKmemThreads = true },
                "--repetitions" => o with { Repetitions = PositiveInt(a, Value()) },
                "--contenders" => o with { Contenders = List(Value()) },
                "--workloads" => o with { Workloads = List(Value()) },
                "--memory-child" => o with { MemoryChild = ChildSpec(Value()) },
                _ => throw new ArgumentException($"unknown option \"{a}\"; {Usage}"),
            };
        }
        if (o.Json && o.Markdown)
        {
            throw new ArgumentException("--json and --markdown cannot be combined");
        }
        if (o.Contenders?.FirstOrDefault(c => !ContenderSet.AllNames.Contains(c)) is { } unknown)
        {
            throw new ArgumentException($"unknown contender \"{unknown}\"; known: {string.Join(", ", ContenderSet.AllNames)}");
        }
        if (o.Workloads is { } filters)
        {
            // A filter that selects no row is a typo, not a request for an empty table. The names hold
            // commas ("pair 64 B, 2 threads"), so the message quotes each.
            string[] names = [.. QuickBench.AllWorkloads().Select(w => w.Name)];
            string known = string.Join(", ", names.Select(n => $"\"{n}\""));
            if (filters.Length == 0)
            {
                throw new ArgumentException($"--workloads needs at least one name; the workloads: {known}");
            }
            if (filters.FirstOrDefault(f => !names.Any(n => n.Contains(f, StringComparison.OrdinalIgnoreCase))) is { } none)
            {
                throw new ArgumentException($"--workloads: \"{none}\" matches no workload; the workloads: {known}");
            }
        }
        return o;
    }

    private static int PositiveInt(string option, string text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= 1
            ? n
            : throw new ArgumentException($"{option}: \"{text}\" is not a whole number of at least 1");

    /// <summary>"WORKLOAD:CONTENDER", the one argument a memory child gets.</summary>
    public static string ChildArgument(string contender, string workload) => $"{workload}:{contender}";

    private static (string Contender, string Workload) ChildSpec(string text)
    {
        int colon = text.IndexOf(':', StringComparison.Ordinal);
        return colon > 0 && colon < text.Length - 1
            ? (text[(colon + 1)..], text[..colon])
            : throw new ArgumentException($"--memory-child: \"{text}\" is not WORKLOAD:CONTENDER");
    }

    private static string[] List(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}

/// <summary>The quick comparison of Kmem with the allocators a .NET program would use instead.</summary>
public static class QuickBench
{
    /// <summary>The rows, in order.</summary>
    internal static Workload[] AllWorkloads() =>
    [
        new PairWorkload(16, 1),
        new PairWorkload(64, 1),
        new PairWorkload(256, 1),
        new PairWorkload(1024, 1),
        new PairWorkload(4096, 1) { PageRow = true },
        new PairWorkload(64 * 1024, 1) { PageRow = true },
        new PairWorkload(1024 * 1024, 1) { PageRow = true },
        new PairWorkload(64, 2),
        new BatchWorkload(),
        new CrossThreadWorkload(),
        new LarsonWorkload(1),
        new LarsonWorkload(2),
        new CacheScratchWorkload(),
    ];

    /// <summary>
    /// Runs the quick comparison with <paramref name="args"/> (see <see cref="QuickOptions.Usage"/>) and prints it to
    /// <paramref name="output"/>; progress and errors go to <paramref name="error"/>. <paramref name="selfArgs"/> are the
    /// arguments that start this same comparison when the program is started again (for the memory children, and to
    /// reserve static TLS for jemalloc). Returns the exit code: 0, or 2 for a wrong argument.
    /// </summary>
    public static int Run(IReadOnlyList<string> args, IReadOnlyList<string> selfArgs, TextWriter output, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(selfArgs);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        QuickOptions options;
        try
        {
            options = QuickOptions.Parse(args);
        }
        catch (ArgumentException e)
        {
            error.WriteLine($"bench: {e.Message}");
            return 2;
        }
        if (options.MemoryChild is { } child)
        {
            return MemoryProbe.RunChild(child.Contender, child.Workload, options.PinKmemThreads, output);
        }
        if (StaticTls.RelaunchNeeded())
        {
            return StaticTls.Relaunch(selfArgs.Concat(args));
        }
        var report = Measure(options, selfArgs, error);
        if (options.Json)
        {
            using var json = new MemoryStream();
            report.WriteJson(json);
            output.WriteLine(System.Text.Encoding.UTF8.GetString(json.ToArray()));
        }
        else if (options.Markdown)
        {
            report.WriteMarkdown(output);
        }
        else
        {
            report.WriteText(output);
        }
        return 0;
    }

    private static BenchReport Measure(QuickOptions options, IReadOnlyList<string> selfArgs, TextWriter progress)
    {
        var started = Stopwatch.GetTimestamp();
        var workloads = AllWorkloads()
            .Where(w => options.Workloads is null || options.Workloads.Any(f => w.Name.Contains(f, StringComparison.OrdinalIgnoreCase)))
            .ToArray();
        using var set = ContenderSet.Create(options.Contenders is null ? null : options.Contenders.Contains, options.PinKmemThreads);
        var report = new BenchReport
        {
            Runtime = RuntimeInformation.FrameworkDescription,
            Host = $"{RuntimeInformation.OSDescription}, {RuntimeInformation.OSArchitecture}, {Environment.ProcessorCount} cores, {CpuModel()}",
            LoadAtStart = LoadAverage(),
            Repetitions = options.Repetitions,
            WorkloadOrder = [.. workloads.Select(w => w.Name)],
            Contenders = [.. set.Contenders.Select(c => new ContenderInfo(c.Name, c.Kind))],
            Notes = [.. set.Notes],
        };
        using var threads = new TwoThreads();
        if (!threads.BoundToCores)
        {
            report.Notes.Add("fewer than two host cores are allowed: the worker threads are not bound to cores");
        }

        WarmUpKmem(set, threads, options);
        foreach (var w in workloads)
        {
            progress.WriteLine($"bench: {w.Name} ...");
            var cells = set.Contenders.Where(c => c.Supports(w)).Select(c => (Contender: c, Run: c.Create(w, threads))).ToList();
            // A two-thread row's figures follow how far apart the host has put the two cores, which can change within a
            // run: the cache-line handoff is measured around the row.
            double handoffBefore = w.Threads == 2 && threads.BoundToCores && cells.Count > 0 ? threads.LineHandoffNs() : 0;
            try
            {
                var units = cells.Select(c => Calibrate(c.Run, options)).ToArray();
                var samples = cells.Select(_ => new double[options.Repetitions]).ToArray();
                for (int r = 0; r < options.Repetitions; r++)
                {
                    for (int i = 0; i < cells.Count; i++)
                    {
                        samples[i][r] = cells[i].Run.Run(units[i]).TotalNanoseconds / ((double)units[i] * w.OperationsPerUnit);
                    }
                }
                for (int i = 0; i < cells.Count; i++)
                {
                    report.Timings.Add(new TimingResult(w.Name, w.Operation, w.Threads, cells[i].Contender.Name, Summary.Of(samples[i])));
                }
                if (handoffBefore > 0)
                {
                    report.Handoffs.Add(new HandoffResult(w.Name, handoffBefore, threads.LineHandoffNs()));
                }
            }
            finally
            {
                foreach (var c in cells)
                {
                    c.Run.Dispose();
                }
            }
        }
        report.LoadAtEnd = LoadAverage();

        if (options.Memory)
        {
            foreach (string workload in MemoryProbe.Workloads)
            {
                progress.WriteLine($"bench: memory, {workload} ...");
                foreach (var c in set.Contenders.Where(c => !c.PagesOnly && c.Kind != ContenderKind.Floor))
                {
                    if (MeasureInChild(options.PinKmemThreads ? [.. selfArgs, "--pin-kmem"] : selfArgs, c.Name, workload, out var figures, out string? note))
                    {
                        report.Memory.Add(new MemoryResult(workload, c.Name, figures.RequestedBytes, figures.HeldBytes));
                    }
                    else
                    {
                        report.Notes.Add(note!);
                    }
                }
            }
        }
        if (options.Boot)
        {
            progress.WriteLine("bench: boot ...");
            set.Dispose();
            report.Boots.AddRange(s_bootSizes.Select(MeasureBoot));
        }
        report.Notes.Add(string.Create(CultureInfo.InvariantCulture,
            $"each native call pays the managed-to-native transition; the function-pointer contenders suppress the GC transition (see bench/README.md); "
            + $"whole run {Stopwatch.GetElapsedTime(started).TotalSeconds:0} s"));
        return report;
    }

    /// <summary>Warms the run up (at least three runs and <see cref="QuickOptions.WarmUpMs"/>) and returns the units of
    /// work that make one repetition last about <see cref="QuickOptions.RepetitionMs"/>.</summary>
    /// <summary>Kmem's entry points are tiered methods: without this, the first row would time them partly as
    /// tier-0 and instrumented code while tier 1 compiles in the background (the native contenders and the
    /// floor have nothing to tier). Two rounds of small pairs and a batch, with a pause for the compiler.</summary>
    private static void WarmUpKmem(ContenderSet set, TwoThreads threads, QuickOptions o)
    {
        Workload[] warm = [new PairWorkload(16, 1), new PairWorkload(1024, 1), new BatchWorkload()];
        for (int round = 0; round < 2; round++)
        {
            foreach (var c in set.Contenders.Where(c => c.Kind == ContenderKind.Kmem && !c.PagesOnly))
            {
                foreach (var w in warm.Where(c.Supports))
                {
                    using var run = c.Create(w, threads);
                    var sw = Stopwatch.StartNew();
                    while (sw.Elapsed.TotalMilliseconds < o.WarmUpMs / 3)
                    {
                        run.Run(Math.Max(1, 2000 / w.OperationsPerUnit));
                    }
                }
            }
            Thread.Sleep(200);
        }
    }

    private static long Calibrate(WorkloadRun run, QuickOptions o)
    {
        long units = 1;
        double total = 0;
        for (int runs = 0; ; runs++)
        {
            double ms = run.Run(units).TotalMilliseconds;
            total += ms;
            if (ms < o.RepetitionMs / 10)
            {
                units *= (long)Math.Clamp(o.RepetitionMs / 10 / Math.Max(ms, 1e-3), 2, 1000);
                continue;
            }
            if (runs >= 2 && total >= o.WarmUpMs)
            {
                return Math.Max(1, (long)(units * o.RepetitionMs / ms));
            }
        }
    }

    private static bool MeasureInChild(IReadOnlyList<string> selfArgs, string contender, string workload, out MemoryFigures figures, out string? note)
    {
        figures = default;
        var start = SelfProcess.StartInfo(selfArgs.Concat(["--memory-child", QuickOptions.ChildArgument(contender, workload)]));
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        using var child = Process.Start(start);
        if (child is null)
        {
            note = $"memory of {contender} on {workload} not measured: the child process did not start";
            return false;
        }
        var stderr = child.StandardError.ReadToEndAsync();
        string stdout = child.StandardOutput.ReadToEnd();
        if (!child.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            child.Kill();
            note = $"memory of {contender} on {workload} not measured: the child process took over two minutes";
            return false;
        }
        string last = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "";
        string[] parts = last.Split(' ');
        if (child.ExitCode == 0 && parts.Length == 2
            && long.TryParse(parts[0], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long held)
            && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long requested))
        {
            figures = new MemoryFigures(requested, held);
            note = null;
            return true;
        }
        note = $"memory of {contender} on {workload} not measured: {(last.StartsWith("skipped", StringComparison.Ordinal) ? last : $"exit {child.ExitCode}, {stderr.Result.Trim()}")}";
        return false;
    }

    private const int Boots = 5;
    private static readonly string[] s_bootSizes = ["1G", "16G", "64G"];

    /// <summary>Median boot and dispose times of <see cref="Boots"/> boots, and the median resident-memory increase from
    /// before Boot to after it, the machine still alive.</summary>
    private static BootResult MeasureBoot(string memory)
    {
        var options = new MachineOptions { Memory = memory, Cpus = 2, Preset = Preset.X64, Seed = 1 };
        Machine.Boot(options).Dispose(); // warm-up: code paths compiled, first-touch costs of the host paid once
        var boot = new double[Boots];
        var dispose = new double[Boots];
        var rss = new double[Boots];
        ulong frames = 0;
        for (int i = 0; i < Boots; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            long before = ProcStatus.ResidentBytes();
            long start = Stopwatch.GetTimestamp();
            var machine = Machine.Boot(options);
            boot[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            rss[i] = ProcStatus.ResidentBytes() - before;
            frames = machine.MaxPfn;
            start = Stopwatch.GetTimestamp();
            machine.Dispose();
            dispose[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        double perFrame = PhysMem.MetadataBytesPerFrame(Arch.For(Preset.X64).PageblockOrder);
        return new BootResult($"{memory.TrimEnd('G')} GiB", frames, Summary.Of(boot).Median, Summary.Of(dispose).Median, perFrame, Summary.Of(rss).Median);
    }

    /// <summary>The first three fields of /proc/loadavg (1, 5 and 15 minutes), or "unknown".</summary>
    internal static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    private static string CpuModel()
    {
        try
        {
            string? line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line is null ? "" : line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
        }
        catch (IOException)
        {
            return "";
        }
    }
}
