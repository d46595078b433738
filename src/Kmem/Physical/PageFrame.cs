// struct page, compacted: 32 bytes per 4 KiB frame (Linux uses 64). One native
// array of these, indexed by pfn, is the memmap. Zone and node are not stored
// per frame (the kernel packs them into page->flags); they are looked up by
// pageblock in PhysMem, so booting touches only the frames it must.
// Fields are guarded by whoever owns the frame: zone->lock while it is on a free
// list, the pcp lock while on a pcp list, the allocation's owner otherwise;
// RefCount is changed with Interlocked once the frame is handed out.
using System.Runtime.InteropServices;

namespace Kmem.Physical;

/// <summary>The PG_* page flags Kmem keeps (include/linux/page-flags.h), plus the page types (PageBuddy,
/// PageTable, large kmalloc), which the kernel keeps in page_type.</summary>
[Flags]
#pragma warning disable CA1069 // KernelMask and CheckAtFree are masks over the bits
internal enum PageFlags : uint
{
    None = 0,
    Locked = 1 << 0,
    Referenced = 1 << 1,
    Uptodate = 1 << 2,
    Dirty = 1 << 3,
    Lru = 1 << 4,
    Active = 1 << 5,
    Workingset = 1 << 6,
    Slab = 1 << 9,
    /// <summary>PG_swapcache (PG_owner_priv_1): an anonymous page in the swap cache; Private holds its swap entry.</summary>
    SwapCache = 1 << 10,
    Reserved = 1 << 12,
    Private = 1 << 13,
    Writeback = 1 << 15,
    Head = 1 << 16,
    Reclaim = 1 << 18,
    SwapBacked = 1 << 19,
    Unevictable = 1 << 20,
    Mlocked = 1 << 21,
    /// <summary>The bits that carry the kernel's PG_* numbering (printed by dump_page).</summary>
    KernelMask = (1 << 22) - 1,
    /// <summary>PAGE_FLAGS_CHECK_AT_FREE: none of these may be set on a page being freed.</summary>
    CheckAtFree = Lru | Locked | Private | Writeback | Reserved | Slab | Active | Unevictable | Mlocked,
    /// <summary>A user page table's frame (the kernel's PG_table page type).</summary>
    Table = 1 << 27,
    /// <summary>Page type PG_large_kmalloc, as later kernels keep it on the head of a kmalloc_large block (6.1
    /// marks nothing there; Kmem keeps it so that the memory map can tell these from other compound pages).</summary>
    LargeKmalloc = 1 << 26,
    /// <summary>A compound page's tail (the kernel marks tails with bit 0 of compound_head).</summary>
    Tail = 1 << 28,
    /// <summary>First frame of a free block on a buddy list (PageBuddy, page_type in the kernel).</summary>
    Buddy = 1 << 29,
    /// <summary>On a per-CPU page list (free, not PageBuddy).</summary>
    Pcp = 1 << 30,
    /// <summary>Outside the machine's RAM map (a hole): never allocatable.</summary>
    NoMap = 1u << 31,
}
#pragma warning restore CA1069

/// <summary>One frame's metadata: the compact struct page.</summary>
[StructLayout(LayoutKind.Sequential, Size = 32)]
internal struct PageFrame
{
    /// <summary>PG_* flags.</summary>
    public PageFlags Flags;
    /// <summary>_refcount: 0 while free (buddy or pcp), 1 when handed out.</summary>
    public int RefCount;
    /// <summary>_mapcount + 1: how many user page tables map the frame.</summary>
    public int MapCount;
    /// <summary>Buddy order while free; allocation order while handed out; compound order on a head.</summary>
    public byte Order;
    /// <summary>The migrate type of the list the frame sits on (get_pcppage_migratetype).</summary>
    public byte MigrateType;
    /// <summary>Free for later layers (slab: objects in use).</summary>
    public ushort Aux;
    /// <summary>List links as pfns (intrusive list_head); <see cref="PhysMem.NoPfn"/> ends a list.</summary>
    public uint Next, Prev;
    /// <summary>page->private and friends: a tail's head pfn, a slab's cache and freelist, a swap entry.</summary>
    public ulong Private;
}
