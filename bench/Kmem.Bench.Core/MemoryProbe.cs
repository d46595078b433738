// Memory efficiency of the batch and larson workloads: the memory an allocator
// holds over the bytes requested, with every object's bytes written. Measured in
// a child process of the benchmark itself (--memory-child NAME WORKLOAD), one per
// contender, so allocators never share a heap: every contender, Kmem included, by
// the process's VmRSS before and after (Kmem's slab pages count as the pages of
// its memory file they touch, beside its metadata and thread magazines). The code the measurement runs is compiled before the first
// reading so that the JIT's own memory is not counted.
using System.Globalization;
using System.Reflection;
using System.Runtime.CompilerServices;

namespace Kmem.Bench;

/// <summary>What a memory child measured.</summary>
internal readonly record struct MemoryFigures(long RequestedBytes, long HeldBytes);

internal static class MemoryProbe
{
    /// <summary>The workloads measured for memory.</summary>
    public static IReadOnlyList<string> Workloads { get; } = ["batch", "larson"];

    /// <summary>Replacements per thread in the larson measurement before the reading.</summary>
    public const int LarsonReplacements = 100_000;

    /// <summary>Runs in the child: measures <paramref name="workload"/> for the contender named <paramref name="name"/>
    /// and prints one line, "held requested" in bytes, or "skipped: why".</summary>
    public static int RunChild(string name, string workload, bool pinKmemThreads, TextWriter output)
    {
        using var set = ContenderSet.Create(n => n == name, pinKmemThreads);
        if (set.Contenders.Count == 0)
        {
            output.WriteLine($"skipped: {(set.Notes.Count > 0 ? set.Notes[0] : $"no contender named {name}")}");
            return 0;
        }
        var figures = set.Contenders[0].MeasureMemory(workload);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{figures.HeldBytes} {figures.RequestedBytes}"));
        return 0;
    }

    /// <summary>Measures <paramref name="workload"/> ("batch" or "larson") for <paramref name="c"/>.</summary>
    public static MemoryFigures Measure<TAlloc, THandle>(Contender<TAlloc, THandle> c, string workload) where TAlloc : struct, IAllocator<THandle> =>
        workload switch
        {
            "batch" => Batch(c),
            "larson" => Larson(c),
            _ => throw new ArgumentException($"unknown memory workload \"{workload}\" (batch or larson)", nameof(workload)),
        };

    /// <summary>All 10,000 objects of the batch allocated and written; the reading is taken with all of them live.</summary>
    public static MemoryFigures Batch<TAlloc, THandle>(Contender<TAlloc, THandle> c) where TAlloc : struct, IAllocator<THandle>
    {
        var w = new BatchWorkload();
        var handles = new THandle[BatchWorkload.Objects];
        Prepare<TAlloc, THandle>(nameof(AllocateAll));
        using (c.EnterCpu(0))
        {
            Settle(c);
            long before = Contender.HeldBytes();
            AllocateAll(c.Allocator, w.Sizes, handles);
            long after = Contender.HeldBytes();
            long requested = w.Sizes.Sum(s => (long)s);
            for (int i = 0; i < handles.Length; i++)
            {
                c.Allocator.Free(handles[i], w.Sizes[i]);
            }
            return new MemoryFigures(requested, after - before);
        }
    }

    /// <summary>Two threads each fill 1,000 slots and make <see cref="LarsonReplacements"/> replacements, writing every
    /// object; the reading is taken with the 2,000 last objects live.</summary>
    public static MemoryFigures Larson<TAlloc, THandle>(Contender<TAlloc, THandle> c) where TAlloc : struct, IAllocator<THandle>
    {
        var states = new LarsonWorkload.ThreadState<THandle>[TwoThreads.Count];
        for (int t = 0; t < states.Length; t++)
        {
            states[t] = new LarsonWorkload.ThreadState<THandle>(100 + t);
        }
        using var threads = new TwoThreads();
        Prepare<TAlloc, THandle>(nameof(LarsonWorkload.Fill), typeof(LarsonWorkload));
        Prepare<TAlloc, THandle>(nameof(LarsonWorkload.Replace), typeof(LarsonWorkload));
        using (c.EnterCpu(0))
        {
            Settle(c);
        }
        long before = Contender.HeldBytes();
        threads.Run(cpu =>
        {
            using (c.EnterCpu(cpu))
            {
                LarsonWorkload.Fill(c.Allocator, states[cpu], touchAll: true);
                LarsonWorkload.Replace(c.Allocator, states[cpu], LarsonReplacements, fill: true);
            }
        });
        long after = Contender.HeldBytes();
        long requested = states.Sum(s => s.LiveBytes);
        threads.Run(cpu =>
        {
            using (c.EnterCpu(cpu))
            {
                LarsonWorkload.Drain(c.Allocator, states[cpu]);
            }
        });
        return new MemoryFigures(requested, after - before);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AllocateAll<TAlloc, THandle>(TAlloc a, int[] sizes, THandle[] handles) where TAlloc : struct, IAllocator<THandle>
    {
        for (int i = 0; i < sizes.Length; i++)
        {
            handles[i] = a.Alloc(sizes[i]);
            a.Fill(handles[i], sizes[i]);
        }
    }

    /// <summary>Compiles the generic method <paramref name="name"/> of <paramref name="owner"/> for this allocator.</summary>
    private static void Prepare<TAlloc, THandle>(string name, Type? owner = null)
    {
        var method = (owner ?? typeof(MemoryProbe)).GetMethod(name, BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)!
            .MakeGenericMethod(typeof(TAlloc), typeof(THandle));
        RuntimeHelpers.PrepareMethod(method.MethodHandle);
    }

    /// <summary>One small object allocated, written and freed (the allocator's own set-up), then a full collection.</summary>
    private static void Settle<TAlloc, THandle>(Contender<TAlloc, THandle> c) where TAlloc : struct, IAllocator<THandle>
    {
        THandle h = c.Allocator.Alloc(64);
        c.Allocator.Fill(h, 64);
        c.Allocator.Free(h, 64);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }
}
