// The kmem command: boots a machine, runs a workload on it and prints the
// kernel's reports. A thin face over the library: every number comes from it.
using System.CommandLine;
using Kmem;
using Kmem.Workload;

var memory = new Option<string>("--memory", "-m") { Description = "RAM size (K, M, G, T suffixes)", DefaultValueFactory = _ => "1G" };
var cpus = new Option<int>("--cpus") { Description = "possible CPUs", DefaultValueFactory = _ => 2 };
var nodes = new Option<int>("--nodes") { Description = "NUMA nodes", DefaultValueFactory = _ => 1 };
var preset = new Option<Preset>("--preset") { Description = "architecture: X64, X86 or X86Pae", DefaultValueFactory = _ => Preset.X64 };
var kernelcore = new Option<string?>("--kernelcore") { Description = "kernelcore= (size or percentage)" };
var movablecore = new Option<string?>("--movablecore") { Description = "movablecore= (size or percentage)" };
var seed = new Option<int>("--seed") { Description = "seed of the workload", DefaultValueFactory = _ => 1 };
var steps = new Option<int>("--steps") { Description = "workload steps", DefaultValueFactory = _ => 200_000 };
var reports = new Option<string[]>("--report", "-r")
{
    Description = "reports to print, in order (buddyinfo, meminfo, zoneinfo, pagetypeinfo, vmstat, unusable_index, extfrag_index)",
    DefaultValueFactory = _ => ["buddyinfo", "meminfo", "zoneinfo"],
    AllowMultipleArgumentsPerToken = true,
};

var root = new RootCommand("Kmem: the Linux 6.1 memory-management subsystem over real bytes. "
    + "With no arguments: boot a 1 GiB machine, run a mixed page-allocator workload, print /proc/buddyinfo, /proc/meminfo and /proc/zoneinfo.")
{
    memory, cpus, nodes, preset, kernelcore, movablecore, seed, steps, reports,
};

root.SetAction(parse =>
{
    if (parse.GetValue(steps) < 0)
    {
        Console.Error.WriteLine("kmem: --steps must be 0 or more");
        return 2;
    }
    Machine m;
    try
    {
        m = Machine.Boot(new MachineOptions
        {
            Memory = parse.GetValue(memory)!,
            Cpus = parse.GetValue(cpus),
            Nodes = parse.GetValue(nodes),
            Preset = parse.GetValue(preset),
            KernelCore = parse.GetValue(kernelcore),
            MovableCore = parse.GetValue(movablecore),
            Seed = parse.GetValue(seed),
        });
    }
    catch (MachineOptionException e)
    {
        Console.Error.WriteLine($"kmem: {e.Message}");
        return 2;
    }
    using (m)
    {
        string[] wanted = parse.GetValue(reports)!;
        foreach (var name in wanted)
        {
            if (!m.Proc.Knows(name))
            {
                Console.Error.WriteLine($"kmem: unknown report \"{name}\"; known: {string.Join(", ", m.Proc.Names)}");
                return 2;
            }
        }
        var workload = new MixedWorkload { Steps = parse.GetValue(steps) };
        var result = workload.Run(m, parse.GetValue(seed));
        Console.WriteLine($"# kmem: {m.Preset} machine, {MachineOptions.FormatSize(m.MemoryBytes)}, {m.NrCpus} CPUs, {m.NrNodes} node(s); "
            + $"mixed workload: {result.Allocations} allocations, {result.Failures} failed, {result.Frees} frees, "
            + $"{result.HeldPages} pages still held in {result.HeldBlocks} blocks");
        foreach (var name in wanted)
        {
            Console.WriteLine();
            Console.WriteLine($"# {m.Proc.PathOf(name)}");
            Console.Write(m.Proc.Read(name));
        }
    }
    return 0;
});

return root.Parse(args).Invoke();
