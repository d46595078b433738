// `kmem bench`: the quick comparison of Kmem with the allocators a .NET program
// would use instead (glibc, mimalloc, jemalloc, tcmalloc, ArrayPool, new byte[]),
// the same as `dotnet run -c Release --project bench/Kmem.Bench -- --quick`. The
// code lives in bench/Kmem.Bench.Core, which is loaded only when this command
// runs, so the default command starts as fast as before.
using System.CommandLine;
using Kmem.Bench;

namespace Kmem.Cli;

internal static class BenchCommand
{
    /// <summary>The `bench` subcommand, writing to <paramref name="ctx"/>'s writers (the table or JSON to Out, progress
    /// to Err); exit code 2 for a wrong option.</summary>
    public static Command Create(CliContext ctx)
    {
        var json = new Option<bool>("--json") { Description = "print the results as JSON" };
        var markdown = new Option<bool>("--markdown") { Description = "print a Markdown summary (median ns per workload and contender, targets)" };
        var repetitions = CliValues.Whole(new Option<int>("--repetitions") { Description = "timed repetitions per workload and contender (median, min, max)", DefaultValueFactory = _ => 9 }, 1);
        var contenders = new Option<string?>("--contenders") { Description = "only these contenders, comma-separated (e.g. \"SLUB kmalloc,glibc malloc,mimalloc\")" };
        var workloads = new Option<string?>("--workloads") { Description = "only the rows whose name contains one of these, comma-separated (e.g. \"pair,larson\")" };
        var noMemory = new Option<bool>("--no-memory") { Description = "skip the memory-efficiency measurements (child processes)" };
        var noBoot = new Option<bool>("--no-boot") { Description = "skip the boot-time table" };
        var pinKmem = new Option<bool>("--pin-kmem") { Description = "pin Kmem's worker threads to the machine's CPUs (SLUB exactly, without thread magazines)" };
        // How the benchmark measures memory in a child process of itself: not for users.
        var memoryChild = new Option<string?>("--memory-child") { Hidden = true };
        var command = new Command("bench", "Compare Kmem's allocators with glibc, mimalloc, jemalloc, tcmalloc, ArrayPool and new byte[] "
            + "in one run (a few minutes; build with -c Release for real figures)")
        {
            json, markdown, repetitions, contenders, workloads, noMemory, noBoot, pinKmem, memoryChild,
        };
        command.SetAction(parse =>
        {
            if (parse.GetValue(memoryChild) is null && IsUnoptimized(typeof(Machine).Assembly))
            {
                ctx.Err.WriteLine("kmem: warning: bench runs a Debug build of Kmem: the figures are not representative (build with -c Release)");
            }
            var args = new List<string>();
            if (parse.GetValue(memoryChild) is { } child)
            {
                args.AddRange(["--memory-child", child]);
            }
            if (parse.GetValue(json))
            {
                args.Add("--json");
            }
            if (parse.GetValue(markdown))
            {
                args.Add("--markdown");
            }
            args.AddRange(["--repetitions", parse.GetValue(repetitions).ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            if (parse.GetValue(contenders) is { } c)
            {
                args.AddRange(["--contenders", c]);
            }
            if (parse.GetValue(workloads) is { } w)
            {
                args.AddRange(["--workloads", w]);
            }
            if (parse.GetValue(noMemory))
            {
                args.Add("--no-memory");
            }
            if (parse.GetValue(noBoot))
            {
                args.Add("--no-boot");
            }
            if (parse.GetValue(pinKmem))
            {
                args.Add("--pin-kmem");
            }
            return QuickBench.Run(args, ["bench"], ctx.Out, ctx.Err);
        });
        return command;
    }

    /// <summary>Whether an assembly was compiled without optimisation (a Debug build).</summary>
    private static bool IsUnoptimized(System.Reflection.Assembly assembly) =>
        assembly.GetCustomAttributes(typeof(System.Diagnostics.DebuggableAttribute), false)
            .OfType<System.Diagnostics.DebuggableAttribute>().Any(d => d.IsJITOptimizerDisabled);
}
