// --compare-proc as the command prints it: slabinfo cache by cache, buddyinfo zone by
// zone and meminfo's slab lines, the kernel's value beside Kmem's with the note that
// says where a difference comes from; or the same rows as JSON.
using System.Text.Json;

namespace Kmem.Cli;

/// <summary>Prints a <see cref="TraceProcComparison"/>.</summary>
public static class CompareProcReport
{
    /// <summary>The comparison as text tables.</summary>
    public static void WriteText(TextWriter w, TraceProcComparison c)
    {
        w.WriteLine();
        w.WriteLine($"compare with the snapshot files beside the trace ({string.Join(", ", c.Files)}): kernel / kmem");
        if (c.Slabinfo.Count > 0)
        {
            w.WriteLine();
            w.WriteLine($"  {"slabinfo cache",-26} {"active_objs",15} {"num_objs",15} {"objsize",11} {"objperslab",9} {"pagesperslab",7}  note");
            foreach (var row in c.Slabinfo)
            {
                if (row.Trace is { ActiveObjs: 0, NumObjs: 0 } && row.Kmem is null or { NumObjs: 0 })
                {
                    continue; // empty on both sides: nothing to say
                }
                w.WriteLine($"  {row.Name,-26} {Pair(row.Trace?.ActiveObjs, row.Kmem?.ActiveObjs),15} {Pair(row.Trace?.NumObjs, row.Kmem?.NumObjs),15} "
                    + $"{Pair(row.Trace?.ObjSize, row.Kmem?.ObjSize),11} {Pair(row.Trace?.ObjPerSlab, row.Kmem?.ObjPerSlab),9} {Pair(row.Trace?.PagesPerSlab, row.Kmem?.PagesPerSlab),7}  {row.Note}");
            }
        }
        if (c.Buddyinfo.Count > 0)
        {
            w.WriteLine();
            w.WriteLine("  buddyinfo (free blocks of order 0..10)");
            foreach (var row in c.Buddyinfo)
            {
                w.WriteLine($"  {row.Zone,-22} kernel {Counts(row.Trace)}");
                w.WriteLine($"  {"",-22} kmem   {Counts(row.Kmem)}  {row.Note}");
            }
        }
        if (c.Zoneinfo.Count > 0)
        {
            w.WriteLine();
            w.WriteLine($"  {"zoneinfo",-22} {"field",-10} {"kernel",-24} {"kmem",-24}  note");
            foreach (var row in c.Zoneinfo)
            {
                w.WriteLine($"  {row.Zone,-22} {row.Field,-10} {row.Trace ?? "-",-24} {row.Kmem ?? "-",-24}  {row.Note}");
            }
        }
        if (c.Meminfo.Count > 0)
        {
            w.WriteLine();
            w.WriteLine($"  {"meminfo",-14} {"kernel kB",10} {"kmem kB",10}  note");
            foreach (var row in c.Meminfo)
            {
                w.WriteLine($"  {row.Field,-14} {row.TraceKb?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-",10} {row.KmemKb?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-",10}  {row.Note}");
            }
        }
    }

    /// <summary>The comparison as one JSON object (written as the current value).</summary>
    public static void WriteJson(Utf8JsonWriter j, TraceProcComparison c)
    {
        j.WriteStartObject();
        JsonFields.Strings(j, "files", c.Files);
        JsonFields.Objects(j, "slabinfo", c.Slabinfo, (j, row) =>
        {
            j.WriteString("name", row.Name);
            WriteLine(j, "kernel", row.Trace);
            WriteLine(j, "kmem", row.Kmem);
            j.WriteString("note", row.Note);
        });
        JsonFields.Objects(j, "buddyinfo", c.Buddyinfo, (j, row) =>
        {
            j.WriteString("zone", row.Zone);
            WriteCounts(j, "kernel", row.Trace);
            WriteCounts(j, "kmem", row.Kmem);
            j.WriteString("note", row.Note);
        });
        JsonFields.Objects(j, "zoneinfo", c.Zoneinfo, (j, row) =>
        {
            j.WriteString("zone", row.Zone);
            j.WriteString("field", row.Field);
            j.WriteString("kernel", row.Trace);
            j.WriteString("kmem", row.Kmem);
            j.WriteString("note", row.Note);
        });
        JsonFields.Objects(j, "meminfo", c.Meminfo, (j, row) =>
        {
            j.WriteString("field", row.Field);
            JsonFields.NumberOrNull(j, "kernel_kb", row.TraceKb);
            JsonFields.NumberOrNull(j, "kmem_kb", row.KmemKb);
            j.WriteString("note", row.Note);
        });
        j.WriteEndObject();
    }

    private static void WriteLine(Utf8JsonWriter j, string name, SlabinfoLine? line)
    {
        if (line is not SlabinfoLine l)
        {
            j.WriteNull(name);
            return;
        }
        j.WriteStartObject(name);
        j.WriteNumber("active_objs", l.ActiveObjs);
        j.WriteNumber("num_objs", l.NumObjs);
        j.WriteNumber("objsize", l.ObjSize);
        j.WriteNumber("objperslab", l.ObjPerSlab);
        j.WriteNumber("pagesperslab", l.PagesPerSlab);
        j.WriteEndObject();
    }

    private static void WriteCounts(Utf8JsonWriter j, string name, IReadOnlyList<long>? counts)
    {
        if (counts is null)
        {
            j.WriteNull(name);
            return;
        }
        j.WriteStartArray(name);
        foreach (long n in counts)
        {
            j.WriteNumberValue(n);
        }
        j.WriteEndArray();
    }

    private static string Pair(long? a, long? b) =>
        $"{a?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"}/{b?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"}";

    private static string Counts(IReadOnlyList<long>? counts) =>
        counts is null ? "-" : string.Join(' ', counts.Select(n => n.ToString(System.Globalization.CultureInfo.InvariantCulture).PadLeft(6)));
}
