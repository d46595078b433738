// The pressure part of `kmem replay`'s output (TraceReplayResult.Pressure): the timeline per
// phase, the kernel's beside Kmem's (kswapd, direct reclaim, swap-out, compaction, the OOM
// kill, free pages against Kmem's watermarks), the OOM victims and the vmstat totals per
// phase, as text or JSON, and the pressure strip of the --map pictures (MemoryMapPressure).
// Nothing when the trace had no pressure.
using System.Globalization;
using System.Text.Json;

namespace Kmem.Cli;

/// <summary>Writes the pressure timeline and vmstat comparison of a replay.</summary>
public static class ReplayPressure
{
    private const string FreePagesRow = "free pages at end";

    private static readonly string[] s_rows =
    [
        "kswapd wakeups", "kswapd runs", "direct reclaims", "direct reclaimed pages", "swap-out pages", "direct compactions", "OOM kills", FreePagesRow,
        "kswapd lower-zone runs", "kswapd lower-zone scans",
    ];

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    /// <summary>Whether either side woke kswapd, reclaimed, compacted or killed in some phase.</summary>
    private static bool Eventful(TracePressure p) =>
        p.KernelVictims.Count > 0 || p.KmemVictims.Count > 0
        || p.Phases.Any(ph => ph.Kernel.Any(kv => kv.Key != FreePagesRow && kv.Value != 0)
            || ph.Kmem.Any(kv => kv.Key != FreePagesRow && kv.Value != 0));

    /// <summary>The text form; nothing when <paramref name="r"/> has no pressure.</summary>
    public static void WriteText(TextWriter w, TraceReplayResult r)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(r);
        if (r.Pressure is not { } p)
        {
            return;
        }
        w.WriteLine(Inv($"memory pressure (free-running): {p.TaskPages:N0} user pages replayed as task pages, {p.ReclaimFrees:N0} freed by the kernel's reclaim left to Kmem's, {p.SwapIns:N0} swap-ins, {p.MigratedPages:N0} moved by the kernel's compaction; {p.UntracedPages:N0} pages held for memory used before tracing began"));
        if (!Eventful(p))
        {
            // A trace with user pages and no pressure (a boot capture): the tables would hold only zeros.
            w.WriteLine("  no kswapd, direct reclaim, compaction or OOM kill on either side");
            return;
        }
        w.WriteLine(Inv($"  Kmem's watermarks (pages, all zones): min {p.WatermarkMin:N0}, low {p.WatermarkLow:N0}, high {p.WatermarkHigh:N0}"));
        w.WriteLine("  OOM victim: kernel " + (p.KernelVictims.Count == 0 ? "none" : string.Join(", ", p.KernelVictims))
            + "; Kmem " + (p.KmemVictims.Count == 0 ? "none" : string.Join(", ", p.KmemVictims)));
        w.WriteLine("  timeline per phase, kernel / Kmem:");
        w.Write($"  {"",-24}");
        foreach (var ph in p.Phases)
        {
            w.Write($" {ph.Phase,17}");
        }
        w.WriteLine();
        foreach (string row in s_rows)
        {
            w.Write($"  {row,-24}");
            foreach (var ph in p.Phases)
            {
                string k = ph.Kernel.TryGetValue(row, out long kv) ? kv.ToString("N0", CultureInfo.InvariantCulture) : "-";
                string m = ph.Kmem.TryGetValue(row, out long mv) ? mv.ToString("N0", CultureInfo.InvariantCulture) : "-";
                w.Write($" {k + " / " + m,17}");
            }
            w.WriteLine();
        }
        w.Write($"  {"Kmem's fewest free",-24}");
        foreach (var ph in p.Phases)
        {
            w.Write($" {(ph.KmemMinFreePages < 0 ? "-" : ph.KmemMinFreePages.ToString("N0", CultureInfo.InvariantCulture)),17}");
        }
        w.WriteLine();
        if (p.Vmstat.Count == 0)
        {
            return;
        }
        var phases = p.Vmstat.Select(c => c.Phase).Distinct().ToList();
        w.WriteLine("  /proc/vmstat after each phase, kernel / Kmem:");
        w.Write($"  {"",-24}");
        foreach (string ph in phases)
        {
            w.Write($" {ph,21}");
        }
        w.WriteLine();
        foreach (var name in p.Vmstat.Select(c => c.Name).Distinct())
        {
            w.Write($"  {name,-24}");
            foreach (string ph in phases)
            {
                var c = p.Vmstat.FirstOrDefault(v => v.Phase == ph && v.Name == name);
                string cell = c is null ? "" : (c.Kernel is long k ? k.ToString("N0", CultureInfo.InvariantCulture) : "-") + " / " + c.Kmem.ToString("N0", CultureInfo.InvariantCulture);
                w.Write($" {cell,21}");
            }
            w.WriteLine();
        }
    }

    /// <summary>The JSON form: a "pressure" object; nothing when <paramref name="r"/> has no pressure.</summary>
    public static void WriteJson(Utf8JsonWriter j, TraceReplayResult r)
    {
        ArgumentNullException.ThrowIfNull(j);
        ArgumentNullException.ThrowIfNull(r);
        if (r.Pressure is not { } p)
        {
            return;
        }
        j.WriteStartObject("pressure");
        j.WriteNumber("task_pages", p.TaskPages);
        j.WriteNumber("tasks_exited", p.TasksExited);
        j.WriteNumber("reclaim_frees", p.ReclaimFrees);
        j.WriteNumber("swap_ins", p.SwapIns);
        j.WriteNumber("migrated_pages", p.MigratedPages);
        j.WriteNumber("untraced_pages", p.UntracedPages);
        j.WriteStartObject("watermarks");
        j.WriteNumber("min", p.WatermarkMin);
        j.WriteNumber("low", p.WatermarkLow);
        j.WriteNumber("high", p.WatermarkHigh);
        j.WriteEndObject();
        JsonFields.Strings(j, "kernel_victims", p.KernelVictims);
        JsonFields.Strings(j, "kmem_victims", p.KmemVictims);
        JsonFields.Objects(j, "phases", p.Phases, (j, ph) =>
        {
            j.WriteString("phase", ph.Phase);
            Counts(j, "kernel", ph.Kernel);
            Counts(j, "kmem", ph.Kmem);
            j.WriteNumber("kmem_min_free_pages", ph.KmemMinFreePages);
            JsonFields.Strings(j, "kmem_victims", ph.KmemVictims);
        });
        JsonFields.Objects(j, "vmstat", p.Vmstat, (j, c) =>
        {
            j.WriteString("phase", c.Phase);
            j.WriteString("name", c.Name);
            JsonFields.NumberOrNull(j, "kernel", c.Kernel);
            j.WriteNumber("kmem", c.Kmem);
        });
        j.WriteEndObject();
    }

    // The marks of a picture's pressure strip, kernel / Kmem in the phase so far.
    private static readonly (string Row, string Label)[] s_marks =
    [
        ("kswapd wakeups", "kswapd"), ("direct reclaims", "direct reclaim"), ("swap-out pages", "swap-out"),
        ("direct compactions", "compaction"), ("OOM kills", "OOM kills"),
    ];

    /// <summary>The pressure strip of a --map-every picture: Kmem's free pages against its watermarks, a line with the
    /// phase and whether Kmem's kswapd is awake, and a line with kswapd wakeups, direct reclaims, swap-out, direct
    /// compactions and OOM kills in the phase so far, kernel / Kmem, with the victims.</summary>
    public static MemoryMapPressure MapStrip(TracePressureNow p)
    {
        ArgumentNullException.ThrowIfNull(p);
        return Strip(p.Phase, p.FreePages, (p.WatermarkMin, p.WatermarkLow, p.WatermarkHigh), p.KswapdAwake, p.Kernel, p.Kmem,
            p.KernelVictims, p.KmemVictims);
    }

    /// <summary>The strip of the final picture: the last phase's counts, the machine's free pages now; null when
    /// neither side reclaimed, compacted or killed.</summary>
    public static MemoryMapPressure? MapStrip(TracePressure? p, Machine m)
    {
        ArgumentNullException.ThrowIfNull(m);
        if (p is null || p.Phases.Count == 0 || !Eventful(p))
        {
            return null; // a boot capture's picture stays as it was
        }
        var last = p.Phases[^1];
        long freePages = m.Proc.Read("vmstat").Split('\n').Where(l => l.StartsWith("nr_free_pages ", StringComparison.Ordinal))
            .Select(l => long.Parse(l.AsSpan(14), NumberStyles.None, CultureInfo.InvariantCulture)).FirstOrDefault();
        return Strip(last.Phase, freePages, (p.WatermarkMin, p.WatermarkLow, p.WatermarkHigh), null, last.Kernel, last.Kmem,
            p.KernelVictims, p.KmemVictims);
    }

    private static MemoryMapPressure Strip(string phase, long free, (long Min, long Low, long High) wmark, bool? kswapdAwake,
        IReadOnlyDictionary<string, long> kernel, IReadOnlyDictionary<string, long> kmem, IReadOnlyList<string> kernelVictims,
        IReadOnlyList<string> kmemVictims)
    {
        string band = free < wmark.Min ? "below min" : free < wmark.Low ? "below low" : free < wmark.High ? "below high" : "above high";
        var line = new System.Text.StringBuilder(Inv($"phase {phase}: free {free:N0} ({band}; min {wmark.Min:N0}, low {wmark.Low:N0}, high {wmark.High:N0})"));
        if (kswapdAwake is bool awake)
        {
            line.Append(awake ? ", Kmem's kswapd awake" : ", Kmem's kswapd asleep");
        }
        line.Append("\nphase so far, kernel / Kmem:");
        foreach (var (row, label) in s_marks)
        {
            string k = kernel.TryGetValue(row, out long kv) ? kv.ToString("N0", CultureInfo.InvariantCulture) : "0";
            string m = kmem.TryGetValue(row, out long mv) ? mv.ToString("N0", CultureInfo.InvariantCulture) : "0";
            line.Append(' ').Append(label).Append(' ').Append(k).Append(" / ").Append(m).Append(',');
        }
        line.Length--;
        if (kernelVictims.Count > 0 || kmemVictims.Count > 0)
        {
            line.Append(" · victims ").Append(kernelVictims.Count == 0 ? "none" : string.Join(", ", kernelVictims))
                .Append(" / ").Append(kmemVictims.Count == 0 ? "none" : string.Join(", ", kmemVictims));
        }
        return new MemoryMapPressure
        {
            FreePages = free, WatermarkMin = wmark.Min, WatermarkLow = wmark.Low, WatermarkHigh = wmark.High, Text = line.ToString(),
        };
    }

    private static void Counts(Utf8JsonWriter j, string name, IReadOnlyDictionary<string, long> counts)
    {
        j.WriteStartObject(name);
        foreach (var (k, v) in counts)
        {
            j.WriteNumber(k.Replace(' ', '_').Replace('-', '_'), v);
        }
        j.WriteEndObject();
    }
}
