// The host's vm.max_map_count is per process: every machine in the process (tests
// running in parallel included) draws its vmalloc mappings from this one budget,
// kept well under the limit because the runtime, the direct maps and the kmap
// windows need mappings too. Lock-free: one Interlocked counter.
namespace Kmem.Vmalloc;

/// <summary>The process-wide count of host mappings that vmalloc areas hold, against a budget.</summary>
internal static class HostMapBudget
{
    private static int s_used;

    /// <summary>Half of /proc/sys/vm/max_map_count (read once), leaving the other half to the rest of
    /// the process.</summary>
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

    /// <summary>Gives back <paramref name="n"/> charged mappings.</summary>
    public static void Release(int n) => Interlocked.Add(ref s_used, -n);

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
        return max / 2;
    }
}
