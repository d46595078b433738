// /proc/zoneinfo as the boot shaping and --compare-proc read it: per zone the counts the
// kernel's memory layout gave (spanned, present, managed: inputs of a machine shaped like the
// recorded one) and what mm/page_alloc.c derived from them (the min/low/high watermarks,
// lowmem_reserve as "protection", the first CPU's pcp high and batch). Both files, the
// kernel's and Kmem's, go through the same parser, and so does the live view's zone panel
// (free pages, watermarks, every CPU's pageset). Stateless.
using System.Globalization;

namespace Kmem;

/// <summary>A zoneinfo line in the kernel's and Kmem's /proc/zoneinfo.</summary>
/// <param name="Zone">"Node 0, zone DMA32".</param>
/// <param name="Field">present, managed, min, low, high, protection, pcp_high or pcp_batch.</param>
/// <param name="Trace">The kernel's value ("407"; protection as "0, 431, 431, 431, 431"), or null.</param>
/// <param name="Kmem">Kmem's value, or null.</param>
/// <param name="Note">Whether the field is an input of the boot or what a difference comes from; empty when equal.</param>
public readonly record struct ZoneinfoComparison(string Zone, string Field, string? Trace, string? Kmem, string Note);

/// <summary>One CPU's pageset of a zone in /proc/zoneinfo: pages on its lists, its high mark and batch.</summary>
internal readonly record struct ZoneinfoPageset(int Cpu, long Count, long High, long Batch);

/// <summary>Parses /proc/zoneinfo.</summary>
internal static class ZoneinfoSnapshot
{
    /// <summary>The fields compared, in print order: the boot's inputs first.</summary>
    public static readonly string[] Fields = ["present", "managed", "min", "low", "high", "protection", "pcp_high", "pcp_batch"];

    /// <summary>The inputs of a shaped boot (the rest is derived from them).</summary>
    public static bool IsInput(string field) => field is "present" or "managed";

    /// <summary>Zones in file order, each with its fields (values as text, protection without parentheses).</summary>
    /// <exception cref="FormatException">The text has no zone, or a zone line is malformed.</exception>
    public static List<(string Zone, Dictionary<string, string> Fields)> Parse(string text, string fileName) =>
        [.. ParseZones(text, fileName).Select(z => (z.Zone, z.Fields))];

    /// <summary>As <see cref="Parse"/>, with "free" (the pages free line) among the fields and every CPU's
    /// pageset (count, high, batch) in CPU order: what the live view shows.</summary>
    /// <exception cref="FormatException">The text has no zone, or a zone line is malformed.</exception>
    public static List<(string Zone, Dictionary<string, string> Fields, List<ZoneinfoPageset> Pagesets)> ParseZones(string text, string fileName)
    {
        var zones = new List<(string, Dictionary<string, string>, List<ZoneinfoPageset>)>();
        Dictionary<string, string>? current = null;
        List<ZoneinfoPageset> pagesets = [];
        ZoneinfoPageset pageset = default;
        int n = 0;
        foreach (string raw in text.Split('\n'))
        {
            n++;
            string line = raw.Trim();
            if (line.StartsWith("Node ", StringComparison.Ordinal))
            {
                string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length != 4 || f[2] != "zone")
                {
                    throw new FormatException($"{fileName}: line {n}: expected \"Node N, zone NAME\": {raw}");
                }
                current = new Dictionary<string, string>(StringComparer.Ordinal);
                pagesets = [];
                zones.Add(($"Node {f[1].TrimEnd(',')}, zone {f[3]}", current, pagesets));
                continue;
            }
            if (current is null)
            {
                continue;
            }
            if (line.StartsWith("protection:", StringComparison.Ordinal))
            {
                current["protection"] = line["protection:".Length..].Trim().TrimStart('(').TrimEnd(')');
                continue;
            }
            string[] w = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (w.Length == 3 && w[0] == "pages" && w[1] == "free")
            {
                current.TryAdd("free", w[2]);
                continue;
            }
            if (w.Length != 2 || !long.TryParse(w[1], NumberStyles.None, CultureInfo.InvariantCulture, out long value))
            {
                continue;
            }
            switch (w[0])
            {
                case "cpu:":
                    pageset = new ZoneinfoPageset((int)value, 0, 0, 0);
                    break;
                case "count:":
                    pageset = pageset with { Count = value };
                    break;
                case "high:":
                    pageset = pageset with { High = value };
                    break;
                case "batch:":
                    pagesets.Add(pageset with { Batch = value }); // the last line of a pageset's figures
                    break;
                default:
                    break;
            }
            string key = w[0] switch
            {
                "high:" => "pcp_high",
                "batch:" => "pcp_batch",
                _ => w[0],
            };
            if (Array.IndexOf(Fields, key) >= 0)
            {
                current.TryAdd(key, w[1]); // the first CPU's pageset for pcp_high and pcp_batch
            }
        }
        if (zones.Count == 0)
        {
            throw new FormatException($"{fileName}: no \"Node N, zone NAME\" line");
        }
        return zones;
    }

    /// <summary>The zone type of a zoneinfo zone name, or null for a name Kmem does not know.</summary>
    public static ZoneType? TypeOf(string zone) => zone[(zone.LastIndexOf(' ') + 1)..] switch
    {
        "DMA" => ZoneType.Dma,
        "DMA32" => ZoneType.Dma32,
        "Normal" => ZoneType.Normal,
        "HighMem" => ZoneType.HighMem,
        "Movable" => ZoneType.Movable,
        _ => null,
    };

    /// <summary>Managed pages of every zone with present pages in the zoneinfo text, by zone name.</summary>
    public static Dictionary<string, long> ManagedPages(string text, string fileName)
    {
        var managed = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (zone, fields) in Parse(text, fileName))
        {
            if (fields.TryGetValue("present", out string? p) && p != "0" && fields.TryGetValue("managed", out string? m))
            {
                managed[zone[(zone.LastIndexOf(' ') + 1)..]] = long.Parse(m, NumberStyles.None, CultureInfo.InvariantCulture);
            }
        }
        return managed;
    }
}
