// The results of a quick comparison as plain data, and what is derived from
// them (ratios to glibc and mimalloc, two-thread scaling, the issue's targets),
// written as a text table, a Markdown summary or JSON. Pure: no measuring here,
// so the shapes can be tested on made-up figures.
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;

// Header rows are built once per report: CA1861's concern (arrays rebuilt on every call) does not apply.
#pragma warning disable CA1861

namespace Kmem.Bench;

/// <summary>The time of one workload for one contender: nanoseconds per operation over the repetitions.</summary>
internal sealed record TimingResult(string Workload, string Operation, int Threads, string Contender, Summary Ns);

/// <summary>The memory one contender held on one workload, with every requested byte written.</summary>
internal sealed record MemoryResult(string Workload, string Contender, long RequestedBytes, long HeldBytes)
{
    /// <summary>Held over requested: 1 is perfect, 2 holds twice what was asked for.</summary>
    public double Ratio => (double)HeldBytes / RequestedBytes;
}

/// <summary>The two worker cores' cache-line handoff (ns, one way) just before and just after a two-thread row.</summary>
internal sealed record HandoffResult(string Workload, double BeforeNs, double AfterNs);

/// <summary>A contender's name and kind, as the report lists it.</summary>
internal sealed record ContenderInfo(string Name, ContenderKind Kind);

/// <summary>Boot and dispose of one machine size (Kmem alone).</summary>
internal sealed record BootResult(string Memory, ulong Frames, double BootMs, double DisposeMs, double MetadataPerFrame, double RssIncreaseBytes);

/// <summary>One of the issue's targets as a ratio: met when <see cref="Ratio"/> is at least <see cref="Goal"/>.</summary>
internal sealed record TargetResult(string Name, double? Ratio, double Goal, string Detail)
{
    public bool? Met => Ratio is { } r ? r >= Goal : null;
}

/// <summary>Two-thread scaling of one contender: two threads' throughput over one thread's (2 × ns₁ / ns₂).</summary>
internal sealed record ScalingResult(string Contender, double? Pair64, double? Larson);

internal sealed class BenchReport
{
    public const string GlibcBaseline = "glibc malloc";
    public const string MimallocBaseline = "mimalloc";
    public const string KmemTarget = "SLUB kmalloc";
    public const string SlabTarget = "SLAB kmalloc";
    public const string Pair16 = "pair 16 B";

    public const string Pair64 = "pair 64 B";
    public const string Pair64TwoThreads = "pair 64 B, 2 threads";
    public const string Batch = "batch 10,000 random";
    public const string CrossThread = "cross-thread free 64 B";
    public const string LarsonOne = "larson 1 thread";
    public const string LarsonTwo = "larson 2 threads";

    public DateTime Date { get; init; } = DateTime.UtcNow;
    public string Runtime { get; init; } = "";
    public string Host { get; init; } = "";
    public string LoadAtStart { get; init; } = "";
    public string LoadAtEnd { get; set; } = "";
    public int Repetitions { get; init; }
    public string SizeDistribution { get; init; } = Bench.SizeDistribution.Description;
    public List<string> WorkloadOrder { get; init; } = [];
    public List<ContenderInfo> Contenders { get; init; } = [];
    public List<string> Notes { get; init; } = [];
    public List<TimingResult> Timings { get; init; } = [];
    public List<MemoryResult> Memory { get; init; } = [];
    public List<BootResult> Boots { get; init; } = [];
    /// <summary>The two worker cores' cache-line handoff around each two-thread row (TwoThreads.LineHandoffNs).</summary>
    public List<HandoffResult> Handoffs { get; init; } = [];

    /// <summary>One line on the handoffs around the two-thread rows, or null when none was measured.</summary>
    public string? HandoffLine() => Handoffs.Count == 0 ? null
        : "cache-line handoff between the two worker cores, ns before / after each two-thread row (the host's placement "
            + "of the cores; every contender's two-thread figure follows it): "
            + string.Join("; ", Handoffs.Select(h => string.Create(CultureInfo.InvariantCulture, $"{h.Workload} {h.BeforeNs:0} / {h.AfterNs:0}")));

    public TimingResult? Find(string workload, string contender) =>
        Timings.FirstOrDefault(t => t.Workload == workload && t.Contender == contender);

    /// <summary>This result's time over <paramref name="baseline"/>'s on the same workload (below 1: faster).</summary>
    public double? RatioTo(TimingResult r, string baseline) =>
        Find(r.Workload, baseline) is { } b && b.Ns.Median > 0 ? r.Ns.Median / b.Ns.Median : null;

    private bool IsHost(string contender) => Contenders.Any(c => c.Name == contender && c.Kind == ContenderKind.Host);

    /// <summary>Two threads' throughput over one thread's, per contender, on the 64 B pair and on larson.</summary>
    public List<ScalingResult> Scaling() =>
        [.. Contenders.Select(c => new ScalingResult(c.Name, Scale(Pair64, Pair64TwoThreads, c.Name), Scale(LarsonOne, LarsonTwo, c.Name)))
            .Where(s => s.Pair64 is not null || s.Larson is not null)];

    private double? Scale(string one, string two, string contender) =>
        Find(one, contender) is { } a && Find(two, contender) is { } b && b.Ns.Median > 0 ? 2 * a.Ns.Median / b.Ns.Median : null;

    /// <summary>The issue's targets for <see cref="KmemTarget"/>, each as a ratio whose goal is stated.</summary>
    public List<TargetResult> Targets()
    {
        var targets = new List<TargetResult>
        {
            AgainstFastest(Pair64, "64 B pair: fastest other contender's ns / SLUB kmalloc's (goal: SLUB faster than the fastest)"),
            AgainstFastest(Batch, "batch: every other contender's ns / SLUB kmalloc's, the closest shown (goal: faster than every one)"),
            AgainstFastest(CrossThread, "cross-thread free: every other contender's ns / SLUB kmalloc's, the closest shown"),
            AgainstFastest(LarsonTwo, "larson, 2 threads: every other contender's ns / SLUB kmalloc's, the closest shown"),
        };
        var scaling = Scaling().FirstOrDefault(s => s.Contender == KmemTarget);
        targets.Add(new TargetResult("two-thread scaling of SLUB kmalloc on larson: 2 threads' throughput / 1 thread's",
            scaling?.Larson, 1.8, scaling?.Pair64 is { } p ? string.Create(CultureInfo.InvariantCulture, $"64 B pair: {p:0.00}") : ""));
        var kmem = Memory.FirstOrDefault(m => m.Workload == "batch" && m.Contender == KmemTarget);
        var best = Memory.Where(m => m.Workload == "batch" && IsHost(m.Contender)).OrderBy(m => m.Ratio).FirstOrDefault();
        targets.Add(new TargetResult("memory held on the batch: best other contender's held/requested over SLUB kmalloc's",
            kmem is not null && best is not null && kmem.Ratio > 0 ? best.Ratio / kmem.Ratio : null, 1.0,
            kmem is not null && best is not null
                ? string.Create(CultureInfo.InvariantCulture, $"SLUB {kmem.Ratio:0.00}, best {best.Contender} {best.Ratio:0.00}")
                : "not measured"));
        targets.Add(AgainstFloor(Pair16));
        targets.Add(AgainstFloor(Pair64));
        targets.Add(AgainstFloor(Batch));
        var slab = Find(Pair64, SlabTarget);
        var slub = Find(Pair64, KmemTarget);
        targets.Add(new TargetResult("SLAB's array caches: SLUB kmalloc's ns / SLAB kmalloc's on the 64 B pair (goal: SLAB within 1.5x SLUB)",
            slab is not null && slub is not null && slab.Ns.Median > 0 ? slub.Ns.Median / slab.Ns.Median : null, 1 / 1.5,
            slab is not null && slub is not null
                ? string.Create(CultureInfo.InvariantCulture, $"SLUB {slub.Ns.Median:0.0} ns, SLAB {slab.Ns.Median:0.0} ns")
                : "not measured"));
        return targets;
    }

    private TargetResult AgainstFastest(string workload, string name)
    {
        var kmem = Find(workload, KmemTarget);
        var fastest = Timings.Where(t => t.Workload == workload && IsHost(t.Contender)).OrderBy(t => t.Ns.Median).FirstOrDefault();
        if (kmem is null || fastest is null)
        {
            return new TargetResult(name, null, 1.0, "not measured");
        }
        return new TargetResult(name, fastest.Ns.Median / kmem.Ns.Median, 1.0,
            string.Create(CultureInfo.InvariantCulture, $"SLUB {kmem.Ns.Median:0.0} ns, {fastest.Contender} {fastest.Ns.Median:0.0} ns"));
    }

    /// <summary>The floor's time over SLUB kmalloc's on <paramref name="workload"/>: at least 1 / 1.3 is within 1.3x the floor.</summary>
    private TargetResult AgainstFloor(string workload)
    {
        string name = $"{workload}: C# floor's ns / SLUB kmalloc's (goal: within 1.3x the floor)";
        var kmem = Find(workload, KmemTarget);
        var floor = Timings.FirstOrDefault(t => t.Workload == workload && Contenders.Any(c => c.Name == t.Contender && c.Kind == ContenderKind.Floor));
        if (kmem is null || floor is null || kmem.Ns.Median <= 0)
        {
            return new TargetResult(name, null, 1 / 1.3, "not measured");
        }
        return new TargetResult(name, floor.Ns.Median / kmem.Ns.Median, 1 / 1.3,
            string.Create(CultureInfo.InvariantCulture, $"SLUB {kmem.Ns.Median:0.0} ns, floor {floor.Ns.Median:0.0} ns"));
    }

    private static string F(double? v, string format) => v is { } x ? x.ToString(format, CultureInfo.InvariantCulture) : "-";

    /// <summary>The plain-text tables.</summary>
    public void WriteText(TextWriter w)
    {
        w.WriteLine($"Kmem quick comparison  {Date.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture)} UTC  {Runtime}  {Host}");
        w.WriteLine($"load average at start: {LoadAtStart}; at end: {LoadAtEnd}");
        if (HandoffLine() is { } handoffs)
        {
            w.WriteLine(handoffs);
        }
        w.WriteLine($"ns per operation: median of {Repetitions} repetitions, with min and max; x glibc and x mimalloc = this time / theirs (below 1: faster)");
        w.WriteLine($"random sizes: {SizeDistribution}");
        w.WriteLine();
        var sections = new List<List<string[]>>();
        foreach (string workload in WorkloadOrder)
        {
            var rows = Timings.Where(t => t.Workload == workload).ToList();
            if (rows.Count == 0)
            {
                continue;
            }
            var section = new List<string[]> { new[] { workload, "ns/op", "min", "max", "x glibc", "x mimalloc" } };
            foreach (var r in rows)
            {
                section.Add([r.Contender, F(r.Ns.Median, "0.0"), F(r.Ns.Min, "0.0"), F(r.Ns.Max, "0.0"),
                    F(RatioTo(r, GlibcBaseline), "0.00"), F(RatioTo(r, MimallocBaseline), "0.00")]);
            }
            sections.Add(section);
        }
        TextTable.Write(w, sections);

        if (Memory.Count > 0)
        {
            w.WriteLine();
            var memorySections = new List<List<string[]>>();
            foreach (var group in Memory.GroupBy(m => m.Workload))
            {
                var section = new List<string[]> { new[] { $"memory: {group.Key}", "requested KiB", "held KiB", "held/requested" } };
                foreach (var m in group)
                {
                    section.Add([m.Contender, F(m.RequestedBytes / 1024.0, "0"), F(m.HeldBytes / 1024.0, "0"), F(m.Ratio, "0.00")]);
                }
                memorySections.Add(section);
            }
            TextTable.Write(w, memorySections);
            w.WriteLine("memory: held = the child process's VmRSS (Kmem's too: slab pages touched, metadata, magazines), after minus before; every byte requested is written; "
                + $"batch = the 10,000 objects live; larson = 2 threads x {LarsonWorkload.Live:N0} live objects after {MemoryProbe.LarsonReplacements:N0} replacements each");
        }

        var scaling = Scaling();
        if (scaling.Count > 0)
        {
            w.WriteLine();
            var section = new List<string[]> { new[] { "two-thread scaling", "pair 64 B", "larson" } };
            section.AddRange(scaling.Select(s => new[] { s.Contender, F(s.Pair64, "0.00"), F(s.Larson, "0.00") }));
            TextTable.Write(w, [section]);
            w.WriteLine("scaling = two threads' throughput / one thread's = 2 x ns(1 thread) / ns(2 threads, wall time per thread); 2.00 is perfect");
        }

        w.WriteLine();
        var targets = new List<string[]> { new[] { "target (SLUB kmalloc)", "ratio", "goal", "met" } };
        var details = new List<string>();
        foreach (var t in Targets())
        {
            targets.Add([t.Name, F(t.Ratio, "0.00"), $">= {F(t.Goal, "0.00")}", t.Met is { } met ? (met ? "yes" : "no") : "-"]);
            details.Add($"{t.Name}: {t.Detail}");
        }
        TextTable.Write(w, [targets]);
        foreach (string d in details)
        {
            w.WriteLine(d);
        }

        if (Boots.Count > 0)
        {
            w.WriteLine();
            var boot = new List<string[]> { new[] { "boot (X64, 2 CPUs)", "boot ms", "dispose ms", "meta B/frame", "frames", "meta MiB", "RSS +MiB" } };
            foreach (var b in Boots)
            {
                boot.Add([b.Memory, F(b.BootMs, "0.0"), F(b.DisposeMs, "0.0"), F(b.MetadataPerFrame, "0.####"),
                    b.Frames.ToString("N0", CultureInfo.InvariantCulture), F(b.MetadataPerFrame * b.Frames / (1 << 20), "0.0"),
                    F(b.RssIncreaseBytes / (1 << 20), "0.0")]);
            }
            TextTable.Write(w, [boot]);
        }
        foreach (string note in Notes)
        {
            w.WriteLine($"note: {note}");
        }
    }

    /// <summary>A Markdown summary: median ns per workload and contender, memory ratios, targets.</summary>
    public void WriteMarkdown(TextWriter w)
    {
        var names = Contenders.Select(c => c.Name).Where(n => Timings.Any(t => t.Contender == n)).ToList();
        if (HandoffLine() is { } handoffs)
        {
            w.WriteLine(char.ToUpperInvariant(handoffs[0]) + handoffs[1..] + ".");
            w.WriteLine();
        }
        w.WriteLine("| workload (ns/op, median) | " + string.Join(" | ", names) + " |");
        w.WriteLine("|---|" + string.Concat(names.Select(_ => "---:|")));
        foreach (string workload in WorkloadOrder.Where(wl => Timings.Any(t => t.Workload == wl)))
        {
            w.WriteLine($"| {workload} | " + string.Join(" | ", names.Select(n => F(Find(workload, n)?.Ns.Median, "0.0"))) + " |");
        }
        foreach (var group in Memory.GroupBy(m => m.Workload))
        {
            w.WriteLine($"| memory held / requested, {group.Key} | "
                + string.Join(" | ", names.Select(n => F(group.FirstOrDefault(m => m.Contender == n)?.Ratio, "0.00"))) + " |");
        }
        w.WriteLine();
        w.WriteLine("| target (SLUB kmalloc) | ratio | goal | met | figures |");
        w.WriteLine("|---|---:|---:|---|---|");
        foreach (var t in Targets())
        {
            w.WriteLine($"| {t.Name} | {F(t.Ratio, "0.00")} | ≥ {F(t.Goal, "0.00")} | {(t.Met is { } met ? (met ? "yes" : "no") : "-")} | {t.Detail} |");
        }
    }

    /// <summary>The whole report as one JSON object (see bench/README.md for the shape).</summary>
    public void WriteJson(Stream stream)
    {
        using var j = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        j.WriteStartObject();
        j.WriteString("date", Date.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture));
        j.WriteString("runtime", Runtime);
        j.WriteString("host", Host);
        j.WriteStartObject("loadAverage");
        j.WriteString("start", LoadAtStart);
        j.WriteString("end", LoadAtEnd);
        j.WriteEndObject();
        j.WriteStartArray("lineHandoffs");
        foreach (var h in Handoffs)
        {
            j.WriteStartObject();
            j.WriteString("workload", h.Workload);
            j.WriteNumber("beforeNs", Math.Round(h.BeforeNs, 1));
            j.WriteNumber("afterNs", Math.Round(h.AfterNs, 1));
            j.WriteEndObject();
        }
        j.WriteEndArray();
        j.WriteNumber("repetitions", Repetitions);
        j.WriteString("sizeDistribution", SizeDistribution);
        j.WriteStartArray("contenders");
        foreach (var c in Contenders)
        {
            j.WriteStartObject();
            j.WriteString("name", c.Name);
            j.WriteString("kind", c.Kind switch { ContenderKind.Kmem => "kmem", ContenderKind.Floor => "floor", _ => "host" });
            j.WriteEndObject();
        }
        j.WriteEndArray();
        j.WriteStartArray("notes");
        foreach (string n in Notes)
        {
            j.WriteStringValue(n);
        }
        j.WriteEndArray();
        j.WriteStartArray("timings");
        foreach (var r in Timings)
        {
            j.WriteStartObject();
            j.WriteString("workload", r.Workload);
            j.WriteString("operation", r.Operation);
            j.WriteNumber("threads", r.Threads);
            j.WriteString("contender", r.Contender);
            j.WriteNumber("medianNs", Math.Round(r.Ns.Median, 3));
            j.WriteNumber("minNs", Math.Round(r.Ns.Min, 3));
            j.WriteNumber("maxNs", Math.Round(r.Ns.Max, 3));
            j.WriteNumber("repetitions", r.Ns.Count);
            WriteNullable(j, "vsGlibc", RatioTo(r, GlibcBaseline));
            WriteNullable(j, "vsMimalloc", RatioTo(r, MimallocBaseline));
            j.WriteEndObject();
        }
        j.WriteEndArray();
        j.WriteStartArray("memory");
        foreach (var m in Memory)
        {
            j.WriteStartObject();
            j.WriteString("workload", m.Workload);
            j.WriteString("contender", m.Contender);
            j.WriteNumber("requestedBytes", m.RequestedBytes);
            j.WriteNumber("heldBytes", m.HeldBytes);
            j.WriteNumber("heldOverRequested", Math.Round(m.Ratio, 4));
            j.WriteEndObject();
        }
        j.WriteEndArray();
        j.WriteStartArray("scaling");
        foreach (var s in Scaling())
        {
            j.WriteStartObject();
            j.WriteString("contender", s.Contender);
            WriteNullable(j, "pair64", s.Pair64);
            WriteNullable(j, "larson", s.Larson);
            j.WriteEndObject();
        }
        j.WriteEndArray();
        j.WriteStartArray("targets");
        foreach (var t in Targets())
        {
            j.WriteStartObject();
            j.WriteString("name", t.Name);
            WriteNullable(j, "ratio", t.Ratio);
            j.WriteNumber("goal", t.Goal);
            if (t.Met is { } met)
            {
                j.WriteBoolean("met", met);
            }
            else
            {
                j.WriteNull("met");
            }
            j.WriteString("detail", t.Detail);
            j.WriteEndObject();
        }
        j.WriteEndArray();
        j.WriteStartArray("boots");
        foreach (var b in Boots)
        {
            j.WriteStartObject();
            j.WriteString("memory", b.Memory);
            j.WriteNumber("frames", b.Frames);
            j.WriteNumber("bootMs", Math.Round(b.BootMs, 3));
            j.WriteNumber("disposeMs", Math.Round(b.DisposeMs, 3));
            j.WriteNumber("metadataBytesPerFrame", Math.Round(b.MetadataPerFrame, 4));
            j.WriteNumber("rssIncreaseBytes", Math.Round(b.RssIncreaseBytes));
            j.WriteEndObject();
        }
        j.WriteEndArray();
        j.WriteEndObject();
    }

    private static void WriteNullable(Utf8JsonWriter j, string name, double? value)
    {
        if (value is { } v)
        {
            j.WriteNumber(name, Math.Round(v, 4));
        }
        else
        {
            j.WriteNull(name);
        }
    }
}

/// <summary>Plain-text tables in sections; each section's first row is its header. Columns are shared,
/// left-aligned in the first column and right-aligned elsewhere.</summary>
internal static class TextTable
{
    public static void Write(TextWriter w, List<List<string[]>> sections)
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
}
