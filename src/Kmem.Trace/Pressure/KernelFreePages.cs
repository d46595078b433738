// The kernel's free pages as the trace reveals them, and Kmem's held to them (an aligned
// pressure replay's, PressureReplay.Aligned.cs). NR_FREE_PAGES counts the buddy lists' pages, not
// the per-CPU lists': it falls by each block mm_page_alloc_zone_locked takes from the
// buddy lists (a refill or a buddy allocation) and rises by each block
// mm_page_pcpu_drain gives back and each free of an order that bypasses the per-CPU
// lists, and by what compaction's free scanner isolates (mm_compaction_isolate_freepages).
// Rebased where the capture's vmstat reveals it (after each phase) and where
// should_reclaim_retry shows a zone's (reclaim_retry_zone: available less reclaimable);
// between, what fast_isolate_freepages takes shows in no event and drifts it.
// The CPUs' vmstat diffs, which keep the NR_FREE_PAGES counter the watermark checks read behind
// the exact count, are not: when the kernel's CPUs folded them (vmstat_update's timers, a CPU
// going idle) is not traced, so Kmem's counter is set to its count at each decision.
// Before a user page's decision, Kmem's free pages in each zone are set to the kernel's,
// as the other CPUs left them: the allocating task's own changes
// since its previous allocation (the refill for this allocation, the drains its reclaim
// caused) are left out, so the decision sees the state its slow path began with, and no
// decision event is read. Kmem holds pages (taken from, or given back to, the buddy lists
// with the CPU's lists held, so no refill or drain moves the count; taken as the blocks
// are, of any type, since holding must not steal) to meet it.
// Used on the replaying thread only.
using System.Globalization;
using Kmem.PageAlloc;

namespace Kmem;

/// <summary>The kernel's free pages per zone, followed through the trace, and the pages Kmem holds to match them.</summary>
internal sealed class KernelFreePages(Machine m, Func<Zone?> userZone)
{
    private readonly Machine _m = m;
    private long[]? _kernelFree;
    private bool _kernelFreeKnown;
    // Per task, its own changes to each zone's free pages since its previous allocation.
    private readonly Dictionary<int, long[]> _ownFreeDelta = [];
    private readonly Stack<(Page Page, int Order)>[] _heldFree = [.. Enumerable.Range(0, 8).Select(_ => new Stack<(Page, int)>())];

    /// <summary>Pages Kmem holds (aligned) so its free pages are the kernel's at each decision.</summary>
    public long HeldFreePages { get; private set; }

    // The kernel's free pages per zone, from the trace's first event on: each zone starts as Kmem's booted one (a trace
    // recorded from boot), the preferred zone is rebased where the capture reveals the total.
    private long[] KernelFreeArray => _kernelFree ??= [.. _m.PageAllocator.Zones.Select(z => Volatile.Read(ref z.FreePages))];

    // Every event (aligned): the kernel's free pages per zone, and each task's own part since its last allocation.
    public void TrackKernelFree(ref TraceEvent e)
    {
        long change = e.Kind switch
        {
            TraceEventKind.MmPageAllocZoneLocked => -(1L << e.Order),
            TraceEventKind.MmPagePcpuDrain => 1L << e.Order,
            TraceEventKind.MmPageFree when !_m.PageAllocator.PcpAllowedOrder(e.Order) => 1L << e.Order,
            _ => 0,
        };
        var free = KernelFreeArray;
        if (change == 0 || e.Pfn >= _m.PageAllocator.Mem.MaxPfn)
        {
            return;
        }
        int zone = _m.PageAllocator.ZoneOf((uint)e.Pfn).Index;
        free[zone] += change;
        Own(e.Pid)[zone] += change;
    }

    private long[] Own(int pid)
    {
        if (!_ownFreeDelta.TryGetValue(pid, out long[]? own))
        {
            own = new long[_m.PageAllocator.Zones.Length];
            _ownFreeDelta[pid] = own;
        }
        return own;
    }

    // The capture's vmstat after a phase: the kernel's free pages in all zones; the preferred zone's are what the others
    // (as tracked) leave.
    public void RebaseKernelFree(long kernelFree)
    {
        var free = KernelFreeArray;
        if (userZone() is not { } user)
        {
            return;
        }
        long others = 0;
        foreach (var z in _m.PageAllocator.Zones)
        {
            others += z == user ? 0 : free[z.Index];
        }
        free[user.Index] = kernelFree - others;
        _kernelFreeKnown = true;
    }

    // Before a user page's decision of task <pid>: Kmem's free pages in each zone set to the kernel's, the task's own
    // changes since its previous allocation left out of every zone's (its refill may come from a lower zone after the
    // preferred one failed: the zonelist's walk saw that zone before the refill, as the preferred one).
    public void AlignFree(int pid)
    {
        long[]? own = _ownFreeDelta.Remove(pid, out long[]? d) ? d : null;
        if (!_kernelFreeKnown || userZone() is null)
        {
            return;
        }
        foreach (var z in _m.PageAllocator.Zones)
        {
            if (z.IsManaged && z.Index < _heldFree.Length)
            {
                HoldZone(z, Math.Max(0, KernelFreeArray[z.Index] - (own?[z.Index] ?? 0)));
                // The CPUs' vmstat diffs are not revealed (their folds are not traced): folded, the counter the
                // watermark checks read is the count.
                z.RefreshVmstat();
            }
        }
    }

    // Holds or gives back pages of zone <z> (from and to its buddy lists: the caller holds the CPU's lists) until its
    // free pages are <target>, as far as it holds pages to give back.
    private void HoldZone(Zone z, long target)
    {
        var held = _heldFree[z.Index];
        var zpcp = z.Pcp[_m.PageAllocator.Cpus.Current];
        bool locked = zpcp.TryLock(); // held: an allocation or free below goes to the buddy lists directly
        try
        {
            long delta = Volatile.Read(ref z.FreePages) - target;
            while (delta < 0 && held.TryPop(out var h))
            {
                _m.FreePages(h.Page, h.Order);
                HeldFreePages -= 1L << h.Order;
                delta += 1L << h.Order;
            }
            for (int order = Math.Min(Machine.MaxOrder - 1, 63 - (int)long.LeadingZeroCount(Math.Max(1, delta))); delta > 0 && order >= 0; order--)
            {
                while (delta >= 1L << order)
                {
                    var page = Kmem.PageAlloc.PcpAlign.TakeFreeBlock(_m.PageAllocator, z, order); // no steal: holding is not a decision
                    if (page.IsNull)
                    {
                        break; // no block of this order left: smaller ones
                    }
                    held.Push((page, order));
                    HeldFreePages += 1L << order;
                    delta -= 1L << order;
                }
            }
        }
        finally
        {
            if (locked)
            {
                zpcp.Unlock();
            }
        }
    }

    // Gives back up to <pages> of what Kmem holds in the preferred zone, to its buddy lists; returns how many.
    public long ReleaseHeldFree(long pages)
    {
        if (userZone() is not { } z || z.Index >= _heldFree.Length)
        {
            return 0;
        }
        var held = _heldFree[z.Index];
        var zpcp = z.Pcp[_m.PageAllocator.Cpus.Current];
        bool locked = zpcp.TryLock();
        long released = 0;
        try
        {
            while (released < pages && held.TryPop(out var h))
            {
                _m.FreePages(h.Page, h.Order);
                HeldFreePages -= 1L << h.Order;
                released += 1L << h.Order;
            }
        }
        finally
        {
            if (locked)
            {
                zpcp.Unlock();
            }
        }
        return released;
    }

    // Events that reveal the kernel's free pages: the free scanner's isolation takes pages off the buddy lists with no
    // page event; should_reclaim_retry's look at a zone shows its free pages (available less reclaimable) outright.
    public void KernelFreeRevealed(TraceEventKind kind, string text, int pid)
    {
        var zones = _m.PageAllocator.Zones;
        var free = KernelFreeArray;
        if (kind == TraceEventKind.MmCompactionIsolateFreepages)
        {
            if (PressureReplay.Word(text, "range=(0x") is { } start && ulong.TryParse(start, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong pfn)
                && pfn < _m.PageAllocator.Mem.MaxPfn && PressureReplay.Field(text, "nr_taken=") is long taken and > 0)
            {
                int at = _m.PageAllocator.ZoneOf((uint)pfn).Index;
                free[at] -= taken;
                Own(pid)[at] -= taken;
            }
            return;
        }
        if (PressureReplay.Word(text, "zone=") is { } name && zones.FirstOrDefault(z => z.Name == name) is { } zone
            && PressureReplay.Field(text, "available=") is long available && PressureReplay.Field(text, "reclaimable=") is long reclaimable)
        {
            free[zone.Index] = available - reclaimable; // zone_page_state_snapshot: the exact count
        }
    }

    // Any allocation of the task ends its own part (a user page's is read by AlignFree first).
    public void ForgetOwnFree(int pid) => _ownFreeDelta.Remove(pid);
}
