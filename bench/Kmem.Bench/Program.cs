// Entry point of the benchmarks. With --quick: the quick table of page-pair
// costs against the host allocators, boot times and metadata sizes (QuickRun).
// Otherwise BenchmarkDotNet's switcher over PageAllocBenchmarks, BootBenchmarks,
// VmallocBenchmarks and KmapBenchmarks, taking BenchmarkDotNet's own arguments (--filter, --job …).
// It first starts itself again when jemalloc needs static TLS room (StaticTls.cs).
using BenchmarkDotNet.Running;
using Kmem.Bench;

if (StaticTls.RelaunchNeeded())
{
    return StaticTls.Relaunch(args);
}
if (args.Contains("--quick"))
{
    return QuickRun.Run(Console.Out);
}
foreach (var spec in NativeContender.Known)
{
    if (NativeContender.TryLoad(spec.Name, out string? note) is null)
    {
        Console.WriteLine($"// note: {note}");
    }
}
BenchmarkSwitcher.FromAssembly(typeof(QuickRun).Assembly).Run(args);
return 0;
