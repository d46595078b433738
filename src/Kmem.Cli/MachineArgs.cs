// The machine options that replay, compare and proc share (--slab, --mem, --cpus,
// --preset), and how their defaults come from a trace: --mem from the meminfo.txt
// beside the trace (MemTotal rounded up to 64 MiB), --cpus from the header's #P:N.
using System.CommandLine;
using System.Globalization;

namespace Kmem.Cli;

/// <summary>The machine options of the subcommands.</summary>
public sealed class MachineArgs
{
    /// <summary>The --preset names, in the order of <see cref="Preset"/>.</summary>
    public static readonly string[] PresetNames = ["x86_64", "x86_32", "x86_32_pae"];

    /// <summary>The --slab names, in the order of <see cref="SlabAllocator"/>.</summary>
    public static readonly string[] SlabNames = ["slub", "slab", "slob"];

    /// <summary>--slab.</summary>
    public Option<string> Slab { get; } = new("--slab") { Description = "slab allocator: slub, slab or slob", DefaultValueFactory = _ => "slub", HelpName = "slub|slab|slob" };
    /// <summary>--mem.</summary>
    public Option<string?> Mem { get; } = new("--mem") { Description = "RAM size with K, M, G, T suffix (default: MemTotal of meminfo.txt beside the trace, rounded up to 64M; else 1G)", HelpName = "SIZE" };
    /// <summary>--cpus.</summary>
    public Option<int?> Cpus { get; } = CliValues.Whole(new Option<int?>("--cpus") { Description = "CPUs (default: the trace header's #P:N; else 2)", HelpName = "N" }, 1);
    /// <summary>--preset.</summary>
    public Option<string> Preset { get; } = new("--preset") { Description = "architecture: x86_64, x86_32 (2-level, highmem) or x86_32_pae", DefaultValueFactory = _ => "x86_64", HelpName = "x86_64|x86_32|x86_32_pae" };
    /// <summary>--seed.</summary>
    public Option<int> Seed { get; } = CliValues.Whole(new Option<int>("--seed") { Description = "seed of the machine (and of the built-in workload)", DefaultValueFactory = _ => 1 });

    /// <summary>--slub-debug: the slub_debug boot parameter.</summary>
    public Option<string?> SlubDebug { get; } = new("--slub-debug") { Description = "the slub_debug boot parameter: FLAGS[,cache,…][;FLAGS,cache…] with F (sanity checks), Z (red zones), P (poison), U (user tracking), T (trace), A (failslab), O; e.g. FZPU or FZ,kmalloc-64 (SLUB)", HelpName = "FLAGS[,CACHES]" };
    /// <summary>--slub-nomerge.</summary>
    public Option<bool> SlubNomerge { get; } = new("--slub-nomerge") { Description = "the slub_nomerge boot parameter: never merge a new cache into an existing one" };
    /// <summary>--sysctl name=value (repeatable).</summary>
    public Option<string[]> Sysctl { get; } = new("--sysctl") { Description = "a vm sysctl at boot (repeatable): " + string.Join(", ", SysctlNames) + "; e.g. --sysctl min_free_kbytes=8192", HelpName = "NAME=VALUE" };

    /// <summary>The vm sysctls a machine takes at boot.</summary>
    public static readonly string[] SysctlNames = ["min_free_kbytes", "watermark_scale_factor", "watermark_boost_factor", "percpu_pagelist_high_fraction"];

    /// <summary>Creates the options with their accepted values.</summary>
    public MachineArgs()
    {
        Slab.AcceptOnlyFromAmong(SlabNames);
        Preset.AcceptOnlyFromAmong(PresetNames);
    }

    /// <summary>Adds the options to a command.</summary>
    public void AddTo(Command command)
    {
        command.Options.Add(Slab);
        command.Options.Add(Mem);
        command.Options.Add(Cpus);
        command.Options.Add(Preset);
        command.Options.Add(Seed);
        AddBootParameters(command);
    }

    /// <summary>Adds the boot parameters (--slub-debug, --slub-nomerge, --sysctl) to a command.</summary>
    public void AddBootParameters(Command command)
    {
        ArgumentNullException.ThrowIfNull(command);
        command.Options.Add(SlubDebug);
        command.Options.Add(SlubNomerge);
        command.Options.Add(Sysctl);
    }

    /// <summary>The slab allocator chosen.</summary>
    public SlabAllocator SlabOf(ParseResult parse) => (SlabAllocator)Array.IndexOf(SlabNames, parse.GetValue(Slab));

    /// <summary>The values given on the command line.</summary>
    /// <param name="parse">The parsed command line.</param>
    /// <param name="slab">The slab allocator when the command has no --slab; null reads --slab.</param>
    public MachineChoice Choose(ParseResult parse, SlabAllocator? slab = null) =>
        new(parse.GetValue(Mem), parse.GetValue(Cpus), (Preset)Array.IndexOf(PresetNames, parse.GetValue(Preset)), slab ?? SlabOf(parse), parse.GetValue(Seed))
        {
            SlubDebug = parse.GetValue(SlubDebug),
            SlubNomerge = parse.GetValue(SlubNomerge),
            Sysctl = parse.GetValue(Sysctl) ?? [],
        };

    /// <summary>MemTotal of meminfo.txt beside the trace, rounded up to a multiple of 64 MiB; "1G" without one.</summary>
    public static string DefaultMemory(string? tracePath)
    {
        const long Step = 64L << 10; // 64 MiB in kB
        return CaptureMemTotalKb(tracePath) is long kb ? $"{(kb + Step - 1) / Step * 64}M" : "1G";
    }

    /// <summary>MemTotal in kB of the meminfo.txt beside the trace; null without one.</summary>
    public static long? CaptureMemTotalKb(string? tracePath)
    {
        string? dir = tracePath is null ? null : Path.GetDirectoryName(Path.GetFullPath(tracePath));
        string? meminfo = dir is null ? null : Path.Combine(dir, "meminfo.txt");
        if (meminfo is null || !File.Exists(meminfo))
        {
            return null;
        }
        foreach (string line in File.ReadLines(meminfo))
        {
            if (!line.StartsWith("MemTotal:", StringComparison.Ordinal))
            {
                continue;
            }
            string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length >= 2 && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long kb) && kb > 0)
            {
                return kb;
            }
        }
        return null;
    }

    /// <summary>A warning when --mem gives the replay less RAM than the capture's MemTotal (meminfo.txt beside the trace):
    /// allocations the kernel made then fail on Kmem, and its OOM killer kills where the kernel's did not.</summary>
    public static string? SmallerThanCapture(string? mem, long machineBytes, string tracePath) =>
        mem is not null && CaptureMemTotalKb(tracePath) is long kb && machineBytes < kb * 1024
            ? string.Create(CultureInfo.InvariantCulture, $"kmem: warning: --mem {mem} is less than the traced machine's MemTotal ({kb:N0} kB in the meminfo.txt beside the trace): ")
                + "allocations the kernel made may fail on Kmem, and its OOM killer may kill where the kernel's did not"
            : null;

    /// <summary>The message of a refused machine option, under the command's option name: a
    /// <see cref="MachineOptionException"/> names the <see cref="MachineOptions"/> property ("Memory: 0 is too
    /// small") where the user typed --mem.</summary>
    public static string Describe(Exception e)
    {
        ArgumentNullException.ThrowIfNull(e);
        if (e is MachineOptionException { Option: var option } && OptionNames.TryGetValue(option, out string? flag)
            && e.Message.StartsWith(option + ":", StringComparison.Ordinal))
        {
            return flag + e.Message[(option.Length + 1)..];
        }
        return e.Message;
    }

    private static readonly Dictionary<string, string> OptionNames = new(StringComparer.Ordinal)
    {
        ["Memory"] = "--mem",
        ["Cpus"] = "--cpus",
        ["Preset"] = "--preset",
        ["Slab"] = "--slab",
        ["Seed"] = "--seed",
        ["SlubDebug"] = "--slub-debug",
        ["MinFreeKbytes"] = "--sysctl min_free_kbytes",
        ["WatermarkScaleFactor"] = "--sysctl watermark_scale_factor",
        ["WatermarkBoostFactor"] = "--sysctl watermark_boost_factor",
        ["PercpuPagelistHighFraction"] = "--sysctl percpu_pagelist_high_fraction",
    };

    /// <summary>The --preset name of a preset.</summary>
    public static string NameOf(Preset preset) => PresetNames[(int)preset];
}

/// <summary>The machine options chosen on the command line; null values take their defaults from the trace.</summary>
/// <param name="Mem">--mem, or null.</param>
/// <param name="Cpus">--cpus, or null.</param>
/// <param name="Preset">--preset.</param>
/// <param name="Slab">--slab.</param>
/// <param name="Seed">--seed.</param>
public sealed record MachineChoice(string? Mem, int? Cpus, Preset Preset, SlabAllocator Slab, int Seed)
{
    /// <summary>--slub-debug, or null.</summary>
    public string? SlubDebug { get; init; }

    /// <summary>--slub-nomerge.</summary>
    public bool SlubNomerge { get; init; }

    /// <summary>--sysctl NAME=VALUE, in the order given.</summary>
    public IReadOnlyList<string> Sysctl { get; init; } = [];

    /// <summary>The defaults: memory and CPUs from the trace, x86_64, SLUB, seed 1.</summary>
    public static MachineChoice Default { get; } = new(null, null, Preset.X64, SlabAllocator.Slub, 1);

    /// <summary>The message for a value the machine refused when it came from the trace (the header's #P:N,
    /// MemTotal of the meminfo.txt beside it) rather than from the command line: bad input, not a usage error.</summary>
    /// <param name="e">What the machine refused.</param>
    /// <param name="tracePath">The trace.</param>
    /// <param name="traceCpus">The trace header's CPU count.</param>
    /// <returns>The message, or null when the value was the user's.</returns>
    public string? FromTrace(Exception e, string tracePath, int traceCpus)
    {
        ArgumentNullException.ThrowIfNull(tracePath);
        return e switch
        {
            MachineOptionException { Option: "Cpus" } when Cpus is null && traceCpus > 0 =>
                $"{tracePath}: the header's #P:{traceCpus} is not a machine Kmem can boot ({MachineArgs.Describe(e)}); give --cpus N",
            MachineOptionException { Option: "ManagedPages" } when Mem is null =>
                $"{Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tracePath)) ?? "", "zoneinfo.txt")}: its zones are not a machine Kmem can boot ({e.Message}); give --mem SIZE to boot without them",
            MachineOptionException { Option: "Memory" } when Mem is null =>
                $"{Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tracePath)) ?? "", "meminfo.txt")}: its MemTotal is not a machine Kmem can boot ({MachineArgs.Describe(e)}); give --mem SIZE",
            _ => null,
        };
    }

    /// <summary>The machine options, with defaults from the trace when one is given.</summary>
    /// <param name="tracePath">The trace, or null.</param>
    /// <param name="traceCpus">The trace header's CPU count, 0 when unknown.</param>
    /// <param name="bootReserve">With a snapshot: boot with the managed pages the kernel had when it derived its
    /// watermarks (<see cref="BootReserve"/>); the replay must then release the reserved frames it frees.</param>
    /// <exception cref="UsageException">A value is not valid.</exception>
    public MachineOptions Build(string? tracePath, int traceCpus, bool bootReserve = false)
    {
        string memory = Mem ?? MachineArgs.DefaultMemory(tracePath);
        try
        {
            _ = MachineOptions.ParseSize(memory, "--mem");
        }
        catch (FormatException e)
        {
            throw new UsageException(e.Message);
        }
        int cpus = Cpus ?? (traceCpus > 0 ? traceCpus : 2);
        if (cpus < 1)
        {
            throw new UsageException($"--cpus must be 1 or more, not {cpus}");
        }
        var sysctl = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string setting in Sysctl)
        {
            var (name, value) = ParseSysctl(setting);
            sysctl[name] = value;
        }
        var defaults = new MachineOptions();
        return new MachineOptions
        {
            ManagedPages = Mem is null ? (bootReserve ? BootReserve(tracePath)?.ManagedAtBoot : null) ?? SnapshotManagedPages(tracePath) : null,
            InitMemoryPages = Mem is null && bootReserve ? BootReserve(tracePath)?.InitMemoryPages : null,
            Memory = memory,
            Cpus = cpus,
            Preset = Preset,
            Slab = Slab,
            Seed = Seed,
            SlubDebug = SlubDebug,
            SlubNomerge = SlubNomerge,
            MinFreeKbytes = sysctl.TryGetValue("min_free_kbytes", out int minFree) ? minFree : defaults.MinFreeKbytes,
            WatermarkScaleFactor = sysctl.GetValueOrDefault("watermark_scale_factor", defaults.WatermarkScaleFactor),
            WatermarkBoostFactor = sysctl.GetValueOrDefault("watermark_boost_factor", defaults.WatermarkBoostFactor),
            PercpuPagelistHighFraction = sysctl.GetValueOrDefault("percpu_pagelist_high_fraction", defaults.PercpuPagelistHighFraction),
        };
    }

    // The last trace's boot reserve: a replay builds its machine twice (free-running and aligned) from one trace.
    private static readonly Lock s_reserveLock = new();
    private static (string Path, DateTime Written, TraceBootReserve? Reserve)? s_reserve;

    /// <summary>For a boot shaped like the capture (no --mem): the managed pages when the kernel derived its
    /// watermarks and the reserved frames the trace releases later (the last trace's kept), or null.</summary>
    /// <param name="tracePath">The trace, or null.</param>
    /// <exception cref="MachineOptionException">zoneinfo.txt is not in the kernel's format.</exception>
    public TraceBootReserve? BootReserve(string? tracePath)
    {
        if (Mem is not null || tracePath is null || !File.Exists(tracePath))
        {
            return null;
        }
        string full = Path.GetFullPath(tracePath);
        var written = File.GetLastWriteTimeUtc(full);
        lock (s_reserveLock)
        {
            if (s_reserve is { } r && r.Path == full && r.Written == written)
            {
                return r.Reserve;
            }
        }
        TraceBootReserve? reserve;
        try
        {
            reserve = TraceBootReserve.Read(full);
        }
        catch (FormatException e)
        {
            throw new MachineOptionException("ManagedPages", e.Message, e);
        }
        lock (s_reserveLock)
        {
            s_reserve = (full, written, reserve);
        }
        return reserve;
    }

    /// <summary>The managed pages per zone of zoneinfo.txt beside the trace (a boot shaped like the capture), or null.</summary>
    /// <exception cref="MachineOptionException">zoneinfo.txt is not in the kernel's format.</exception>
    private static IReadOnlyDictionary<string, long>? SnapshotManagedPages(string? tracePath)
    {
        if (tracePath is null)
        {
            return null;
        }
        try
        {
            return TraceProcComparison.SnapshotManagedPages(Path.GetDirectoryName(Path.GetFullPath(tracePath))!);
        }
        catch (FormatException e)
        {
            throw new MachineOptionException("ManagedPages", e.Message, e);
        }
    }

    /// <summary>One --sysctl NAME=VALUE (a "vm." prefix allowed); the machine checks the value's range at boot.</summary>
    private static (string Name, int Value) ParseSysctl(string setting)
    {
        int eq = setting.IndexOf('=', StringComparison.Ordinal);
        string name = (eq < 0 ? setting : setting[..eq]).Trim();
        name = name.StartsWith("vm.", StringComparison.Ordinal) ? name[3..] : name;
        if (!MachineArgs.SysctlNames.Contains(name))
        {
            throw new UsageException($"--sysctl {setting}: {name} is not a sysctl a machine takes at boot; the names are {string.Join(", ", MachineArgs.SysctlNames)}");
        }
        if (eq < 0 || !int.TryParse(setting.AsSpan(eq + 1).Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int value))
        {
            throw new UsageException($"--sysctl {setting}: expected {name}=VALUE with a whole number");
        }
        return (name, value);
    }
}
