// kmem proc NAME: for learners. Boots a machine, runs the built-in mixed workload
// (pages, kmalloc, kmem_caches, vmalloc) and prints the /proc file. This is what the
// command did by default before it replayed the bundled trace. A NAME under
// /sys/kernel/slab prints SLUB's sysfs view instead: the listing, a cache's directory
// (grep-style attribute:value lines) or one attribute; one under /sys/kernel/debug/slab
// a slub_debug=U cache's alloc_traces or free_traces.
using System.CommandLine;
using Kmem.Workload;

namespace Kmem.Cli;

/// <summary>The <c>proc</c> subcommand.</summary>
public static class ProcCommand
{
    /// <summary>Creates the subcommand.</summary>
    public static Command Create(CliContext ctx)
    {
        var name = new Argument<string[]>("NAME")
        {
            Description = "the /proc files to print, by name: " + string.Join(", ", ReplayCommand.ProcNames)
                + "; or /sys/kernel/slab[/CACHE[/ATTRIBUTE]], /sys/kernel/debug/slab/CACHE/alloc_traces|free_traces (SLUB with --slub-debug U); slabinfo needs SLUB or SLAB, slobinfo SLOB",
            Arity = ArgumentArity.OneOrMore,
        };
        name.Validators.Add(result =>
        {
            foreach (var token in result.Tokens)
            {
                if (!ReplayCommand.ProcNames.Contains(token.Value) && !SysSlab.IsSysSlabPath(token.Value))
                {
                    result.AddError($"'{token.Value}' is not a /proc file Kmem prints ({string.Join(", ", ReplayCommand.ProcNames)}) nor a path under {SysSlab.Root} or {SysSlab.DebugRoot}");
                }
            }
        });
        var machine = new MachineArgs();
        // proc takes no trace: its defaults are the machine's own.
        machine.Mem.Description = "RAM size with K, M, G, T suffix (default 1G)";
        machine.Cpus.Description = "CPUs (default 2)";
        var steps = CliValues.Whole(new Option<int>("--steps") { Description = "workload steps", DefaultValueFactory = _ => 200_000 }, 0);
        var command = new Command("proc", "Boot a machine, run a built-in mixed workload (pages, kmalloc, kmem_caches, vmalloc) and print /proc files.")
        {
            name,
        };
        machine.AddTo(command);
        command.Options.Add(steps);
        command.SetAction(parse =>
        {
            int n = parse.GetValue(steps);
            if (n < 0)
            {
                return ctx.Fail(CliContext.Usage, "--steps must be 0 or more");
            }
            var choice = machine.Choose(parse);
            Machine m;
            try
            {
                m = Machine.Boot(choice.Build(null, 0));
            }
            catch (Exception e) when (e is UsageException or MachineOptionException)
            {
                return ctx.Fail(CliContext.Usage, MachineArgs.Describe(e));
            }
            using (m)
            {
                bool slab = true;
                try
                {
                    _ = m.SlabCaches;
                }
                catch (InvalidOperationException e)
                {
                    slab = false;
                    ctx.Err.WriteLine($"kmem: warning: --slab {MachineArgs.SlabNames[(int)choice.Slab]}: {e.Message}; the workload runs without slab allocations");
                }
                var workload = slab ? MixedWorkload.Everything(n) : new MixedWorkload { Steps = n, VmallocShare = 0.01 };
                var r = workload.Run(m, choice.Seed);
                ctx.Out.WriteLine($"# kmem: {MachineArgs.NameOf(m.Preset)} machine, {MachineOptions.FormatSize(m.MemoryBytes)}, {m.NrCpus} CPUs; "
                    + $"mixed workload of {n} steps: {r.Allocations} allocations, {r.Failures} failed, {r.Frees} frees; held at the end: "
                    + $"{r.HeldBlocks} page blocks ({r.HeldPages} pages), {r.HeldObjects} slab objects, {r.HeldVmallocAreas} vmalloc areas");
                foreach (string file in parse.GetValue(name)!)
                {
                    if (SysSlab.IsSysSlabPath(file))
                    {
                        string? error = PrintSysSlab(ctx, m, file);
                        if (error is not null)
                        {
                            return ctx.Fail(CliContext.Usage, error);
                        }
                        continue;
                    }
                    if (!m.Proc.Knows(file))
                    {
                        return ctx.Fail(CliContext.Usage, $"/proc/{file} is not provided by a machine booted with --slab {MachineArgs.SlabNames[(int)choice.Slab]}");
                    }
                    ctx.Out.WriteLine();
                    ctx.Out.WriteLine($"# {m.Proc.PathOf(file)}");
                    ctx.Out.Write(m.Proc.Read(file));
                }
            }
            return CliContext.Ok;
        });
        return command;
    }

    /// <summary>Prints a path of /sys/kernel/slab; returns the error to report instead, or null.</summary>
    private static string? PrintSysSlab(CliContext ctx, Machine m, string path)
    {
        if (!m.SysSlab.Available)
        {
            return $"{SysSlab.Root} and {SysSlab.DebugRoot} exist only with --slab slub (Linux has none with SLAB or SLOB)";
        }
        string text;
        try
        {
            text = m.SysSlab.ReadPath(path);
        }
        catch (IOException e)
        {
            return e.Message;
        }
        ctx.Out.WriteLine();
        ctx.Out.WriteLine($"# /{path.Trim().Trim('/')}");
        ctx.Out.Write(text);
        return null;
    }
}
