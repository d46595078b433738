// The in-call marker of a slab backend's unscoped fast paths (SLUB's magazines, SLAB's array caches): one
// object per thread and machine, reached through CpuTopology's thread cache slot, whose InCall the thread
// stores before it reads Dead and touches the machine's memory, and clears when it is done. Shutdown marks
// every thread's Dead, runs a process-wide barrier and waits for the markers to clear: the asymmetric Dekker
// protocol of Physical/MachineLifetime.cs with int stores (no GC write barrier) on a line the thread alone
// writes. Invariant: InCall is 1 only while its own thread runs a fast path; never nested.
// Locking: InCall is written by its thread alone; Dead by Shutdown alone (under its backend's lock).
using System.Runtime.InteropServices;

namespace Kmem.Slab;

/// <summary>A thread's marker for the fast paths of one machine's slab backend.</summary>
internal class SlabThreadMarker(Thread thread)
{
    /// <summary>The owner: once it has exited, the marker (and whatever its subclass holds) can go.</summary>
    public readonly Thread Thread = thread;

    /// <summary>1 while the thread runs a fast path outside the machine's lifetime scope; Shutdown waits for 0.</summary>
    public ref int InCall => ref _guard.InCall;

    /// <summary>Set by Shutdown before its barrier: a fast path, which reads it after storing InCall, leaves for
    /// the guarded path.</summary>
    public ref int Dead => ref _guard.Dead;

    private GuardLine _guard;

    /// <summary>The marker of <paramref name="thread"/> among <paramref name="markers"/>, or null (called under the
    /// backend's lock that guards the array).</summary>
    public static T? Of<T>(T[] markers, Thread thread) where T : SlabThreadMarker
    {
        foreach (var m in markers)
        {
            if (ReferenceEquals(m.Thread, thread))
            {
                return m;
            }
        }
        return null;
    }

    /// <summary>Shutdown's wait, after Dead was set on every marker of <paramref name="markers"/>: a process-wide
    /// barrier, then each thread in the middle of a fast path is waited for. Neither the calling thread (a fast path
    /// calls nothing that could dispose the machine) nor a thread that has exited can be in one, whatever its marker
    /// says: a marker left set is never waited for.</summary>
    public static void WaitForFastPaths(IEnumerable<SlabThreadMarker> markers)
    {
        Interlocked.MemoryBarrierProcessWide();
        var me = Thread.CurrentThread;
        foreach (var m in markers)
        {
            var spin = new SpinWait();
            while (Volatile.Read(ref m.InCall) != 0 && m.Thread.IsAlive && !ReferenceEquals(m.Thread, me))
            {
                spin.SpinOnce();
            }
        }
    }
}

/// <summary>The thread's marker and the flag its fast paths read, on one cache line away from its neighbours in
/// the heap (the markers of two threads are often allocated side by side).</summary>
[StructLayout(LayoutKind.Explicit, Size = 128)]
internal struct GuardLine
{
    [FieldOffset(64)] public int InCall;
    [FieldOffset(68)] public int Dead;
}
