// --map FILE.png and --map-every N of kmem replay: the options' checks (made before any
// event is replayed, so a typo costs nothing), the names of the pictures and their
// writing. The pictures hang off the replayer's snapshot hook (TraceReplayOptions.Snapshot),
// which calls between two events, so the same trace gives the same pictures every time.
// FILE-000001.png is the machine after N events, FILE-000002.png after 2N, …; FILE.png
// is the machine where the replay ended (the trace's end or the --until marker). A replay
// under memory pressure adds a strip under the title (ReplayPressure.MapStrip): free pages
// against the watermarks, the phase and its reclaim, compaction and OOM marks.
// One instance per run, used on the replaying thread only.
using System.Globalization;

namespace Kmem.Cli;

/// <summary>The memory-map pictures of one replay.</summary>
public sealed class ReplayMaps
{
    private readonly string _stem;
    private readonly List<string> _written = [];
    private int _next = 1;

    private ReplayMaps(string file, long every)
    {
        FinalFile = file;
        Every = every;
        _stem = file[..^".png".Length];
    }

    /// <summary>The final picture's file, as given to --map.</summary>
    public string FinalFile { get; }

    /// <summary>Events between two numbered pictures; 0 when only the final picture is written.</summary>
    public long Every { get; }

    /// <summary>The pictures written so far, in order (the numbered ones, then the final one).</summary>
    public IReadOnlyList<string> Written => _written;

    /// <summary>Checks --map and --map-every; null when neither was given.</summary>
    /// <param name="map">--map FILE.png, or null.</param>
    /// <param name="every">--map-every N, or null.</param>
    /// <exception cref="UsageException">--map-every without --map, N below 1, a name not ending in .png, a folder
    /// that does not exist, a folder given as the file, or a file or folder that cannot be written.</exception>
    public static ReplayMaps? Create(string? map, long? every)
    {
        if (map is null)
        {
            return every is null ? null : throw new UsageException("--map-every needs --map FILE.png (the pictures are named after it)");
        }
        if (every is long n && n < 1)
        {
            throw new UsageException($"--map-every must be 1 or more, not {n}");
        }
        if (!map.EndsWith(".png", StringComparison.OrdinalIgnoreCase) || map.Length == ".png".Length)
        {
            throw new UsageException($"--map {map}: the picture is a PNG file, so its name must end in .png");
        }
        string full = Path.GetFullPath(map);
        string dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir))
        {
            throw new UsageException($"--map {map}: the folder {dir} does not exist");
        }
        if (Directory.Exists(full))
        {
            throw new UsageException($"--map {map}: is a folder, not a file name");
        }
        CheckWritable(map, full, dir);
        return new ReplayMaps(map, every ?? 0);
    }

    /// <summary>The name of the k-th numbered picture (1-based): FILE-00000k.png.</summary>
    public string NumberedName(int k) => _stem + "-" + k.ToString("D6", CultureInfo.InvariantCulture) + ".png";

    /// <summary>The replay options' snapshot hook: writes the next numbered picture.</summary>
    public void Snapshot(TraceReplayer replayer)
    {
        ArgumentNullException.ThrowIfNull(replayer);
        string name = NumberedName(_next++);
        MemoryMap.Render(replayer.Machine, name, new MemoryMapOptions
        {
            Caption = string.Create(CultureInfo.InvariantCulture, $"after event {replayer.Events:N0}"),
            Pressure = replayer.PressureNow is { } p ? ReplayPressure.MapStrip(p) : null,
        });
        _written.Add(name);
    }

    /// <summary>Writes the final picture: the machine where the replay ended.</summary>
    public void WriteFinal(Machine m, TraceReplayResult r)
    {
        ArgumentNullException.ThrowIfNull(m);
        ArgumentNullException.ThrowIfNull(r);
        string caption = r.StopMarker is null
            ? string.Create(CultureInfo.InvariantCulture, $"end, {r.Events:N0} events")
            : string.Create(CultureInfo.InvariantCulture, $"at the marker of line {r.StopLine:N0}, {r.Events:N0} events");
        MemoryMap.Render(m, FinalFile, new MemoryMapOptions { Caption = caption, Pressure = ReplayPressure.MapStrip(r.Pressure, m) });
        _written.Add(FinalFile);
    }

    // Permission checks beat guessing from mode bits (ACLs, read-only mounts, root): try it.
    private static void CheckWritable(string map, string full, string dir)
    {
        try
        {
            if (File.Exists(full))
            {
                using var existing = new FileStream(full, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1);
            }
            string probe = Path.Combine(dir, $".kmem-map-{Environment.ProcessId}-{Guid.NewGuid():N}.tmp");
            using var _ = new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"--map {map}: cannot write there: {e.Message}");
        }
    }
}
