// The cost of the machine's lifetime guard on the allocation fast path, A/B: the same calls (the 64 B and 16 B
// kmalloc/kfree pairs and the 64 B kmem_cache pair, through Machine's public entry points) in two jobs of one
// run, one with the guard and one without it. The switch is KMEM_BENCH_UNGUARDED=1 in the environment of the
// job's process (Slab/Slub/SlubFastPath.cs), read once into a static readonly field, so the tiered JIT drops
// the guard's code entirely in that job. The goal: the guarded job within 3 % of the unguarded one on the 64 B
// pair (the Ratio column). On a loaded host compare the Min columns (the least disturbed iterations) too.
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;

namespace Kmem.Bench;

[Config(typeof(GuardJobs))]
[MinColumn, MedianColumn]
#pragma warning disable CA1001 // BenchmarkDotNet disposes through [GlobalCleanup]
public class LifetimeGuardBenchmarks
#pragma warning restore CA1001
{
    private const int Pairs = 10_000;
    private Machine? _m;
    private KmemCache? _cache;

    /// <summary>The two jobs: without the guard (the baseline) and with it, otherwise alike.</summary>
    private sealed class GuardJobs : ManualConfig
    {
        public GuardJobs()
        {
            // Fixed counts, so that the two jobs get the same treatment on a loaded host.
            var job = Job.Default.WithWarmupCount(6).WithIterationCount(25);
            AddJob(job.WithId("unguarded").WithEnvironmentVariables(new EnvironmentVariable("KMEM_BENCH_UNGUARDED", "1")).AsBaseline());
            AddJob(job.WithId("guarded"));
        }
    }

    [GlobalSetup]
    public void Setup()
    {
        _m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 1 });
        _cache = _m.KmemCacheCreate("guard-64", 64, 0, SlabFlags.None, null);
    }

    [GlobalCleanup]
    public void Cleanup() => _m?.Dispose();

    /// <summary>Machine.Kmalloc and Machine.Kfree of 64 bytes.</summary>
    [Benchmark(OperationsPerInvoke = Pairs)]
    public void Pair64() => KmallocPairs(64);

    /// <summary>Machine.Kmalloc and Machine.Kfree of 16 bytes (kmalloc-16: the same path as 64 B).</summary>
    [Benchmark(OperationsPerInvoke = Pairs)]
    public void Pair16() => KmallocPairs(16);

    /// <summary>Machine.KmemCacheAlloc and Machine.KmemCacheFree on a 64 B cache.</summary>
    [Benchmark(OperationsPerInvoke = Pairs)]
    public void CachePair64()
    {
        var m = _m!;
        var s = _cache!;
        for (int i = 0; i < Pairs; i++)
        {
            m.KmemCacheFree(s, m.KmemCacheAlloc(s, Gfp.Kernel));
        }
    }

    private void KmallocPairs(nuint size)
    {
        var m = _m!;
        for (int i = 0; i < Pairs; i++)
        {
            m.Kfree(m.Kmalloc(size, Gfp.Kernel));
        }
    }
}
