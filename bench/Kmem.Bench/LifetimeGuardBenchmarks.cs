// The cost of the machine's lifetime guard on the allocation fast path: the 64 B kmalloc/kfree
// pair through Machine's public entry points (each enters and leaves the machine's lifetime,
// Physical/MachineLifetime.cs) against the same pair on the slab layer directly, which is what
// those entry points called before they were guarded. Both run in one BenchmarkDotNet run, on
// one machine, so the ratio is the guard's share: the goal is at most 3 %. On a loaded host compare
// the Min columns (the least disturbed iterations), not the means.
using BenchmarkDotNet.Attributes;

namespace Kmem.Bench;

[MinColumn, MedianColumn]
#pragma warning disable CA1001 // BenchmarkDotNet disposes through [GlobalCleanup]
public class LifetimeGuardBenchmarks
#pragma warning restore CA1001
{
    private const int Pairs = 10_000;
    private Machine? _m;

    [GlobalSetup]
    public void Setup() => _m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 1 });

    [GlobalCleanup]
    public void Cleanup() => _m?.Dispose();

    /// <summary>The pair on the slab layer, below the guard.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Pairs)]
    public void PairUnguarded()
    {
        var slab = _m!.SlabLayer!;
        for (int i = 0; i < Pairs; i++)
        {
            slab.Kfree(slab.Kmalloc(64, Gfp.Kernel, -1));
        }
    }

    /// <summary>The pair through Machine.Kmalloc and Machine.Kfree, each entering the lifetime.</summary>
    [Benchmark(OperationsPerInvoke = Pairs)]
    public void PairGuarded()
    {
        var m = _m!;
        for (int i = 0; i < Pairs; i++)
        {
            m.Kfree(m.Kmalloc(64, Gfp.Kernel));
        }
    }
}
