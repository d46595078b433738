// The capture's watermarks for an aligned pressure replay (PressureReplay.Aligned.cs): zoneinfo.txt
// beside the trace, read as --compare-proc reads it, gives each zone's min, low and high marks and
// its protection (lowmem_reserve) against each of the kernel's zones (the file's zone names, in
// order); they decide every wakeup and direct reclaim. As setup_per_zone_wmarks does, the zone's
// per-CPU high then follows its low mark (zone_pcp_update). Called once, before the first event, on
// the replaying thread.
using System.Globalization;
using Kmem.PageAlloc;

namespace Kmem;

internal static class CaptureWatermarks
{
    /// <summary>The capture's watermarks and lowmem reserves (zoneinfo.txt in <paramref name="directory"/>), set on
    /// <paramref name="m"/>'s zones; nothing without the file.</summary>
    public static void Apply(Machine m, string? directory)
    {
        string? path = directory is null ? null : Path.Combine(directory, "zoneinfo.txt");
        if (path is null || !File.Exists(path))
        {
            return;
        }
        var zones = ZoneinfoSnapshot.Parse(File.ReadAllText(path), path);
        var kernelZones = zones.Select(z => z.Zone[(z.Zone.LastIndexOf(' ') + 1)..]).Distinct().Select(ZoneinfoSnapshot.TypeOf).ToList();
        foreach (var (name, fields) in zones)
        {
            if (m.PageAllocator.Zones.FirstOrDefault(z => $"Node {z.Node.Id}, zone {z.Name}" == name) is not { IsManaged: true } zone)
            {
                continue;
            }
            for (int mark = 0; mark < s_marks.Length; mark++)
            {
                if (fields.TryGetValue(s_marks[mark], out string? text)
                    && long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long pages) && pages > 0)
                {
                    lock (zone.Lock)
                    {
                        zone.Watermark[mark] = pages;
                    }
                }
            }
            if (fields.TryGetValue("protection", out string? protection))
            {
                SetProtection(zone, protection.Split(','), kernelZones);
            }
            m.PageAllocator.ZonePcpUpdate(zone); // setup_per_zone_wmarks's last step: pcp high follows the low mark
        }
    }

    // "0, 304, 304, 304, 304": the zone's lowmem_reserve against each of the kernel's zones.
    private static void SetProtection(Zone zone, string[] reserves, List<ZoneType?> kernelZones)
    {
        for (int k = 0; k < reserves.Length && k < kernelZones.Count; k++)
        {
            if (kernelZones[k] is { } t && (int)t < zone.LowmemReserve.Length
                && long.TryParse(reserves[k].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long reserve))
            {
                lock (zone.Lock)
                {
                    zone.LowmemReserve[(int)t] = reserve;
                }
            }
        }
    }

    private static readonly string[] s_marks = ["min", "low", "high"];
}
