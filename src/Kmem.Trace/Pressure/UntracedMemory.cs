// The memory a pressure capture's kernel used before its trace began (the ring buffer, the
// initramfs), which no event shows: where the capture reveals the kernel's free pages (its
// vmstat after a phase), Kmem holds or gives back pages so its own free pages are the same.
// That memory is an input, like the watermarks. Taken without reclaim (no kswapd, no direct
// reclaim), in the largest blocks that are free, as boot-time allocations are; unmovable, so
// compaction cannot move them. Owned by PressureReplay; replaying thread only.
namespace Kmem;

/// <summary>Pages held for memory the kernel used before its trace began.</summary>
internal sealed class UntracedMemory(Machine m)
{
    private readonly List<(Page Page, int Order)> _held = [];

    /// <summary>Pages held now.</summary>
    public long Pages { get; private set; }

    /// <summary>Whether the free pages were set to a capture's once.</summary>
    public bool Calibrated { get; private set; }

    /// <summary>Takes order-0 pages allocated before the replay's first event (the kernel's trace ring buffer:
    /// PreTraceRingBuffer) into the pages held; a later calibration gives them back last.</summary>
    public void Adopt(List<Page> pages)
    {
        _held.InsertRange(0, pages.Select(p => (p, 0)));
        Pages += pages.Count;
    }

    /// <summary>Holds or gives back pages so Kmem's free pages are <paramref name="kernelFree"/>.</summary>
    public void Calibrate(long kernelFree)
    {
        Calibrated = true;
        long delta = m.PageAllocator.NrFreePages - kernelFree;
        const Gfp NoReclaim = (Gfp.Kernel & ~Gfp.Reclaim) | Gfp.NoWarn;
        for (int order = Machine.MaxOrder - 1; delta > 0 && order >= 0; order--)
        {
            while (delta >= 1L << order)
            {
                var page = m.AllocPages(NoReclaim, order);
                if (page.IsNull)
                {
                    break;
                }
                _held.Add((page, order));
                Pages += 1L << order;
                delta -= 1L << order;
            }
        }
        while (delta < 0 && _held.Count > 0)
        {
            var (page, order) = _held[^1];
            _held.RemoveAt(_held.Count - 1);
            m.FreePages(page, order);
            Pages -= 1L << order;
            delta += 1L << order;
        }
    }
}
