// The memory a recorded kernel still held reserved when it derived its watermarks:
// init_per_zone_wmark_min (a postcore initcall) computes min_free_kbytes, the watermarks,
// lowmem_reserve and, through zone_pcp_update, pcp high from the managed pages of that
// moment, and khugepaged's set_recommended_min_free_kbytes (a subsys initcall) from the
// same. The initrd (free_initrd_mem) and the kernel's init sections (free_initmem,
// free_kernel_image_pages) are released later through free_reserved_area, which adds
// them to the managed count (adjust_managed_page_count) without deriving anything again.
// A trace recorded from boot shows each such frame as an mm_page_free before any other
// page event names it: no allocation, refill or free gave it out. Those frames, read up
// to the first marker (userspace runs after free_initmem), are left reserved at boot
// (MachineOptions.ManagedPages less them, zone by zone) and released when the replay
// reaches their free (TraceReplayOptions.ReservedFrames), so the machine derives its
// watermarks and pcp high from what the kernel had then and ends with the snapshot's
// managed count. A trace recorded later shows none of those frees; its capture's boot log
// (meta/dmesg.txt beside the trace) prints each: "Freeing initrd memory: 1516K", "Freeing
// unused kernel image (initmem) memory: 2824K" and so on. All but the SMP alternatives (freed
// in start_kernel, before the initcalls) came after the watermarks were derived, so their
// pages are the machine's init memory (MachineOptions.InitMemoryPages), in the zone of the
// kernel image (x86 loads it at 16 MiB, CONFIG_PHYSICAL_START): reserved while the boot derives
// the watermarks, released before the replay. Stateless; the result is immutable.
using System.Globalization;
using System.Text.RegularExpressions;

namespace Kmem;

/// <summary>A boot shaped like a recorded kernel's at the time it derived its watermarks: the managed pages
/// per zone then, and the reserved frames the trace releases later.</summary>
public sealed class TraceBootReserve
{
    private TraceBootReserve(IReadOnlyDictionary<string, long> managedAtBoot, IReadOnlySet<ulong> frames,
        IReadOnlyDictionary<string, long>? initMemory, long ringBufferBytes)
    {
        ManagedAtBoot = managedAtBoot;
        Frames = frames;
        InitMemoryPages = initMemory;
        RingBufferBytes = ringBufferBytes;
    }

    /// <summary>The per-CPU size of the recorded kernel's trace ring buffer, from the capture's kernel command line
    /// (cmdline.txt beside the trace: trace_buf_size=, or the kernel's default when trace_event= starts tracing at
    /// boot without it); 0 without a command line or with no tracing at boot. For
    /// <see cref="TraceReplayOptions.RingBufferBytes"/>.</summary>
    public long RingBufferBytes { get; }

    /// <summary>Managed pages per zone (by zone name) for <see cref="MachineOptions.ManagedPages"/>: for a trace from
    /// boot, those when the kernel derived its watermarks, the snapshot's less the frames of <see cref="Frames"/> in
    /// that zone; for a trace recorded later, the snapshot's, of which <see cref="InitMemoryPages"/> came after.</summary>
    public IReadOnlyDictionary<string, long> ManagedAtBoot { get; }

    /// <summary>The frames free_reserved_area released during the trace (its first event on each is a free).
    /// For <see cref="TraceReplayOptions.ReservedFrames"/>.</summary>
    public IReadOnlySet<ulong> Frames { get; }

    /// <summary>For a trace recorded after boot, with the capture's boot log: the pages per zone the kernel released
    /// from its reservations after deriving its watermarks and before tracing began (the initrd, the init sections),
    /// which <see cref="ManagedAtBoot"/> counts. For <see cref="MachineOptions.InitMemoryPages"/>; null otherwise.</summary>
    public IReadOnlyDictionary<string, long>? InitMemoryPages { get; }

    /// <summary>Reads the zoneinfo.txt snapshot beside <paramref name="tracePath"/> and the trace up to its first
    /// marker. Null without a snapshot; the snapshot's managed pages and no frames when the trace was not
    /// recorded from boot (its first event after uptime 0), since a frame could then have been allocated
    /// before tracing began. A trace with a malformed line gives the snapshot's managed pages and no frames.</summary>
    /// <exception cref="FormatException">zoneinfo.txt is not in the kernel's format.</exception>
    public static TraceBootReserve? Read(string tracePath)
    {
        ArgumentNullException.ThrowIfNull(tracePath);
        string path = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tracePath))!, "zoneinfo.txt");
        if (!File.Exists(path))
        {
            return null;
        }
        string text = File.ReadAllText(path);
        var managed = ZoneinfoSnapshot.ManagedPages(text, path);
        var spans = Spans(text);
        HashSet<ulong> frames;
        bool fromBoot;
        try
        {
            using var reader = TraceReader.Open(tracePath);
            frames = FirstFreed(reader, out fromBoot);
        }
        catch (TraceFormatException)
        {
            (frames, fromBoot) = ([], true); // the replay itself reports the bad line; the boot keeps the snapshot's counts
        }
        var atBoot = new Dictionary<string, long>(managed, StringComparer.Ordinal);
        foreach (ulong pfn in frames)
        {
            foreach (var (zone, start, spanned) in spans)
            {
                if (pfn >= start && pfn < start + spanned && atBoot.TryGetValue(zone, out long m))
                {
                    atBoot[zone] = m - 1;
                }
            }
        }
        var initMemory = fromBoot ? null : InitMemory(tracePath, spans);
        return new TraceBootReserve(atBoot, frames, initMemory, RingBuffer(tracePath));
    }

    // TRACE_BUF_SIZE_DEFAULT: the ring buffer's size per CPU when the command line names none.
    private const long DefaultRingBufferBytes = 1_441_792;

    // The per-CPU ring buffer size the capture's command line gives (memparse's K, M and G suffixes), when it starts
    // tracing at boot (trace_event=); 0 otherwise or without cmdline.txt.
    private static long RingBuffer(string tracePath)
    {
        string path = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tracePath))!, "cmdline.txt");
        if (!File.Exists(path))
        {
            return 0;
        }
        string[] words = File.ReadAllText(path).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (!words.Any(w => w.StartsWith("trace_event=", StringComparison.Ordinal)))
        {
            return 0;
        }
        string? size = words.LastOrDefault(w => w.StartsWith("trace_buf_size=", StringComparison.Ordinal))?["trace_buf_size=".Length..];
        var m = size is null ? null : s_memparse.Match(size);
        if (m is null || !m.Success)
        {
            return DefaultRingBufferBytes;
        }
        long n = long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
        return m.Groups[2].Value.ToUpperInvariant() switch
        {
            "K" => n << 10,
            "M" => n << 20,
            "G" => n << 30,
            _ => n,
        };
    }

    private static readonly Regex s_memparse = new(@"^(\d+)([KkMmGg]?)$", RegexOptions.CultureInvariant);

    // The pages the boot log says the kernel freed from its reservations after its initcalls, in the zone that holds
    // the kernel image (pfn 0x1000, 16 MiB); null without a boot log or such a line.
    private static Dictionary<string, long>? InitMemory(string tracePath, List<(string Zone, ulong Start, ulong Spanned)> spans)
    {
        string path = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tracePath))!, "meta", "dmesg.txt");
        const ulong KernelImagePfn = 0x1000;
        var zone = spans.FirstOrDefault(s => KernelImagePfn >= s.Start && KernelImagePfn < s.Start + s.Spanned).Zone;
        if (!File.Exists(path) || zone is null)
        {
            return null;
        }
        long kb = 0;
        foreach (string line in File.ReadLines(path))
        {
            var m = s_freeing.Match(line);
            if (m.Success && m.Groups[1].Value != "SMP alternatives")
            {
                kb += long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
            }
        }
        return kb == 0 ? null : new Dictionary<string, long>(StringComparer.Ordinal) { [zone] = kb / (Kmem.Physical.PhysMem.PageSize >> 10) };
    }

    // free_reserved_area's report: "Freeing <what> memory: <n>K".
    private static readonly Regex s_freeing = new(@"\] Freeing (.+) memory: (\d+)K$", RegexOptions.CultureInvariant);

    // The frames whose first page event is a free, up to the first marker; none unless the trace starts at boot
    // (fromBoot: its first event at uptime 0).
    internal static HashSet<ulong> FirstFreed(TraceReader reader, out bool fromBoot)
    {
        var seen = new HashSet<ulong>();
        var first = new HashSet<ulong>();
        bool started = false;
        fromBoot = true;
        while (reader.TryRead(out var e))
        {
            if (!started)
            {
                started = true;
                if (e.Timestamp != 0)
                {
                    fromBoot = false;
                    return first;
                }
            }
            switch (e.Kind)
            {
                case TraceEventKind.Marker:
                    return first;
                case TraceEventKind.MmPageFree or TraceEventKind.MmPageFreeBatched:
                case TraceEventKind.MmPageAlloc or TraceEventKind.MmPageAllocZoneLocked or TraceEventKind.MmPagePcpuDrain:
                    bool free = e.Kind is TraceEventKind.MmPageFree or TraceEventKind.MmPageFreeBatched;
                    if (e.Pfn == 0 && e.Kind == TraceEventKind.MmPageAlloc)
                    {
                        break; // a failed allocation names no frame
                    }
                    for (ulong p = e.Pfn; p < e.Pfn + (1UL << e.Order); p++)
                    {
                        if (seen.Add(p) && free)
                        {
                            first.Add(p);
                        }
                    }
                    break;
            }
        }
        return first;
    }

    // Each zone's start_pfn and spanned pages, by zone name.
    private static List<(string Zone, ulong Start, ulong Spanned)> Spans(string text)
    {
        var spans = new List<(string, ulong, ulong)>();
        string? zone = null;
        ulong spanned = 0;
        foreach (string raw in text.Split('\n'))
        {
            string[] w = raw.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (w.Length == 4 && w[0] == "Node" && w[2] == "zone")
            {
                (zone, spanned) = (w[3], 0);
            }
            else if (w.Length == 2 && zone is not null && ulong.TryParse(w[1], NumberStyles.None, CultureInfo.InvariantCulture, out ulong v))
            {
                if (w[0] == "spanned")
                {
                    spanned = v;
                }
                else if (w[0] == "start_pfn:")
                {
                    spans.Add((zone, v, spanned));
                }
            }
        }
        return spans;
    }
}
