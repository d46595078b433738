// A machine's lifetime: whether it is live, and which threads are inside one of its calls.
// Every public entry point (Machine's facade and the handle types it hands out: ProcFs,
// SysSlab, MachineMetrics, tasks, cached files, per-CPU counters, memory owners) opens
// `using var _ = life.Enter();` before it touches the machine's memory, and Dispose (or
// the finalizer of a machine nobody disposed) calls Shutdown before it unmaps anything.
// A fast path that is called without passing through one of those entry points must call
// Enter itself; one that is only reached from them (the per-CPU lists) needs nothing more:
// the entry point's scope covers it. SLUB's magazine fast paths, tried by kmalloc, kfree and
// kmem_cache_alloc/free before they enter, mark themselves on their thread's magazines instead
// (the magazine's Busy on allocation, the thread cache's InCall on free: ints on lines they
// write anyway) and register their shutdown with OnShutdown, which Shutdown runs after its wait
// for the scopes (Slab/Slub/SlubFastPath.cs): the same protocol, without a scope.
//
// The protocol is the asymmetric half of Dekker's, as with the SLUB magazine steal:
//   caller:   slot.Inside = this (volatile store); read _disposed (volatile load);
//             if set, undo and throw ObjectDisposedException; … work …; slot.Inside = outer.
//   Shutdown: _disposed = 1 (interlocked); FlushProcessWriteBuffers (a process-wide barrier);
//             wait until no registered thread slot names this lifetime.
// The barrier drains every CPU's store buffer, so either the caller's load saw the flag, or its
// earlier store of Inside is visible to Shutdown's scan: a call that passed the check is waited
// for, and a call that starts later throws. No call ever runs on unmapped memory. The JIT does not
// move a volatile store after a later volatile load of another location (both are ordered memory
// operations in RyuJIT), which leaves only the CPU's store-load reordering for the barrier to cover;
// LifetimeRaceTests hammer the window. The fast path pays a thread-static read, two plain stores
// and one load: no interlocked operation, so no shared cache line is written.
//
// Invariants: a thread's slot names at most one lifetime in Inside; when a call on machine B is
// made from inside a call on machine A (a constructor, a shrinker or a mempool callback), A goes to
// the slot's Outer list for the duration, so Shutdown(A) still waits for it. Shutdown from inside a
// call on the same machine would wait for itself: it throws InvalidOperationException instead.
// Locking: s_slotsLock guards the registry of slots and every slot's Outer list; Inside is written
// only by its thread and read by Shutdown.
using System.Runtime.CompilerServices;

namespace Kmem.Physical;

/// <summary>The live/disposed state of one machine and the count of its calls in flight, per thread.</summary>
#pragma warning disable CA1001 // the token source has no timer: it needs no Dispose, and lives as long as the machine's layers
internal sealed class MachineLifetime
#pragma warning restore CA1001
{
    /// <summary>One thread's marker: the lifetime whose call it is in, and the ones it is nested inside.</summary>
    internal sealed class CallSlot
    {
        public MachineLifetime? Inside;
        public List<MachineLifetime>? Outer;
    }

    [ThreadStatic]
    private static CallSlot? t_slot;

    private static readonly Lock s_slotsLock = new();
    private static readonly List<WeakReference<CallSlot>> s_slots = [];
    private static int s_pruneAt = 64;

    private int _disposed;
    private readonly CancellationTokenSource _shutdown = new();
    /// <summary>Closes and waits for the calls that run without a scope (SLUB's fast paths mark themselves on their
    /// thread's magazines instead, SlubFastPath.cs): run by Shutdown after its wait for the scopes.</summary>
    private Action? _waitForUnscoped;

    /// <summary>Registers a wait for calls in flight that mark themselves elsewhere than in a scope; their marker is
    /// stored before they read <see cref="IsDisposed"/>, as <see cref="Enter"/> stores Inside.</summary>
    internal void OnShutdown(Action waitForUnscoped) => _waitForUnscoped += waitForUnscoped;

    /// <summary>Cancelled when <see cref="Shutdown"/> begins: a call that sleeps (kmap with a full window, a mempool
    /// waiting for an element) registers its wakeup here, so that it leaves and Shutdown's wait for it ends.</summary>
    public CancellationToken ShutdownToken => _shutdown.Token;

    /// <summary>Whether <see cref="Shutdown"/> has begun: no new call is admitted.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>Admits the calling thread into a call on the machine until the scope is disposed.</summary>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Scope Enter()
    {
        var slot = t_slot ?? NewSlot();
        var outer = slot.Inside;
        bool nested = outer is not null && !ReferenceEquals(outer, this);
        if (nested)
        {
            PushOuter(slot, outer!);
        }
        Volatile.Write(ref slot.Inside, this);
        if (Volatile.Read(ref _disposed) != 0)
        {
            Leave(slot, outer, nested);
            ThrowDisposed();
        }
        return new Scope(slot, outer, nested);
    }

    /// <summary>Throws when the machine has been disposed; for entry points that only read managed state and so
    /// need no scope.</summary>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void ThrowIfDisposed()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            ThrowDisposed();
        }
    }

    /// <summary>Whether the calling thread is inside a call on this machine (directly or nested).</summary>
    public bool IsEnteredByCurrentThread
    {
        get
        {
            var slot = t_slot;
            if (slot is null)
            {
                return false;
            }
            lock (s_slotsLock)
            {
                return ReferenceEquals(slot.Inside, this) || (slot.Outer?.Contains(this) ?? false);
            }
        }
    }

    /// <summary>Closes the machine to new calls and waits until every call in flight has left.</summary>
    /// <returns>True for the first call; false when the machine was already shut down.</returns>
    /// <exception cref="InvalidOperationException">Called from inside a call on this machine (a callback).</exception>
    public bool Shutdown()
    {
        if (IsEnteredByCurrentThread)
        {
            throw new InvalidOperationException("a machine cannot be disposed from inside one of its own calls (a constructor, shrinker or mempool callback)");
        }
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return false;
        }
        // Every CPU's earlier stores of Inside become visible before the scan below.
        Interlocked.MemoryBarrierProcessWide();
        // Sleeping calls wake, see the flag and throw.
        _shutdown.Cancel();
        CallSlot[] slots;
        lock (s_slotsLock)
        {
            slots = [.. s_slots.Select(w => w.TryGetTarget(out var s) ? s : null).OfType<CallSlot>()];
        }
        foreach (var slot in slots)
        {
            var spin = new SpinWait();
            while (InSlot(slot))
            {
                spin.SpinOnce();
            }
        }
        _waitForUnscoped?.Invoke();
        return true;
    }

    private bool InSlot(CallSlot slot)
    {
        if (ReferenceEquals(Volatile.Read(ref slot.Inside), this))
        {
            return true;
        }
        lock (s_slotsLock)
        {
            return slot.Outer?.Contains(this) ?? false;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static CallSlot NewSlot()
    {
        var slot = new CallSlot();
        lock (s_slotsLock)
        {
            if (s_slots.Count >= s_pruneAt)
            {
                // Slots of threads that have ended are collected with their thread.
                s_slots.RemoveAll(w => !w.TryGetTarget(out _));
                s_pruneAt = Math.Max(64, s_slots.Count * 2);
            }
            s_slots.Add(new WeakReference<CallSlot>(slot));
        }
        t_slot = slot;
        return slot;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void PushOuter(CallSlot slot, MachineLifetime outer)
    {
        lock (s_slotsLock)
        {
            (slot.Outer ??= []).Add(outer);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Leave(CallSlot slot, MachineLifetime? outer, bool nested)
    {
        Volatile.Write(ref slot.Inside, outer);
        if (nested)
        {
            PopOuter(slot);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void PopOuter(CallSlot slot)
    {
        lock (s_slotsLock)
        {
            slot.Outer!.RemoveAt(slot.Outer.Count - 1);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowDisposed() =>
        throw new ObjectDisposedException("Machine", "the machine has been disposed");

    /// <summary>One call on the machine: leaving it (Dispose, at the end of a <c>using</c>) lets Shutdown proceed.</summary>
    internal readonly ref struct Scope
    {
        private readonly CallSlot _slot;
        private readonly MachineLifetime? _outer;
        private readonly bool _nested;

        internal Scope(CallSlot slot, MachineLifetime? outer, bool nested)
        {
            _slot = slot;
            _outer = outer;
            _nested = nested;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Dispose() => Leave(_slot, _outer, _nested);
    }
}
