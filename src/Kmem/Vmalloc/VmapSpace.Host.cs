// The host side of VmapSpace (mm/vmalloc.c vmap_pages_range, vunmap_range_noflush
// and the TLB flush of the lazy purge, as host mappings): the window reserved on first
// use, areas mapped and unmapped through HostWindow, and the VMAs it holds charged to
// the process-wide HostMapBudget, which stale mappings give way to. Locking: the
// space's one lock, held by every caller here except TryFlushStale, which takes it.

namespace Kmem.Vmalloc;

internal sealed partial class VmapSpace
{
    /// <summary>Gives this space's stale host mappings back to the budget, unless its lock stays held for 10 ms:
    /// another space's allocation asks, holding its own lock, so this one is only tried, never waited for (two
    /// spaces asking each other both give up).</summary>
    public void TryFlushStale()
    {
        if (!_lock.TryEnter(10))
        {
            return;
        }
        try
        {
            if (!_disposed)
            {
                FlushStale();
            }
        }
        finally
        {
            _lock.Exit();
        }
    }

    /// <summary>The host reservation of the whole window, made on first use: address space only.</summary>
    private bool ReserveHost()
    {
        if (_window is not null)
        {
            return true;
        }
        if (_hostFailed || !Charge(1))
        {
            return false;
        }
        var window = HostWindow.Reserve(Layout.HostBytes, _mem.Fd);
        if (window is null)
        {
            Release(1);
            _hostFailed = true;
            _log.Printk($"vmalloc: the host refused to reserve {Layout.HostBytes >> 20} MiB of address space for the vmalloc area");
            return false;
        }
        _window = window;
        HostMapBudget.Register(this);
        Volatile.Write(ref _host, window.Base);
        return true;
    }

    /// <summary>vmap_pages_range: the ptes, and the host mappings (HostWindow.Map: pages already mapped to the same
    /// frame reused, one mmap per other run of contiguous frames, the guard page a hole). The VMAs it adds are
    /// charged first; when the budget is short, stale host mappings are given back (this space's, then those of
    /// other machines that are not busy) and the charge retried: deferred unmapping never makes it fail.</summary>
    private bool MapArea(VmStruct vm, uint[] pfns, bool writable)
    {
        var window = _window!;
        long first = (long)((vm.Address - Layout.Start) / PageSize);
        bool guard = (vm.Flags & VmFlags.NoGuard) == 0;
        if (!ChargeMaps(window.MapDelta(first, pfns, writable, guard)))
        {
            FlushStale();
            int delta = window.MapDelta(first, pfns, writable, guard);
            if (!ChargeMaps(delta))
            {
                // Other machines' stale mappings help only against the process-wide budget, not this machine's cap.
                if (OverLimit(delta))
                {
                    return false;
                }
                HostMapBudget.ReclaimOthers(this);
                if (!ChargeMaps(window.MapDelta(first, pfns, writable, guard)))
                {
                    return false;
                }
            }
        }
        bool mapped = window.Map(first, pfns, writable, guard);
        Settle();
        if (!mapped)
        {
            return false;
        }
        for (int i = 0; i < pfns.Length; i++)
        {
            _tables.Set(vm.Address + (ulong)i * PageSize, pfns[i], writable);
        }
        return true;
    }

    /// <summary>vunmap_range_noflush: the ptes are cleared at once; the host mappings stay, stale, as the kernel's
    /// TLB entries stay until the purge, for a later area to reuse.</summary>
    private void UnmapHost(VmStruct vm)
    {
        ulong bytes = vm.MappedBytes;
        for (ulong off = 0; off < bytes; off += PageSize)
        {
            _tables.Clear(vm.Address + off);
        }
        _window!.Release((long)((vm.Address - Layout.Start) / PageSize), (int)(bytes / PageSize));
    }

    /// <summary>Takes <paramref name="n"/> more VMAs from the budget (the machine's cap first); true for none.</summary>
    private bool ChargeMaps(int n) => n <= 0 || (!OverLimit(n) && Charge(n));

    /// <summary>Whether <paramref name="n"/> more VMAs would pass the machine's own cap.</summary>
    private bool OverLimit(int n) => HostMapLimit is { } limit && _window!.Vmas + n > limit;

    /// <summary>The stale host mappings go (lock held).</summary>
    private void FlushStale()
    {
        if (_window is { StalePages: > 0 } window)
        {
            window.FlushStale();
            Settle();
        }
    }

    /// <summary>Brings what is charged to what the window holds: the charge made before a change was an upper bound.</summary>
    private void Settle()
    {
        int d = _window!.Vmas - _budgetCharged;
        if (d < 0)
        {
            Release(-d);
        }
        else if (d > 0)
        {
            HostMapBudget.ForceCharge(d);
            _budgetCharged += d;
        }
    }

    /// <summary>Takes <paramref name="n"/> host mappings from the process-wide budget (lock held).</summary>
    private bool Charge(int n)
    {
        if (!HostMapBudget.TryCharge(n))
        {
            return false;
        }
        _budgetCharged += n;
        return true;
    }

    /// <summary>Gives <paramref name="n"/> host mappings back to the process-wide budget (lock held).</summary>
    private void Release(int n)
    {
        HostMapBudget.Release(n);
        _budgetCharged -= n;
    }
}
