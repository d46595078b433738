// Builds one update from a machine between two events: its /proc figures (the same texts
// `kmem replay --proc` prints, parsed for the page's tables and charts), the zones and the
// legend of MemoryMap (the map's colours are MemoryMap's, so the page and the PNG agree),
// and the frames that changed since the previous update. Called on the replaying thread.
using System.Globalization;

namespace Kmem.Live;

/// <summary>Builds updates.</summary>
internal static class LiveSnapshot
{
    // The /proc/vmstat counters the page charts, and sums of the per-zone and per-reclaimer ones.
    private static readonly string[] s_vmstat =
    [
        "nr_free_pages", "nr_slab_reclaimable", "nr_slab_unreclaimable", "pgfree", "pswpin", "pswpout", "pageoutrun",
        "oom_kill", "compact_stall", "compact_fail", "compact_success", "compact_migrate_scanned", "compact_free_scanned",
        "compact_isolated", "kswapd_low_wmark_hit_quickly", "kswapd_high_wmark_hit_quickly",
    ];

    private static readonly (string Sum, string Prefix)[] s_sums =
    [
        ("pgalloc", "pgalloc_"), ("pgscan", "pgscan_"), ("pgsteal", "pgsteal_"), ("allocstall", "allocstall_"),
    ];

    private static readonly List<MapKey> s_legend =
        [.. MemoryMap.Legend.Select(l => new MapKey(l.Name, "#" + l.Color.ToString("x6", CultureInfo.InvariantCulture)))];

    public static IReadOnlyList<MapKey> Legend => s_legend;

    public static LiveUpdate Build(ReplayRun run, Machine m, TraceReplayer? r, long position, LiveSource source)
    {
        var proc = m.Proc;
        var counters = Counters(proc);
        bool slob = run.Slab == SlabAllocator.Slob;
        var markers = source.Markers;
        string? chapter = run.Chapter ?? markers?.LastOrDefault(mk => mk.Position <= position)?.Text;
        var layout = MemoryMap.GetLayout(m);
        return new LiveUpdate
        {
            Run = run.Id,
            Backend = LiveSession.SlabName(run.Slab),
            Source = source.Name,
            Position = position,
            Total = source.Total,
            Playing = run.Playing,
            Seeking = run.Seeking,
            Speed = run.Speed,
            Ended = run.Ended,
            Error = run.Error,
            Event = run.Ended ? null : run.LastEvent,
            Chapter = chapter,
            MaxPfn = m.MaxPfn,
            Zones = [.. layout.Zones.Select(z => new MapZone(z.Label, z.StartPfn, z.EndPfn))],
            Legend = s_legend,
            Markers = markers is null ? null : [.. markers],
            Counters = counters,
            Watermarks = ProcFigures.Zoneinfo(proc.Zoneinfo()),
            FreeAreas = ProcFigures.Pagetypeinfo(proc.Pagetypeinfo()),
            Buddyinfo = proc.Buddyinfo(),
            Slabinfo = slob ? null : ProcFigures.Slabinfo(proc.Slabinfo()),
            Slobinfo = slob ? proc.Slobinfo() : null,
            Decisions = run.Decisions(r, position),
            Pressure = run.Pressure(m, r),
            CounterSamples = run.CounterSamples,
        };
    }

    /// <summary>The counters the page shows and charts: /proc/vmstat's (and sums of the per-zone and per-reclaimer
    /// ones), and MemFree, Slab and MemTotal of /proc/meminfo in kB.</summary>
    public static Dictionary<string, long> Counters(ProcFs proc)
    {
        var vmstat = ProcFigures.Vmstat(proc.Vmstat());
        var meminfo = ProcFigures.Meminfo(proc.Meminfo());
        var counters = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string name in s_vmstat)
        {
            counters[name] = vmstat.GetValueOrDefault(name);
        }
        foreach (var (sum, prefix) in s_sums)
        {
            counters[sum] = vmstat.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).Sum(kv => kv.Value);
        }
        counters["MemFree"] = meminfo.GetValueOrDefault("MemFree");
        counters["Slab"] = meminfo.GetValueOrDefault("Slab");
        counters["MemTotal"] = meminfo.GetValueOrDefault("MemTotal");
        return counters;
    }

    /// <summary>The frames whose key changed, as flat triples [start, length, key] of maximal runs.</summary>
    public static int[] Diff(byte[] before, byte[] after)
    {
        var runs = new List<int>();
        int n = after.Length;
        int i = 0;
        while (i < n)
        {
            // Skip the unchanged stretch quickly.
            int same = before.AsSpan(i).CommonPrefixLength(after.AsSpan(i));
            i += same;
            if (i >= n)
            {
                break;
            }
            byte key = after[i];
            int start = i;
            while (i < n && after[i] == key && before[i] != key)
            {
                i++;
            }
            runs.Add(start);
            runs.Add(i - start);
            runs.Add(key);
        }
        return [.. runs];
    }

    /// <summary>Applies <see cref="Diff"/>'s runs to <paramref name="keys"/>: what a page does with a delta.</summary>
    public static void Apply(byte[] keys, ReadOnlySpan<int> runs)
    {
        for (int j = 0; j + 2 < runs.Length; j += 3)
        {
            keys.AsSpan(runs[j], runs[j + 1]).Fill((byte)runs[j + 2]);
        }
    }
}
