// RCU's public face on Machine (include/linux/rcupdate.h: rcu_read_lock, rcu_read_unlock, call_rcu,
// kfree_rcu/kvfree_rcu, synchronize_rcu with rcu_barrier). Forwarders only: the model, the batches and
// the processing points are in Rcu/ (RcuState.cs), the state hangs off the slab layer, its only user.
// RcuInit wires, at boot, what kvfree_rcu frees vmalloc'd areas with and reclaim's hook (MmLayer.RcuFlush).
using Kmem.Rcu;

namespace Kmem;

public sealed partial class Machine
{
    private RcuState Rcu => SlabOrThrow.Rcu;

    private void RcuInit()
    {
        if (SlabLayer is not { } slab)
        {
            return;
        }
        // Held weakly: the slab layer is reachable from kswapd's thread, and must not keep the machine alive.
        var self = new WeakReference<Machine>(this);
        slab.Rcu.Kfree.SetChannel(KfreeRcuBatches.VmallocChannel, p =>
        {
            if (self.TryGetTarget(out var m))
            {
                m.Vfree(p);
            }
        });
        Mm.RcuFlush = slab.Rcu.Reclaim;
    }

    /// <summary>rcu_read_lock: enters a read-side critical section on the calling thread; dispose the scope
    /// (rcu_read_unlock) to leave it. Until then, memory handed to <see cref="KfreeRcu"/>, <see cref="CallRcu"/>
    /// or a <see cref="SlabFlags.TypesafeByRcu"/> cache after the section began is not freed.</summary>
    /// <remarks>Sections nest and close innermost first, on their own thread. Leaving the outermost section
    /// runs the deferred frees whose grace period it ended. Do not wait for a grace period
    /// (<see cref="SynchronizeRcu"/>) inside a section.</remarks>
    public RcuReadScope RcuReadLock() { using var _ = _life.Enter(); return new(Rcu); }

    /// <summary>rcu_read_lock_held: whether the calling thread is inside a read-side critical section.</summary>
    public bool RcuReadLockHeld { get { using var _ = _life.Enter(); return Rcu.ReadLockHeld; } }

    /// <summary>kfree_rcu (kvfree_rcu): frees a kmalloc'd block, an object of any cache or a vmalloc'd area
    /// after a grace period: not before every reader inside a section now has left it. 0 and
    /// <see cref="ZeroSizePtr"/> are ignored.</summary>
    /// <remarks>The pointer joins a batch; batches are freed at the next processing point after their grace
    /// period (this call, the end of a read section, reclaim), with no further call needed. When
    /// <see cref="RcuQhimark"/> objects already wait, the caller waits for a grace period and frees the block
    /// itself (kvfree_call_rcu's fallback). A bad pointer is reported when it is freed, to the log.</remarks>
    /// <exception cref="InvalidOperationException">The caller would have to wait inside its own read section.</exception>
    public void KfreeRcu(nint p)
    {
        using var _ = _life.Enter();
        if (p == 0 || p == ZeroSizePtr)
        {
            return;
        }
        var rcu = Rcu;
        bool vmalloc = IsVmallocAddr(p);
        if (!rcu.Kfree.Add(p, vmalloc ? KfreeRcuBatches.VmallocChannel : KfreeRcuBatches.SlabChannel))
        {
            if (rcu.ReadLockHeld)
            {
                throw new InvalidOperationException($"BUG: sleeping function called from invalid context: kvfree_rcu() must wait for a grace period ({rcu.Pending} objects wait) inside an RCU read-side critical section");
            }
            rcu.Synchronize();
            Kvfree(p);
        }
        rcu.Process();
    }

    /// <summary>call_rcu: <paramref name="callback"/> runs after a grace period, at a processing point (the end
    /// of a read section, <see cref="KfreeRcu"/>, <see cref="SynchronizeRcu"/>, reclaim), on whichever thread
    /// reaches it. It must not throw.</summary>
    public void CallRcu(Action callback)
    {
        ArgumentNullException.ThrowIfNull(callback);
        using var _ = _life.Enter();
        Rcu.CallRcu(callback);
    }

    /// <summary>synchronize_rcu with rcu_barrier: waits until every reader inside a read section now has left
    /// it, then runs every deferred free queued before the call (kfree_rcu'd blocks, the slabs of
    /// <see cref="SlabFlags.TypesafeByRcu"/> caches, <see cref="CallRcu"/> callbacks).</summary>
    /// <returns>How many deferred frees ran.</returns>
    /// <exception cref="InvalidOperationException">Called inside a read-side critical section.</exception>
    public int SynchronizeRcu()
    {
        using var _ = _life.Enter();
        return SlabLayer is { } slab ? (int)Math.Min(int.MaxValue, slab.SynchronizeRcu()) : 0;
    }

    /// <summary>qhimark: how many objects may wait for a grace period before <see cref="KfreeRcu"/>'s caller
    /// waits for one itself (default 10,000).</summary>
    public int RcuQhimark
    {
        get { using var _ = _life.Enter(); return Rcu.Qhimark; }
        set { using var _ = _life.Enter(); Rcu.Qhimark = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "qhimark must be positive"); }
    }
}
