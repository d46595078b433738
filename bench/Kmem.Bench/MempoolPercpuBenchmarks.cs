// Per-CPU counting and mempools under BenchmarkDotNet. "counter, 2 threads": two threads, each bound to
// its own host core and pinned to its own machine CPU, add 1 to one counter as fast as they can:
// PercpuCounter.Add (each CPU's delta in its own unit, folded every batch), this_cpu_inc on a
// per-CPU long, and Interlocked.Increment of one shared long (the cache line bounces between the
// cores); the figure is the time per add each thread sees. "pair": MempoolAlloc+MempoolFree of a
// slab pool whose allocator never fails, against the bare KmemCacheAlloc+KmemCacheFree it wraps.
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;

namespace Kmem.Bench;

[MemoryDiagnoser]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
#pragma warning disable CA1001 // BenchmarkDotNet disposes through [GlobalCleanup]
public class MempoolPercpuBenchmarks
#pragma warning restore CA1001
{
    /// <summary>Adds each thread makes per invocation of a two-thread benchmark.</summary>
    public const int AddsPerThread = 1 << 20;

    private const string Counter = "counter, 2 threads";
    private const string Pair = "pair";

    private Machine _m = null!;
    private TwoThreads _threads = null!;
    private PercpuCounter _counter = null!;
    private PercpuPtr<long> _perCpu;
    private long _shared;
    private KmemCache _cache = null!;
    private Mempool _pool = null!;
    private Action<int> _counterWork = null!, _thisCpuWork = null!, _interlockedWork = null!;

    [GlobalSetup]
    public void Setup()
    {
        _m = Machine.Boot(new MachineOptions { Memory = "1G", Cpus = TwoThreads.Count, Seed = 1 });
        _threads = new TwoThreads();
        _counter = _m.PercpuCounterInit(0, Gfp.Kernel)!;
        _perCpu = _m.AllocPercpu<long>();
        _cache = _m.KmemCacheCreate("bench_mempool", 256, 0, SlabFlags.HwcacheAlign, null)!;
        _pool = _m.MempoolCreateSlabPool(16, _cache)!;
        _counterWork = cpu =>
        {
            using var pin = _m.OnCpu(cpu);
            for (int i = 0; i < AddsPerThread; i++)
            {
                _counter.Add(1);
            }
        };
        _thisCpuWork = cpu =>
        {
            using var pin = _m.OnCpu(cpu);
            for (int i = 0; i < AddsPerThread; i++)
            {
                _m.ThisCpuInc(_perCpu);
            }
        };
        _interlockedWork = _ =>
        {
            for (int i = 0; i < AddsPerThread; i++)
            {
                Interlocked.Increment(ref _shared);
            }
        };
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _threads.Dispose();
        _counter.Dispose();
        _m.MempoolDestroy(_pool);
        _m.Dispose();
    }

    [Benchmark(Baseline = true, Description = "Interlocked.Increment, shared", OperationsPerInvoke = AddsPerThread)]
    [BenchmarkCategory(Counter)]
    public void InterlockedShared() => _threads.Run(_interlockedWork);

    [Benchmark(Description = "PercpuCounter.Add", OperationsPerInvoke = AddsPerThread)]
    [BenchmarkCategory(Counter)]
    public void PercpuCounterAdd() => _threads.Run(_counterWork);

    [Benchmark(Description = "this_cpu_inc", OperationsPerInvoke = AddsPerThread)]
    [BenchmarkCategory(Counter)]
    public void ThisCpuInc() => _threads.Run(_thisCpuWork);

    [Benchmark(Baseline = true, Description = "KmemCacheAlloc+Free")]
    [BenchmarkCategory(Pair)]
    public void KmemCachePair()
    {
        using var pin = _m.OnCpu(0);
        _m.KmemCacheFree(_cache, _m.KmemCacheAlloc(_cache, Gfp.Kernel));
    }

    [Benchmark(Description = "MempoolAlloc+Free")]
    [BenchmarkCategory(Pair)]
    public void MempoolPair()
    {
        using var pin = _m.OnCpu(0);
        _m.MempoolFree(_m.MempoolAlloc(_pool, Gfp.Kernel), _pool);
    }
}
