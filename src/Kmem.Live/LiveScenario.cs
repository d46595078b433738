// The scenarios of `kmem scenario` told step by step for the live view (kmem serve
// --scenario NAME): each step is a small piece of work (a task writing 64 pages, sixteen
// unmovable allocations, one compaction) that the page plays like a trace's event; a step
// whose description starts with "PHASE " opens a chapter. The stories are those of
// `kmem scenario` (the same machines, tasks and sizes), cut finer so that the map moves.
// pressure swaps to a file in a fresh temporary directory that the run deletes when it
// ends. A scenario's steps run on the run's thread, pinned to CPU 0.
using System.Globalization;

namespace Kmem.Live;

/// <summary>A scenario of memory pressure, step by step.</summary>
internal sealed class LiveScenario
{
    /// <summary>The scenario names.</summary>
    public static readonly string[] Names = ["pressure", "fragmentation", "highmem"];

    private LiveScenario(string name) => Name = name;

    public string Name { get; }

    /// <summary>The scenario called <paramref name="name"/>, or null.</summary>
    public static LiveScenario? Of(string? name) => Names.Contains(name) ? new LiveScenario(name!) : null;

    /// <summary>The scenario's machine (as `kmem scenario` boots it) with the given slab allocator and seed.</summary>
    public MachineOptions Options(SlabAllocator slab, int seed) => Name switch
    {
        "pressure" => new MachineOptions { Memory = "128M", Seed = seed, Cpus = 2, Slab = slab },
        "fragmentation" => new MachineOptions { Memory = "64M", Seed = seed, Cpus = 1, Kswapd = false, Slab = slab },
        _ => new MachineOptions { Memory = "1G", Preset = Preset.X86Pae, Seed = seed, Cpus = 2, Slab = slab },
    };

    /// <summary>The steps on <paramref name="m"/>: each yields what it did once done.</summary>
    public IEnumerable<string> Steps(Machine m) => Name switch
    {
        "pressure" => Pressure(m),
        "fragmentation" => Fragmentation(m),
        _ => Highmem(m),
    };

    private static string S(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    private static IEnumerable<string> Pressure(Machine m)
    {
        string dir = Directory.CreateTempSubdirectory("kmem-live-pressure-").FullName;
        try
        {
            string swap = Path.Combine(dir, "kmem-pressure.swap");
            m.Mkswap(swap, 48 << 20);
            m.Swapon(swap);
            var tasks = Enumerable.Range(0, 4).Select(i => m.CreateTask($"grower{i}", (short)(i == 3 ? -1000 : 0))!).ToArray();
            var bases = tasks.Select(t => t.Mmap(256 << 20)).ToArray();
            var sizes = new long[tasks.Length];
            var page = new byte[Machine.PageSize];
            yield return "PHASE start: 48 MiB of swap; four tasks (grower3 with oom_score_adj -1000) each map 256 MiB";
            for (int round = 1; round <= 40 && tasks.Any(t => !t.HasExited); round++)
            {
                for (int i = 0; i < tasks.Length; i++)
                {
                    for (int chunk = 0; chunk < 16 && !tasks[i].HasExited; chunk++)
                    {
                        string? killed = null;
                        try
                        {
                            for (int p = 0; p < 64; p++)
                            {
                                page[0] = (byte)p;
                                tasks[i].Write(bases[i] + (ulong)sizes[i], page);
                                sizes[i] += Machine.PageSize;
                            }
                        }
                        catch (TaskKilledException e)
                        {
                            killed = e.Message;
                        }
                        string head = chunk == 0 && i == 0 ? S($"PHASE round {round}: ") : "";
                        yield return killed ?? S($"{head}{tasks[i].Comm} wrote 64 pages: rss {tasks[i].Rss * 4} kB, swap {tasks[i].SwapEnts * 4} kB");
                    }
                }
            }
            yield return "PHASE end: every task but the one the OOM killer may not kill is gone, or 40 rounds ran";
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static IEnumerable<string> Fragmentation(Machine m)
    {
        var keeper = m.CreateTask("keeper")!;
        var leaver = m.CreateTask("leaver")!;
        ulong a = keeper.Mmap(64 << 20), b = leaver.Mmap(64 << 20);
        var page = new byte[Machine.PageSize];
        int n = 0;
        yield return "PHASE fill: two tasks write a page each in turn until memory is nearly full";
        while (FreeKb(m) > 1600)
        {
            for (int i = 0; i < 128 && FreeKb(m) > 1600; i++)
            {
                keeper.Write(a + (ulong)n * 4096, page);
                leaver.Write(b + (ulong)n * 4096, page);
                n++;
            }
            yield return S($"keeper and leaver hold {n} pages each");
        }
        leaver.Exit();
        m.DrainAllPages();
        yield return "PHASE scatter: leaver exited, leaving single free pages between keeper's";
        int pinned = 0;
        bool more = true;
        while (more)
        {
            for (int i = 0; i < 16; i++)
            {
                if (pinned >= 2000 || m.AllocPages(Gfp.Atomic | Gfp.NoWarn, 3).IsNull)
                {
                    more = false;
                    break;
                }
                pinned++;
            }
            yield return S($"{pinned} unmovable order-3 blocks taken");
        }
        var block = m.AllocPages(Gfp.Kernel, 4);
        yield return block.IsNull ? "PHASE order-4: the GFP_KERNEL allocation failed" : S($"PHASE order-4: a GFP_KERNEL allocation got {block} (direct compaction)");
        long moved = m.CompactMemory();
        yield return S($"PHASE compact_memory: {moved} pages migrated");
    }

    private static IEnumerable<string> Highmem(Machine m)
    {
        yield return "PHASE boot: an x86-32 PAE machine, lowmem up to 880 MiB, HighMem above";
        var t = m.CreateTask("highuser")!;
        ulong a = t.Mmap(256 << 20);
        yield return "task highuser created (an 8 KiB order-1 stack), 256 MiB mapped";
        var page = new byte[Machine.PageSize];
        const int Pages = (128 << 20) / Machine.PageSize;
        for (int i = 0; i < Pages; i += 256)
        {
            for (int j = i; j < i + 256; j++)
            {
                page[0] = (byte)j;
                t.Write(a + (ulong)j * 4096, page);
            }
            yield return S($"highuser wrote {(i + 256) * 4 / 1024} MiB (user pages from HighMem, written through kmap_local)");
        }
        var back = new byte[1];
        t.Read(a + 4096 * 77, back);
        yield return S($"PHASE read back: byte {back[0]} at page 77 (written 77)");
        t.Exit();
        yield return "PHASE exit: the task's pages go back to HighMem";
    }

    private static long FreeKb(Machine m)
    {
        foreach (string line in m.Proc.Meminfo().Split('\n'))
        {
            if (line.StartsWith("MemFree:", StringComparison.Ordinal))
            {
                return long.Parse(line[8..].Replace("kB", "", StringComparison.Ordinal).Trim(), CultureInfo.InvariantCulture);
            }
        }
        return 0;
    }
}
