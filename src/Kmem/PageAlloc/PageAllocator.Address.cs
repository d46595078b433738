// The page allocator's calls by direct-map address (mm/page_alloc.c): __get_free_pages,
// free_pages, alloc_pages_exact and free_pages_exact. They sit on AllocPages and FreePages
// and add no state and no lock of their own: a block is in the direct map (never highmem)
// and is freed by its address.
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed partial class PageAllocator
{
    /// <summary>__get_free_pages: a block's direct-map address (__GFP_HIGHMEM is ignored), or 0.</summary>
    public nint GetFreePages(Gfp gfp, int order)
    {
        var page = AllocPages(gfp & ~Gfp.HighMem, order, -1);
        return page.IsNull ? 0 : _mem.PageAddress(page.RawPfn);
    }

    /// <summary>free_pages: frees by address what <see cref="GetFreePages"/> returned; 0 is ignored.</summary>
    /// <exception cref="ArgumentException">The address is not in the direct map.</exception>
    public void FreePages(nint address, int order)
    {
        if (address != 0)
        {
            FreePages(_mem.VirtToPageChecked(address), order);
        }
    }

    /// <summary>alloc_pages_exact: <paramref name="size"/> bytes rounded up to pages, physically contiguous;
    /// the tail of the power-of-two block beyond them is given back at once.</summary>
    /// <returns>The direct-map address, or 0.</returns>
    public nint AllocPagesExact(nuint size, Gfp gfp)
    {
        if (size == 0)
        {
            return 0;
        }
        if ((gfp & (Gfp.Comp | Gfp.HighMem)) != 0)
        {
            // WARN_ON_ONCE in the kernel: the pages are split and must be in the direct map.
            _log.Printk($"WARNING: CPU: {_cpus.Current} at mm/page_alloc.c alloc_pages_exact: mode:0x{(uint)gfp:x}({GfpFlags.Format(gfp)}) has __GFP_COMP or __GFP_HIGHMEM; dropped");
            gfp &= ~(Gfp.Comp | Gfp.HighMem);
        }
        int order = PhysMem.GetOrder(size);
        var page = AllocPages(gfp, order, -1); // an order >= MAX_ORDER fails there, with its warning
        if (page.IsNull)
        {
            return 0;
        }
        SplitPage(page, order);
        uint used = (uint)((size + PhysMem.PageSize - 1) / PhysMem.PageSize);
        for (uint i = used; i < 1u << order; i++)
        {
            FreePages(page.Add((int)i), 0);
        }
        return _mem.PageAddress(page.RawPfn);
    }

    /// <summary>free_pages_exact: frees what <see cref="AllocPagesExact"/> returned.</summary>
    /// <exception cref="ArgumentException">The address is not in the direct map.</exception>
    public void FreePagesExact(nint address, nuint size)
    {
        var page = _mem.VirtToPageChecked(address);
        uint pages = (uint)((size + PhysMem.PageSize - 1) / PhysMem.PageSize);
        for (uint i = 0; i < pages; i++)
        {
            FreePages(page.Add((int)i), 0);
        }
    }
}
