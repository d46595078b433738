// The host's vm.max_map_count is per process: every machine in the process (tests
// running in parallel included) draws the VMAs of its vmalloc window from this one
// budget, kept under the limit by a reserve for the runtime, the direct maps and
// the kmap windows. Stale mappings (kept for reuse after a vfree) count too, so a
// machine short of budget asks the others to give theirs back: the registry of
// windows is for that. Lock-free counter; the registry under its own lock, never
// held while a space's lock is taken (a space's lock is only tried from here).
namespace Kmem.Vmalloc;

/// <summary>The process-wide count of host mappings that vmalloc windows hold, against a budget.</summary>
internal static class HostMapBudget
{
    /// <summary>VMAs left to the rest of the process: the runtime, libraries, every machine's direct map,
    /// memmap and kmap slots.</summary>
    public const int Reserve = 16384;
    private static readonly Lock s_lock = new();
    private static readonly List<WeakReference<VmapSpace>> s_spaces = [];
    private static int s_used;

    /// <summary>/proc/sys/vm/max_map_count (read once) less <see cref="Reserve"/>, and at least half of it:
    /// 49,146 with the default 65,530, enough for test_vmalloc's 32,768 one-page areas.</summary>
    public static int Budget { get; } = ReadBudget();

    /// <summary>Mappings charged now, over every machine.</summary>
    public static int Used => Volatile.Read(ref s_used);

    /// <summary>Charges <paramref name="n"/> mappings; false (nothing charged) when the budget would be exceeded.</summary>
    public static bool TryCharge(int n)
    {
        while (true)
        {
            int used = Volatile.Read(ref s_used);
            if (used + n > Budget)
            {
                return false;
            }
            if (Interlocked.CompareExchange(ref s_used, used + n, used) == used)
            {
                return true;
            }
        }
    }

    /// <summary>Charges mappings the host already holds (a change whose upper bound was charged came out larger,
    /// which the merge rules do not allow: a safety net, not a path).</summary>
    public static void ForceCharge(int n) => Interlocked.Add(ref s_used, n);

    /// <summary>Gives back <paramref name="n"/> charged mappings.</summary>
    public static void Release(int n) => Interlocked.Add(ref s_used, -n);

    /// <summary>A space whose window holds mappings: others may ask it for its stale ones.</summary>
    public static void Register(VmapSpace space)
    {
        lock (s_lock)
        {
            s_spaces.RemoveAll(w => !w.TryGetTarget(out _));
            s_spaces.Add(new WeakReference<VmapSpace>(space));
        }
    }

    public static void Unregister(VmapSpace space)
    {
        lock (s_lock)
        {
            s_spaces.RemoveAll(w => !w.TryGetTarget(out var s) || ReferenceEquals(s, space));
        }
    }

    /// <summary>Asks every other space whose lock is free to give its stale mappings back.</summary>
    public static void ReclaimOthers(VmapSpace? except)
    {
        VmapSpace[] spaces;
        lock (s_lock)
        {
            spaces = [.. s_spaces.Select(w => w.TryGetTarget(out var s) ? s : null).OfType<VmapSpace>().Where(s => !ReferenceEquals(s, except))];
        }
        foreach (var space in spaces)
        {
            space.TryFlushStale();
        }
    }

    private static int ReadBudget()
    {
        const int DefaultMaxMapCount = 65530;
        int max = DefaultMaxMapCount;
        try
        {
            if (int.TryParse(File.ReadAllText("/proc/sys/vm/max_map_count").Trim(), out int v) && v > 0)
            {
                max = v;
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return Math.Max(max / 2, max - Reserve);
    }
}
