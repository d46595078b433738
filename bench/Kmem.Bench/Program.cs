// Entry point of the benchmarks. With --quick (or --json, --markdown): the quick
// comparison of Kmem with the allocators a .NET program would use instead
// (QuickBench in Kmem.Bench.Core, the same as `kmem bench`). With --live [ROUNDS]:
// the live view's quick measurement (LiveBenchmarks.Quick). Otherwise
// BenchmarkDotNet's switcher over the classes of this project, taking its own
// arguments (--filter, --job …). It first starts itself again when jemalloc
// needs static TLS room (StaticTls).
using BenchmarkDotNet.Running;
using Kmem.Bench;

if (args.Any(a => a is "--quick" or "--json" or "--markdown" or "--memory-child"))
{
    return QuickBench.Run(args, [], Console.Out, Console.Error);
}
if (args is ["--live", ..])
{
    return LiveBenchmarks.Quick(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 3, Console.Out);
}
if (StaticTls.RelaunchNeeded())
{
    return StaticTls.Relaunch(args);
}
foreach (var spec in NativeContender.Known)
{
    if (NativeContender.TryLoad(spec.Name, out string? note) is null)
    {
        Console.WriteLine($"// note: {note}");
    }
}
BenchmarkSwitcher.FromAssembly(typeof(PageAllocBenchmarks).Assembly).Run(args);
return 0;
