// The checks a trace passes before a replay starts, so that bad input is refused with a
// message and exit code 1 rather than replayed into a meaningless report: the path is a
// readable file (not a directory), the trace's kernel addresses fit the preset's word size
// (a 64-bit kernel's pointers cannot exist on a 32-bit machine, nor a 32-bit kernel's on
// x86-64), and an --until marker occurs in it. Stateless; each check opens its own reader.
using System.Globalization;

namespace Kmem.Cli;

/// <summary>Checks of the trace a command is given.</summary>
public static class TraceInput
{
    /// <summary>How many lines the address check reads at most before giving up deciding.</summary>
    public const int ArchProbeLines = 100_000;

    // Below this an address is NULL or ZERO_SIZE_PTR (kmalloc(0)), which every kernel prints alike; 32-bit
    // kernels have PAGE_OFFSET at 0x40000000 or above (VMSPLIT_1G is the lowest split).
    private const ulong Low32 = 0x4000_0000;

    /// <summary>Why <paramref name="path"/> cannot be read as a trace, or null when it is a file.</summary>
    /// <param name="path">The trace argument.</param>
    /// <returns>The message ("PATH: no such file", "PATH: is a directory …"), or null.</returns>
    public static string? CheckFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path.Length == 0)
        {
            return "the TRACE argument is empty: give the path of a trace file";
        }
        if (Directory.Exists(path))
        {
            return $"{path}: is a directory, not a trace file (give the trace inside it: trace.txt, .gz or .xz)";
        }
        return File.Exists(path) ? null : $"{path}: no such file";
    }

    /// <summary>Reads the start of the trace until an event shows the traced kernel's word size, and says
    /// why the trace cannot be replayed on <paramref name="preset"/>, or null when it can (or nothing decided).</summary>
    /// <param name="path">The trace.</param>
    /// <param name="preset">The preset of the machine it would be replayed on.</param>
    /// <returns>The message naming the line and the address, or null.</returns>
    /// <exception cref="TraceFormatException">The trace cannot be read (corrupt compressed data, not a capture).</exception>
    public static string? CheckArch(string path, Preset preset)
    {
        using var reader = TraceReader.Open(path, new TraceReaderOptions { SkipBad = true });
        while (reader.Lines < ArchProbeLines && reader.TryRead(out var e))
        {
            ulong address = FirstAddress(e);
            if (address < Low32)
            {
                continue;
            }
            bool bits64 = address > uint.MaxValue;
            bool preset64 = preset == Preset.X64;
            if (bits64 == preset64)
            {
                return null;
            }
            string shown = address.ToString("x", CultureInfo.InvariantCulture);
            return bits64
                ? $"{path}: line {e.LineNumber}: {shown} is a 64-bit kernel address: the trace was recorded on a 64-bit kernel "
                    + $"and cannot be replayed on --preset {MachineArgs.NameOf(preset)} (use --preset x86_64)"
                : $"{path}: line {e.LineNumber}: {shown} is a 32-bit kernel address: the trace was recorded on a 32-bit kernel "
                    + "and cannot be replayed on --preset x86_64 (use --preset x86_32_pae or x86_32)";
        }
        return null;
    }

    /// <summary>The message for an --until marker that no marker of the trace contains.</summary>
    /// <param name="path">The trace.</param>
    /// <param name="until">The --until text.</param>
    /// <param name="reader">The reader that went through the whole trace.</param>
    /// <returns>"PATH: no trace marker contains 'X' (--until); the trace's markers: …".</returns>
    public static string NoSuchMarker(string path, string until, TraceReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        string seen = reader.Markers == 0
            ? "the trace has no markers (tracing_mark_write lines)"
            : $"the trace's markers: {string.Join(", ", reader.MarkerTexts.Select(m => $"'{m}'"))}"
                + (reader.MarkerTexts.Count == TraceReader.MaxMarkerTexts ? ", …" : "");
        return $"{path}: no trace marker contains '{until}' (--until); {seen}";
    }

    /// <summary>The kernel address an event carries (object, struct page or chunk), 0 when none. A per-CPU
    /// pointer is an offset, small on x86-64: the chunk's base address is the kernel address there.</summary>
    private static ulong FirstAddress(in TraceEvent e) => e.Kind switch
    {
        TraceEventKind.Marker or TraceEventKind.PercpuAllocPercpuFail => 0,
        TraceEventKind.PercpuAllocPercpu or TraceEventKind.PercpuFreePercpu
            or TraceEventKind.PercpuCreateChunk or TraceEventKind.PercpuDestroyChunk => e.BaseAddr,
        _ when e.Ptr != 0 => e.Ptr,
        _ => e.Page,
    };
}
