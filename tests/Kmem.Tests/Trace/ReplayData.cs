// Inputs of the replay and command tests: the real trace bundled with the command
// (captures/linux-6.1-boot-B), cut to its first lines so that a replay takes a fraction of a
// second, as text (decompressed once per test run), and small hand-written traces.
using System.Text;
using SharpCompress.Compressors.Xz;

namespace Kmem.Tests.Trace;

internal static class ReplayData
{
    /// <summary>Lines of the bundled trace the slice keeps (header included).</summary>
    public const int SliceLines = 100_000;

    public const string Header = "# tracer: nop\n#\n# entries-in-buffer/entries-written: 10/10   #P:2\n";

    private static readonly Lazy<byte[]> s_slice = new(() =>
    {
        using var xz = new XZStream(File.OpenRead(BundledTrace));
        using var text = new StreamReader(xz, bufferSize: 1 << 20);
        var sb = new StringBuilder(20 << 20);
        for (int i = 0; i < SliceLines && text.ReadLine() is string line; i++)
        {
            sb.Append(line).Append('\n');
        }
        return Encoding.UTF8.GetBytes(sb.ToString());
    });

    /// <summary>The bundled real trace (x86-64 capture B).</summary>
    public static string BundledTrace => Captures.Trace(Captures.X64);

    /// <summary>The folder of the bundled trace and its snapshot files.</summary>
    public static string BundledFolder => Path.GetDirectoryName(BundledTrace)!;

    /// <summary>The first <see cref="SliceLines"/> lines of the bundled trace, as text bytes.</summary>
    public static byte[] Slice => s_slice.Value;

    public static TraceReader SliceReader(TraceReaderOptions? options = null) =>
        new(new MemoryStream(Slice, writable: false), "slice.txt", options);

    public static TraceReader Reader(string text, TraceReaderOptions? options = null) =>
        new(new MemoryStream(Encoding.UTF8.GetBytes(text)), "test.txt", options);

    /// <summary>A machine shaped like the traced one: x86-64, 512 MiB, 2 CPUs, seed 1.</summary>
    public static Machine Boot(SlabAllocator slab = SlabAllocator.Slub) =>
        Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1, Slab = slab });

    /// <summary>The machine's pages on the buddy lists and the per-CPU lists together.</summary>
    public static long FreeAndPcpPages(Machine m) =>
        m.PageAllocator.NrFreePages + m.PageAllocator.Zones.Sum(z => z.Pcp.Sum(p => (long)p.Count));

    /// <summary>A trace line in the kernel's format on CPU <paramref name="cpu"/>.</summary>
    public static string Line(string eventText, int cpu = 0, string time = "1.000000") =>
        $"            test-1       [{cpu:D3}] ...1.     {time}: {eventText}\n";

    /// <summary>Writes the slice to a temporary folder (trace.txt) with the bundled snapshot files beside it.</summary>
    public static string SliceFolder()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"kmem-replay-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        File.WriteAllBytes(Path.Combine(dir, "trace.txt"), Slice);
        foreach (string f in new[] { "meminfo.txt", "buddyinfo.txt", "slabinfo.txt" })
        {
            File.Copy(Path.Combine(BundledFolder, f), Path.Combine(dir, f));
        }
        return dir;
    }
}
