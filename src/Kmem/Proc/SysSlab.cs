// /sys/kernel/slab (mm/slub.c, 6.1, SLUB with CONFIG_SLUB_DEBUG, CONFIG_SLUB_CPU_PARTIAL,
// CONFIG_ZONE_DMA, CONFIG_HARDENED_USERCOPY, CONFIG_FAILSLAB, and CONFIG_NUMA on the x86-64
// preset as Debian builds it): one directory per cache, its attributes in the kernel's text
// (shrink, min_partial and cpu_partial writable as there), and the links that merged caches get. Directory names follow sysfs_slab_add:
// a cache that can never be merged sits under its own name; one that could be sits under
// its unique id (create_unique_id: ':', the flag letters d D a F A and a '-', the size in
// seven digits), with a link from each of its names (the creator's and every alias) to it.
// Duplicate names (the kernel refuses to create the second cache) go to the oldest
// directory; a link never hides a directory, and a newer link replaces an older one as
// sysfs_slab_alias does. SLAB and SLOB have no /sys/kernel/slab in Linux: every call but
// Available throws for them.
// The debugfs files of SLAB_STORE_USER caches (/sys/kernel/debug/slab/<cache>/alloc_traces and
// free_traces, where 6.1 moved sysfs' alloc_calls and free_calls) are here too: the tracks of
// the objects in use grouped by caller and stack (add_location), most frequent first.
// Every read builds its text afresh from the live state (Slub.NodeFigures, CpuFigures),
// taking one cpu lock or one node's list_lock at a time; nothing is cached. Writes store as
// the kernel's _store functions do: plain stores the slab paths read racily, then flush_all.
using System.Globalization;
using System.Text;
using Kmem.Physical;
using Kmem.Slab;

namespace Kmem;

/// <summary>An entry of /sys/kernel/slab: a cache's directory, or a link (a merged cache's name) to one.</summary>
/// <param name="Name">The entry's name.</param>
/// <param name="LinkTarget">For a link, the directory it points to; null for a directory.</param>
public readonly record struct SysSlabEntry(string Name, string? LinkTarget)
{
    /// <summary>Whether the entry is a link (a name of a mergeable cache, or an alias of one).</summary>
    public bool IsLink => LinkTarget is not null;
}

/// <summary>
/// The per-cache view of Linux's /sys/kernel/slab for one machine (<see cref="Machine.SysSlab"/>): the
/// attributes of every SLUB cache in the kernel's text format, and the links of merged caches.
/// </summary>
/// <remarks>Every method may be called from any thread while the machine allocates and frees; each value is
/// read as the kernel reads it (a CPU at a time, a node at a time). Only a machine booted with SLUB has this
/// view (<see cref="Available"/>), as in Linux.</remarks>
public sealed partial class SysSlab
{
    /// <summary>The directory this view stands for.</summary>
    public const string Root = "/sys/kernel/slab";

    /// <summary>The machine's slab allocator (null when the build lacks the booted one).</summary>
    private readonly SlabBackend? _slab;
    private readonly MachineLifetime _life;
    /// <summary>The allocator the machine was booted with.</summary>
    private readonly SlabAllocator _booted;
    private readonly int _nrCpus;
    private readonly int _nrNodes;
    private readonly bool _numa;
    private readonly bool _zoneDma;

    internal SysSlab(SlabBackend? slab, SlabAllocator booted, Arch arch, int nrCpus, int nrNodes, MachineLifetime life)
    {
        _life = life;
        _slab = slab;
        _booted = booted;
        _nrCpus = nrCpus;
        _nrNodes = nrNodes;
        // CONFIG_NUMA in Debian's x86-64 kernel, not in its i386 ones; CONFIG_ZONE_DMA where the preset has the zone.
        _numa = arch.Preset == Preset.X64;
        _zoneDma = arch.HasZone(ZoneType.Dma);
    }

    /// <summary>Whether the machine has /sys/kernel/slab: only with SLUB (SLAB and SLOB have none in Linux).</summary>
    public bool Available { get { _life.ThrowIfDisposed(); return _slab is Slub; } }

    /// <summary>Every entry of /sys/kernel/slab, by name in ordinal order (as <c>ls</c> in the C locale).</summary>
    /// <exception cref="InvalidOperationException">The machine was not booted with SLUB.</exception>
    public IReadOnlyList<SysSlabEntry> List()
    {
        using var _ = _life.Enter();
        var (dirs, links) = Snapshot(SlubOrThrow());
        return [.. dirs.Keys.Select(d => new SysSlabEntry(d, null)).Concat(links.Select(l => new SysSlabEntry(l.Key, l.Value)))
            .OrderBy(e => e.Name, StringComparer.Ordinal)];
    }

    /// <summary>The listing as text, one entry a line: a directory by its name, a link as
    /// <c>name -> target</c> (the shape of <c>ls -l</c>'s names).</summary>
    /// <exception cref="InvalidOperationException">The machine was not booted with SLUB.</exception>
    public string ListText()
    {
        using var _ = _life.Enter();
        var sb = new StringBuilder();
        foreach (var e in List())
        {
            sb.Append(e.Name);
            if (e.LinkTarget is { } target)
            {
                sb.Append(" -> ").Append(target);
            }
            sb.Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>The directory a name stands for: itself for a directory, the target for a link.</summary>
    /// <param name="name">A directory or link name ("kmalloc-64", ":0000064", or a merged cache's name).</param>
    /// <exception cref="InvalidOperationException">The machine was not booted with SLUB.</exception>
    /// <exception cref="DirectoryNotFoundException">No such entry.</exception>
    public string Resolve(string name) { using var _ = _life.Enter(); return Find(SlubOrThrow(), name).Dir; }

    /// <summary>The attributes of a cache's directory, in ordinal order.</summary>
    /// <param name="cache">A directory or link name.</param>
    /// <exception cref="InvalidOperationException">The machine was not booted with SLUB.</exception>
    /// <exception cref="DirectoryNotFoundException">No such entry.</exception>
    public IReadOnlyList<string> Attributes(string cache)
    {
        using var _ = _life.Enter();
        Find(SlubOrThrow(), cache);
        return AttributeNames;
    }

    /// <summary>The attribute names every directory has, in ordinal order.</summary>
    private IReadOnlyList<string> AttributeNames => field ??= [.. Shows.Keys.Order(StringComparer.Ordinal)];

    /// <summary>Reads one attribute, exactly as the kernel prints it (a value and a newline; empty for
    /// <c>ctor</c> without a constructor and for <c>shrink</c>).</summary>
    /// <param name="cache">A directory or link name.</param>
    /// <param name="attribute">The attribute ("object_size", "partial", "cpu_slabs", …).</param>
    /// <exception cref="InvalidOperationException">The machine was not booted with SLUB.</exception>
    /// <exception cref="DirectoryNotFoundException">No such cache.</exception>
    /// <exception cref="FileNotFoundException">No such attribute; the message lists the ones there are.</exception>
    public string Read(string cache, string attribute)
    {
        using var _ = _life.Enter();
        var slub = SlubOrThrow();
        var (dir, s) = Find(slub, cache);
        return Shows.TryGetValue(attribute ?? "", out var show)
            ? show(this, slub, s)
            : throw new FileNotFoundException($"{Root}/{dir}/{attribute}: no such attribute; a cache has {string.Join(", ", AttributeNames)}", attribute);
    }

    /// <summary>A whole directory as <c>grep . *</c> prints it inside it: <c>attribute:value</c> for every
    /// attribute with a value, in ordinal order.</summary>
    /// <param name="cache">A directory or link name.</param>
    /// <exception cref="InvalidOperationException">The machine was not booted with SLUB.</exception>
    /// <exception cref="DirectoryNotFoundException">No such cache.</exception>
    public string Dump(string cache)
    {
        using var _ = _life.Enter();
        var slub = SlubOrThrow();
        var (_, s) = Find(slub, cache);
        var sb = new StringBuilder();
        foreach (string name in AttributeNames)
        {
            string text = Shows[name](this, slub, s);
            if (text.Length > 0)
            {
                sb.Append(name).Append(':').Append(text);
            }
        }
        return sb.ToString();
    }

    /// <summary>Writes a writable attribute, as its _store function does: <c>shrink</c> takes "1" and runs
    /// kmem_cache_shrink; <c>validate</c> takes "1" and runs validate_slab_cache (its reports go to the log); <c>min_partial</c> takes a count of empty slabs a node keeps; <c>cpu_partial</c> takes the
    /// objects a CPU may keep in partial slabs (only 0 for a debug cache) and flushes every CPU. Every other
    /// attribute is read-only.</summary>
    /// <param name="cache">A directory or link name.</param>
    /// <param name="attribute">The attribute.</param>
    /// <param name="value">What is written (a trailing newline is allowed, as from <c>echo</c>).</param>
    /// <exception cref="InvalidOperationException">The machine was not booted with SLUB.</exception>
    /// <exception cref="DirectoryNotFoundException">No such cache.</exception>
    /// <exception cref="FileNotFoundException">No such attribute.</exception>
    /// <exception cref="UnauthorizedAccessException">The attribute is read-only.</exception>
    /// <exception cref="ArgumentException">A value the attribute refuses (-EINVAL: shrink without a leading '1', a
    /// number that does not parse or does not fit, cpu_partial above 0 for a debug cache).</exception>
    public void Write(string cache, string attribute, string value)
    {
        using var _ = _life.Enter();
        ArgumentNullException.ThrowIfNull(value);
        var slub = SlubOrThrow();
        var (dir, s) = Find(slub, cache);
        if (!Shows.ContainsKey(attribute ?? ""))
        {
            throw new FileNotFoundException($"{Root}/{dir}/{attribute}: no such attribute", attribute);
        }
        string file = $"{Root}/{dir}/{attribute}";
        switch (attribute)
        {
            case "shrink":
                if (!value.StartsWith('1'))
                {
                    throw new ArgumentException($"{file}: write 1 to shrink the cache (-EINVAL for \"{value.TrimEnd('\n')}\")", nameof(value));
                }
                slub.Shrink(s.ThrowIfDestroyed());
                break;
            case "validate":
                // validate_store: a leading '1' runs validate_slab_cache; the errors go to the log.
                if (!value.StartsWith('1'))
                {
                    throw new ArgumentException($"{file}: write 1 to validate the cache (-EINVAL for \"{value.TrimEnd('\n')}\")", nameof(value));
                }
                slub.Sysfs.ValidateSlabCache(s.ThrowIfDestroyed());
                break;
            case "min_partial":
                s.MinPartial = (int)ParseCount(file, value, int.MaxValue);
                break;
            case "cpu_partial":
                uint objects = (uint)ParseCount(file, value, uint.MaxValue);
                if (objects != 0 && s.IsDebug)
                {
                    throw new ArgumentException($"{file}: a debug cache keeps no cpu partial slabs, only 0 is accepted (-EINVAL)", nameof(value));
                }
                slub.Sysfs.SetCpuPartial(s, objects);
                break;
            default:
                throw new UnauthorizedAccessException($"{file} is read-only");
        }
    }

    /// <summary>kstrtoul / kstrtouint: decimal digits with an optional '+' and one trailing newline.</summary>
    private static ulong ParseCount(string file, string value, ulong max)
    {
        string v = value.EndsWith('\n') ? value[..^1] : value;
        if (v.StartsWith('+'))
        {
            v = v[1..];
        }
        return v.Length > 0 && v.All(char.IsAsciiDigit) && ulong.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out ulong n) && n <= max
            ? n
            : throw new ArgumentException($"{file}: \"{value.TrimEnd('\n')}\" is not a count from 0 to {max} (-EINVAL or -ERANGE)", nameof(value));
    }

    /// <summary>
    /// Reads by path: <c>/sys/kernel/slab</c> gives <see cref="ListText"/>, <c>/sys/kernel/slab/CACHE</c> gives
    /// <see cref="Dump"/>, <c>/sys/kernel/slab/CACHE/ATTRIBUTE</c> gives <see cref="Read"/>, and
    /// <c>/sys/kernel/debug/slab/CACHE/alloc_traces</c> (or <c>free_traces</c>) gives <see cref="AllocTraces"/>
    /// (<see cref="FreeTraces"/>). The leading slash may be left out.
    /// </summary>
    /// <exception cref="InvalidOperationException">The machine was not booted with SLUB.</exception>
    /// <exception cref="FileNotFoundException">The path is not under /sys/kernel/slab, or names no attribute.</exception>
    /// <exception cref="DirectoryNotFoundException">No such cache.</exception>
    public string ReadPath(string path)
    {
        using var _ = _life.Enter();
        string p = "/" + (path ?? "").Trim().Trim('/');
        if (p == Root)
        {
            return ListText();
        }
        if (p.StartsWith(DebugRoot + "/", StringComparison.Ordinal))
        {
            string[] parts = p[(DebugRoot.Length + 1)..].Split('/');
            return parts is [var c, "alloc_traces"] ? AllocTraces(c)
                : parts is [var d, "free_traces"] ? FreeTraces(d)
                : throw new FileNotFoundException($"{path}: a cache's debugfs directory has alloc_traces and free_traces", path);
        }
        if (!p.StartsWith(Root + "/", StringComparison.Ordinal))
        {
            throw new FileNotFoundException($"{path}: not under {Root}", path);
        }
        string rest = p[(Root.Length + 1)..];
        int slash = rest.IndexOf('/');
        return slash < 0 ? Dump(rest) : Read(rest[..slash], rest[(slash + 1)..]);
    }

    /// <summary>Whether a path lies under /sys/kernel/slab or /sys/kernel/debug/slab (see <see cref="ReadPath"/>),
    /// whether or not the file exists.</summary>
    public static bool IsSysSlabPath(string? path)
    {
        string p = "/" + (path ?? "").Trim().Trim('/');
        return p == Root || p.StartsWith(Root + "/", StringComparison.Ordinal) || p.StartsWith(DebugRoot + "/", StringComparison.Ordinal);
    }

    // ───────────────────────────── directories and links ─────────────────────────────

    private Slub SlubOrThrow() => _slab as Slub
        ?? throw new InvalidOperationException(_slab is null
            ? "this build has no slab layer for this machine's slab allocator"
            : $"{Root} is SLUB's (CONFIG_SLUB); this machine was booted with {_booted}, which has none in Linux");

    /// <summary>sysfs_slab_add's directory name: the cache's own for an unmergeable cache, else its unique id.</summary>
    internal static string DirectoryName(Slub slub, KmemCache s) => slub.Sysfs.SysfsUnmergeable(s) ? s.Name : UniqueId(s);

    /// <summary>create_unique_id: ':' then d (DMA), D (DMA32), a (reclaimable), F (consistency checks), A
    /// (accounted), a '-' when any letter was written, and the size in seven digits.</summary>
    internal static string UniqueId(KmemCache s)
    {
        var sb = new StringBuilder(":");
        SlabFlags f = s.Flags;
        if ((f & SlabFlags.CacheDma) != 0)
        {
            sb.Append('d');
        }
        if ((f & SlabFlags.CacheDma32) != 0)
        {
            sb.Append('D');
        }
        if ((f & SlabFlags.ReclaimAccount) != 0)
        {
            sb.Append('a');
        }
        if ((f & SlabFlags.ConsistencyChecks) != 0)
        {
            sb.Append('F');
        }
        if ((f & SlabFlags.Account) != 0)
        {
            sb.Append('A');
        }
        if (sb.Length > 1)
        {
            sb.Append('-');
        }
        return sb.Append(s.Size.ToString("D7", CultureInfo.InvariantCulture)).ToString();
    }

    /// <summary>The directories (name → cache) and links (name → directory) of the live caches.</summary>
    private static (Dictionary<string, KmemCache> Dirs, Dictionary<string, string> Links) Snapshot(Slub slub)
    {
        var caches = slub.Caches;
        var dirs = new Dictionary<string, KmemCache>(StringComparer.Ordinal);
        var owners = new List<(KmemCache Cache, string Dir)>();
        foreach (var s in caches)
        {
            string dir = DirectoryName(slub, s);
            if (dirs.TryAdd(dir, s))
            {
                owners.Add((s, dir));
            }
        }
        var links = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (s, dir) in owners)
        {
            if (!slub.Sysfs.SysfsUnmergeable(s))
            {
                foreach (string name in s.Aliases.Prepend(s.Name))
                {
                    if (!dirs.ContainsKey(name))
                    {
                        links[name] = dir;
                    }
                }
            }
        }
        return (dirs, links);
    }

    private static (string Dir, KmemCache Cache) Find(Slub slub, string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var (dirs, links) = Snapshot(slub);
        string dir = links.TryGetValue(name, out var target) ? target : name;
        return dirs.TryGetValue(dir, out var s) ? (dir, s)
            : throw new DirectoryNotFoundException($"{Root}/{name}: no such cache");
    }

    // ───────────────────────────── the attributes (slab_attrs[]) ─────────────────────────────

    private delegate string Show(SysSlab view, Slub slub, KmemCache s);

    /// <summary>show_slab_objects' selectors (enum slab_stat_type as SO_* bits).</summary>
    [Flags]
    private enum So
    {
        All = 1,
        Partial = 2,
        Cpu = 4,
        Objects = 8,
        Total = 16,
    }

    private Dictionary<string, Show> Shows => field ??= BuildShows();

    private Dictionary<string, Show> BuildShows()
    {
        var d = new Dictionary<string, Show>(StringComparer.Ordinal)
        {
            ["slab_size"] = (_, _, s) => Line(s.Size),
            ["object_size"] = (_, _, s) => Line(s.ObjectSize),
            ["objs_per_slab"] = (_, _, s) => Line(s.ObjectsPerSlab),
            ["order"] = (_, _, s) => Line(s.Order),
            ["min_partial"] = (_, _, s) => Line(s.MinPartial),
            // With CONFIG_SLUB_CPU_PARTIAL: s->cpu_partial, 0 for debug caches.
            ["cpu_partial"] = (_, _, s) => Line(s.CpuPartial),
            ["objects"] = (v, slub, s) => v.SlabObjects(slub, s, So.All | So.Objects),
            ["objects_partial"] = (v, slub, s) => v.SlabObjects(slub, s, So.Partial | So.Objects),
            ["partial"] = (v, slub, s) => v.SlabObjects(slub, s, So.Partial),
            ["cpu_slabs"] = (v, slub, s) => v.SlabObjects(slub, s, So.Cpu),
            ["ctor"] = (_, _, s) => s.Ctor is { } ctor ? ctor.Method.Name + "\n" : "",
            ["aliases"] = (_, _, s) => Line(s.RefCount < 0 ? 0 : s.RefCount - 1),
            ["align"] = (_, _, s) => Line(s.Align),
            ["hwcache_align"] = (_, _, s) => Flag(s, SlabFlags.HwcacheAlign),
            ["reclaim_account"] = (_, _, s) => Flag(s, SlabFlags.ReclaimAccount),
            ["destroy_by_rcu"] = (_, _, s) => Flag(s, SlabFlags.TypesafeByRcu),
            // A write-only trigger: reading it gives nothing, as shrink_show does.
            ["shrink"] = (_, _, _) => "",
            // validate_show gives nothing either; a write of 1 validates (CONFIG_SLUB_DEBUG).
            ["validate"] = (_, _, _) => "",
            ["slabs_cpu_partial"] = (_, slub, s) => SlabsCpuPartial(slub, s),
            ["total_objects"] = (v, slub, s) => v.SlabObjects(slub, s, So.All | So.Total),
            ["slabs"] = (v, slub, s) => v.SlabObjects(slub, s, So.All),
            ["sanity_checks"] = (_, _, s) => Flag(s, SlabFlags.ConsistencyChecks),
            ["trace"] = (_, _, s) => Flag(s, SlabFlags.Trace),
            ["red_zone"] = (_, _, s) => Flag(s, SlabFlags.RedZone),
            ["poison"] = (_, _, s) => Flag(s, SlabFlags.Poison),
            ["store_user"] = (_, _, s) => Flag(s, SlabFlags.StoreUser),
            ["failslab"] = (_, _, s) => Flag(s, SlabFlags.Failslab),
            // create_kmalloc_cache gives the whole object as the usercopy region; kmem_cache_create none.
            ["usersize"] = (_, _, s) => Line(s.IsKmalloc ? s.ObjectSize : 0),
        };
        if (_zoneDma)
        {
            d["cache_dma"] = (_, _, s) => Flag(s, SlabFlags.CacheDma);
        }
        return d;
    }

    private static string Line(long value) => value.ToString(CultureInfo.InvariantCulture) + "\n";

    private static string Flag(KmemCache s, SlabFlags flag) => (s.Flags & flag) != 0 ? "1\n" : "0\n";

    /// <summary>show_slab_objects: the total, then (CONFIG_NUMA) " N&lt;node&gt;=&lt;count&gt;" for every node with a
    /// count other than 0. SO_CPU counts a CPU's cpu slab as 1 on its node and its cpu partial slabs on the
    /// node of the first of them; SO_ALL reads nr_slabs / total_objects / total_objects − free partial objects;
    /// SO_PARTIAL reads nr_partial / the partial slabs' objects / their objects in use.</summary>
    private string SlabObjects(Slub slub, KmemCache s, So flags)
    {
        var nodes = new long[_nrNodes];
        long total = 0;
        if ((flags & So.Cpu) != 0)
        {
            foreach (var c in slub.Sysfs.CpuFigures(s))
            {
                if (c.SlabNode < 0)
                {
                    // The kernel skips the cpu partial list too when the CPU has no slab.
                    continue;
                }
                total++;
                nodes[c.SlabNode]++;
                if (c.PartialNode >= 0)
                {
                    total += c.PartialSlabs;
                    nodes[c.PartialNode] += c.PartialSlabs;
                }
            }
        }
        if ((flags & (So.All | So.Partial)) != 0)
        {
            var figures = slub.Sysfs.NodeFigures(s);
            for (int nid = 0; nid < figures.Length; nid++)
            {
                var n = figures[nid];
                long x = (flags & So.All) != 0
                    ? (flags & So.Total) != 0 ? n.TotalObjects : (flags & So.Objects) != 0 ? n.TotalObjects - n.PartialFree : n.NrSlabs
                    : (flags & So.Total) != 0 ? n.PartialTotal : (flags & So.Objects) != 0 ? n.PartialInuse : n.NrPartial;
                total += x;
                nodes[nid] += x;
            }
        }
        var sb = new StringBuilder().Append(total.ToString(CultureInfo.InvariantCulture));
        if (_numa)
        {
            for (int nid = 0; nid < nodes.Length; nid++)
            {
                if (nodes[nid] != 0)
                {
                    sb.Append(" N").Append(nid.ToString(CultureInfo.InvariantCulture)).Append('=').Append(nodes[nid].ToString(CultureInfo.InvariantCulture));
                }
            }
        }
        return sb.Append('\n').ToString();
    }

    /// <summary>slabs_cpu_partial_show: "objects(slabs)" over every CPU, then " C&lt;cpu&gt;=objects(slabs)" for each CPU
    /// with cpu partial slabs, objects being the estimate slabs × objects per slab / 2.</summary>
    private static string SlabsCpuPartial(Slub slub, KmemCache s)
    {
        var cpus = slub.Sysfs.CpuFigures(s);
        long slabs = cpus.Sum(c => (long)c.PartialSlabs);
        var sb = new StringBuilder().Append(CultureInfo.InvariantCulture, $"{slabs * s.ObjectsPerSlab / 2}({slabs})");
        for (int cpu = 0; cpu < cpus.Length; cpu++)
        {
            if (cpus[cpu].PartialNode >= 0)
            {
                int n = cpus[cpu].PartialSlabs;
                sb.Append(CultureInfo.InvariantCulture, $" C{cpu}={n * s.ObjectsPerSlab / 2}({n})");
            }
        }
        return sb.Append('\n').ToString();
    }
}
