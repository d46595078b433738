// Two worker threads, each bound to its own host core, that run the same piece
// of work at the same time (thread i owns CPU i of the machine). Used to time
// alloc+free pairs made concurrently: the wall time of one round divided by the
// pairs each thread made is the per-pair time under two-way concurrency.
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Kmem.Bench;

/// <summary>Two long-lived worker threads released together for each round of work.</summary>
internal sealed partial class TwoThreads : IDisposable
{
    public const int Count = 2;

    private readonly Thread[] _threads = new Thread[Count];
    private readonly Barrier _start = new(Count + 1);
    private readonly Barrier _done = new(Count + 1);
    private Action<int>? _work;
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
    public TimeSpan Run(Action<int> work)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _work = work;
        long start = Stopwatch.GetTimestamp();
        _start.SignalAndWait();
        _done.SignalAndWait();
        return Stopwatch.GetElapsedTime(start);
    }

    private void Loop(int cpu, int hostCpu)
    {
        if (hostCpu >= 0)
        {
            HostCpus.BindCurrentThread(hostCpu);
        }
        while (true)
        {
            _start.SignalAndWait();
            if (_stop)
            {
                return;
            }
            _work!(cpu);
            _done.SignalAndWait();
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
        _start.SignalAndWait();
        foreach (var t in _threads)
        {
            t.Join();
        }
        _start.Dispose();
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
