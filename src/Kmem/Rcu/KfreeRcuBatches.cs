// kernel/rcu/tree.c's kvfree_rcu batching (struct kfree_rcu_cpu, kfree_rcu_monitor, kfree_rcu_work), one
// set per machine: kvfree_rcu puts a pointer in its channel's open batch (FREE_N_CHANNELS: slab objects and
// vmalloc areas); a processing point hands the open batches to RCU as one callback when one of the
// KFREE_N_BATCHES slots is free (a batch still waiting for its grace period holds a slot), so that while a
// reader holds grace periods back, pointers gather into one batch instead of one callback each. After its
// grace period the batch frees every pointer of each channel (kfree_bulk, vfree) and gives its slot back.
// A pointer that is not what its channel frees is reported by the free, as the kernel's would be: the report
// goes to the log and the batch goes on.
// Locking: _lock (krcp->lock) guards the open batches and the slot count; the frees run without it.

namespace Kmem.Rcu;

/// <summary>kvfree_rcu's batches of one machine.</summary>
internal sealed class KfreeRcuBatches(RcuState rcu)
{
    /// <summary>KFREE_N_BATCHES: batches that may wait for their grace period at once.</summary>
    public const int KfreeNBatches = 2;
    /// <summary>FREE_N_CHANNELS: slab objects (kfree) and vmalloc areas (vfree).</summary>
    public const int FreeNChannels = 2;
    /// <summary>The channel of kmalloc'd and kmem_cache objects.</summary>
    public const int SlabChannel = 0;
    /// <summary>The channel of vmalloc'd areas.</summary>
    public const int VmallocChannel = 1;

    private readonly Lock _lock = new();
    private List<nint>[] _open = [[], []];
    private int _inFlight;
    private readonly Action<nint>?[] _free = new Action<nint>?[FreeNChannels];

    /// <summary>Batches handed to RCU so far.</summary>
    public long Offloaded { get; private set; }

    /// <summary>Sets what frees a channel's pointers (kfree, vfree).</summary>
    public void SetChannel(int channel, Action<nint> free) => _free[channel] = free;

    /// <summary>Pointers in the open batches.</summary>
    public int OpenCount
    {
        get
        {
            lock (_lock)
            {
                return _open[SlabChannel].Count + _open[VmallocChannel].Count;
            }
        }
    }

    /// <summary>add_ptr_to_bulk_krc_lock: queues <paramref name="p"/>; false when <see cref="RcuState.Qhimark"/>
    /// objects already wait (the caller then waits for a grace period and frees it itself).</summary>
    public bool Add(nint p, int channel)
    {
        lock (_lock)
        {
            if (rcu.Pending >= rcu.Qhimark)
            {
                return false;
            }
            _open[channel].Add(p);
            rcu.AddPending(1);
        }
        return true;
    }

    /// <summary>kfree_rcu_monitor: hands the open batches to RCU as one callback when a slot is free (always,
    /// with <paramref name="force"/>: rcu_barrier and reclaim).</summary>
    public void Offload(bool force)
    {
        List<nint>[] taken;
        int n;
        lock (_lock)
        {
            n = _open[SlabChannel].Count + _open[VmallocChannel].Count;
            if (n == 0 || (!force && _inFlight >= KfreeNBatches))
            {
                return;
            }
            taken = _open;
            _open = [[], []];
            _inFlight++;
            Offloaded++;
            // Counted by the callback from here on.
            rcu.CallRcu(() => FreeBatch(taken), n);
            rcu.AddPending(-n);
        }
    }

    /// <summary>kfree_rcu_work: frees a batch whose grace period has ended, then gives its slot back.</summary>
    private void FreeBatch(List<nint>[] batch)
    {
        try
        {
            for (int ch = 0; ch < FreeNChannels; ch++)
            {
                var free = _free[ch] ?? throw new InvalidOperationException($"kvfree_rcu channel {ch} has no free function");
                foreach (nint p in batch[ch])
                {
                    try
                    {
                        free(p);
                    }
                    catch (KernelBugException)
                    {
                        // The report is in the log already; the rest of the batch still goes.
                    }
                }
            }
        }
        finally
        {
            lock (_lock)
            {
                _inFlight--;
            }
        }
    }
}
