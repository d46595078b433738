// Kmem's /proc files after a replay beside the real ones the traced kernel wrote
// (slabinfo.txt, buddyinfo.txt, meminfo.txt in the trace's folder): slabinfo cache by
// cache, buddyinfo zone by zone, meminfo's slab lines. Each row says where a difference
// comes from when the replay can tell: objects and pages allocated before tracing began
// are in the kernel's files but never in Kmem's. Both sides are parsed from text by the
// same code, so the comparison reads exactly what a user would diff. Immutable.
using System.Globalization;

namespace Kmem;

/// <summary>One cache's line of /proc/slabinfo.</summary>
/// <param name="ActiveObjs">active_objs.</param>
/// <param name="NumObjs">num_objs.</param>
/// <param name="ObjSize">objsize (s->size).</param>
/// <param name="ObjPerSlab">objperslab.</param>
/// <param name="PagesPerSlab">pagesperslab.</param>
public readonly record struct SlabinfoLine(long ActiveObjs, long NumObjs, long ObjSize, long ObjPerSlab, long PagesPerSlab);

/// <summary>A cache in the kernel's and Kmem's /proc/slabinfo.</summary>
/// <param name="Name">The cache's name.</param>
/// <param name="Trace">The kernel's line, or null when it has no such cache.</param>
/// <param name="Kmem">Kmem's line, or null.</param>
/// <param name="Note">Where the difference comes from, or empty when the lines agree.</param>
public readonly record struct SlabinfoComparison(string Name, SlabinfoLine? Trace, SlabinfoLine? Kmem, string Note);

/// <summary>A zone's free blocks per order in both /proc/buddyinfo files.</summary>
/// <param name="Zone">"Node 0, zone DMA32".</param>
/// <param name="Trace">The kernel's counts per order, or null.</param>
/// <param name="Kmem">Kmem's counts per order, or null.</param>
/// <param name="Note">What the difference in free pages means.</param>
public readonly record struct BuddyinfoComparison(string Zone, IReadOnlyList<long>? Trace, IReadOnlyList<long>? Kmem, string Note);

/// <summary>A /proc/meminfo line in both files, in kB.</summary>
/// <param name="Field">The field (Slab, SReclaimable, SUnreclaim).</param>
/// <param name="TraceKb">The kernel's value.</param>
/// <param name="KmemKb">Kmem's value.</param>
/// <param name="Note">What the difference means.</param>
public readonly record struct MeminfoComparison(string Field, long? TraceKb, long? KmemKb, string Note);

/// <summary>Kmem's /proc files compared with the snapshot files recorded beside a trace.</summary>
public sealed class TraceProcComparison
{
    private static readonly string[] s_meminfoFields = ["MemTotal", "Slab", "SReclaimable", "SUnreclaim"];

    private TraceProcComparison(IReadOnlyList<string> files, IReadOnlyList<SlabinfoComparison> slabinfo,
        IReadOnlyList<BuddyinfoComparison> buddyinfo, IReadOnlyList<MeminfoComparison> meminfo, IReadOnlyList<ZoneinfoComparison> zoneinfo)
    {
        Files = files;
        Slabinfo = slabinfo;
        Buddyinfo = buddyinfo;
        Meminfo = meminfo;
        Zoneinfo = zoneinfo;
    }

    /// <summary>Each zone's present and managed pages (the inputs of a boot shaped like the capture), watermarks,
    /// protection and first pcp high and batch (what Kmem derives from them), in the kernel's zone order.</summary>
    public IReadOnlyList<ZoneinfoComparison> Zoneinfo { get; }

    /// <summary>The managed pages per zone of the zoneinfo.txt snapshot in <paramref name="directory"/>, for
    /// <see cref="MachineOptions.ManagedPages"/>; null when there is no such file.</summary>
    /// <exception cref="FormatException">zoneinfo.txt is not in the kernel's format.</exception>
    public static IReadOnlyDictionary<string, long>? SnapshotManagedPages(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string path = Path.Combine(directory, "zoneinfo.txt");
        return File.Exists(path) ? ZoneinfoSnapshot.ManagedPages(File.ReadAllText(path), path) : null;
    }

    /// <summary>The snapshot files found and compared (slabinfo.txt, buddyinfo.txt, meminfo.txt).</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>Every cache of either slabinfo: the kernel's in its order, then Kmem's others.</summary>
    public IReadOnlyList<SlabinfoComparison> Slabinfo { get; }

    /// <summary>Every zone of either buddyinfo.</summary>
    public IReadOnlyList<BuddyinfoComparison> Buddyinfo { get; }

    /// <summary>Slab, SReclaimable and SUnreclaim.</summary>
    public IReadOnlyList<MeminfoComparison> Meminfo { get; }

    /// <summary>Compares <paramref name="m"/>'s files with the snapshot files in <paramref name="directory"/>.</summary>
    /// <param name="m">The machine, after the replay.</param>
    /// <param name="directory">The trace's folder.</param>
    /// <param name="replay">The replay's result (for the untracked frees per cache), or null.</param>
    /// <returns>The comparison; files missing in the folder are left out.</returns>
    /// <exception cref="FormatException">A snapshot file is not in the kernel's format; the message names it.</exception>
    public static TraceProcComparison Compare(Machine m, string directory, TraceReplayResult? replay)
    {
        ArgumentNullException.ThrowIfNull(m);
        ArgumentNullException.ThrowIfNull(directory);
        var files = new List<string>();
        var slab = new List<SlabinfoComparison>();
        var buddy = new List<BuddyinfoComparison>();
        var mem = new List<MeminfoComparison>();

        // The kernel's slab memory not seen allocated in the trace, by meminfo line (kB).
        var notSeenKb = new Dictionary<string, long>(StringComparer.Ordinal) { ["Slab"] = 0, ["SReclaimable"] = 0, ["SUnreclaim"] = 0 };
        string path = Path.Combine(directory, "slabinfo.txt");
        if (File.Exists(path) && m.Proc.Knows("slabinfo"))
        {
            files.Add("slabinfo.txt");
            var real = ParseSlabinfo(File.ReadAllText(path), path);
            var kmem = ParseSlabinfo(m.Proc.Read("slabinfo"), "/proc/slabinfo");
            var kmemByName = kmem.ToDictionary(c => c.Name, c => c.Line, StringComparer.Ordinal);
            var counts = replay?.CacheCounts;
            var provisionalSizes = kmem.Where(c => c.Name.Contains('/', StringComparison.Ordinal)).Select(c => c.Line.ObjSize).ToHashSet();
            var reclaimable = m.SlabCaches.GroupBy(c => c.Name, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => (g.First().Flags & SlabFlags.ReclaimAccount) != 0, StringComparer.Ordinal);
            foreach (var (name, line) in real)
            {
                SlabinfoLine? k = kmemByName.TryGetValue(name, out var kl) ? kl : null;
                TraceCacheCounts? c = counts is null ? null : counts.GetValueOrDefault(name);
                slab.Add(new(name, line, k, ProcNotes.Slab(line, k, c, provisionalSizes.Contains(line.ObjSize))));
                if (c is TraceCacheCounts n)
                {
                    long kb = Math.Max(0, ProcNotes.KernelSlabPages(line) - n.TraceSlabPages) * (Machine.PageSize >> 10);
                    notSeenKb["Slab"] += kb;
                    if (reclaimable.TryGetValue(name, out bool rcl))
                    {
                        notSeenKb[rcl ? "SReclaimable" : "SUnreclaim"] += kb;
                    }
                }
            }
            var realNames = real.Select(c => c.Name).ToHashSet(StringComparer.Ordinal);
            foreach (var (name, line) in kmem.Where(c => !realNames.Contains(c.Name)))
            {
                slab.Add(new(name, null, line, name.Contains('/', StringComparison.Ordinal)
                    ? "no kmem_cache_free named this cache in the trace (provisional name: call site/size)"
                    : "not in the kernel's slabinfo"));
            }
        }

        path = Path.Combine(directory, "buddyinfo.txt");
        if (File.Exists(path))
        {
            files.Add("buddyinfo.txt");
            var real = ParseBuddyinfo(File.ReadAllText(path), path);
            var kmem = ParseBuddyinfo(m.Proc.Buddyinfo(), "/proc/buddyinfo");
            foreach (var zone in real.Keys.Concat(kmem.Keys).Distinct(StringComparer.Ordinal))
            {
                long[]? r = real.GetValueOrDefault(zone);
                long[]? k = kmem.GetValueOrDefault(zone);
                buddy.Add(new(zone, r, k, ProcNotes.Buddy(r, k, replay?.UntrackedPageFrees)));
            }
        }

        path = Path.Combine(directory, "meminfo.txt");
        if (File.Exists(path))
        {
            files.Add("meminfo.txt");
            var real = ParseMeminfo(File.ReadAllText(path));
            var kmem = ParseMeminfo(m.Proc.Meminfo());
            foreach (string field in s_meminfoFields)
            {
                long? r = real.TryGetValue(field, out long rv) ? rv : null;
                long? k = kmem.TryGetValue(field, out long kv) ? kv : null;
                string note = r is null || k is null ? "missing on one side"
                    : field == "MemTotal" ? (r == k ? "input: the managed pages of zoneinfo.txt" : $"{Math.Abs(r.Value - k.Value)} kB apart: the boot was not shaped by the capture's zoneinfo.txt")
                    : ProcNotes.Meminfo(r.Value, k.Value, replay is null ? null : notSeenKb[field]);
                mem.Add(new(field, r, k, note));
            }
        }
        var zoneinfo = new List<ZoneinfoComparison>();
        path = Path.Combine(directory, "zoneinfo.txt");
        if (File.Exists(path) && m.Proc.Knows("zoneinfo"))
        {
            files.Add("zoneinfo.txt");
            CompareZoneinfo(ZoneinfoSnapshot.Parse(File.ReadAllText(path), path), ZoneinfoSnapshot.Parse(m.Proc.Read("zoneinfo"), "/proc/zoneinfo"), zoneinfo);
        }
        return new TraceProcComparison(files, slab, buddy, mem, zoneinfo);
    }

    private static void CompareZoneinfo(List<(string Zone, Dictionary<string, string> Fields)> real,
        List<(string Zone, Dictionary<string, string> Fields)> kmem, List<ZoneinfoComparison> rows)
    {
        var kmemByZone = kmem.ToDictionary(z => z.Zone, z => z.Fields, StringComparer.Ordinal);
        // The lowmem zones' min watermarks add up to min_free_kbytes / 4 on either side (rounded down per zone).
        long realMin = LowmemSum(real, "min"), kmemMin = LowmemSum(kmem, "min");
        bool sameMinFree = Math.Abs(realMin - kmemMin) * 50 <= Math.Max(realMin, 1);
        foreach (var (zone, fields) in real)
        {
            var k = kmemByZone.GetValueOrDefault(zone);
            if (fields.GetValueOrDefault("present") is null or "0" && k?.GetValueOrDefault("present") is null or "0")
            {
                continue; // empty on both sides
            }
            foreach (string field in ZoneinfoSnapshot.Fields)
            {
                string? r = fields.GetValueOrDefault(field), kv = k?.GetValueOrDefault(field);
                string note = r is null || kv is null ? "missing on one side"
                    : ZoneinfoSnapshot.IsInput(field) ? (r == kv ? "input of the boot" : "input of the boot; the spans differ (e820 holes Kmem does not have)")
                    : r == kv ? ""
                    : field == "protection" ? ProtectionNote(zone, r, kv)
                    : field == "pcp_batch" ? "derived: zone_batchsize of the managed pages when the kernel computed it: unexplained"
                    : sameMinFree ? MinFreeNote(realMin, kmemMin, LowmemSum(kmem, "managed"))
                    : $"derived: the lowmem min watermarks add up to {realMin} pages in the kernel, {kmemMin} on Kmem: another min_free_kbytes, unexplained";
                rows.Add(new(zone, field, r, kv, note));
            }
        }
    }

    // The lowmem zones' min watermarks add up to min_free_kbytes / 4: the lowmem pages that implies by either
    // 6.1 formula (int_sqrt(16 × lowmem kB) at boot, or khugepaged's raise to nr_free_buffer_pages / 20), when
    // one of them lands within 10 % of the final count Kmem derived its own from.
    private static string MinFreeNote(long realMin, long kmemMin, long kmemLowmem)
    {
        string head = $"derived: the kernel's lowmem min watermarks add up to {realMin} pages (min_free_kbytes ≈ {realMin * 4})";
        string tail = $"; Kmem's {kmemMin} come from the final {kmemLowmem}";
        long bySqrt = realMin * 4 * realMin * 4 / 64;
        if (Math.Abs(bySqrt - kmemLowmem) * 10 <= kmemLowmem)
        {
            return $"{head}: int_sqrt(16 × lowmem kB) for about {bySqrt} lowmem pages when it computed it{tail}";
        }
        long byRaise = realMin * 20;
        if (Math.Abs(byRaise - kmemLowmem) * 10 <= kmemLowmem)
        {
            return $"{head}: khugepaged's raise to nr_free_buffer_pages / 20 for about {byRaise} pages when it computed it{tail}";
        }
        return head + tail + ": unexplained";
    }

    private static long LowmemSum(List<(string Zone, Dictionary<string, string> Fields)> zones, string field) =>
        zones.Where(z => ZoneinfoSnapshot.TypeOf(z.Zone) is ZoneType.Dma or ZoneType.Dma32 or ZoneType.Normal)
            .Sum(z => long.TryParse(z.Fields.GetValueOrDefault(field), NumberStyles.None, CultureInfo.InvariantCulture, out long v) ? v : 0);

    // lowmem_reserve[j] = managed pages of the zones above up to j / sysctl_lowmem_reserve_ratio (256 DMA, DMA32; 32 Normal).
    private static string ProtectionNote(string zone, string real, string kmem)
    {
        int ratio = ZoneinfoSnapshot.TypeOf(zone) is ZoneType.Normal ? 32 : 256;
        long[] r = ParseList(real), k = ParseList(kmem);
        for (int j = 0; j < Math.Min(r.Length, k.Length); j++)
        {
            if (r[j] != k[j])
            {
                return $"derived: the kernel's {r[j]} means {r[j] * ratio}..{r[j] * ratio + ratio - 1} managed pages above this zone when it computed it; "
                    + $"Kmem's {k[j]} comes from the final count, {k[j] * ratio}..{k[j] * ratio + ratio - 1}";
            }
        }
        return "unexplained";
    }

    private static long[] ParseList(string text) =>
        [.. text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(t => long.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out long v) ? v : -1)];

    /// <summary>Parses /proc/slabinfo (version 2.1) text.</summary>
    /// <exception cref="FormatException">A line is not a slabinfo line.</exception>
    public static List<(string Name, SlabinfoLine Line)> ParseSlabinfo(string text, string fileName) =>
        [.. ParseSlabinfoRows(text, fileName).Select(r => (r.Name, r.Line))];

    /// <summary>As <see cref="ParseSlabinfo"/>, with each line's slabdata active_slabs and num_slabs (0 when
    /// the line has none): what the live view's slab table shows.</summary>
    /// <exception cref="FormatException">A line is not a slabinfo line.</exception>
    internal static List<(string Name, SlabinfoLine Line, long ActiveSlabs, long NumSlabs)> ParseSlabinfoRows(string text, string fileName)
    {
        ArgumentNullException.ThrowIfNull(text);
        var rows = new List<(string, SlabinfoLine, long, long)>();
        int n = 0;
        foreach (string line in text.Split('\n'))
        {
            n++;
            if (line.Length == 0 || line.StartsWith("slabinfo -", StringComparison.Ordinal) || line.StartsWith('#'))
            {
                continue;
            }
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 6 || !TryLongs(f.AsSpan(1, 5), out long[] v))
            {
                throw new FormatException($"{fileName}: line {n}: expected NAME ACTIVE_OBJS NUM_OBJS OBJSIZE OBJPERSLAB PAGESPERSLAB: {line}");
            }
            int data = Array.IndexOf(f, "slabdata");
            long[] slabs = data > 0 && data + 2 < f.Length && TryLongs(f.AsSpan(data + 1, 2), out long[] d) ? d : [0, 0];
            rows.Add((f[0], new SlabinfoLine(v[0], v[1], v[2], v[3], v[4]), slabs[0], slabs[1]));
        }
        return rows;
    }

    /// <summary>Parses /proc/buddyinfo text: "Node N, zone NAME" → free blocks per order.</summary>
    /// <exception cref="FormatException">A line is not a buddyinfo line.</exception>
    public static Dictionary<string, long[]> ParseBuddyinfo(string text, string fileName)
    {
        ArgumentNullException.ThrowIfNull(text);
        var zones = new Dictionary<string, long[]>(StringComparer.Ordinal);
        int n = 0;
        foreach (string line in text.Split('\n'))
        {
            n++;
            if (line.Trim().Length == 0)
            {
                continue;
            }
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            // Node 0, zone DMA32 c0 c1 …
            if (f.Length < 5 || f[0] != "Node" || f[2] != "zone" || !TryLongs(f.AsSpan(4), out long[] counts))
            {
                throw new FormatException($"{fileName}: line {n}: expected \"Node N, zone NAME COUNT…\": {line}");
            }
            zones[$"Node {f[1].TrimEnd(',')}, zone {f[3]}"] = counts;
        }
        return zones;
    }

    /// <summary>Parses /proc/meminfo text: field → its number (kB for most).</summary>
    internal static Dictionary<string, long> ParseMeminfo(string text)
    {
        var fields = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string line in text.Split('\n'))
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                continue;
            }
            string[] f = line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 1 && long.TryParse(f[0], NumberStyles.None, CultureInfo.InvariantCulture, out long v))
            {
                fields[line[..colon]] = v;
            }
        }
        return fields;
    }

    private static bool TryLongs(ReadOnlySpan<string> s, out long[] values)
    {
        values = new long[s.Length];
        for (int i = 0; i < s.Length; i++)
        {
            if (!long.TryParse(s[i], NumberStyles.None, CultureInfo.InvariantCulture, out values[i]))
            {
                return false;
            }
        }
        return true;
    }
}
