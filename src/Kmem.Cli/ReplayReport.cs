// The replay's outcome as the command prints it: the summary, the fidelity figures,
// the busiest caches and the chosen /proc files as text, or all of it as one JSON
// object (System.Text.Json) for scripts. Every figure comes from TraceReplayResult.
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Kmem.Cli;

/// <summary>Prints a <see cref="TraceReplayResult"/>.</summary>
public static class ReplayReport
{
    private static readonly CultureInfo s_inv = CultureInfo.InvariantCulture;

    /// <summary>The replay's elapsed time and speed, one line (stderr always; stdout with --timing).</summary>
    public static void WriteTiming(TextWriter w, TraceReplayResult r)
    {
        string decoding = r.DecompressSeconds > 0 ? Inv($", {r.DecompressSeconds:F2} s of it decompressing") : "";
        w.WriteLine(Inv($"# time: {r.Events:N0} events in {r.Seconds:F2} s{decoding} ({r.EventsPerSecond / 1e6:F2} M events/s replayed from the text)"));
    }

    /// <summary>The text summary: events, what drove the machine, fidelity, busiest caches (no elapsed time:
    /// see <see cref="WriteTiming"/>).</summary>
    /// <param name="w">Where to write.</param>
    /// <param name="m">The machine of the free run.</param>
    /// <param name="r">The free run.</param>
    /// <param name="busiest">How many caches to list.</param>
    /// <param name="aligned">The aligned run of the same trace (its decisions), or null.</param>
    public static void WriteText(TextWriter w, Machine m, TraceReplayResult r, int busiest = 10, TraceReplayResult? aligned = null)
    {
        w.WriteLine(Inv($"# kmem replay of {r.FileName}: {r.Events:N0} events"));
        w.WriteLine($"# machine: {MachineArgs.NameOf(m.Preset)}, {MachineOptions.FormatSize(m.MemoryBytes)}, {m.NrCpus} CPUs, {m.Options.Slab.ToString().ToLowerInvariant()}, seed {m.Seed}");
        if (r.StopMarker is not null)
        {
            w.WriteLine(Inv($"stopped at the marker \"{r.StopMarker}\" (line {r.StopLine:N0})"));
        }
        w.WriteLine("events:  " + string.Join(", ", r.EventCounts.Where(kv => kv.Value > 0).Select(kv => Inv($"{kv.Key} {kv.Value:N0}"))));
        long cacheAllocs = r.EventCounts.GetValueOrDefault("kmem_cache_alloc");
        w.WriteLine(Inv($"slab:    {r.KmallocEvents:N0} kmalloc and {cacheAllocs:N0} kmem_cache_alloc replayed; {r.UntrackedFrees:N0} untracked frees (allocated before tracing began), {r.MissedFrees:N0} missed frees, {r.MovedObjects:N0} objects moved to their named cache"));
        string baseText = r.DirectMapBase is ulong b ? $"direct-map base 0x{b:x}" : "direct-map base not found";
        w.WriteLine(Inv($"pages:   {r.PageAllocsReplayed:N0} page allocations replayed, {r.SlabPageAllocs:N0} slab pages left to Kmem's slab layer, {r.UntrackedPageFrees:N0} untracked page frees; {baseText}"));
        w.WriteLine(Inv($"failed:  {r.TraceAllocFailures:N0} allocations failed in the trace, {r.KmemAllocFailures:N0} succeeded there but failed on Kmem"));
        w.WriteLine(Inv($"percpu:  {r.PercpuAllocsReplayed:N0} per-CPU allocations replayed, {r.LivePercpu:N0} still held, {r.UntrackedPercpuFrees:N0} untracked frees, {r.PercpuEventsNotReplayed:N0} chunk events counted"));
        w.WriteLine("unknown: " + (r.UnknownEvents.Count == 0 ? "none" : string.Join(", ", r.UnknownEvents.Select(kv => Inv($"{kv.Key} {kv.Value:N0}")))));
        w.WriteLine(Inv($"bad lines skipped: {r.BadLines:N0}; lost events: {r.LostEvents:N0}"));
        w.WriteLine(Inv($"slab memory: peak {r.SlabBytesPeak / 1024:N0} kB, end {r.SlabBytesEnd / 1024:N0} kB ({r.SlabPagesEnd:N0} pages, {r.ObjectsPerSlabPage:F1} objects per page), internal fragmentation {r.InternalFragmentation:P1}"));
        w.WriteLine();
        if (aligned is not null)
        {
            WriteDecisions(w, aligned, "aligned: Kmem's per-CPU lists and free_factor put where the kernel's were before each decision");
            w.WriteLine();
        }
        WriteDecisions(w, r, "free-running: Kmem's state evolves on its own");
        w.WriteLine();
        if (r.Pressure is not null)
        {
            ReplayPressure.WriteText(w, r);
            w.WriteLine();
        }
        w.WriteLine("trace checks (true by construction on a genuine trace: not fidelity)");
        w.WriteLine(Inv($"  kmalloc size class (size_index) equal to the trace's bytes_alloc   {r.KmallocSizeClassMatch:P1} of {r.KmallocEvents:N0}"));
        w.WriteLine(Inv($"  migratetype of each event's gfp_flags equal to its own migratetype {r.PageMigratetypeMatch:P1} of {r.PageAllocEvents:N0}"));
        w.WriteLine();
        w.WriteLine("consequence totals");
        w.WriteLine($"  {"",-40} {"trace",10} {"kmem",10}");
        foreach (var (label, key) in ConsequenceRows)
        {
            var c = r.Consequences[key];
            w.WriteLine(Inv($"  {label,-40} {c.Trace,10:N0} {c.Kmem,10:N0}"));
        }
        w.WriteLine();
        w.WriteLine($"busiest slab caches");
        w.WriteLine($"  {"name",-34} {"objsize",8} {"allocs",10} {"frees",10} {"live",8} {"sites",6}");
        foreach (var c in r.Caches.Take(busiest))
        {
            w.WriteLine(Inv($"  {c.Name,-34} {c.ObjectSize,8} {c.Allocations,10:N0} {c.Frees,10:N0} {c.Live,8:N0} {c.CallSites,6}"));
        }
    }

    /// <summary>Kmem's own decisions against the kernel's, per kind, and the first disagreements when asked.</summary>
    public static void WriteDecisions(TextWriter w, TraceReplayResult r, string mode)
    {
        if (r.Decisions.Count == 0)
        {
            return;
        }
        w.WriteLine($"fidelity: Kmem's own allocator against the kernel's, decision by decision ({mode})");
        w.WriteLine($"  {"kind",-20} {"compared",10} {"matched",8} {"recall",8} {"precision",9} {"kernel yes",11} {"kmem yes",10} {"both",10} {"same amount",12}");
        foreach (var (kind, d) in r.Decisions)
        {
            string amount = d.AmountCompared > 0 ? Inv($"{(double)d.AmountEqual / d.AmountCompared:P1}") : "-";
            w.WriteLine(Inv($"  {kind,-20} {d.Compared,10:N0} {d.Ratio,8:P1} {d.Recall,8:P1} {d.Precision,9:P1} {d.KernelYes,11:N0} {d.KmemYes,10:N0} {d.BothYes,10:N0} {amount,12}"));
        }
        WriteDecisionPhases(w, r);
        w.WriteLine(Inv($"  bulk allocator: {r.BulkRefillBursts:N0} refill bursts no allocation followed, {r.BulkPagesReplayed:N0} pages replayed; {r.UnattributedDrains:N0} drains after no page free (drain_all_pages); {r.BatchedFreesCountedOnce:N0} batched frees counted once"));
        foreach (var (kind, d) in r.Decisions)
        {
            foreach (var mm in d.Mismatches)
            {
                w.WriteLine(Inv($"  mismatch {kind} line {mm.Line}: kernel {(mm.Kernel ? "yes" : "no")}, Kmem {(mm.Kmem ? "yes" : "no")}{(mm.Detail.Length > 0 ? "; " + mm.Detail : "")}"));
            }
        }
    }

    private static readonly string[] PhaseKinds = ["pcp_refill", "pcp_drain", "new_slab", "slab_freed", "fallback"];

    /// <summary>Recall and precision of each kind, per phase of the trace (boot, then each PHASE marker).</summary>
    private static void WriteDecisionPhases(TextWriter w, TraceReplayResult r)
    {
        if (r.DecisionsByPhase.Count == 0)
        {
            return;
        }
        w.WriteLine($"  by phase, recall/precision %: {"phase",-14}" + string.Concat(PhaseKinds.Select(k => $" {k,11}")));
        foreach (var p in r.DecisionsByPhase)
        {
            w.Write($"  {"",29} {p.Phase,-14}");
            foreach (string k in PhaseKinds)
            {
                string cell = p.Decisions.TryGetValue(k, out var d) && (d.KernelYes > 0 || d.KmemYes > 0)
                    ? Inv($"{(d.KernelYes > 0 ? (100 * d.Recall).ToString("F0", CultureInfo.InvariantCulture) : "-")}/{(d.KmemYes > 0 ? (100 * d.Precision).ToString("F0", CultureInfo.InvariantCulture) : "-")}")
                    : "-";
                w.Write($" {cell,11}");
            }
            w.WriteLine();
        }
    }

    /// <summary>The consequence rows: label and key of <see cref="TraceReplayResult.Consequences"/>.</summary>
    public static readonly (string Label, string Key)[] ConsequenceRows =
    [
        ("pcp refills (zone_locked, percpu_refill)", "pcp_refill"),
        ("pcp drains (mm_page_pcpu_drain)", "mm_page_pcpu_drain"),
        ("fallback steals (mm_page_alloc_extfrag)", "mm_page_alloc_extfrag"),
        ("blocks taken under zone->lock", "mm_page_alloc_zone_locked"),
    ];

    /// <summary>The /proc files asked for, each under its path.</summary>
    public static void WriteProc(TextWriter w, Machine m, IEnumerable<string> names)
    {
        foreach (string name in names)
        {
            w.WriteLine();
            w.WriteLine($"# {m.Proc.PathOf(name)}");
            w.Write(m.Proc.Read(name));
        }
    }

    // The free-running run's per-CPU count drift, phase by phase (TracePcpDrift); nothing when there is none.
    private static void WritePcpDriftJson(Utf8JsonWriter j, IReadOnlyList<TracePcpDrift> drift)
    {
        if (drift.Count == 0)
        {
            return;
        }
        JsonFields.Objects(j, "pcp_drift", drift, static (j, d) =>
        {
            j.WriteString("phase", d.Phase);
            j.WriteNumber("reveals", d.Reveals);
            j.WriteNumber("equal", d.Equal);
            j.WriteNumber("within_batch", d.WithinBatch);
            j.WriteNumber("abs_diff", d.AbsDiff);
            j.WriteNumber("diff", d.Diff);
            j.WriteNumber("list_reveals", d.ListReveals);
            j.WriteNumber("list_empty", d.ListEmpty);
            j.WriteNumber("list_blocks", d.ListBlocks);
            JsonFields.Named(j, "classes", d.Classes, static (j, c) =>
            {
                j.WriteNumber("kernel_pages", c.KernelPages);
                j.WriteNumber("kmem_pages", c.KmemPages);
            });
        });
    }

    /// <summary>Writes the result's fields into an open JSON object.</summary>
    public static void WriteJsonFields(Utf8JsonWriter j, Machine m, TraceReplayResult r, IEnumerable<string> proc, TraceReplayResult? aligned = null)
    {
        j.WriteString("trace", r.FileName);
        j.WriteStartObject("machine");
        j.WriteString("preset", MachineArgs.NameOf(m.Preset));
        j.WriteNumber("memory_bytes", m.MemoryBytes);
        j.WriteNumber("cpus", m.NrCpus);
        j.WriteString("slab", m.Options.Slab.ToString().ToLowerInvariant());
        j.WriteNumber("seed", m.Seed);
        j.WriteEndObject();
        j.WriteNumber("events", r.Events);
        j.WriteNumber("seconds", Math.Round(r.Seconds, 4));
        j.WriteNumber("decompress_seconds", Math.Round(r.DecompressSeconds, 4));
        j.WriteNumber("events_per_second", Math.Round(r.EventsPerSecond));
        if (r.StopMarker is null)
        {
            j.WriteNull("stop_marker");
        }
        else
        {
            j.WriteString("stop_marker", r.StopMarker);
        }
        j.WriteNumber("stop_line", r.StopLine);
        j.WriteNumber("kmalloc_events", r.KmallocEvents);
        j.WriteNumber("page_alloc_events", r.PageAllocEvents);
        j.WriteStartObject("trace_checks");
        foreach (var (name, v) in r.TraceChecks)
        {
            j.WriteNumber(name, Math.Round(v, 6));
        }
        j.WriteEndObject();
        if (aligned is not null)
        {
            WriteDecisionsJson(j, "decisions", aligned.Decisions);
        }
        WriteDecisionsJson(j, "decisions_free_running", r.Decisions);
        j.WriteStartArray("decisions_by_phase");
        for (int i = 0; i < r.DecisionsByPhase.Count; i++)
        {
            j.WriteStartObject();
            j.WriteString("phase", r.DecisionsByPhase[i].Phase);
            if (aligned is not null && i < aligned.DecisionsByPhase.Count)
            {
                WriteDecisionsJson(j, "decisions", aligned.DecisionsByPhase[i].Decisions);
            }
            WriteDecisionsJson(j, "decisions_free_running", r.DecisionsByPhase[i].Decisions);
            j.WriteEndObject();
        }
        j.WriteEndArray();
        WritePcpDriftJson(j, r.PcpDrift);
        ReplayPressure.WriteJson(j, r);
        j.WriteNumber("bulk_refill_bursts", r.BulkRefillBursts);
        j.WriteNumber("bulk_pages_replayed", r.BulkPagesReplayed);
        j.WriteNumber("unattributed_drains", r.UnattributedDrains);
        j.WriteNumber("batched_frees_counted_once", r.BatchedFreesCountedOnce);
        j.WriteNumber("page_tables_taken_over", r.PageTablesTakenOver);
        j.WriteNumber("page_tables_own", r.PageTablesOwn);
        j.WriteNumber("page_tables_own_highpte", r.PageTablesOwnHighPte);
        j.WriteNumber("page_tables_own_moved", r.PageTablesOwnMoved);
        j.WriteNumber("page_tables_own_frames", r.PageTablesOwnFrames);
        j.WriteNumber("pre_trace_slabs", r.PreTraceSlabs);
        j.WriteNumber("pre_trace_stand_ins", r.PreTraceStandIns);
        j.WriteNumber("pre_trace_placeholders", r.PreTracePlaceholders);
        j.WriteNumber("untracked_frees", r.UntrackedFrees);
        j.WriteNumber("untracked_page_frees", r.UntrackedPageFrees);
        j.WriteNumber("missed_frees", r.MissedFrees);
        j.WriteNumber("trace_alloc_failures", r.TraceAllocFailures);
        j.WriteNumber("kmem_alloc_failures", r.KmemAllocFailures);
        j.WriteNumber("kmem_served_trace_failures", r.KmemServedTraceFailures);
        j.WriteNumber("pre_trace_ring_buffer_pages", r.PreTraceRingBufferPages);
        j.WriteNumber("page_allocs_replayed", r.PageAllocsReplayed);
        j.WriteNumber("slab_page_allocs", r.SlabPageAllocs);
        if (r.DirectMapBase is ulong b)
        {
            j.WriteString("direct_map_base", $"0x{b:x}");
        }
        else
        {
            j.WriteNull("direct_map_base");
        }
        j.WriteNumber("percpu_events_not_replayed", r.PercpuEventsNotReplayed);
        j.WriteNumber("percpu_allocs_replayed", r.PercpuAllocsReplayed);
        j.WriteNumber("untracked_percpu_frees", r.UntrackedPercpuFrees);
        j.WriteNumber("live_percpu", r.LivePercpu);
        j.WriteNumber("moved_objects", r.MovedObjects);
        j.WriteNumber("bad_lines", r.BadLines);
        j.WriteNumber("lost_events", r.LostEvents);
        WriteCounts(j, "event_counts", r.EventCounts);
        WriteCounts(j, "unknown_events", r.UnknownEvents);
        JsonFields.Named(j, "consequences", r.Consequences, static (j, c) =>
        {
            j.WriteNumber("trace", c.Trace);
            j.WriteNumber("kmem", c.Kmem);
        });
        j.WriteNumber("slab_bytes_peak", r.SlabBytesPeak);
        j.WriteNumber("slab_bytes_end", r.SlabBytesEnd);
        j.WriteNumber("slab_pages_end", r.SlabPagesEnd);
        j.WriteNumber("live_objects", r.LiveObjects);
        j.WriteNumber("internal_fragmentation", Math.Round(r.InternalFragmentation, 6));
        JsonFields.Objects(j, "caches", r.Caches, (j, c) =>
        {
            j.WriteString("name", c.Name);
            j.WriteNumber("object_size", c.ObjectSize);
            j.WriteNumber("allocations", c.Allocations);
            j.WriteNumber("frees", c.Frees);
            j.WriteNumber("live", c.Live);
            j.WriteNumber("call_sites", c.CallSites);
        });
        j.WriteStartObject("proc");
        foreach (string name in proc)
        {
            j.WriteString(name, m.Proc.Read(name));
        }
        j.WriteEndObject();
    }

    /// <summary>Runs <paramref name="body"/> on a JSON writer and writes the one object to <paramref name="w"/>.</summary>
    public static void WriteJson(TextWriter w, Action<Utf8JsonWriter> body)
    {
        using var buffer = new MemoryStream();
        using (var j = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            j.WriteStartObject();
            body(j);
            j.WriteEndObject();
        }
        w.WriteLine(Encoding.UTF8.GetString(buffer.ToArray()));
    }

    private static void WriteDecisionsJson(Utf8JsonWriter j, string name, IReadOnlyDictionary<string, TraceDecision> decisions)
    {
        j.WriteStartObject(name);
        foreach (var (kind, d) in decisions)
        {
            j.WriteStartObject(kind);
            j.WriteNumber("compared", d.Compared);
            j.WriteNumber("matched", d.Matched);
            j.WriteNumber("ratio", Math.Round(d.Ratio, 6));
            j.WriteNumber("recall", Math.Round(d.Recall, 6));
            j.WriteNumber("precision", Math.Round(d.Precision, 6));
            j.WriteNumber("kernel_yes", d.KernelYes);
            j.WriteNumber("kmem_yes", d.KmemYes);
            j.WriteNumber("both_yes", d.BothYes);
            j.WriteNumber("amount_compared", d.AmountCompared);
            j.WriteNumber("amount_equal", d.AmountEqual);
            j.WriteNumber("unknown_state", d.UnknownState);
            if (d.Mismatches.Count > 0)
            {
                JsonFields.Objects(j, "mismatches", d.Mismatches, (j, mm) =>
                {
                    j.WriteNumber("line", mm.Line);
                    j.WriteBoolean("kernel", mm.Kernel);
                    j.WriteBoolean("kmem", mm.Kmem);
                    j.WriteString("detail", mm.Detail);
                });
            }
            j.WriteEndObject();
        }
        j.WriteEndObject();
    }

    private static void WriteCounts(Utf8JsonWriter j, string name, IReadOnlyDictionary<string, long> counts)
    {
        j.WriteStartObject(name);
        foreach (var (k, v) in counts)
        {
            j.WriteNumber(k, v);
        }
        j.WriteEndObject();
    }

    private static string Inv(FormattableString s) => s.ToString(s_inv);
}
