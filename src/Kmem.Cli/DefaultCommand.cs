// kmem with no arguments: replays the real trace bundled with the command (Data/, a
// copy of a Linux 6.1 x86-64 capture, so a fresh clone works on its own) and prints a
// short summary: events, fidelity figures, the busiest slab caches and /proc/buddyinfo.
using System.CommandLine;

namespace Kmem.Cli;

/// <summary>The root command and its default action.</summary>
public static class DefaultCommand
{
    /// <summary>The bundled trace's folder name under Data/.</summary>
    public const string BundledCapture = "linux-6.1-boot-B";

    /// <summary>The bundled trace, beside the command's assembly.</summary>
    public static string BundledTrace => Path.Combine(AppContext.BaseDirectory, "Data", BundledCapture, "trace.txt.xz");

    /// <summary>Creates the root command.</summary>
    public static RootCommand Create(CliContext ctx)
    {
        NameTheCommandKmem();
        var root = new RootCommand(
            "Kmem: the Linux 6.1 memory-management subsystem over real bytes.\n"
            + "With no arguments: replay the bundled real kernel trace (Linux 6.1 x86-64, 512 MiB, 2 CPUs, 1.8 million kmem events) "
            + "on a Kmem machine of the same shape and print the events, the fidelity figures, the busiest slab caches and /proc/buddyinfo.\n"
            + "Commands: replay a trace (kmem replay TRACE), compare SLUB, SLAB and SLOB on one (kmem compare TRACE), "
            + "list a trace's markers (kmem markers TRACE), print /proc files after a built-in workload (kmem proc NAME), "
            + "run a memory-pressure scenario (kmem scenario pressure|fragmentation|highmem), or benchmark Kmem against other allocators (kmem bench).");
        root.SetAction(_ =>
        {
            string trace = BundledTrace;
            if (!File.Exists(trace))
            {
                return ctx.Fail(CliContext.BadInput, $"the bundled trace is missing: {trace}");
            }
            return ReplayCommand.Run(ctx, new ReplayCommand.Request(trace, MachineChoice.Default, ["buddyinfo"], null, false, false, false, 8));
        });
        return root;
    }

    /// <summary>System.CommandLine names the root command after the entry assembly (Kmem.Cli), which cannot
    /// be called "kmem" beside Kmem.dll in one package on a case-insensitive file system; its cached name is
    /// set to the command's own, so usage lines read "kmem". Left as it is if the library stores it elsewhere.</summary>
    private static void NameTheCommandKmem() =>
        typeof(RootCommand).GetField("_executableName", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)
            ?.SetValue(null, "kmem");
}
