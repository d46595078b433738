// struct percpu_counter (include/linux/percpu_counter.h, lib/percpu_counter.c of 6.1): a
// 64-bit count kept mostly in per-CPU s32 deltas. A delta is folded into the shared count, under
// the counter's lock, once it reaches ±batch (percpu_counter_batch = max(32, 2 × CPUs)); so
// Read is cheap but off by less than batch × CPUs, Sum is exact. Invariant: the true value is
// _count + Σ deltas. Two threads may hold one CPU id here, so a delta is updated by
// compare-and-swap, and a fold takes the delta out by CAS while holding the lock.
using Kmem.Physical;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Kmem.Percpu;

namespace Kmem;

/// <summary>
/// percpu_counter: a counter many CPUs can add to without sharing a cache line. Create one with
/// <see cref="Machine.PercpuCounterInit"/>; dispose it (percpu_counter_destroy) to free its per-CPU deltas.
/// </summary>
/// <remarks>Every member may be called from any thread. <see cref="Add"/> touches only the calling CPU's delta
/// unless that delta reaches the batch.</remarks>
public sealed class PercpuCounter : IDisposable
{
    private readonly PercpuAllocator _allocator;
    private readonly MachineLifetime _life;
    private readonly CpuTopology _cpus;
    private readonly Lock _lock = new();
    private readonly PercpuPtr<int> _counters;
    /// <summary>pcpu_unit_size: the distance between two CPUs' deltas.</summary>
    private readonly nint _stride;
    private long _count;
    private bool _disposed;

    private PercpuCounter(PercpuAllocator allocator, CpuTopology cpus, PercpuPtr<int> counters, long amount, MachineLifetime life)
    {
        _life = life;
        _allocator = allocator;
        _cpus = cpus;
        _counters = counters;
        _stride = allocator.UnitSize;
        _count = amount;
        Batch = Math.Max(32, 2 * cpus.Count);
    }

    /// <summary>percpu_counter_init: a counter at <paramref name="amount"/>, or null when its per-CPU deltas
    /// cannot be allocated with <paramref name="gfp"/>.</summary>
    internal static PercpuCounter? Init(PercpuAllocator allocator, CpuTopology cpus, long amount, Gfp gfp, MachineLifetime life)
    {
        var counters = new PercpuPtr<int>(allocator.Alloc(sizeof(int), sizeof(int), false, gfp, "percpu_counter_init"));
        return counters.IsNull ? null : new PercpuCounter(allocator, cpus, counters, amount, life);
    }

    /// <summary>percpu_counter_batch: the delta at which a CPU folds into the shared count, max(32, 2 × CPUs).</summary>
    public int Batch { get; }

    /// <summary>percpu_counter_add: adds <paramref name="amount"/> with the default batch.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(long amount) { using var _ = _life.Enter(); AddBatch(amount, Batch); }

    /// <summary>percpu_counter_inc.</summary>
    public void Inc() { using var _ = _life.Enter(); AddBatch(1, Batch); }

    /// <summary>percpu_counter_dec.</summary>
    public void Dec() { using var _ = _life.Enter(); AddBatch(-1, Batch); }

    /// <summary>percpu_counter_sub.</summary>
    public void Sub(long amount) { using var _ = _life.Enter(); AddBatch(-amount, Batch); }

    /// <summary>percpu_counter_add_batch: adds <paramref name="amount"/> to this CPU's delta; a delta that would
    /// reach ±<paramref name="batch"/> is folded, with the amount, into the shared count under the lock.</summary>
    /// <exception cref="ObjectDisposedException">The counter was destroyed.</exception>
    public unsafe void AddBatch(long amount, int batch)
    {
        using var _ = _life.Enter();
        ObjectDisposedException.ThrowIf(_disposed, this);
        int* slot = Delta(_cpus.Current);
        while (true)
        {
            int old = Volatile.Read(ref *slot);
            long count = old + amount;
            if (Math.Abs(count) < batch)
            {
                if (Interlocked.CompareExchange(ref *slot, (int)count, old) == old)
                {
                    return;
                }
                continue;
            }
            if (FoldLocked(slot, old, count))
            {
                return;
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private unsafe bool FoldLocked(int* slot, int old, long count)
    {
        lock (_lock)
        {
            if (Interlocked.CompareExchange(ref *slot, 0, old) != old)
            {
                return false;
            }
            _count += count;
            return true;
        }
    }

    /// <summary>percpu_counter_read: the shared count alone; cheap, and off by less than
    /// <see cref="Batch"/> × CPUs (may be negative for a counter that is not).</summary>
    public long Read() { using var _ = _life.Enter(); return Interlocked.Read(ref _count); }

    /// <summary>percpu_counter_read_positive: <see cref="Read"/>, or 0 when negative.</summary>
    public long ReadPositive() { using var _ = _life.Enter(); return Math.Max(Read(), 0); }

    /// <summary>percpu_counter_sum: the exact value, the shared count plus every CPU's delta, under the lock.</summary>
    /// <exception cref="ObjectDisposedException">The counter was destroyed.</exception>
    public unsafe long Sum()
    {
        using var _ = _life.Enter();
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            long sum = _count;
            for (int cpu = 0; cpu < _cpus.Count; cpu++)
            {
                sum += Volatile.Read(ref *Delta(cpu));
            }
            return sum;
        }
    }

    /// <summary>percpu_counter_sum_positive: <see cref="Sum"/>, or 0 when negative.</summary>
    public long SumPositive() { using var _ = _life.Enter(); return Math.Max(Sum(), 0); }

    /// <summary>percpu_counter_compare: compares with <paramref name="rhs"/>, using the cheap <see cref="Read"/>
    /// when it is further than batch × CPUs away, else the exact <see cref="Sum"/>.</summary>
    /// <returns>1, 0 or -1.</returns>
    public int Compare(long rhs) { using var _ = _life.Enter(); return CompareBatch(rhs, Batch); }

    /// <summary>__percpu_counter_compare with an explicit batch.</summary>
    /// <returns>1, 0 or -1.</returns>
    public int CompareBatch(long rhs, int batch)
    {
        using var _ = _life.Enter();
        long count = Read();
        if (Math.Abs(count - rhs) > (long)batch * _cpus.Count)
        {
            return count > rhs ? 1 : -1;
        }
        count = Sum();
        return count.CompareTo(rhs);
    }

    /// <summary>percpu_counter_set: every delta to 0 and the count to <paramref name="amount"/>.</summary>
    public unsafe void Set(long amount)
    {
        using var _ = _life.Enter();
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            for (int cpu = 0; cpu < _cpus.Count; cpu++)
            {
                Volatile.Write(ref *Delta(cpu), 0);
            }
            Interlocked.Exchange(ref _count, amount);
        }
    }

    /// <summary>percpu_counter_destroy: frees the per-CPU deltas. Idempotent.</summary>
    public void Dispose()
    {
        // The machine's Dispose gave every per-CPU chunk back already.
        if (_life.IsDisposed)
        {
            return;
        }
        using var _ = _life.Enter();
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
        }
        // The deltas are this counter's alone and freed once, so free_percpu cannot refuse them.
        string? problem = _allocator.Free(_counters.Unit0);
        Debug.Assert(problem is null, problem);
    }

    /// <summary>The delta of <paramref name="cpu"/>.</summary>
    private unsafe int* Delta(int cpu) => (int*)(_counters.Unit0 + cpu * _stride);

    /// <inheritdoc/>
    public override string ToString() => $"percpu_counter {Interlocked.Read(ref _count)} (batch {Batch})";
}
