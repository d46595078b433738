// The quick comparison's object workloads under BenchmarkDotNet, for detail
// (distribution, outliers, allocated managed bytes): the same contenders and the
// same loops as `kmem bench` (Kmem.Bench.Core), one contender and workload per
// case. Only the contenders that can run here are offered (a missing library or
// a slab backend not in this build is left out, with a note on the console).
using BenchmarkDotNet.Attributes;

namespace Kmem.Bench;

[MemoryDiagnoser]
#pragma warning disable CA1001 // BenchmarkDotNet disposes through [GlobalCleanup]
public class ObjectAllocBenchmarks
#pragma warning restore CA1001
{
    /// <summary>Operations per invocation, whatever the workload (a batch unit is 10,000 operations).</summary>
    public const int Operations = 10_000;

    private ContenderSet? _set;
    private TwoThreads? _threads;
    private WorkloadRun? _run;
    private long _units;

    /// <summary>The workload, by its row name in the quick table.</summary>
    [Params("pair 64 B", "pair 1 KiB", "batch 10,000 random", "cross-thread free 64 B", "larson 1 thread", "larson 2 threads", "cache-scratch 8 B")]
    public string Workload { get; set; } = "pair 64 B";

    /// <summary>The contender, by its name in the quick table.</summary>
    [ParamsSource(nameof(Contenders))]
    public string Contender { get; set; } = "SLUB kmalloc";

    /// <summary>The object contenders that can run on this host.</summary>
    public static IEnumerable<string> Contenders()
    {
        using var set = ContenderSet.Create(n => n is not ("Kmem pages" or "Kmem vmalloc"));
        foreach (string note in set.Notes)
        {
            Console.WriteLine($"// note: {note}");
        }
        return [.. set.Contenders.Select(c => c.Name)];
    }

    [GlobalSetup]
    public void Setup()
    {
        _set = ContenderSet.Create(n => n == Contender);
        var contender = _set.Contenders.Single();
        var workload = QuickBench.AllWorkloads().Single(w => w.Name == Workload);
        _threads = new TwoThreads();
        _run = contender.Create(workload, _threads);
        _units = Operations / workload.OperationsPerUnit;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _run?.Dispose();
        _threads?.Dispose();
        _set?.Dispose();
    }

    /// <summary>Operations of the workload (per thread for the two-thread ones, so the time is wall time per thread).</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public TimeSpan Run() => _run!.Run(_units);
}
