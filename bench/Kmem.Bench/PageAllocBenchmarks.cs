// Page allocator pairs under BenchmarkDotNet: one AllocPages+FreePages of order
// 0 or 3 on one thread, and the same made by two threads at once, each on its
// own CPU (time per pair each thread sees). Contenders in the same run: an
// aligned allocation of the same size and alignment, then its free, from glibc,
// mimalloc, jemalloc and tcmalloc; Kmem is the baseline of each category.
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;

namespace Kmem.Bench;

[MemoryDiagnoser]
[Config(typeof(ContenderFilterConfig))]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory, BenchmarkLogicalGroupRule.ByParams)]
[CategoriesColumn]
#pragma warning disable CA1001 // BenchmarkDotNet disposes through [GlobalCleanup]
public class PageAllocBenchmarks
#pragma warning restore CA1001
{
    /// <summary>Pairs each thread makes per invocation of a two-thread benchmark.</summary>
    public const int PairsPerThread = 1 << 16;

    private const string OneThread = "1 thread";
    private const string TwoThreadsCategory = "2 threads";

    private Machine? _machine;
    private KmemContender? _kmem;
    private GlibcContender? _glibc;
    private NativeContender? _mimalloc, _jemalloc, _tcmalloc;
    private nuint _size, _mi1, _mi2, _je1, _je2, _tc1, _tc2;
    private TwoThreads? _threads;
    private Action<int>? _kmemWork, _glibcWork, _mimallocWork, _jemallocWork, _tcmallocWork;

    [Params(0, 3)]
    public int Order { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _machine = Machine.Boot(new MachineOptions { Memory = "1G", Cpus = TwoThreads.Count, Seed = 1 });
        _kmem = new KmemContender(_machine);
        _glibc = new GlibcContender();
        _mimalloc = NativeContender.TryLoad("mimalloc", out _);
        _jemalloc = NativeContender.TryLoad("jemalloc", out _);
        _tcmalloc = NativeContender.TryLoad("tcmalloc", out _);
        _size = (nuint)PageContender.PageSize << Order;
        (_mi1, _mi2) = _mimalloc?.Args(Order) ?? default;
        (_je1, _je2) = _jemalloc?.Args(Order) ?? default;
        (_tc1, _tc2) = _tcmalloc?.Args(Order) ?? default;
        _threads = new TwoThreads();
        _kmemWork = Work(_kmem);
        _glibcWork = Work(_glibc);
        _mimallocWork = _mimalloc is null ? null : Work(_mimalloc);
        _jemallocWork = _jemalloc is null ? null : Work(_jemalloc);
        _tcmallocWork = _tcmalloc is null ? null : Work(_tcmalloc);
    }

    private Action<int> Work(PageContender c)
    {
        int order = Order;
        return cpu => c.RunPairsOnCpu(cpu, order, PairsPerThread);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _threads?.Dispose();
        _machine?.Dispose();
    }

    [Benchmark(Baseline = true, Description = "Kmem")]
    [BenchmarkCategory(OneThread)]
    public void Kmem() => _kmem!.Pair(Order);

    [Benchmark(Description = "glibc")]
    [BenchmarkCategory(OneThread)]
    public void Glibc() => GlibcContender.Pair(_size);

    [Benchmark(Description = "mimalloc")]
    [BenchmarkCategory(OneThread), Contender("mimalloc")]
    public void Mimalloc() => _mimalloc!.Pair(_mi1, _mi2, Order);

    [Benchmark(Description = "jemalloc")]
    [BenchmarkCategory(OneThread), Contender("jemalloc")]
    public void Jemalloc() => _jemalloc!.Pair(_je1, _je2, Order);

    [Benchmark(Description = "tcmalloc")]
    [BenchmarkCategory(OneThread), Contender("tcmalloc")]
    public void Tcmalloc() => _tcmalloc!.Pair(_tc1, _tc2, Order);

    [Benchmark(Baseline = true, Description = "Kmem", OperationsPerInvoke = PairsPerThread)]
    [BenchmarkCategory(TwoThreadsCategory)]
    public void KmemTwoThreads() => _threads!.Run(_kmemWork!);

    [Benchmark(Description = "glibc", OperationsPerInvoke = PairsPerThread)]
    [BenchmarkCategory(TwoThreadsCategory)]
    public void GlibcTwoThreads() => _threads!.Run(_glibcWork!);

    [Benchmark(Description = "mimalloc", OperationsPerInvoke = PairsPerThread)]
    [BenchmarkCategory(TwoThreadsCategory), Contender("mimalloc")]
    public void MimallocTwoThreads() => _threads!.Run(_mimallocWork!);

    [Benchmark(Description = "jemalloc", OperationsPerInvoke = PairsPerThread)]
    [BenchmarkCategory(TwoThreadsCategory), Contender("jemalloc")]
    public void JemallocTwoThreads() => _threads!.Run(_jemallocWork!);

    [Benchmark(Description = "tcmalloc", OperationsPerInvoke = PairsPerThread)]
    [BenchmarkCategory(TwoThreadsCategory), Contender("tcmalloc")]
    public void TcmallocTwoThreads() => _threads!.Run(_tcmallocWork!);
}
