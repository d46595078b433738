// mempool_t (mm/mempool.c, include/linux/mempool.h, Linux 6.1): a reserve of
// preallocated elements in front of an allocator, so that a caller that may sleep
// always gets an element eventually. Invariants: 0 <= CurrNr <= MinNr except while a
// shrink is freeing its surplus; the reserve is a LIFO stack (_elements[0.._currNr));
// an element is either in the reserve or out with a caller, never both.
// Locking: _lock (pool->lock) guards _elements, _currNr, _minNr and _waiters; the
// allocator and free functions are always called with it released. Sleepers wait on
// its monitor (pool->wait) and are woken by a free that refills the reserve.
using System.Runtime.CompilerServices;

namespace Kmem;

/// <summary>mempool_alloc_t: the pool's underlying allocator.</summary>
/// <param name="gfp">The flags the pool passes (the caller's, with __GFP_NOMEMALLOC, __GFP_NORETRY and
/// __GFP_NOWARN added, and on the first try without __GFP_DIRECT_RECLAIM and __GFP_IO).</param>
/// <param name="poolData">The pool's data (a cache, a size, an order…).</param>
/// <returns>A new element, or 0 when none can be had.</returns>
public delegate nint MempoolAllocFn(Gfp gfp, object? poolData);

/// <summary>mempool_free_t: gives an element back to the pool's underlying allocator.</summary>
/// <param name="element">An element <see cref="MempoolAllocFn"/> returned.</param>
/// <param name="poolData">The pool's data.</param>
public delegate void MempoolFreeFn(nint element, object? poolData);

/// <summary>
/// mempool_t: a guaranteed reserve of <see cref="MinNr"/> elements in front of an allocator. Create one with
/// <see cref="Machine.MempoolCreate"/> (or the slab, kmalloc and page pool helpers); allocate with
/// <see cref="Machine.MempoolAlloc(Mempool, Gfp)"/> and give back with <see cref="Machine.MempoolFree"/>.
/// </summary>
/// <remarks>
/// Thread-safe. The reserve is used only when the allocator fails, and it is refilled before any element
/// goes back to the allocator, so the elements in flight through the pool can always complete: that is the
/// kernel's forward-progress guarantee for I/O paths. A caller that may sleep
/// (<see cref="Gfp.DirectReclaim"/>) and finds the reserve empty waits for a free; one that may not gets 0.
/// </remarks>
public sealed class Mempool
{
    /// <summary>io_schedule_timeout(5*HZ): a sleeper retries the allocator at least this often even when no
    /// element is freed (the kernel's guard against a lost wake-up).</summary>
    public static readonly TimeSpan RetryInterval = TimeSpan.FromSeconds(5);

    private const Gfp AlwaysAdded = Gfp.NoMemalloc | Gfp.NoRetry | Gfp.NoWarn;

    private readonly object _lock = new();
    private readonly MempoolAllocFn _alloc;
    private readonly MempoolFreeFn _free;
    private readonly KernelLog _log;
    private readonly Action<KernelBugException> _bug;
    private readonly CpuTopology _cpus;
    /// <summary>The reserve: elements[0 .. curr_nr).</summary>
    private nint[] _elements;
    private int _currNr;
    private int _minNr;
    private int _waiters;
    private long _out;
    private long _fromReserve;
    private long _sleeps;
    private int _zeroWarned;
    private bool _destroyed;

    internal Mempool(Mempools owner, string name, int minNr, MempoolAllocFn alloc, MempoolFreeFn free, object? poolData, KernelLog log,
        Action<KernelBugException> bug, CpuTopology cpus)
    {
        Owner = owner;
        Name = name;
        _minNr = minNr;
        _alloc = alloc;
        _free = free;
        PoolData = poolData;
        _log = log;
        _bug = bug;
        _cpus = cpus;
        _elements = new nint[minNr];
    }

    /// <summary>The machine's mempool layer the pool belongs to.</summary>
    internal Mempools Owner { get; }

    /// <summary>What the pool holds ("slab:name", "kmalloc:128", "pages:order-0", or the creator's name).</summary>
    public string Name { get; }

    /// <summary>pool_data: the argument passed to the allocator and free functions.</summary>
    public object? PoolData { get; }

    /// <summary>min_nr: the number of elements the pool keeps in reserve.</summary>
    public int MinNr => Volatile.Read(ref _minNr);

    /// <summary>curr_nr: the elements in the reserve now.</summary>
    public int CurrNr => Volatile.Read(ref _currNr);

    /// <summary>Callers asleep waiting for an element.</summary>
    public int Waiters => Volatile.Read(ref _waiters);

    /// <summary>Elements handed out by the pool and not given back with MempoolFree.</summary>
    public long ElementsOut => Interlocked.Read(ref _out);

    /// <summary>Allocations served from the reserve because the allocator failed.</summary>
    public long ReserveAllocs => Interlocked.Read(ref _fromReserve);

    /// <summary>Times a caller went to sleep waiting for an element.</summary>
    public long Sleeps => Interlocked.Read(ref _sleeps);

    /// <summary>Whether <see cref="Machine.MempoolDestroy"/> has run.</summary>
    public bool IsDestroyed => Volatile.Read(ref _destroyed);

    /// <inheritdoc/>
    public override string ToString() => $"mempool {Name}: {CurrNr}/{MinNr} in reserve, {ElementsOut} out";

    /// <summary>mempool_init: fills the reserve with <paramref name="gfp"/>.</summary>
    /// <returns>False when the allocator failed (the elements taken so far are given back).</returns>
    internal bool Fill(Gfp gfp)
    {
        while (_currNr < _minNr)
        {
            nint e = _alloc(gfp, PoolData);
            if (e == 0)
            {
                Exit();
                return false;
            }
            _elements[_currNr++] = e;
        }
        return true;
    }

    /// <summary>mempool_alloc. <paramref name="timeoutMs"/> -1 and no cancellation: never returns 0 for a
    /// caller that may sleep.</summary>
    internal nint Alloc(Gfp gfp, int timeoutMs, CancellationToken cancel)
    {
        if ((gfp & Gfp.Zero) != 0 && Interlocked.Exchange(ref _zeroWarned, 1) == 0)
        {
            // VM_WARN_ON_ONCE: an element from the reserve would not be zeroed.
            _log.Printk($"WARNING: CPU: {_cpus.Current} at mm/mempool.c mempool_alloc: __GFP_ZERO is not supported by mempools (pool {Name})");
        }
        gfp |= AlwaysAdded;
        // The first round may neither reclaim nor do I/O: the reserve is cheaper than reclaim.
        Gfp gfpTemp = gfp & ~(Gfp.DirectReclaim | Gfp.Io);
        long deadline = timeoutMs < 0 ? long.MaxValue : Environment.TickCount64 + timeoutMs;
        CancellationTokenRegistration wake = default;
        try
        {
            while (true)
            {
                ObjectDisposedException.ThrowIf(IsDestroyed || Owner.Lifetime.IsDisposed, this);
                nint element = _alloc(gfpTemp, PoolData);
                if (element != 0)
                {
                    Interlocked.Increment(ref _out);
                    return element;
                }
                lock (_lock)
                {
                    ObjectDisposedException.ThrowIf(_destroyed, this);
                    if (_currNr > 0)
                    {
                        element = RemoveElement();
                        Interlocked.Increment(ref _out);
                        Interlocked.Increment(ref _fromReserve);
                        return element;
                    }
                    if (gfpTemp != gfp)
                    {
                        // The reserve is empty: retry at once with the caller's full flags.
                        gfpTemp = gfp;
                        continue;
                    }
                    if ((gfp & Gfp.DirectReclaim) == 0)
                    {
                        return 0;
                    }
                    if (cancel.CanBeCanceled && wake == default)
                    {
                        wake = cancel.Register(static s => ((Mempool)s!).WakeAll(), this);
                    }
                    if (!SleepForElement(deadline, cancel))
                    {
                        return 0;
                    }
                }
            }
        }
        finally
        {
            wake.Dispose();
        }
    }

    /// <summary>Sleeps on pool->wait (the lock is released meanwhile) until a free wakes us or the retry
    /// interval passes; either way the caller starts over from the allocator.</summary>
    /// <returns>False when the caller's deadline has passed or its token is cancelled.</returns>
    private bool SleepForElement(long deadline, CancellationToken cancel)
    {
        if (cancel.IsCancellationRequested)
        {
            return false;
        }
        long slice = (long)RetryInterval.TotalMilliseconds;
        if (deadline != long.MaxValue)
        {
            long left = deadline - Environment.TickCount64;
            if (left <= 0)
            {
                return false;
            }
            slice = Math.Min(slice, left);
        }
        _waiters++;
        Interlocked.Increment(ref _sleeps);
        // The machine's Dispose wakes the sleeper, which then throws ObjectDisposedException.
        var shutdown = Owner.Lifetime.ShutdownToken.Register(static s => ((Mempool)s!).WakeAll(), this);
        try
        {
            ObjectDisposedException.ThrowIf(Owner.Lifetime.IsDisposed, this);
            Monitor.Wait(_lock, (int)slice);
        }
        finally
        {
            _waiters--;
            // Unregister, not Dispose: Dispose waits for a callback already running, and that callback (WakeAll)
            // waits for the lock this thread holds.
            shutdown.Unregister();
        }
        return !cancel.IsCancellationRequested;
    }

    private void WakeAll()
    {
        lock (_lock)
        {
            Monitor.PulseAll(_lock);
        }
    }

    /// <summary>mempool_free: refills the reserve while it is below min_nr (waking sleepers), else hands the
    /// element back to the allocator. After <see cref="Machine.MempoolDestroy"/> the element goes straight
    /// back to the allocator.</summary>
    internal void Free(nint element)
    {
        if (element == 0)
        {
            return;
        }
        // Unlocked first look, as the kernel's: a full reserve needs no lock.
        if (Volatile.Read(ref _currNr) < Volatile.Read(ref _minNr) && !Volatile.Read(ref _destroyed))
        {
            lock (_lock)
            {
                if (!_destroyed && _currNr < _minNr)
                {
                    if (InReserve(element))
                    {
                        _bug(new KernelBugException($"BUG: mempool_free: element 0x{element:x} is already in the reserve of mempool {Name} (double free)"));
                        return;
                    }
                    _elements[_currNr++] = element;
                    Interlocked.Decrement(ref _out);
                    if (_waiters > 0)
                    {
                        Monitor.PulseAll(_lock);
                    }
                    return;
                }
            }
        }
        Interlocked.Decrement(ref _out);
        _free(element, PoolData);
    }

    /// <summary>mempool_resize: shrinking frees the surplus of the reserve; growing fills it with
    /// GFP_KERNEL allocations and stops quietly when the allocator fails (later frees refill it).</summary>
    /// <returns>0 (the element array is managed memory, so the kernel's -ENOMEM cannot happen).</returns>
    internal int Resize(int newMinNr)
    {
        Monitor.Enter(_lock);
        try
        {
            ObjectDisposedException.ThrowIf(_destroyed, this);
            if (newMinNr <= _minNr)
            {
                while (newMinNr < _currNr)
                {
                    nint surplus = RemoveElement();
                    Monitor.Exit(_lock);
                    try
                    {
                        _free(surplus, PoolData);
                    }
                    finally
                    {
                        Monitor.Enter(_lock);
                    }
                }
                Volatile.Write(ref _minNr, newMinNr);
                return 0;
            }
            var grown = new nint[newMinNr];
            Array.Copy(_elements, grown, _currNr);
            _elements = grown;
            Volatile.Write(ref _minNr, newMinNr);
            while (_currNr < _minNr)
            {
                Monitor.Exit(_lock);
                nint e;
                try
                {
                    e = _alloc(Gfp.Kernel, PoolData);
                }
                finally
                {
                    Monitor.Enter(_lock);
                }
                if (e == 0)
                {
                    return 0;
                }
                if (_currNr < _minNr && !_destroyed)
                {
                    _elements[_currNr++] = e;
                    if (_waiters > 0)
                    {
                        Monitor.PulseAll(_lock);
                    }
                }
                else
                {
                    // Frees or another resize filled the reserve meanwhile.
                    Monitor.Exit(_lock);
                    try
                    {
                        _free(e, PoolData);
                    }
                    finally
                    {
                        Monitor.Enter(_lock);
                    }
                    return 0;
                }
            }
            return 0;
        }
        finally
        {
            Monitor.Exit(_lock);
        }
    }

    /// <summary>mempool_destroy: gives every reserved element back to the allocator and reports the elements
    /// still out with callers (a leak in the kernel; here they may still be freed).</summary>
    /// <returns>The number of elements still out.</returns>
    internal long Destroy(string caller)
    {
        nint[] reserve;
        lock (_lock)
        {
            if (_destroyed)
            {
                return ElementsOut;
            }
            _destroyed = true;
            reserve = _elements[.._currNr];
            Array.Clear(_elements);
            _currNr = 0;
            Monitor.PulseAll(_lock);
        }
        foreach (nint e in reserve)
        {
            _free(e, PoolData);
        }
        long outstanding = ElementsOut;
        if (outstanding != 0)
        {
            _log.Printk($"mempool_destroy: mempool {Name} destroyed by {caller} with {outstanding} element(s) still allocated");
        }
        return outstanding;
    }

    /// <summary>mempool_exit on a failed mempool_init: the elements taken go back.</summary>
    private void Exit()
    {
        while (_currNr > 0)
        {
            _free(RemoveElement(), PoolData);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private nint RemoveElement()
    {
        nint e = _elements[--_currNr];
        _elements[_currNr] = 0;
        return e;
    }

    private bool InReserve(nint element) => Array.IndexOf(_elements, element, 0, _currNr) >= 0;
}
