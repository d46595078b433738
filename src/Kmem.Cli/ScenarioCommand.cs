// `kmem scenario pressure|fragmentation|highmem`: small stories of memory
// pressure told step by step with the kernel's own counters, and pictures of
// physical memory before and after (MemoryMap). Every number is read from the
// machine's /proc files; nothing here computes a figure itself.
using System.CommandLine;
using System.Globalization;

namespace Kmem.Cli;

/// <summary>The scenario subcommand.</summary>
public static class ScenarioCommand
{
    /// <summary>Creates the subcommand.</summary>
    public static Command Create(CliContext ctx)
    {
        var name = new Argument<string>("NAME") { Description = "pressure, fragmentation or highmem" };
        name.AcceptOnlyFromAmong("pressure", "fragmentation", "highmem");
        var seed = CliValues.Whole(new Option<int>("--seed") { Description = "machine seed", DefaultValueFactory = _ => 1 });
        var mapDir = new Option<string>("--map-dir")
        {
            Description = "directory for the page-map pictures NAME-before.png and NAME-after.png (and NAME-oom.png for pressure)",
            DefaultValueFactory = _ => ".",
            HelpName = "DIR",
        };
        var noMap = new Option<bool>("--no-map") { Description = "write no pictures" };
        var command = new Command("scenario", "Run a memory-pressure scenario and print what the kernel does, step by step: "
            + "pressure (tasks grow until kswapd, swap and the OOM killer act), fragmentation (scattered unmovable pages, "
            + "then an order-4 allocation that needs compaction), highmem (user pages in HighMem on x86-32)")
        {
            name, seed, mapDir, noMap,
        };
        command.SetAction(parse =>
        {
            string which = parse.GetValue(name)!;
            int s = parse.GetValue(seed);
            string? dir = parse.GetValue(noMap) ? null : parse.GetValue(mapDir)!;
            if (dir is not null && !Directory.Exists(dir))
            {
                return ctx.Fail(CliContext.Usage, $"--map-dir: no directory \"{dir}\"");
            }
            var story = new Story(ctx.Out, dir, which);
            return which switch
            {
                "pressure" => Pressure(story, s),
                "fragmentation" => Fragmentation(story, s),
                "highmem" => Highmem(story, s),
                _ => ctx.Fail(CliContext.Usage, $"unknown scenario \"{which}\"; known: pressure, fragmentation, highmem"),
            };
        });
        return command;
    }

    /// <summary>Where a scenario tells its story: the output, and the folder of its pictures (null for none).</summary>
    private sealed record Story(TextWriter Out, string? MapDir, string Name)
    {
        /// <summary>Writes the picture NAME-STAGE.png of <paramref name="m"/> and says so.</summary>
        public void Picture(Machine m, string stage, string caption)
        {
            if (MapDir is null)
            {
                return;
            }
            string path = Path.Combine(MapDir, $"{Name}-{stage}.png");
            MemoryMap.Render(m, path, new MemoryMapOptions { Caption = $"scenario {Name}: {caption}" });
            Out.WriteLine($"picture ({stage}): {path}");
        }
    }

    private static Dictionary<string, long> Vmstat(Machine m) =>
        m.Proc.Vmstat().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' '))
            .ToDictionary(p => p[0], p => long.Parse(p[1], CultureInfo.InvariantCulture));

    private static long Meminfo(Machine m, string key)
    {
        foreach (var line in m.Proc.Meminfo().Split('\n'))
        {
            if (line.StartsWith(key + ":", StringComparison.Ordinal))
            {
                return long.Parse(line[(key.Length + 1)..].Replace("kB", "", StringComparison.Ordinal).Trim(), CultureInfo.InvariantCulture);
            }
        }
        return 0;
    }

    private static void Counters(TextWriter o, Machine m, string step, params string[] names)
    {
        var v = Vmstat(m);
        o.WriteLine($"{step,-34} MemFree {Meminfo(m, "MemFree"),7} kB  SwapFree {Meminfo(m, "SwapFree"),7} kB  "
            + string.Join("  ", names.Select(n => $"{n} {v[n]}")));
    }

    private static void Section(TextWriter o, Machine m, string title, string file)
    {
        o.WriteLine();
        o.WriteLine($"# {title}: {m.Proc.PathOf(file)}");
        o.Write(m.Proc.Read(file));
    }

    /// <summary>Four tasks grow by 4 MiB each in turn on a 128 MiB machine with 48 MiB of swap until the
    /// OOM killer has acted and one more round ran.</summary>
    private static int Pressure(Story story, int seed)
    {
        var o = story.Out;
        // A fresh directory per run, with a fixed file name: the report names the file, never the random directory.
        string dir = Directory.CreateTempSubdirectory("kmem-pressure-").FullName;
        string swap = Path.Combine(dir, SwapName);
        try
        {
            using var m = Machine.Boot(new MachineOptions { Memory = "128M", Seed = seed, Cpus = 2 });
            using var cpu = m.OnCpu(0); // the story runs on CPU 0: an unpinned thread's CPU is the host's choice
            m.Mkswap(swap, 48 << 20);
            m.Swapon(swap);
            o.WriteLine($"# scenario pressure: X64, 128 MiB, 48 MiB swap in the file {SwapName}; four tasks grow by 4 MiB each in turn");
            Section(o, m, "before", "buddyinfo");
            var tasks = Enumerable.Range(0, 4).Select(i => m.CreateTask($"grower{i}", (short)(i == 3 ? -1000 : 0))!).ToArray();
            var bases = tasks.Select(t => t.Mmap(256 << 20)).ToArray();
            var sizes = new long[tasks.Length];
            var page = new byte[Machine.PageSize];
            string[] shown = ["pgscan_kswapd", "pgscan_direct", "pswpout", "pswpin", "oom_kill"];
            Counters(o, m, "start", shown);
            story.Picture(m, "before", "four tasks created, nothing written");
            int afterOom = -1;
            for (int round = 1; round <= 40 && afterOom != 0; round++)
            {
                for (int i = 0; i < tasks.Length; i++)
                {
                    if (tasks[i].HasExited)
                    {
                        continue;
                    }
                    try
                    {
                        for (int p = 0; p < 1024; p++)
                        {
                            page[0] = (byte)p;
                            tasks[i].Write(bases[i] + (ulong)sizes[i], page);
                            sizes[i] += Machine.PageSize;
                        }
                    }
                    catch (TaskKilledException e)
                    {
                        o.WriteLine($"  {e.Message}");
                    }
                }
                Counters(o, m, $"round {round}: {string.Join(" ", tasks.Select(t => t.HasExited ? "killed" : $"{t.Rss * 4 / 1024}M+{t.SwapEnts * 4 / 1024}M"))}", shown);
                if (afterOom < 0 && Vmstat(m)["oom_kill"] > 0)
                {
                    afterOom = 1;
                    story.Picture(m, "oom", $"round {round}, the OOM killer has acted");
                }
                else if (afterOom > 0)
                {
                    afterOom--;
                }
            }
            o.WriteLine();
            o.WriteLine("# the kernel log (OOM reports)");
            foreach (var line in m.Log.Lines.Where(l => l.Contains("oom", StringComparison.OrdinalIgnoreCase)
                || l.StartsWith('[') || l.StartsWith("Tasks state", StringComparison.Ordinal) || l.StartsWith("Out of memory", StringComparison.Ordinal)))
            {
                o.WriteLine(line);
            }
            foreach (var t in tasks.Where(t => !t.HasExited))
            {
                o.WriteLine($"/proc/{t.Pid}/oom_score ({t.Comm}, oom_score_adj {t.OomScoreAdj}): {m.OomScore(t)}");
            }
            o.WriteLine();
            o.WriteLine($"# after: {m.Proc.PathOf("swaps")} (the swap file shown by its name)");
            o.Write(SwapsByName(m.Proc.Read("swaps"), SwapName));
            Section(o, m, "after", "meminfo");
            Section(o, m, "after", "buddyinfo");
            o.WriteLine();
            story.Picture(m, "after", "the end");
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>The pressure scenario's swap file name.</summary>
    private const string SwapName = "kmem-pressure.swap";

    /// <summary>/proc/swaps with each area's path replaced by <paramref name="name"/>, padded as swap_show pads a
    /// name (to 40 columns), so that the report does not show the temporary directory.</summary>
    private static string SwapsByName(string swaps, string name)
    {
        var lines = swaps.Split('\n');
        for (int i = 1; i < lines.Length; i++)
        {
            int type = lines[i].IndexOf("file\t", StringComparison.Ordinal);
            if (type > 0)
            {
                lines[i] = (name.Length < 40 ? name.PadRight(40) : name + " ") + lines[i][type..];
            }
        }
        return string.Join('\n', lines);
    }

    /// <summary>Two tasks fill memory page by page in turn; one exits, leaving single free pages between the
    /// other's; scattered unmovable allocations take what large blocks remain; an order-4 GFP_KERNEL allocation
    /// then needs direct compaction.</summary>
    private static int Fragmentation(Story story, int seed)
    {
        var o = story.Out;
        using var m = Machine.Boot(new MachineOptions { Memory = "64M", Seed = seed, Cpus = 1, Kswapd = false });
        o.WriteLine("# scenario fragmentation: X64, 64 MiB, no swap");
        var keeper = m.CreateTask("keeper")!;
        var leaver = m.CreateTask("leaver")!;
        ulong a = keeper.Mmap(64 << 20), b = leaver.Mmap(64 << 20);
        var page = new byte[Machine.PageSize];
        int n = 0;
        while (Meminfo(m, "MemFree") > 1600)
        {
            keeper.Write(a + (ulong)n * 4096, page);
            leaver.Write(b + (ulong)n * 4096, page);
            n++;
        }
        Counters(o, m, $"two tasks hold {n} pages each", "compact_stall", "compact_success", "pgmigrate_success");
        leaver.Exit();
        m.DrainAllPages();
        int pinned = 0;
        while (!m.AllocPages(Gfp.Atomic | Gfp.NoWarn, 3).IsNull && pinned < 2000 && LargestFree(m) >= 3)
        {
            pinned++;
        }
        Counters(o, m, $"one exited; {pinned} unmovable order-3", "compact_stall", "compact_success", "pgmigrate_success");
        Section(o, m, "before", "buddyinfo");
        Section(o, m, "before", "extfrag_index");
        o.WriteLine();
        story.Picture(m, "before", "fragmented, before the order-4 allocation");
        var block = m.AllocPages(Gfp.Kernel, 4);
        o.WriteLine();
        o.WriteLine(block.IsNull ? "order-4 GFP_KERNEL allocation failed" : $"order-4 GFP_KERNEL allocation: {block}");
        Counters(o, m, "after the order-4 allocation", "compact_stall", "compact_success", "compact_fail", "compact_migrate_scanned",
            "compact_free_scanned", "pgmigrate_success");
        Section(o, m, "after", "buddyinfo");
        long moved = m.CompactMemory();
        o.WriteLine();
        o.WriteLine($"compact_memory: {moved} pages migrated");
        Section(o, m, "after compact_memory", "buddyinfo");
        o.WriteLine();
        story.Picture(m, "after", "after the order-4 allocation and compact_memory");
        return 0;
    }

    private static int LargestFree(Machine m)
    {
        var counts = m.Proc.Buddyinfo().Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[4..].Select(x => long.Parse(x, CultureInfo.InvariantCulture)).ToArray());
        int best = -1;
        foreach (var c in counts)
        {
            for (int o = c.Length - 1; o > best; o--)
            {
                if (c[o] > 0)
                {
                    best = o;
                }
            }
        }
        return best;
    }

    /// <summary>A task on a 1 GiB x86-32 PAE machine: its pages come from HighMem and are reached through kmap.</summary>
    private static int Highmem(Story story, int seed)
    {
        var o = story.Out;
        using var m = Machine.Boot(new MachineOptions { Memory = "1G", Preset = Preset.X86Pae, Seed = seed, Cpus = 2 });
        using var cpu = m.OnCpu(0); // the story runs on CPU 0: an unpinned thread's CPU is the host's choice
        o.WriteLine("# scenario highmem: X86Pae, 1 GiB (lowmem up to 880 MiB, HighMem above)");
        void Show(string step) => o.WriteLine($"{step,-34} HighFree {Meminfo(m, "HighFree"),7} kB  LowFree {Meminfo(m, "LowFree"),7} kB  "
            + $"AnonPages {Meminfo(m, "AnonPages"),7} kB  PageTables {Meminfo(m, "PageTables"),5} kB  KernelStack {Meminfo(m, "KernelStack"),5} kB");
        Show("boot");
        story.Picture(m, "before", "after boot");
        var t = m.CreateTask("highuser")!;
        Show("task created (8 KiB order-1 stack)");
        ulong a = t.Mmap(256 << 20);
        var page = new byte[Machine.PageSize];
        for (int i = 0; i < (128 << 20) / Machine.PageSize; i++)
        {
            page[0] = (byte)i;
            t.Write(a + (ulong)i * 4096, page);
        }
        Show("128 MiB written");
        var back = new byte[1];
        t.Read(a + 4096 * 77, back);
        o.WriteLine($"read back through kmap_local: byte {back[0]} (written {77})");
        Section(o, m, "after", "buddyinfo");
        o.WriteLine();
        story.Picture(m, "after", "128 MiB of user pages written");
        t.Exit();
        Show("task exited");
        return 0;
    }
}
