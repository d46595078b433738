// The figures the live view shows, read from the machine's own /proc texts (fs/proc,
// mm/vmstat.c, slab_common.c's slabinfo) rather than from the allocators' insides: the
// page shows what a user of the real kernel would read, and a figure on the page is the
// figure `kmem replay --proc` prints. zoneinfo (free pages, watermarks, every CPU's
// pageset), slabinfo and meminfo go through the parsers --compare-proc reads the kernel's
// files with (ZoneinfoSnapshot, TraceProcComparison), so one parser serves each format;
// pagetypeinfo (free blocks per order and migrate type) and vmstat are read here only.
// Stateless and pure; called on the replaying thread with texts it just read.
using System.Globalization;

namespace Kmem.Live;

/// <summary>One zone of /proc/zoneinfo: free pages, watermarks and the per-CPU pagesets.</summary>
internal sealed record ZoneFigures(string Zone, long Free, long Min, long Low, long High, long Managed, List<PcpFigures> Pcp);

/// <summary>One CPU's pageset of a zone: pages on its lists, its high mark and batch.</summary>
internal sealed record PcpFigures(int Cpu, long Count, long High, long Batch);

/// <summary>The free blocks of one zone and migrate type, per order (a row of /proc/pagetypeinfo).</summary>
internal sealed record FreeAreaFigures(string Zone, string Type, long[] Counts);

/// <summary>One row of /proc/slabinfo.</summary>
internal sealed record SlabRow(string Name, long ActiveObjs, long NumObjs, long ObjSize, long ObjPerSlab, long PagesPerSlab,
    long ActiveSlabs, long NumSlabs);

/// <summary>The /proc figures the view shows.</summary>
internal static class ProcFigures
{
    private static long Num(string s) => long.Parse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);

    private static string[] Words(string line) => line.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>The zones of /proc/zoneinfo that have pages (present &gt; 0), with every CPU's pageset.</summary>
    public static List<ZoneFigures> Zoneinfo(string text)
    {
        long Field(Dictionary<string, string> f, string name) => f.TryGetValue(name, out string? v) ? Num(v) : 0;
        return [.. ZoneinfoSnapshot.ParseZones(text, "/proc/zoneinfo")
            .Where(z => Field(z.Fields, "present") > 0)
            .Select(z => new ZoneFigures(z.Zone[(z.Zone.LastIndexOf(' ') + 1)..], Field(z.Fields, "free"), Field(z.Fields, "min"),
                Field(z.Fields, "low"), Field(z.Fields, "high"), Field(z.Fields, "managed"),
                [.. z.Pagesets.Select(p => new PcpFigures(p.Cpu, p.Count, p.High, p.Batch))]))];
    }

    /// <summary>The "Free pages count per migrate type at order" rows of /proc/pagetypeinfo.</summary>
    public static List<FreeAreaFigures> Pagetypeinfo(string text)
    {
        var rows = new List<FreeAreaFigures>();
        foreach (string line in text.Split('\n'))
        {
            // Node    0, zone      DMA, type    Unmovable      0      1 ...
            string[] parts = line.Split(',');
            if (parts.Length != 3 || !parts[0].StartsWith("Node", StringComparison.Ordinal))
            {
                continue;
            }
            string[] zone = Words(parts[1]);
            string[] type = Words(parts[2]);
            if (zone.Length != 2 || type.Length < 3 || type[0] != "type")
            {
                continue;
            }
            rows.Add(new FreeAreaFigures(zone[1], type[1], [.. type.Skip(2).Select(Num)]));
        }
        return rows;
    }

    /// <summary>The caches of /proc/slabinfo (SLUB and SLAB print the same columns up to slabdata).</summary>
    public static List<SlabRow> Slabinfo(string text) =>
        [.. TraceProcComparison.ParseSlabinfoRows(text, "/proc/slabinfo").Select(r => new SlabRow(r.Name, r.Line.ActiveObjs, r.Line.NumObjs,
            r.Line.ObjSize, r.Line.ObjPerSlab, r.Line.PagesPerSlab, r.ActiveSlabs, r.NumSlabs))];

    /// <summary>/proc/meminfo: field → its number (kB for most).</summary>
    public static Dictionary<string, long> Meminfo(string text) => TraceProcComparison.ParseMeminfo(text);

    /// <summary>/proc/vmstat's "name value" lines.</summary>
    public static Dictionary<string, long> Vmstat(string text)
    {
        var d = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string line in text.Split('\n'))
        {
            string[] w = Words(line);
            if (w.Length >= 2 && long.TryParse(w[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v))
            {
                d[w[0]] = v;
            }
        }
        return d;
    }
}
