// The pressure timeline of a replay, per phase of the trace ("PHASE name" markers; "boot"
// before the first), the kernel's beside Kmem's: kswapd wakeups and runs, direct reclaim
// episodes and the pages they reclaimed, swap-out, direct compaction, OOM kills, and free
// pages at the phase's end against Kmem's watermarks. The kernel's come from its events
// (mm_vmscan_wakeup_kswapd, mm_vmscan_kswapd_wake, mm_vmscan_direct_reclaim_begin/_end,
// mm_vmscan_write_folio, mm_compaction_try_to_compact_pages, mark_victim) and, for free
// pages, from the capture's /proc/vmstat after the phase (meta/phase/vmstat-after-NAME.txt);
// Kmem's from its counters, with Kmem's kswapd rounds for a zone below the node's highest
// managed one and the pages they scanned (the kernel's never show: its mm_vmscan_lru_isolate
// classzone and pgskip_* say it made none on the captures). Also the vmstat totals, per phase and at the end (vmstat.txt
// beside the trace), kernel against Kmem. Used on the replaying thread only.
using System.Globalization;
using Kmem.PageAlloc;

namespace Kmem;

/// <summary>Builds a <see cref="TracePressure"/> while the replay runs.</summary>
internal sealed class PressureReport(Machine m, string? directory)
{
    public const string KswapdWakeups = "kswapd wakeups", KswapdRuns = "kswapd runs", DirectReclaims = "direct reclaims",
        Reclaimed = "direct reclaimed pages", SwapOut = "swap-out pages", Compactions = "direct compactions", OomKills = "OOM kills",
        FreePages = "free pages at end", LowerZoneRuns = "kswapd lower-zone runs", LowerZoneScanned = "kswapd lower-zone scans";

    /// <summary>The /proc/vmstat counters compared, per phase and at the end.</summary>
    public static readonly string[] VmstatNames =
    [
        "nr_free_pages", "pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd", "pgsteal_direct", "pswpout", "pswpin",
        "allocstall_dma32", "allocstall_normal", "allocstall_movable", "compact_stall", "compact_success", "compact_fail",
        "compact_migrate_scanned", "pgmigrate_success", "oom_kill", "pgskip_dma32", "pgskip_normal",
    ];

    private readonly List<Phase> _phases = [new Phase("boot", PressureCounters.Read(m))];
    private readonly List<TracePressureCounter> _vmstat = [];

    public long KernelEvents { get; private set; }

    private readonly Dictionary<string, long> _kernelTotals = new(StringComparer.Ordinal);

    private Phase Current => _phases[^1];

    // A phase ends at the next PHASE marker or WORKLOAD_END: the kernel's free pages then, when the capture has them.
    public long? Marker(string text, Machine machine)
    {
        string? next = text.StartsWith("PHASE ", StringComparison.Ordinal) ? text[6..].Trim()
            : text.StartsWith("WORKLOAD_END", StringComparison.Ordinal) ? "snapshot" : null;
        if (next is null)
        {
            return null;
        }
        long? kernelFree = EndPhase(machine);
        _phases.Add(new Phase(next, PressureCounters.Read(machine)));
        return kernelFree;
    }

    public void KernelEventSeen(TraceEventKind kind)
    {
        KernelEvents++;
        string? name = kind switch
        {
            TraceEventKind.MmVmscanWakeupKswapd => KswapdWakeups,
            TraceEventKind.MmVmscanKswapdWake => KswapdRuns,
            TraceEventKind.MmVmscanDirectReclaimBegin => DirectReclaims,
            TraceEventKind.MmVmscanWriteFolio => SwapOut,
            TraceEventKind.MmCompactionTryToCompactPages => Compactions,
            TraceEventKind.MarkVictim => OomKills,
            _ => null,
        };
        if (name is not null)
        {
            Kernel(name, 1);
        }
    }

    public void Kernel(string name, long n)
    {
        Current.Kernel[name] = Current.Kernel.GetValueOrDefault(name) + n;
        _kernelTotals[name] = _kernelTotals.GetValueOrDefault(name) + n;
    }

    /// <summary>The kernel's counts by the report's names over the whole trace so far (every phase, the open one
    /// included): what the live view's pressure panel shows beside Kmem's.</summary>
    public IReadOnlyDictionary<string, long> KernelTotals => _kernelTotals;

    // After each user page: the lowest free page count of the phase.
    public void Kmem(Machine machine)
    {
        long free = machine.PageAllocator.NrFreePages;
        Current.MinFree = Math.Min(Current.MinFree, free);
    }

    public void KmemKill(int pid, string comm) => Current.KmemVictims.Add($"{pid} ({comm})");

    private long? EndPhase(Machine machine)
    {
        var p = Current;
        if (p.Ended)
        {
            return null;
        }
        p.Ended = true;
        AddKmemCounts(p.Kmem, p.Start, PressureCounters.Read(machine));
        var kmem = KmemVmstat(machine);
        p.Kmem[FreePages] = kmem.GetValueOrDefault("nr_free_pages");
        var kernel = KernelVmstat(Path.Combine("meta", "phase", $"vmstat-after-{p.Name}.txt"));
        if (kernel is not null)
        {
            p.Kernel[FreePages] = kernel.GetValueOrDefault("nr_free_pages");
            AddVmstat(p.Name, kernel, kmem);
            return kernel.TryGetValue("nr_free_pages", out long free) ? free : null;
        }
        return null;
    }

    private static void AddKmemCounts(Dictionary<string, long> kmem, PressureCounters b, PressureCounters end)
    {
        kmem[KswapdWakeups] = end.Wakeups - b.Wakeups;
        kmem[KswapdRuns] = end.KswapdRuns - b.KswapdRuns;
        kmem[DirectReclaims] = end.Allocstall - b.Allocstall;
        kmem[Reclaimed] = end.PgstealDirect - b.PgstealDirect;
        kmem[SwapOut] = end.Pswpout - b.Pswpout;
        kmem[Compactions] = end.CompactStall - b.CompactStall;
        kmem[OomKills] = end.OomKill - b.OomKill;
        kmem[LowerZoneRuns] = end.KswapdLowerZoneRuns - b.KswapdLowerZoneRuns;
        kmem[LowerZoneScanned] = end.KswapdLowerZoneScanned - b.KswapdLowerZoneScanned;
    }

    /// <summary>The state now: the phase, free pages against Kmem's watermarks, and the phase's counts so far.</summary>
    public TracePressureNow Now(PressureReplay r)
    {
        var p = Current;
        var kmem = new Dictionary<string, long>(StringComparer.Ordinal);
        AddKmemCounts(kmem, p.Start, PressureCounters.Read(m));
        var (min, low, high) = Watermarks();
        return new TracePressureNow
        {
            Phase = p.Name,
            FreePages = m.PageAllocator.NrFreePages,
            WatermarkMin = min,
            WatermarkLow = low,
            WatermarkHigh = high,
            KswapdAwake = !m.Mm.KswapdIdle,
            Kernel = new SortedDictionary<string, long>(p.Kernel, StringComparer.Ordinal),
            Kmem = new SortedDictionary<string, long>(kmem, StringComparer.Ordinal),
            KernelVictims = [.. r.KernelVictims.Select(v => $"{v.Pid} ({v.Comm})")],
            KmemVictims = [.. r.KmemVictims.Select(v => $"{v.Pid} ({v.Comm})")],
        };
    }

    // Without the boost of the moment: the watermarks the zones were set up with.
    private (long Min, long Low, long High) Watermarks()
    {
        var zones = m.PageAllocator.Zones.Where(z => z.IsManaged).ToList();
        return (zones.Sum(z => z.Watermark[Zone.WmarkMin]), zones.Sum(z => z.Watermark[Zone.WmarkLow]), zones.Sum(z => z.Watermark[Zone.WmarkHigh]));
    }

    private void AddVmstat(string phase, Dictionary<string, long> kernel, Dictionary<string, long> kmem)
    {
        foreach (string name in VmstatNames)
        {
            _vmstat.Add(new TracePressureCounter
            {
                Phase = phase,
                Name = name,
                Kernel = kernel.TryGetValue(name, out long k) ? k : null,
                Kmem = kmem.GetValueOrDefault(name),
            });
        }
    }

    public void Finish(Machine machine)
    {
        _ = EndPhase(machine);
        if (KernelVmstat("vmstat.txt") is { } final)
        {
            AddVmstat("final", final, KmemVmstat(machine));
        }
    }

    private static Dictionary<string, long> KmemVmstat(Machine machine) => ParseVmstat(machine.Proc.Read("vmstat"));

    private Dictionary<string, long>? KernelVmstat(string name)
    {
        if (directory is null)
        {
            return null;
        }
        string path = Path.Combine(directory, name);
        return File.Exists(path) ? ParseVmstat(File.ReadAllText(path)) : null;
    }

    internal static Dictionary<string, long> ParseVmstat(string text)
    {
        var d = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string line in text.Split('\n'))
        {
            int sp = line.IndexOf(' ');
            if (sp > 0 && long.TryParse(line.AsSpan(sp + 1).Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v))
            {
                d[line[..sp]] = v;
            }
        }
        return d;
    }

    public TracePressure Build(PressureReplay r)
    {
        var (min, low, high) = Watermarks();
        return new TracePressure
        {
            Phases = [.. _phases.Where(p => p.Ended).Select(p => new TracePressurePhase
            {
                Phase = p.Name,
                Kernel = new SortedDictionary<string, long>(p.Kernel, StringComparer.Ordinal),
                Kmem = new SortedDictionary<string, long>(p.Kmem, StringComparer.Ordinal),
                KmemMinFreePages = p.MinFree == long.MaxValue ? -1 : p.MinFree,
                KmemVictims = [.. p.KmemVictims],
            })],
            Vmstat = [.. _vmstat],
            KernelVictims = [.. r.KernelVictims.Select(v => $"{v.Pid} ({v.Comm})")],
            KmemVictims = [.. r.KmemVictims.Select(v => $"{v.Pid} ({v.Comm})")],
            TaskPages = r.TaskPages,
            ExitedTaskPages = r.Exited.Count,
            TasksExited = r.TasksExited,
            ReclaimFrees = r.ReclaimFrees,
            SwapIns = r.SwapIns,
            MigratedPages = r.Migrated,
            UntracedPages = r.UntracedPages,
            WatermarkMin = min,
            WatermarkLow = low,
            WatermarkHigh = high,
        };
    }

    private sealed class Phase(string name, PressureCounters start)
    {
        public string Name { get; } = name;
        public PressureCounters Start { get; } = start;
        public bool Ended;
        public long MinFree = long.MaxValue;
        public readonly Dictionary<string, long> Kernel = new(StringComparer.Ordinal);
        public readonly Dictionary<string, long> Kmem = new(StringComparer.Ordinal);
        public readonly List<string> KmemVictims = [];
    }
}
