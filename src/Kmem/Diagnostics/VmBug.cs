// The debug-VM checks: the kernel's VM_BUG_ON, lockdep_assert_held and CONFIG_DEBUG_LIST, for the
// invariants of the hot paths (free counts, list links, object ownership, lock order). They are
// compiled in only when the build defines KMEM_DEBUG_VM (the DebugVm configuration:
// `dotnet test tests/Kmem.Tests -c DebugVm`); [Conditional] removes every call, with the evaluation
// of its arguments, from every other build, so Release pays nothing. A failed check is a broken
// invariant, never a caller's mistake: it always throws, whatever MachineOptions.OnBug says, since
// the machine's state can no longer be trusted. No state; callable from any thread.
using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Kmem;

/// <summary>VM_BUG_ON and lockdep assertions, compiled in only in the DebugVm configuration.</summary>
internal static class VmBug
{
    /// <summary>Whether this build carries the checks (the DebugVm configuration).</summary>
    public static bool Enabled =>
#if KMEM_DEBUG_VM
        true;
#else
        false;
#endif

    /// <summary>VM_BUG_ON: throws <see cref="VmBugException"/> when <paramref name="condition"/> holds.</summary>
    [Conditional("KMEM_DEBUG_VM")]
    public static void On(bool condition, [CallerArgumentExpression(nameof(condition))] string expression = "",
        [CallerMemberName] string function = "")
    {
        if (condition)
        {
            throw new VmBugException($"kernel BUG in {function}: VM_BUG_ON({expression})");
        }
    }

    /// <summary>lockdep_assert_held: the calling thread holds <paramref name="lockObject"/>.</summary>
    [Conditional("KMEM_DEBUG_VM")]
    public static void LockdepAssertHeld(Lock lockObject, [CallerArgumentExpression(nameof(lockObject))] string name = "",
        [CallerMemberName] string function = "")
    {
        if (!lockObject.IsHeldByCurrentThread)
        {
            throw new VmBugException($"WARNING in {function}: lockdep_assert_held({name}) failed: the lock is not held");
        }
    }

    /// <summary>Lock order: the calling thread must not hold <paramref name="lockObject"/> when it takes a lock
    /// that the documented order puts before it (taking them the other way round could deadlock).</summary>
    [Conditional("KMEM_DEBUG_VM")]
    public static void LockdepAssertNotHeld(Lock lockObject, [CallerArgumentExpression(nameof(lockObject))] string name = "",
        [CallerMemberName] string function = "")
    {
        if (lockObject.IsHeldByCurrentThread)
        {
            throw new VmBugException($"WARNING in {function}: possible circular locking dependency: {name} is held");
        }
    }
}

/// <summary>A debug-VM check failed: an internal invariant of the memory manager is broken.</summary>
internal sealed class VmBugException(string report) : KernelBugException(report);
