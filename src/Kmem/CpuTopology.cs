// The machine's CPUs: how many there are, which node each belongs to, and which
// one the calling thread is on. The current CPU is the host processor id modulo
// the count unless the thread pinned one with OnCpu. Nothing here prevents two
// threads from holding the same CPU id: per-CPU structures lock for themselves.
using System.Runtime.CompilerServices;

namespace Kmem;

internal sealed class CpuTopology
{
    /// <summary>The calling thread's pin and its cached host CPU, one thread-static object so the fast path
    /// reads TLS once. The host CPU is asked again every <see cref="HostCpuRefresh"/> lookups: a thread
    /// that moved meanwhile only uses another CPU's lists, which lock for themselves.</summary>
    private sealed class PinState
    {
        public CpuTopology? On;
        public int Cpu;
        public CpuTopology? HostFor;
        public int HostCpu;
        public int Countdown;
        public object? Cache;
        public CpuTopology? CacheFor;
        /// <summary><see cref="CacheFor"/> while the thread is not pinned to one of that machine's CPUs, else null:
        /// the fast paths' whole question (a cache here, not pinned here) in one compare.</summary>
        public CpuTopology? UnpinnedFor;

        /// <summary>Recomputes <see cref="UnpinnedFor"/> after <see cref="On"/> or <see cref="CacheFor"/> changed.</summary>
        public void Update() => UnpinnedFor = ReferenceEquals(On, CacheFor) ? null : CacheFor;
    }

    private const int HostCpuRefresh = 32;

    [ThreadStatic]
    private static PinState? t_pin;

    /// <summary>Host processor id → machine CPU, so the fast path needs no division.</summary>
    private readonly int[] _hostToCpu;

    public CpuTopology(int cpus, int nodes)
    {
        Count = cpus;
        _hostToCpu = new int[Math.Max(Environment.ProcessorCount, 64)];
        for (int i = 0; i < _hostToCpu.Length; i++)
        {
            _hostToCpu[i] = i % cpus;
        }
        NodeOf = new int[cpus];
        for (int c = 0; c < cpus; c++)
        {
            NodeOf[c] = nodes >= cpus ? c : (int)((long)c * nodes / cpus);
        }
    }

    public int Count { get; }

    /// <summary>cpu_to_node.</summary>
    public int[] NodeOf { get; }

    /// <summary>smp_processor_id(): the pinned CPU, or the host's processor id modulo the count.</summary>
    public int Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            var pin = t_pin;
            if (pin is not null)
            {
                if (ReferenceEquals(pin.On, this))
                {
                    return pin.Cpu;
                }
                if (--pin.Countdown > 0 && ReferenceEquals(pin.HostFor, this))
                {
                    return pin.HostCpu;
                }
            }
            return RefreshHostCpu();
        }
    }

    /// <summary><see cref="UnpinnedThreadCache"/> and <see cref="Current"/> from one thread-local read: the calling
    /// thread's cache object for this machine and its CPU, or null (and CPU 0) when it has none here or is pinned.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public object? UnpinnedThreadCacheOnCpu(out int cpu)
    {
        var pin = t_pin;
        if (pin is null || !ReferenceEquals(pin.UnpinnedFor, this))
        {
            cpu = 0;
            return null;
        }
        cpu = --pin.Countdown > 0 && ReferenceEquals(pin.HostFor, this) ? pin.HostCpu : RefreshHostCpu();
        return pin.Cache;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private int RefreshHostCpu()
    {
        var pin = t_pin ??= new PinState();
        pin.HostFor = this;
        pin.HostCpu = HostCpu();
        pin.Countdown = HostCpuRefresh;
        return pin.HostCpu;
    }

    private int HostCpu()
    {
        uint id = (uint)Thread.GetCurrentProcessorId();
        return id < (uint)_hostToCpu.Length ? _hostToCpu[id] : (int)(id % (uint)Count);
    }

    /// <summary>The calling thread's cache object for this machine when it is not pinned to one of its CPUs, else
    /// null: what <see cref="UnpinnedThreadCache"/> answers, with one thread-local read and one compare (the
    /// slab fast paths' lookup).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public object? FastThreadCache()
    {
        var pin = t_pin;
        return pin is not null && ReferenceEquals(pin.UnpinnedFor, this) ? pin.Cache : null;
    }

    /// <summary>Whether the calling thread has pinned a CPU of this machine.</summary>
    public bool IsPinned => ReferenceEquals(t_pin?.On, this);

    /// <summary>The calling thread's cache object for this machine (see <see cref="SetThreadCache"/>), or null
    /// when it has none here or is pinned to one of this machine's CPUs: a pinned thread stands for a CPU and
    /// uses the per-CPU structures, as kernel code does. One thread-local read answers both.</summary>
    /// <param name="pinned">Whether the thread is pinned to one of this machine's CPUs.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public object? UnpinnedThreadCache(out bool pinned)
    {
        var pin = t_pin;
        if (pin is null)
        {
            pinned = false;
            return null;
        }
        pinned = ReferenceEquals(pin.On, this);
        return !pinned && ReferenceEquals(pin.CacheFor, this) ? pin.Cache : null;
    }

    /// <summary>Makes <paramref name="cache"/> the calling thread's cache object for this machine (one machine
    /// at a time per thread: the owner keeps the others and sets them again when the thread comes back).</summary>
    public void SetThreadCache(object cache)
    {
        var pin = t_pin ??= new PinState();
        pin.Cache = cache;
        pin.CacheFor = this;
        pin.Update();
    }

    /// <summary>Pins the calling thread to <paramref name="cpu"/> until the scope is disposed.</summary>
    public CpuScope Pin(int cpu)
    {
        if ((uint)cpu >= (uint)Count)
        {
            throw new ArgumentOutOfRangeException(nameof(cpu), cpu, $"CPU {cpu} does not exist: the machine has CPUs 0..{Count - 1}");
        }
        var pin = t_pin ??= new PinState();
        var scope = new CpuScope(pin.On, pin.Cpu);
        pin.On = this;
        pin.Cpu = cpu;
        pin.Update();
        return scope;
    }

    internal static void Restore(CpuTopology? on, int cpu)
    {
        var pin = t_pin ??= new PinState();
        pin.On = on;
        pin.Cpu = cpu;
        pin.Update();
    }
}

/// <summary>A CPU pin (<see cref="Machine.OnCpu"/>); disposing it restores the previous pin.</summary>
public readonly struct CpuScope : IDisposable, IEquatable<CpuScope>
{
    private readonly CpuTopology? _previousOn;
    private readonly int _previousCpu;

    internal CpuScope(CpuTopology? previousOn, int previousCpu)
    {
        _previousOn = previousOn;
        _previousCpu = previousCpu;
    }

    /// <summary>Restores the pin that was in force before this one.</summary>
    public void Dispose() => CpuTopology.Restore(_previousOn, _previousCpu);

    /// <inheritdoc/>
    public bool Equals(CpuScope other) => ReferenceEquals(_previousOn, other._previousOn) && _previousCpu == other._previousCpu;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is CpuScope s && Equals(s);

    /// <inheritdoc/>
    public override int GetHashCode() => _previousCpu;

    /// <summary>Equality.</summary>
    public static bool operator ==(CpuScope a, CpuScope b) => a.Equals(b);

    /// <summary>Inequality.</summary>
    public static bool operator !=(CpuScope a, CpuScope b) => !a.Equals(b);
}
