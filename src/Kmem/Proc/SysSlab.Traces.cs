// /sys/kernel/debug/slab/<cache>/alloc_traces and free_traces (mm/slub.c's debugfs, 6.1, where sysfs'
// alloc_calls and free_calls moved): for a SLAB_STORE_USER cache, the tracks of the objects in use grouped
// by caller and stack (add_location), most frequent first, in slab_debugfs_show's text. Built afresh on
// every read from Slub.TrackSamples, one slab at a time under its node's list_lock; nothing is cached.
using System.Globalization;
using System.Text;
using Kmem.Slab;

namespace Kmem;

public sealed partial class SysSlab
{
    /// <summary>Where the track files live: /sys/kernel/debug/slab/&lt;cache&gt;/.</summary>
    public const string DebugRoot = "/sys/kernel/debug/slab";

    /// <summary>/sys/kernel/debug/slab/&lt;cache&gt;/alloc_traces (6.1's successor of alloc_calls): the alloc tracks of
    /// the cache's objects in use, grouped by caller and stack, most frequent first, in slab_debugfs_show's text
    /// (count, caller, age=min/avg/max, pid=min-max, cpus=, nodes=, then the stack); "No data" when none.</summary>
    /// <param name="cache">The cache's name; only caches with SLAB_STORE_USER (slub_debug U) have the file.</param>
    /// <remarks>Ages are in jiffies at HZ=250 from the machine's boot, pids are managed thread ids, callers and
    /// stack frames are method names. Meant for a quiet cache, as in the kernel.</remarks>
    /// <exception cref="InvalidOperationException">The machine was not booted with SLUB.</exception>
    /// <exception cref="FileNotFoundException">No such cache, or it does not store users.</exception>
    public string AllocTraces(string cache) { using var _ = _life.Enter(); return Traces(cache, free: false); }

    /// <summary>/sys/kernel/debug/slab/&lt;cache&gt;/free_traces: as <see cref="AllocTraces"/> with the free tracks of
    /// the objects in use (their last free before this allocation; "&lt;not-available&gt;" for never freed ones).</summary>
    /// <param name="cache">The cache's name; only caches with SLAB_STORE_USER have the file.</param>
    /// <exception cref="InvalidOperationException">The machine was not booted with SLUB.</exception>
    /// <exception cref="FileNotFoundException">No such cache, or it does not store users.</exception>
    public string FreeTraces(string cache) { using var _ = _life.Enter(); return Traces(cache, free: true); }

    private string Traces(string cache, bool free)
    {
        ArgumentNullException.ThrowIfNull(cache);
        var slub = SlubOrThrow();
        string file = $"{DebugRoot}/{cache}/{(free ? "free_traces" : "alloc_traces")}";
        // debugfs_slab_add names the directory after the cache itself, and only for SLAB_STORE_USER caches.
        var s = slub.Caches.FirstOrDefault(c => c.Name == cache)
            ?? throw new FileNotFoundException($"{file}: no such cache", file);
        if ((s.Flags & SlabFlags.StoreUser) == 0)
        {
            throw new FileNotFoundException($"{file}: {cache} does not store users (boot with slub_debug=U for it)", file);
        }
        var locations = new List<Location>();
        var index = new Dictionary<(uint, uint), Location>();
        foreach (var t in slub.Sysfs.TrackSamples(s, free))
        {
            if (index.TryGetValue((t.Caller, t.Handle), out var l))
            {
                l.Count++;
                if (t.When != 0)
                {
                    l.SumTime += t.Age;
                    l.MinTime = Math.Min(l.MinTime, t.Age);
                    l.MaxTime = Math.Max(l.MaxTime, t.Age);
                    l.MinPid = Math.Min(l.MinPid, t.Pid);
                    l.MaxPid = Math.Max(l.MaxPid, t.Pid);
                    l.Cpus.Add(t.Cpu);
                }
                l.Nodes.Add(t.Node);
            }
            else
            {
                l = new Location(t);
                index.Add((t.Caller, t.Handle), l);
                locations.Add(l);
            }
        }
        // add_location keeps its array ordered by track; sort_r then orders it by count, largest first.
        var sorted = locations.OrderBy(l => l.Caller).ThenBy(l => l.Handle).OrderByDescending(l => l.Count);
        var sb = new StringBuilder();
        foreach (var l in sorted)
        {
            sb.Append(l.Count.ToString(CultureInfo.InvariantCulture).PadLeft(7)).Append(' ')
                .Append(l.Caller == 0 ? "<not-available>" : l.CallerName);
            if (l.SumTime != l.MinTime)
            {
                sb.Append(CultureInfo.InvariantCulture, $" age={l.MinTime}/{l.SumTime / l.Count}/{l.MaxTime}");
            }
            else
            {
                sb.Append(CultureInfo.InvariantCulture, $" age={l.MinTime}");
            }
            if (l.MinPid != l.MaxPid)
            {
                sb.Append(CultureInfo.InvariantCulture, $" pid={l.MinPid}-{l.MaxPid}");
            }
            else
            {
                sb.Append(CultureInfo.InvariantCulture, $" pid={l.MinPid}");
            }
            if (_nrCpus > 1 && l.Cpus.Count > 0)
            {
                sb.Append(" cpus=").Append(BitmapList(l.Cpus));
            }
            if (_nrNodes > 1 && l.Nodes.Count > 0)
            {
                sb.Append(" nodes=").Append(BitmapList(l.Nodes));
            }
            if (l.Handle != 0)
            {
                sb.Append('\n');
                foreach (string frame in l.Stack)
                {
                    sb.Append("        ").Append(frame).Append('\n');
                }
            }
            sb.Append('\n');
        }
        if (locations.Count == 0)
        {
            sb.Append("No data\n");
        }
        return sb.ToString();
    }

    /// <summary>struct location: one caller and stack, with its counts, ages, pids, CPUs and nodes.</summary>
    private sealed class Location(SlubTrackSample t)
    {
        public readonly uint Caller = t.Caller;
        public readonly uint Handle = t.Handle;
        public readonly string CallerName = t.CallerName;
        public readonly string[] Stack = t.Stack;
        public long Count = 1;
        public long SumTime = t.Age, MinTime = t.Age, MaxTime = t.Age;
        public long MinPid = t.Pid, MaxPid = t.Pid;
        public readonly SortedSet<int> Cpus = [t.Cpu];
        public readonly SortedSet<int> Nodes = [t.Node];
    }

    /// <summary>%*pbl: a bitmap as a list of ranges ("0-1,3").</summary>
    private static string BitmapList(SortedSet<int> bits)
    {
        var sb = new StringBuilder();
        int[] b = [.. bits];
        for (int i = 0; i < b.Length;)
        {
            int j = i;
            while (j + 1 < b.Length && b[j + 1] == b[j] + 1)
            {
                j++;
            }
            if (sb.Length > 0)
            {
                sb.Append(',');
            }
            sb.Append(b[i].ToString(CultureInfo.InvariantCulture));
            if (j > i)
            {
                sb.Append('-').Append(b[j].ToString(CultureInfo.InvariantCulture));
            }
            i = j + 1;
        }
        return sb.ToString();
    }
}
