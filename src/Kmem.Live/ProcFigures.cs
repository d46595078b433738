// The figures the live view shows, read from the machine's own /proc texts (fs/proc,
// mm/vmstat.c, slab_common.c's slabinfo) rather than from the allocators' insides: the
// page shows what a user of the real kernel would read, and a figure on the page is the
// figure `kmem replay --proc` prints. Parsers of the kernel's text formats: zoneinfo
// (free pages, watermarks, the pagesets' count, high and batch), pagetypeinfo (free blocks
// per order and migrate type), slabinfo (one row per cache), vmstat and meminfo.
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

/// <summary>Parsers of the /proc texts the view shows.</summary>
internal static class ProcFigures
{
    private static long Num(string s) => long.Parse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);

    private static string[] Words(string line) => line.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>The zones of /proc/zoneinfo that have pages (present &gt; 0).</summary>
    public static List<ZoneFigures> Zoneinfo(string text)
    {
        var zones = new List<ZoneFigures>();
        string? zone = null;
        long free = 0, min = 0, low = 0, high = 0, managed = 0, present = 0;
        List<PcpFigures> pcp = [];
        int cpu = -1;
        long count = 0, pcpHigh = 0;
        void Close()
        {
            if (zone is not null && present > 0)
            {
                zones.Add(new ZoneFigures(zone, free, min, low, high, managed, pcp));
            }
        }
        foreach (string raw in text.Split('\n'))
        {
            string[] w = Words(raw);
            if (w.Length == 0)
            {
                continue;
            }
            if (w[0] == "Node" && w.Length >= 4 && w[2] == "zone")
            {
                Close();
                zone = w[3];
                free = min = low = high = managed = present = 0;
                pcp = [];
                cpu = -1;
                continue;
            }
            switch (w[0])
            {
                case "pages" when w.Length >= 3 && w[1] == "free":
                    free = Num(w[2]);
                    break;
                case "min" when w.Length >= 2:
                    min = Num(w[1]);
                    break;
                case "low" when w.Length >= 2:
                    low = Num(w[1]);
                    break;
                case "high" when w.Length >= 2:
                    high = Num(w[1]);
                    break;
                case "managed" when w.Length >= 2:
                    managed = Num(w[1]);
                    break;
                case "present" when w.Length >= 2:
                    present = Num(w[1]);
                    break;
                case "cpu:" when w.Length >= 2:
                    cpu = (int)Num(w[1]);
                    break;
                case "count:" when w.Length >= 2:
                    count = Num(w[1]);
                    break;
                case "high:" when w.Length >= 2:
                    pcpHigh = Num(w[1]);
                    break;
                case "batch:" when w.Length >= 2 && cpu >= 0:
                    pcp.Add(new PcpFigures(cpu, count, pcpHigh, Num(w[1])));
                    break;
                default:
                    break;
            }
        }
        Close();
        return zones;
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
    public static List<SlabRow> Slabinfo(string text)
    {
        var rows = new List<SlabRow>();
        foreach (string line in text.Split('\n'))
        {
            if (line.Length == 0 || line.StartsWith("slabinfo", StringComparison.Ordinal) || line.StartsWith('#'))
            {
                continue;
            }
            string[] w = Words(line);
            int data = Array.IndexOf(w, "slabdata");
            if (w.Length < 6 || data < 0 || data + 2 >= w.Length)
            {
                continue;
            }
            rows.Add(new SlabRow(w[0], Num(w[1]), Num(w[2]), Num(w[3]), Num(w[4]), Num(w[5]), Num(w[data + 1]), Num(w[data + 2])));
        }
        return rows;
    }

    /// <summary>"name value" lines (/proc/vmstat), or "Name: value kB" lines (/proc/meminfo, the kB dropped).</summary>
    public static Dictionary<string, long> Pairs(string text)
    {
        var d = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string line in text.Split('\n'))
        {
            string[] w = Words(line);
            if (w.Length >= 2 && long.TryParse(w[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v))
            {
                d[w[0].TrimEnd(':')] = v;
            }
        }
        return d;
    }
}
