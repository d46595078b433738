// Two long-lived worker threads, each bound to its own host core, that run a
// piece of work at the same time (thread i owns CPU i of a Kmem machine), or on
// thread 0 alone. A round's wall time, divided by the operations one thread
// made, is the per-operation time under that concurrency: perfect two-thread
// scaling shows the one-thread figure again. Rounds are started and awaited by
// one controlling thread at a time. LineHandoffNs measures what a line costs to
// cross between the two cores, which the host's placement of them decides.
using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace Kmem.Bench;

/// <summary>Two worker threads released together for each round of work.</summary>
internal sealed class TwoThreads : IDisposable
{
    public const int Count = 2;

    private readonly Thread[] _threads = new Thread[Count];
    private readonly SemaphoreSlim[] _go = [new(0), new(0)];
    private readonly CountdownEvent _done = new(Count);
    private Action<int>? _work;
    private Exception? _failure;
    private volatile bool _stop;
    private bool _disposed;

    public TwoThreads()
    {
        int[] hostCpus = HostCpus.Allowed();
        BoundToCores = hostCpus.Length >= Count;
        for (int i = 0; i < Count; i++)
        {
            int cpu = i;
            int hostCpu = BoundToCores ? hostCpus[i] : -1;
            _threads[i] = new Thread(() => Loop(cpu, hostCpu)) { IsBackground = true, Name = $"bench-cpu{cpu}" };
            _threads[i].Start();
        }
    }

    /// <summary>Whether each thread was bound to a host core of its own (false when fewer than two are allowed).</summary>
    public bool BoundToCores { get; }

    /// <summary>Runs <paramref name="work"/>(cpu) on both threads at once and returns the round's wall time.</summary>
    public TimeSpan Run(Action<int> work) => Run(work, Count);

    /// <summary>Runs <paramref name="work"/>(cpu) on the first <paramref name="threads"/> threads (1 or 2) at once
    /// and returns the round's wall time; an exception thrown by the work is thrown here.</summary>
    public TimeSpan Run(Action<int> work, int threads)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(threads, Count);
        _work = work;
        _failure = null;
        _done.Reset(threads);
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < threads; i++)
        {
            _go[i].Release();
        }
        _done.Wait();
        var elapsed = Stopwatch.GetElapsedTime(start);
        if (_failure is { } failure)
        {
            ExceptionDispatchInfo.Capture(failure).Throw();
        }
        return elapsed;
    }

    /// <summary>How long one cache line takes to go from one worker's core to the other's: the median, over
    /// <paramref name="rounds"/> rounds of <paramref name="trips"/> round trips each, of half a round trip of a
    /// counter the two threads take turns to increment. Every two-thread figure pays it for each line the threads
    /// share (the objects one hands the other, the allocator's own shared state), whatever the allocator.</summary>
    /// <returns>Nanoseconds per one-way handoff.</returns>
    public double LineHandoffNs(int trips = 20_000, int rounds = 5)
    {
        var line = new PaddedLong[1];
        var samples = new double[rounds];
        for (int r = 0; r < rounds; r++)
        {
            line[0].Value = 0;
            var elapsed = Run(cpu =>
            {
                // Thread 0 moves the counter from even to odd, thread 1 from odd to even.
                ref long v = ref line[0].Value;
                for (long next = cpu; next < 2L * trips; next += 2)
                {
                    while (Volatile.Read(ref v) != next)
                    {
                        Thread.SpinWait(1);
                    }
                    Volatile.Write(ref v, next + 1);
                }
            });
            samples[r] = elapsed.TotalNanoseconds / (2.0 * trips);
        }
        return Summary.Of(samples).Median;
    }

    private void Loop(int cpu, int hostCpu)
    {
        if (hostCpu >= 0)
        {
            HostCpus.BindCurrentThread(hostCpu);
        }
        while (true)
        {
            _go[cpu].Wait();
            if (_stop)
            {
                return;
            }
            try
            {
                _work!(cpu);
            }
#pragma warning disable CA1031 // handed to the controlling thread, which throws it
            catch (Exception e)
#pragma warning restore CA1031
            {
                Interlocked.CompareExchange(ref _failure, e, null);
            }
            _done.Signal();
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _stop = true;
        foreach (var go in _go)
        {
            go.Release();
        }
        foreach (var t in _threads)
        {
            t.Join();
        }
        foreach (var go in _go)
        {
            go.Dispose();
        }
        _done.Dispose();
    }
}

/// <summary>The host cores this process may run on, and binding a thread to one (sched_setaffinity).</summary>
internal static partial class HostCpus
{
    private const int MaskBytes = 128; // 1024 CPUs, the kernel's default cpu_set_t

    /// <summary>The host CPUs the calling thread may run on, in ascending order.</summary>
    public static unsafe int[] Allowed()
    {
        byte* mask = stackalloc byte[MaskBytes];
        if (SchedGetaffinity(0, MaskBytes, mask) != 0)
        {
            return [];
        }
        var cpus = new List<int>();
        for (int i = 0; i < MaskBytes * 8; i++)
        {
            if ((mask[i >> 3] & (1 << (i & 7))) != 0)
            {
                cpus.Add(i);
            }
        }
        return [.. cpus];
    }

    /// <summary>Binds the calling thread to host CPU <paramref name="cpu"/>; false when the host refuses.</summary>
    public static unsafe bool BindCurrentThread(int cpu)
    {
        byte* mask = stackalloc byte[MaskBytes];
        new Span<byte>(mask, MaskBytes).Clear();
        mask[cpu >> 3] = (byte)(1 << (cpu & 7));
        return SchedSetaffinity(0, MaskBytes, mask) == 0;
    }

    [LibraryImport("libc", EntryPoint = "sched_getaffinity")]
    private static unsafe partial int SchedGetaffinity(int pid, nuint size, byte* mask);

    [LibraryImport("libc", EntryPoint = "sched_setaffinity")]
    private static unsafe partial int SchedSetaffinity(int pid, nuint size, byte* mask);
}
