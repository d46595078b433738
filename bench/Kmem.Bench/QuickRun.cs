// The quick mode (--quick): ns per alloc+free pair for Kmem and each installed
// contender (order 0 and 3 on one thread, order 0 on two threads on two CPUs),
// with the ratio contender/Kmem; then boot time, dispose time, metadata bytes
// and the host's resident-memory increase for X64 machines of 1, 16 and 64 GiB.
// Stopwatch timing: a warm-up, then the median of several fixed-count runs.
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Kmem.Physical;

namespace Kmem.Bench;

internal static class QuickRun
{
    /// <summary>Pairs in one timed run (per thread in the two-thread row).</summary>
    private const int Pairs = 1_000_000;
    /// <summary>Timed runs per contender and operation; the median is reported.</summary>
    private const int Repetitions = 11;
    /// <summary>Minimum warm-up per contender and operation, so that tiered compilation settles.</summary>
    private static readonly TimeSpan s_warmUp = TimeSpan.FromMilliseconds(400);
    /// <summary>Timed boots per size; the median is reported.</summary>
    private const int Boots = 5;
    private static readonly string[] s_bootSizes = ["1G", "16G", "64G"];

    private sealed record Operation(string Name, int Order, bool TwoThreads);

    private static readonly Operation[] s_operations =
    [
        new("order-0 pair, 1 thread", 0, false),
        new("order-3 pair, 1 thread", 3, false),
        new("order-0 pair, 2 threads", 0, true),
    ];

    public static int Run(TextWriter output)
    {
        var notes = new List<string>();
        // Kmem first: its column is the one the ratios divide by. Its machine is booted afresh for each
        // operation, as each BenchmarkDotNet process boots its own.
        var contenders = new List<PageContender> { new KmemContender(BootPairMachine()), new GlibcContender() };
        foreach (var spec in NativeContender.Known)
        {
            if (NativeContender.TryLoad(spec.Name, out string? note) is { } c)
            {
                contenders.Add(c);
            }
            else
            {
                notes.Add(note!);
            }
        }
        using var threads = new TwoThreads();
        if (!threads.BoundToCores)
        {
            notes.Add("fewer than two host cores are allowed: the two-thread row's threads are not bound to cores");
        }

        var perPair = new double[s_operations.Length, contenders.Count];
        for (int o = 0; o < s_operations.Length; o++)
        {
            var op = s_operations[o];
            if (o > 0)
            {
                ((KmemContender)contenders[0]).Machine.Dispose();
                contenders[0] = new KmemContender(BootPairMachine());
            }
            var runs = contenders.Select(c => Runner(c, op, threads)).ToArray();
            foreach (var run in runs)
            {
                WarmUp(run);
            }
            var samples = new double[contenders.Count][];
            for (int c = 0; c < contenders.Count; c++)
            {
                samples[c] = new double[Repetitions];
            }
            // Round-robin: every contender is timed once per round, so drift on the host hits all alike.
            for (int r = 0; r < Repetitions; r++)
            {
                for (int c = 0; c < contenders.Count; c++)
                {
                    samples[c][r] = runs[c]().TotalNanoseconds / Pairs;
                }
            }
            for (int c = 0; c < contenders.Count; c++)
            {
                perPair[o, c] = Median(samples[c]);
            }
        }

        ((KmemContender)contenders[0]).Machine.Dispose();
        var boots = s_bootSizes.Select(MeasureBoot).ToArray();
        notes.Add(TransitionNote());
        Print(output, contenders, perPair, boots, notes);
        return 0;
    }

    /// <summary>The machine Kmem's pairs run on: 1 GiB, X64, one CPU per worker thread.</summary>
    private static Machine BootPairMachine() =>
        Machine.Boot(new MachineOptions { Memory = "1G", Cpus = TwoThreads.Count, Preset = Preset.X64, Seed = 1 });

    /// <summary>A timed run of <see cref="Pairs"/> pairs (per thread) for one contender and operation.</summary>
    private static Func<TimeSpan> Runner(PageContender c, Operation op, TwoThreads threads)
    {
        if (op.TwoThreads)
        {
            Action<int> work = cpu => c.RunPairsOnCpu(cpu, op.Order, Pairs);
            return () => threads.Run(work);
        }
        return () =>
        {
            long start = Stopwatch.GetTimestamp();
            c.RunPairs(op.Order, Pairs);
            return Stopwatch.GetElapsedTime(start);
        };
    }

    private static void WarmUp(Func<TimeSpan> run)
    {
        var total = TimeSpan.Zero;
        for (int i = 0; i < 3 || total < s_warmUp; i++)
        {
            total += run();
        }
    }

    private static readonly string[] s_bootHeader = ["boot (X64, 2 CPUs)", "boot ms", "dispose ms", "meta B/frame", "frames", "meta MiB", "RSS +MiB"];

    private sealed record BootFigures(string Memory, ulong Frames, double BootMs, double DisposeMs,
        double MetadataPerFrame, double RssIncreaseBytes);

    /// <summary>Median boot and dispose times of <see cref="Boots"/> boots, and the median resident-memory
    /// increase from before Boot to after it, the machine still alive.</summary>
    private static BootFigures MeasureBoot(string memory)
    {
        var options = new MachineOptions { Memory = memory, Cpus = 2, Preset = Preset.X64, Seed = 1 };
        Machine.Boot(options).Dispose(); // warm-up: code paths jitted, first-touch costs of the host paid once
        var boot = new double[Boots];
        var dispose = new double[Boots];
        var rss = new double[Boots];
        ulong frames = 0;
        for (int i = 0; i < Boots; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            long before = ResidentBytes();
            long start = Stopwatch.GetTimestamp();
            var machine = Machine.Boot(options);
            boot[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            rss[i] = ResidentBytes() - before;
            frames = machine.MaxPfn;
            start = Stopwatch.GetTimestamp();
            machine.Dispose();
            dispose[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        double perFrame = PhysMem.MetadataBytesPerFrame(Arch.For(Preset.X64).PageblockOrder);
        return new BootFigures(memory, frames, Median(boot), Median(dispose), perFrame, Median(rss));
    }

    /// <summary>VmRSS of this process, from /proc/self/status.</summary>
    private static long ResidentBytes()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                string kb = line["VmRSS:".Length..].Trim().Split(' ')[0];
                return long.Parse(kb, CultureInfo.InvariantCulture) * 1024;
            }
        }
        throw new InvalidOperationException("no VmRSS line in /proc/self/status");
    }

    /// <summary>What one managed-to-native call costs here, which every native contender pays twice a pair.</summary>
    private static unsafe string TransitionNote()
    {
        if (!NativeLibrary.TryLoad("libc.so.6", out nint libc) || !NativeLibrary.TryGetExport(libc, "abs", out nint abs))
        {
            return "managed-to-native call cost not measured (libc's abs not found)";
        }
        var plain = (delegate* unmanaged<int, int>)abs;
        var suppressed = (delegate* unmanaged[SuppressGCTransition]<int, int>)abs;
        double Time(Func<int> loop)
        {
            var s = new double[Repetitions];
            loop();
            for (int r = 0; r < Repetitions; r++)
            {
                long start = Stopwatch.GetTimestamp();
                loop();
                s[r] = Stopwatch.GetElapsedTime(start).TotalNanoseconds / Pairs;
            }
            return Median(s);
        }
        double withTransition = Time(() =>
        {
            int sum = 0;
            for (int i = 0; i < Pairs; i++)
            {
                sum += plain(-i);
            }
            return sum;
        });
        double without = Time(() =>
        {
            int sum = 0;
            for (int i = 0; i < Pairs; i++)
            {
                sum += suppressed(-i);
            }
            return sum;
        });
        return string.Create(CultureInfo.InvariantCulture,
            $"each native call (two per contender pair) pays the managed-to-native transition: {withTransition:0.0} ns for a call to libc abs, {without:0.0} ns with the GC transition suppressed");
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        int n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }

    private static void Print(TextWriter w, List<PageContender> contenders, double[,] perPair, BootFigures[] boots, List<string> notes)
    {
        var inv = CultureInfo.InvariantCulture;
        w.WriteLine($"Kmem quick benchmark  {DateTime.UtcNow.ToString("yyyy-MM-dd", inv)}  {RuntimeInformation.FrameworkDescription}  "
            + $"{RuntimeInformation.OSArchitecture}, {Environment.ProcessorCount} cores  {CpuModel()}");
        w.WriteLine($"pair = AllocPages+FreePages (Kmem: a freshly booted 1 GiB X64 machine with 2 CPUs per row) or an aligned alloc+free of 4096 << order bytes at "
            + $"4096-byte alignment; ns per pair, median of {Repetitions} runs of {Pairs:N0} pairs (per thread); ratio = contender / Kmem");
        w.WriteLine();

        var pairTable = new List<string[]>();
        var header = new List<string> { "operation", "Kmem ns" };
        foreach (var c in contenders.Skip(1))
        {
            header.Add($"{c.Name} ns");
            header.Add("ratio");
        }
        pairTable.Add([.. header]);
        for (int o = 0; o < s_operations.Length; o++)
        {
            var row = new List<string> { s_operations[o].Name, perPair[o, 0].ToString("0.0", inv) };
            for (int c = 1; c < contenders.Count; c++)
            {
                row.Add(perPair[o, c].ToString("0.0", inv));
                row.Add((perPair[o, c] / perPair[o, 0]).ToString("0.00", inv));
            }
            pairTable.Add([.. row]);
        }

        var bootTable = new List<string[]> { s_bootHeader };
        foreach (var b in boots)
        {
            bootTable.Add(
            [
                $"{b.Memory.TrimEnd('G')} GiB",
                b.BootMs.ToString("0.0", inv),
                b.DisposeMs.ToString("0.0", inv),
                b.MetadataPerFrame.ToString("0.####", inv),
                b.Frames.ToString("N0", inv),
                (b.MetadataPerFrame * b.Frames / (1 << 20)).ToString("0.0", inv),
                (b.RssIncreaseBytes / (1 << 20)).ToString("0.0", inv),
            ]);
        }
        WriteTable(w, [pairTable, bootTable]);
        foreach (string note in notes)
        {
            w.WriteLine($"note: {note}");
        }
        w.WriteLine($"boot: median of {Boots} boots after a warm-up boot; meta B/frame = PhysMem.MetadataBytesPerFrame (struct page and "
            + "pageblock tables), meta MiB = that x frames (reserved; untouched metadata costs no host memory); "
            + "RSS +MiB = VmRSS after Boot minus before, the machine alive (median)");
    }

    /// <summary>One plain-text table in sections; each section's first row is its header. Columns are
    /// shared, left-aligned in the first column and right-aligned elsewhere.</summary>
    private static void WriteTable(TextWriter w, List<string[]>[] sections)
    {
        int columns = sections.Max(s => s.Max(r => r.Length));
        var widths = new int[columns];
        foreach (var row in sections.SelectMany(s => s))
        {
            for (int i = 0; i < row.Length; i++)
            {
                widths[i] = Math.Max(widths[i], row[i].Length);
            }
        }
        string rule = "+" + string.Join("+", widths.Select(x => new string('-', x + 2))) + "+";
        w.WriteLine(rule);
        foreach (var section in sections)
        {
            for (int r = 0; r < section.Count; r++)
            {
                var row = section[r];
                var cells = Enumerable.Range(0, columns).Select(i =>
                {
                    string cell = i < row.Length ? row[i] : "";
                    return i == 0 ? cell.PadRight(widths[i]) : cell.PadLeft(widths[i]);
                });
                w.WriteLine("| " + string.Join(" | ", cells) + " |");
                if (r == 0)
                {
                    w.WriteLine(rule.Replace('-', '='));
                }
            }
            w.WriteLine(rule);
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
