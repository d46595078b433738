// The page allocator's public face on Machine: the kernel's page API under its
// C# names (include/linux/gfp.h, mm.h). Everything here forwards to
// PageAllocator; see AllocPath.cs, FreePath.cs and PageAllocator.Address.cs for the semantics.
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem;

public sealed partial class Machine
{
    /// <summary>MAX_ORDER: valid orders are 0 .. MaxOrder - 1.</summary>
    public const int MaxOrder = Arch.MaxOrder;

    /// <summary>PAGE_SIZE.</summary>
    public const int PageSize = PhysMem.PageSize;

    /// <summary>alloc_pages: 2^<paramref name="order"/> physically contiguous frames.</summary>
    /// <returns>The first frame, or <see cref="Page.Null"/> when memory (or the gfp's allowance) runs out;
    /// a failure is logged as "page allocation failure" unless <see cref="Gfp.NoWarn"/>.</returns>
    /// <remarks>Sleeps (direct reclaim) only with <see cref="Gfp.DirectReclaim"/>. An order of
    /// <see cref="MaxOrder"/> or more returns null with a one-time warning.</remarks>
    public Page AllocPages(Gfp gfp, int order) { using var _ = _life.Enter(); return PageAllocator.AllocPages(gfp, order, -1); }

    /// <summary>alloc_page: one frame (order 0).</summary>
    /// <returns>The frame, or <see cref="Page.Null"/>.</returns>
    public Page AllocPage(Gfp gfp) { using var _ = _life.Enter(); return PageAllocator.AllocPages(gfp, 0, -1); }

    /// <summary>alloc_pages_node: like <see cref="AllocPages"/>, starting from node <paramref name="nid"/>
    /// (-1 for the current CPU's node); with <see cref="Gfp.ThisNode"/>, only from that node.</summary>
    /// <returns>The first frame, or <see cref="Page.Null"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The node does not exist.</exception>
    public Page AllocPagesNode(int nid, Gfp gfp, int order)
    {
        using var _ = _life.Enter();
        if (nid < -1 || nid >= NrNodes)
        {
            throw new ArgumentOutOfRangeException(nameof(nid), nid, $"node {nid} does not exist: the machine has nodes 0..{NrNodes - 1}");
        }
        return PageAllocator.AllocPages(gfp, order, nid);
    }

    /// <summary>__free_pages: drops the caller's reference to a block from <see cref="AllocPages"/>; the last
    /// reference frees it.</summary>
    /// <exception cref="BadPageStateException">The page is not allocated (double free), was allocated with
    /// another order, or is not in a state that may be freed; nothing is changed (with
    /// <see cref="OnBug.Report"/> the report is logged instead).</exception>
    public void FreePages(Page page, int order) { using var _ = _life.Enter(); PageAllocator.FreePages(page, order); }

    /// <summary>__free_page: <see cref="FreePages(Page, int)"/> of order 0.</summary>
    public void FreePage(Page page) { using var _ = _life.Enter(); PageAllocator.FreePages(page, 0); }

    /// <summary>__get_free_pages: like <see cref="AllocPages"/> but returns the direct-map address
    /// (never highmem: __GFP_HIGHMEM is ignored).</summary>
    /// <returns>The address, or 0 when the allocation fails.</returns>
    public nint GetFreePages(Gfp gfp, int order) { using var _ = _life.Enter(); return PageAllocator.GetFreePages(gfp, order); }

    /// <summary>__get_free_page: one frame's address, or 0.</summary>
    public nint GetFreePage(Gfp gfp) { using var _ = _life.Enter(); return GetFreePages(gfp, 0); }

    /// <summary>get_zeroed_page: one zeroed frame's address, or 0.</summary>
    public nint GetZeroedPage(Gfp gfp) { using var _ = _life.Enter(); return GetFreePages(gfp | Gfp.Zero, 0); }

    /// <summary>free_pages: frees by address what <see cref="GetFreePages"/> returned; 0 is ignored.</summary>
    /// <exception cref="ArgumentException">The address is not in the direct map.</exception>
    /// <exception cref="BadPageStateException">As for <see cref="FreePages(Page, int)"/>.</exception>
    public void FreePages(nint address, int order) { using var _ = _life.Enter(); PageAllocator.FreePages(address, order); }

    /// <summary>free_page: <see cref="FreePages(nint, int)"/> of order 0.</summary>
    public void FreePage(nint address) { using var _ = _life.Enter(); FreePages(address, 0); }

    /// <summary>alloc_pages_exact: <paramref name="size"/> bytes rounded up to pages, physically contiguous;
    /// the tail of the power-of-two block beyond them is given back at once.</summary>
    /// <returns>The direct-map address, or 0.</returns>
    public nint AllocPagesExact(nuint size, Gfp gfp) { using var _ = _life.Enter(); return PageAllocator.AllocPagesExact(size, gfp); }

    /// <summary>free_pages_exact: frees what <see cref="AllocPagesExact"/> returned.</summary>
    public void FreePagesExact(nint address, nuint size) { using var _ = _life.Enter(); PageAllocator.FreePagesExact(address, size); }

    /// <summary>get_order: the smallest order whose block holds <paramref name="size"/> bytes.</summary>
    /// <remarks>Exact for every size, the largest included (no rounding that could wrap): a size past what any
    /// zone can hold gives an order above MAX_ORDER, which the allocators then refuse.</remarks>
    public static int GetOrder(nuint size) => PhysMem.GetOrder(size);

    /// <summary>split_page: turns a non-compound block into 2^order order-0 pages, each freed on its own.</summary>
    public void SplitPage(Page page, int order) { using var _ = _life.Enter(); PageAllocator.SplitPage(page, order); }

    /// <summary>get_page: takes one more reference to an allocated page.</summary>
    public void GetPage(Page page) { using var _ = _life.Enter(); PageAllocator.GetPage(page); }

    /// <summary>put_page: drops a reference; the last one frees the page (a compound page whole).</summary>
    public void PutPage(Page page) { using var _ = _life.Enter(); PageAllocator.PutPage(page); }

    /// <summary>page_ref_count.</summary>
    public int PageRefCount(Page page) { using var _ = _life.Enter(); return PageAllocator.PageRefCount(page); }

    /// <summary>drain_all_pages: returns every CPU's per-CPU page lists to the buddy lists.</summary>
    public void DrainAllPages() { using var _ = _life.Enter(); PageAllocator.DrainAllPages(); }

    /// <summary>vmstat_update on every CPU: each CPU's differences to the zones' NR_FREE_PAGES counters fold into
    /// them. The watermark checks read those counters, which lag the free page count by up to a stat_threshold per
    /// CPU until a CPU's difference passes it; the kernel folds every second (vm.stat_interval). Kmem has no clock
    /// of its own: call it periodically to model one, as <see cref="CacheReap"/>.</summary>
    public void RefreshVmStats() { using var _ = _life.Enter(); Vmstat.Refresh(PageAllocator.Zones); }

    /// <summary>page_address: the frame's direct-map address; for a highmem frame, its pkmap address while
    /// it is kmapped, else 0 (map it with kmap).</summary>
    public nint PageAddress(Page page) { using var _ = _life.Enter(); return Highmem.PageAddress(page); }

    /// <summary>virt_to_page: the frame a direct-map address falls in, or <see cref="Page.Null"/>.</summary>
    public Page VirtToPage(nint address)
    {
        using var _ = _life.Enter();
        uint pfn = _mem.VirtToPfn(address);
        return pfn == PhysMem.NoPfn ? Page.Null : new Page(pfn);
    }

    /// <summary>pfn_to_page.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The pfn is beyond the machine's memory.</exception>
    public Page PfnToPage(ulong pfn)
    {
        using var _ = _life.Enter();
        return pfn < _mem.MaxPfn ? new Page((uint)pfn) : throw new ArgumentOutOfRangeException(nameof(pfn), $"pfn 0x{pfn:x} is beyond max_pfn 0x{_mem.MaxPfn:x}");
    }

    /// <summary>page_to_pfn.</summary>
    public static ulong PageToPfn(Page page) => page.Pfn;

    /// <summary>page_zone: the type of the zone the frame belongs to.</summary>
    public ZoneType PageZone(Page page) { using var _ = _life.Enter(); return PageAllocator.ZoneOf(CheckedPfn(page)).Type; }

    /// <summary>page_to_nid: the node the frame belongs to.</summary>
    public int PageToNid(Page page) { using var _ = _life.Enter(); return PageAllocator.ZoneOf(CheckedPfn(page)).Node.Id; }

    /// <summary>PageHighMem: the frame is in ZONE_HIGHMEM (never in the direct map).</summary>
    public bool PageHighMem(Page page) { using var _ = _life.Enter(); return PageAllocator.ZoneOf(CheckedPfn(page)).IsHighMem; }

    /// <summary>The frames of the machine (max_pfn).</summary>
    public ulong MaxPfn { get { using var _ = _life.Enter(); return _mem.MaxPfn; } }

    /// <summary>A span over a lowmem frame block's bytes in the direct map.</summary>
    /// <exception cref="ArgumentException">The frame is in highmem.</exception>
    public unsafe Span<byte> PageSpan(Page page, int order = 0)
    {
        using var _ = _life.Enter();
        nint p = PageAddress(page);
        return p == 0 ? throw new ArgumentException($"{page} is a highmem frame: it has no direct-map address", nameof(page))
            : new Span<byte>((void*)p, PageSize << order);
    }

    private uint CheckedPfn(Page page) => _mem.CheckedPfn(page);
}
