// The workloads of the quick comparison, after the classic allocator benchmarks
// (re-written here): alloc+free pairs of one size, a batch of random sizes freed
// in random order, xmalloc-test's producer/consumer cross-thread free, larson's
// threads replacing random live objects, and Hoard's cache-scratch (passive false
// sharing). Each loop is generic over the allocator struct and compiled fully
// optimised at once (AggressiveOptimization), so no tiering happens while timing.
// A run's state belongs to the controlling thread and its two workers.
using System.Runtime.CompilerServices;

namespace Kmem.Bench;

/// <summary>One workload of the comparison; <see cref="Create"/> prepares it for one contender.</summary>
internal abstract class Workload(string name, int threads, int maxSize)
{
    /// <summary>The row's name.</summary>
    public string Name { get; } = name;

    /// <summary>Worker threads taking part (1 or 2).</summary>
    public int Threads { get; } = threads;

    /// <summary>The largest object the workload asks for.</summary>
    public int MaxSize { get; } = maxSize;

    /// <summary>A page-sized row, where Kmem's page allocator and vmalloc take part too.</summary>
    public bool PageRow { get; init; }

    /// <summary>What one operation is, for the table's notes.</summary>
    public abstract string Operation { get; }

    /// <summary>Operations per unit of <see cref="WorkloadRun.Run"/> (a batch is 10,000 pairs).</summary>
    public virtual int OperationsPerUnit => 1;

    public abstract WorkloadRun Create<TAlloc, THandle>(Contender<TAlloc, THandle> c, TwoThreads threads)
        where TAlloc : struct, IAllocator<THandle>;
}

/// <summary>A workload prepared for one contender: time <c>units</c> of it, then dispose (frees what is held).</summary>
internal abstract class WorkloadRun : IDisposable
{
    /// <summary>The wall time of <paramref name="units"/> units of work (per thread).</summary>
    public abstract TimeSpan Run(long units);

    public virtual void Dispose()
    {
    }
}

/// <summary>Alloc then free of one size, on one thread or on two at once (each its own pairs).</summary>
internal sealed class PairWorkload(int size, int threads) : Workload(Label(size, threads), threads, size)
{
    public int Size { get; } = size;

    public override string Operation => "one alloc+free pair (per thread)";

    private static string Label(int size, int threads) =>
        (size >= 1 << 20 && size % (1 << 20) == 0 ? $"pair {size >> 20} MiB"
            : size >= 1024 && size % 1024 == 0 ? $"pair {size >> 10} KiB"
            : $"pair {size} B") + (threads > 1 ? $", {threads} threads" : "");

    public override WorkloadRun Create<TAlloc, THandle>(Contender<TAlloc, THandle> c, TwoThreads threads) => new Prepared<TAlloc, THandle>(this, c, threads);

    private sealed class Prepared<TAlloc, THandle>(PairWorkload w, Contender<TAlloc, THandle> c, TwoThreads threads) : WorkloadRun
        where TAlloc : struct, IAllocator<THandle>
    {
        public override TimeSpan Run(long units) => threads.Run(cpu =>
        {
            using (c.EnterCpu(cpu))
            {
                Pairs<TAlloc, THandle>(c.Allocator, w.Size, units);
            }
        }, w.Threads);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pairs<TAlloc, THandle>(TAlloc a, int size, long count) where TAlloc : struct, IAllocator<THandle>
    {
        for (long i = 0; i < count; i++)
        {
            THandle h = a.Alloc(size);
            a.Free(h, size);
        }
    }
}

/// <summary>10,000 objects of random sizes (<see cref="SizeDistribution"/>) allocated and touched, then freed in a
/// random order; the same sizes and order every time. One unit is one batch.</summary>
internal sealed class BatchWorkload() : Workload("batch 10,000 random", 1, SizeDistribution.MaxSize)
{
    public const int Objects = 10_000;
    public const int Seed = 42;

    public int[] Sizes { get; } = SizeDistribution.Sizes(Objects, Seed);

    public int[] FreeOrder { get; } = SizeDistribution.Permutation(Objects, Seed + 1);

    public override string Operation => "one alloc+free pair of the batch";

    public override int OperationsPerUnit => Objects;

    public override WorkloadRun Create<TAlloc, THandle>(Contender<TAlloc, THandle> c, TwoThreads threads) => new Prepared<TAlloc, THandle>(this, c, threads);

    private sealed class Prepared<TAlloc, THandle>(BatchWorkload w, Contender<TAlloc, THandle> c, TwoThreads threads) : WorkloadRun
        where TAlloc : struct, IAllocator<THandle>
    {
        private readonly THandle[] _handles = new THandle[Objects];

        public override TimeSpan Run(long units) => threads.Run(cpu =>
        {
            using (c.EnterCpu(cpu))
            {
                for (long u = 0; u < units; u++)
                {
                    Batch(c.Allocator, w.Sizes, w.FreeOrder, _handles);
                }
            }
        }, 1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Batch<TAlloc, THandle>(TAlloc a, int[] sizes, int[] order, THandle[] handles) where TAlloc : struct, IAllocator<THandle>
    {
        for (int i = 0; i < sizes.Length; i++)
        {
            THandle h = a.Alloc(sizes[i]);
            a.Touch(h);
            handles[i] = h;
        }
        for (int j = 0; j < order.Length; j++)
        {
            int k = order[j];
            a.Free(handles[k], sizes[k]);
            handles[k] = default!;
        }
    }
}

/// <summary>xmalloc-test style: thread 0 allocates 64 B objects, touches them and hands them through a ring to
/// thread 1, which frees them (every free is a free of another CPU's object). One unit is one object.</summary>
internal sealed class CrossThreadWorkload() : Workload("cross-thread free 64 B", 2, Size)
{
    public const int Size = 64;
    private const int RingSize = 1024;

    public override string Operation => "one object allocated on thread 0 and freed on thread 1 (wall time / objects)";

    public override WorkloadRun Create<TAlloc, THandle>(Contender<TAlloc, THandle> c, TwoThreads threads) => new Prepared<TAlloc, THandle>(c, threads);

    private sealed class Prepared<TAlloc, THandle>(Contender<TAlloc, THandle> c, TwoThreads threads) : WorkloadRun
        where TAlloc : struct, IAllocator<THandle>
    {
        private readonly Ring<THandle> _ring = new(RingSize);

        public override TimeSpan Run(long units) => threads.Run(cpu =>
        {
            using (c.EnterCpu(cpu))
            {
                if (cpu == 0)
                {
                    Produce(c.Allocator, _ring, units);
                }
                else
                {
                    Consume(c.Allocator, _ring, units);
                }
            }
        }, 2);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Produce<TAlloc, THandle>(TAlloc a, Ring<THandle> ring, long count) where TAlloc : struct, IAllocator<THandle>
    {
        for (long i = 0; i < count; i++)
        {
            THandle h = a.Alloc(Size);
            a.Touch(h);
            ring.Push(h);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Consume<TAlloc, THandle>(TAlloc a, Ring<THandle> ring, long count) where TAlloc : struct, IAllocator<THandle>
    {
        for (long i = 0; i < count; i++)
        {
            a.Free(ring.Pop(), Size);
        }
    }
}

/// <summary>A single-producer single-consumer ring: the producer writes the slot then publishes the tail, the
/// consumer reads then publishes the head; each side spins (without sleeping) while the ring is full or empty.</summary>
internal sealed class Ring<T>
{
    private readonly T[] _slots;
    private readonly int _mask;
    private PaddedLong _head; // next slot to read, written by the consumer
    private PaddedLong _tail; // next slot to write, written by the producer

    public Ring(int size)
    {
        if (size <= 0 || (size & (size - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "a ring's size is a power of two");
        }
        _slots = new T[size];
        _mask = size - 1;
    }

    public void Push(T item)
    {
        long tail = _tail.Value;
        var spin = new SpinWait();
        while (tail - Volatile.Read(ref _head.Value) == _slots.Length)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }
        _slots[tail & _mask] = item;
        Volatile.Write(ref _tail.Value, tail + 1);
    }

    public T Pop()
    {
        long head = _head.Value;
        var spin = new SpinWait();
        while (Volatile.Read(ref _tail.Value) == head)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }
        T item = _slots[head & _mask];
        _slots[head & _mask] = default!;
        Volatile.Write(ref _head.Value, head + 1);
        return item;
    }
}

/// <summary>A long alone on its cache lines, so the producer's and consumer's indices never share one.</summary>
[System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Explicit, Size = 256)]
internal struct PaddedLong
{
    [System.Runtime.InteropServices.FieldOffset(128)]
    public long Value;
}

/// <summary>larson style: each thread keeps <see cref="Live"/> objects of random sizes (<see cref="SizeDistribution"/>)
/// and replaces a random one at a time (free it, allocate a new size, touch it). One unit is one replacement per
/// thread; the objects are allocated before timing starts and freed after.</summary>
internal sealed class LarsonWorkload(int threads) : Workload($"larson {threads} thread{(threads > 1 ? "s" : "")}", threads, SizeDistribution.MaxSize)
{
    public const int Live = 1000;
    private const int Script = 1 << 16;

    public override string Operation => "one replacement (free + alloc + touch) per thread";

    public override WorkloadRun Create<TAlloc, THandle>(Contender<TAlloc, THandle> c, TwoThreads threads) => new Prepared<TAlloc, THandle>(this, c, threads);

    /// <summary>One thread's objects and its fixed script of (slot, new size) replacements.</summary>
    internal sealed class ThreadState<THandle>
    {
        public THandle[] Slots { get; } = new THandle[Live];
        public int[] SlotSizes { get; }
        public int[] ScriptSlots { get; } = new int[Script];
        public int[] ScriptSizes { get; }
        public int Cursor { get; set; }

        public ThreadState(int seed)
        {
            SlotSizes = SizeDistribution.Sizes(Live, seed);
            ScriptSizes = SizeDistribution.Sizes(Script, seed + 1000);
            var random = new Random(seed + 2000);
            for (int i = 0; i < Script; i++)
            {
                ScriptSlots[i] = random.Next(Live);
            }
        }

        public long LiveBytes => SlotSizes.Sum(s => (long)s);
    }

    private sealed class Prepared<TAlloc, THandle> : WorkloadRun where TAlloc : struct, IAllocator<THandle>
    {
        private readonly LarsonWorkload _w;
        private readonly Contender<TAlloc, THandle> _c;
        private readonly TwoThreads _threads;
        private readonly ThreadState<THandle>[] _states;

        public Prepared(LarsonWorkload w, Contender<TAlloc, THandle> c, TwoThreads threads)
        {
            (_w, _c, _threads) = (w, c, threads);
            _states = [.. Enumerable.Range(0, w.Threads).Select(t => new ThreadState<THandle>(100 + t))];
            threads.Run(cpu =>
            {
                using (c.EnterCpu(cpu))
                {
                    Fill(c.Allocator, _states[cpu], touchAll: false);
                }
            }, w.Threads);
        }

        public override TimeSpan Run(long units) => _threads.Run(cpu =>
        {
            using (_c.EnterCpu(cpu))
            {
                Replace(_c.Allocator, _states[cpu], units, fill: false);
            }
        }, _w.Threads);

        public override void Dispose()
        {
            _threads.Run(cpu =>
            {
                using (_c.EnterCpu(cpu))
                {
                    Drain(_c.Allocator, _states[cpu]);
                }
            }, _w.Threads);
            base.Dispose();
        }
    }

    /// <summary>Allocates every slot; with <paramref name="touchAll"/> writes all its bytes, else the first.</summary>
    internal static void Fill<TAlloc, THandle>(TAlloc a, ThreadState<THandle> s, bool touchAll) where TAlloc : struct, IAllocator<THandle>
    {
        for (int i = 0; i < Live; i++)
        {
            s.Slots[i] = a.Alloc(s.SlotSizes[i]);
            if (touchAll)
            {
                a.Fill(s.Slots[i], s.SlotSizes[i]);
            }
            else
            {
                a.Touch(s.Slots[i]);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Replace<TAlloc, THandle>(TAlloc a, ThreadState<THandle> s, long count, bool fill) where TAlloc : struct, IAllocator<THandle>
    {
        THandle[] slots = s.Slots;
        int[] slotSizes = s.SlotSizes, scriptSlots = s.ScriptSlots, scriptSizes = s.ScriptSizes;
        int cursor = s.Cursor;
        for (long i = 0; i < count; i++)
        {
            int slot = scriptSlots[cursor];
            int size = scriptSizes[cursor];
            cursor = (cursor + 1) & (Script - 1);
            a.Free(slots[slot], slotSizes[slot]);
            THandle h = a.Alloc(size);
            if (fill)
            {
                a.Fill(h, size);
            }
            else
            {
                a.Touch(h);
            }
            slots[slot] = h;
            slotSizes[slot] = size;
        }
        s.Cursor = cursor;
    }

    internal static void Drain<TAlloc, THandle>(TAlloc a, ThreadState<THandle> s) where TAlloc : struct, IAllocator<THandle>
    {
        for (int i = 0; i < Live; i++)
        {
            a.Free(s.Slots[i], s.SlotSizes[i]);
            s.Slots[i] = default!;
        }
    }
}

/// <summary>Hoard's cache-scratch: the controlling thread allocates one 8-byte object per thread (likely on one
/// cache line) and hands it over; each thread frees it, then repeatedly allocates an 8-byte object, increments
/// each of its bytes <see cref="Rounds"/> times and frees it. An allocator that gives the two threads
/// neighbouring objects makes their writes fight over a cache line. One unit is one object per thread.</summary>
internal sealed class CacheScratchWorkload() : Workload("cache-scratch 8 B", 2, Size)
{
    public const int Size = 8;
    public const int Rounds = 100;

    public override string Operation => $"alloc, {Rounds}x{Size} byte increments, free (per thread)";

    public override WorkloadRun Create<TAlloc, THandle>(Contender<TAlloc, THandle> c, TwoThreads threads) => new Prepared<TAlloc, THandle>(c, threads);

    private sealed class Prepared<TAlloc, THandle>(Contender<TAlloc, THandle> c, TwoThreads threads) : WorkloadRun
        where TAlloc : struct, IAllocator<THandle>
    {
        private readonly THandle[] _given = new THandle[TwoThreads.Count];

        public override TimeSpan Run(long units)
        {
            using (c.EnterCpu(0))
            {
                for (int t = 0; t < _given.Length; t++)
                {
                    _given[t] = c.Allocator.Alloc(Size);
                }
            }
            return threads.Run(cpu =>
            {
                using (c.EnterCpu(cpu))
                {
                    c.Allocator.Free(_given[cpu], Size);
                    _given[cpu] = default!;
                    Scratch<TAlloc, THandle>(c.Allocator, units);
                }
            }, 2);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scratch<TAlloc, THandle>(TAlloc a, long count) where TAlloc : struct, IAllocator<THandle>
    {
        for (long i = 0; i < count; i++)
        {
            THandle h = a.Alloc(Size);
            a.Scribble(h, Size, Rounds);
            a.Free(h, Size);
        }
    }
}
