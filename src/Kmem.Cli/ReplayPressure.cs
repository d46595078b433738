// The pressure part of `kmem replay`'s output (TraceReplayResult.Pressure): the timeline per
// phase, the kernel's beside Kmem's (kswapd, direct reclaim, swap-out, compaction, the OOM
// kill, free pages against Kmem's watermarks), the OOM victims and the vmstat totals per
// phase, as text or JSON. Nothing when the trace had no pressure.
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
        w.WriteLine(Inv($"memory pressure (free-running): {p.TaskPages:N0} user pages replayed as task pages, {p.ReclaimFrees:N0} freed by the kernel's reclaim left to Kmem's, {p.SwapIns:N0} swap-ins, {p.MigratedPages:N0} moved by kcompactd; {p.UntracedPages:N0} pages held for memory used before tracing began"));
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
