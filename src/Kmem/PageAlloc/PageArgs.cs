// The checks every page API makes of a Page argument before touching the memmap
// (pfn_valid in the kernel's terms): not NULL, and below max_pfn. Shared by the
// page allocator's face and the layers that take pages from callers (highmem,
// mempool). Stateless: no lock.
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal static class PageArgs
{
    /// <summary>The page's pfn, once it is known to be a frame of <paramref name="mem"/>.</summary>
    /// <exception cref="ArgumentException">The page is <see cref="Page.Null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The page is beyond max_pfn.</exception>
    public static uint CheckedPfn(this PhysMem mem, Page page) => page.IsNull ? throw new ArgumentException("NULL page", nameof(page))
        : page.RawPfn < mem.MaxPfn ? page.RawPfn
        : throw new ArgumentOutOfRangeException(nameof(page), $"{page} is beyond max_pfn 0x{mem.MaxPfn:x}");

    /// <summary>The frame a direct-map address falls in.</summary>
    /// <exception cref="ArgumentException">The address is not in the direct map.</exception>
    public static Page VirtToPageChecked(this PhysMem mem, nint address)
    {
        uint pfn = mem.VirtToPfn(address);
        return pfn != PhysMem.NoPfn ? new Page(pfn)
            : throw new ArgumentException($"0x{address:x} is not a direct-map address of this machine", nameof(address));
    }
}
