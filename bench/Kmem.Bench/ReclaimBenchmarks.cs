// Reclaim and compaction under BenchmarkDotNet: pages reclaimed per second by
// direct reclaim (clean page-cache pages dropped; anonymous pages written to a
// real swap file, the aging passes that free nothing included) and the cost of compacting a fragmented 64 MiB machine (its
// migrated MiB are printed by the setup, so the cost per MiB is the mean over
// that). Every iteration rebuilds its machine state in [IterationSetup], so one
// invocation per iteration.
using BenchmarkDotNet.Attributes;
using Kmem.Workload;

namespace Kmem.Bench;

[InProcess]
[WarmupCount(1)]
[IterationCount(5)]
[InvocationCount(1)]
[MemoryDiagnoser]
#pragma warning disable CA1001 // BenchmarkDotNet disposes through [IterationCleanup]
public class ReclaimBenchmarks
#pragma warning restore CA1001
{
    /// <summary>Pages each reclaim benchmark frees (16 MiB).</summary>
    public const int Pages = 4096;

    private Machine? _m;
    private string? _swap, _file;

    private static Machine Boot() => Machine.Boot(new MachineOptions { Memory = "128M", Cpus = 1, Seed = 1, Kswapd = false });

    [IterationSetup(Target = nameof(ReclaimCleanPageCache))]
    public void SetupPageCache()
    {
        _m = Boot();
        _file = Path.GetTempFileName();
        File.WriteAllBytes(_file, new byte[Pages * 4096 * 2]);
        var f = _m.OpenFile(_file);
        var buf = new byte[1 << 20];
        for (long off = 0; off < f.Length; off += buf.Length)
        {
            f.Read(off, buf);
        }
    }

    /// <summary>Direct reclaim of 4096 clean page-cache pages (ns per page = mean / 4096).</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public long ReclaimCleanPageCache() => ReclaimPages();

    [IterationSetup(Target = nameof(ReclaimAnonToSwap))]
    public void SetupAnon()
    {
        _m = Boot();
        _swap = Path.GetTempFileName();
        _m.Mkswap(_swap, 64L << 20);
        _m.Swapon(_swap);
        var t = _m.CreateTask("anon")!;
        ulong a = t.Mmap((ulong)Pages * 4096 * 2);
        var page = new byte[4096];
        for (int i = 0; i < Pages * 2; i++)
        {
            page[0] = (byte)i;
            t.Write(a + (ulong)i * 4096, page);
        }
    }

    /// <summary>Direct reclaim of 4096 anonymous pages, each written to the swap file (ns per page = mean / 4096).</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public long ReclaimAnonToSwap() => ReclaimPages();

    /// <summary>Passes in a row that may free nothing: freshly written anonymous pages are all referenced, so
    /// the first passes only age them (activate, then deactivate) before any can be swapped out.</summary>
    private const int MaxEmptyPasses = 16;

    private long ReclaimPages()
    {
        var zonelist = _m!.PageAllocator.Nodes[0].ZonelistFallback;
        long freed = 0;
        int empty = 0;
        while (freed < Pages)
        {
            long n = _m.Mm.TryToFreePages(Gfp.Kernel, 0, zonelist, ZoneType.Normal);
            empty = n == 0 ? empty + 1 : 0;
            if (empty == MaxEmptyPasses)
            {
                throw new InvalidOperationException($"reclaim stalled after {freed} pages: {MaxEmptyPasses} passes in a row freed nothing");
            }
            freed += n;
        }
        return freed;
    }

    [IterationSetup(Target = nameof(CompactFragmentedMachine))]
    public void SetupFragmented()
    {
        _m = Machine.Boot(new MachineOptions { Memory = "64M", Cpus = 1, Seed = 1, Kswapd = false });
        FragmentedMemory.Interleave(_m);
    }

    /// <summary>compact_memory of a 64 MiB machine whose free pages sit between a task's pages; returns the
    /// pages migrated (printed once, for the cost per MiB).</summary>
    [Benchmark]
    public long CompactFragmentedMachine()
    {
        long moved = _m!.CompactMemory();
        Console.WriteLine($"// compaction migrated {moved} pages ({moved * 4096.0 / (1 << 20):F1} MiB)");
        return moved;
    }

    [IterationCleanup]
    public void Cleanup()
    {
        _m?.Dispose();
        _m = null;
        foreach (var p in new[] { _swap, _file })
        {
            if (p is not null)
            {
                File.Delete(p);
            }
        }
        _swap = _file = null;
    }
}
