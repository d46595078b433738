// The spin lock of the slab allocators' per-CPU structures (SLUB's kmem_cache_cpu,
// SLAB's array_cache): an int that is 0 when free and 1 when held. It stands in for
// the kernel's local_lock / disabled interrupts, because two threads can hold one CPU
// id (ARCHITECTURE.md, decision 5). Hold times are a few pointer moves, so a
// contended acquirer spins (SpinWait yields when spinning long).
using System.Runtime.CompilerServices;

namespace Kmem.Slab;

internal static class SpinLockWord
{
    /// <summary>Takes the lock word, spinning while another thread holds it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Acquire(ref int word)
    {
        if (Interlocked.CompareExchange(ref word, 1, 0) != 0)
        {
            AcquireContended(ref word);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AcquireContended(ref int word)
    {
        var spin = new SpinWait();
        while (Interlocked.CompareExchange(ref word, 1, 0) != 0)
        {
            spin.SpinOnce();
        }
    }

    /// <summary>Releases the lock word (a release store: everything written under the lock is visible first).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Release(ref int word) => Volatile.Write(ref word, 0);
}
