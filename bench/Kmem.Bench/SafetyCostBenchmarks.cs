// What Kmem's safety costs on SLUB's paths, A/B in one run: the same calls in three jobs, one as Kmem boots
// by default (the double-free detection on, the hardened freelist off as in Kconfig), one without the
// double-free detection's work on the magazine paths (KMEM_BENCH_NO_FREE_CHECK=1, a benchmark-only switch read
// once into a static readonly field, Slab/Slub/SlubFastPath.cs), one with CONFIG_SLAB_FREELIST_HARDENED
// (KMEM_BENCH_HARDENED=1, which this class turns into MachineOptions.SlabFreelistHardened). The Ratio column
// is each job's time over the default's: below 1 what the detection costs, above 1 what hardening costs.
// The calls: the 64 B kmalloc pair (the magazine fast path), the same pair on a thread pinned to a CPU (the
// per-CPU freelist, where the hardened free pointer is read and written on every operation), and a batch of
// 1,000 kmallocs of random sizes freed in random order (magazine overflow: the slabs' freelists).
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;

namespace Kmem.Bench;

[Config(typeof(SafetyJobs))]
[MinColumn, MedianColumn]
#pragma warning disable CA1001 // BenchmarkDotNet disposes through [GlobalCleanup]
public class SafetyCostBenchmarks
#pragma warning restore CA1001
{
    private const int Pairs = 10_000;
    private const int Batch = 1_000;
    private Machine? _m;
    private readonly nuint[] _sizes = new nuint[Batch];
    private readonly int[] _freeOrder = new int[Batch];
    private readonly nint[] _held = new nint[Batch];

    /// <summary>The three jobs: Kmem's defaults (the baseline), without the double-free detection, hardened.</summary>
    private sealed class SafetyJobs : ManualConfig
    {
        public SafetyJobs()
        {
            // Fixed counts, so that the jobs get the same treatment on a loaded host; building the jobs' program
            // can outlast BenchmarkDotNet's default two minutes there.
            WithBuildTimeout(TimeSpan.FromMinutes(20));
            var job = Job.Default.WithWarmupCount(6).WithIterationCount(25);
            AddJob(job.WithId("default").AsBaseline());
            AddJob(job.WithId("no-double-free-check").WithEnvironmentVariables(new EnvironmentVariable("KMEM_BENCH_NO_FREE_CHECK", "1")));
            AddJob(job.WithId("hardened-freelist").WithEnvironmentVariables(new EnvironmentVariable("KMEM_BENCH_HARDENED", "1")));
        }
    }

    [GlobalSetup]
    public void Setup()
    {
        bool hardened = Environment.GetEnvironmentVariable("KMEM_BENCH_HARDENED") == "1";
        _m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 1, SlabFreelistHardened = hardened });
        var rng = new Random(1);
        for (int i = 0; i < Batch; i++)
        {
            // Log-uniform over 16..4095 B, as the quick comparison's batch.
            _sizes[i] = (nuint)Math.Min(4095, (int)Math.Pow(2, 4 + rng.NextDouble() * 8));
            _freeOrder[i] = i;
        }
        rng.Shuffle(_freeOrder);
    }

    [GlobalCleanup]
    public void Cleanup() => _m?.Dispose();

    /// <summary>Machine.Kmalloc and Machine.Kfree of 64 bytes: the magazine fast path.</summary>
    [Benchmark(OperationsPerInvoke = Pairs)]
    public void Pair64()
    {
        var m = _m!;
        for (int i = 0; i < Pairs; i++)
        {
            m.Kfree(m.Kmalloc(64, Gfp.Kernel));
        }
    }

    /// <summary>The 64 B pair on a thread pinned to CPU 0: SLUB's per-CPU freelist, no magazine.</summary>
    [Benchmark(OperationsPerInvoke = Pairs)]
    public void PinnedPair64()
    {
        var m = _m!;
        using var pin = m.OnCpu(0);
        for (int i = 0; i < Pairs; i++)
        {
            m.Kfree(m.Kmalloc(64, Gfp.Kernel));
        }
    }

    /// <summary>1,000 kmallocs of random sizes, then their frees in random order (ns per object).</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public void RandomBatch()
    {
        var m = _m!;
        for (int i = 0; i < Batch; i++)
        {
            _held[i] = m.Kmalloc(_sizes[i], Gfp.Kernel);
        }
        foreach (int i in _freeOrder)
        {
            m.Kfree(_held[i]);
        }
    }
}
