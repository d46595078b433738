// rcu_read_lock()/rcu_read_unlock() as a scope: Machine.RcuReadLock enters a read-side critical section of
// that machine on the calling thread, Dispose leaves it. Sections nest; they close innermost first and on
// the thread that opened them (a section closed twice or out of order throws). Until it is disposed, what
// was reachable when the section began and was then handed to KfreeRcu, CallRcu or a SLAB_TYPESAFE_BY_RCU
// cache stays untouched (RcuState.cs has the model). A ref struct: it cannot outlive the frame or be
// carried to another thread.
namespace Kmem.Rcu;

/// <summary>A read-side critical section (rcu_read_lock … rcu_read_unlock); dispose it to leave.</summary>
public readonly ref struct RcuReadScope
{
    private readonly RcuState? _rcu;
    private readonly RcuReader? _reader;
    private readonly int _depth;

    internal RcuReadScope(RcuState rcu)
    {
        _rcu = rcu;
        _reader = rcu.ReadLock();
        _depth = _reader.Nesting;
    }

    /// <summary>rcu_read_unlock: leaves the section; leaving the outermost one runs the deferred frees whose
    /// grace period it ended.</summary>
    /// <exception cref="InvalidOperationException">Left twice, out of order, or on another thread.</exception>
    public void Dispose()
    {
        if (_rcu is null || _reader is null)
        {
            throw new InvalidOperationException("rcu_read_unlock() of a section that was never entered (a default RcuReadScope)");
        }
        _rcu.ReadUnlock(_reader, _depth);
    }
}
