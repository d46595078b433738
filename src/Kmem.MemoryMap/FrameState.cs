// What a page frame is being used for, as the memory map shows it: the public
// vocabulary of MemoryMap.Classify and of the picture's legend. Each state is
// read from the frame's struct page (flags, page types, compound head) or, where
// the kernel keeps no mark on the frame (vmalloc, the per-CPU lists), from the
// owning layer's own tables. Immutable.
namespace Kmem;

/// <summary>The state of one page frame, as <see cref="MemoryMap"/> classifies and colours it.</summary>
public enum FrameState
{
    /// <summary>Not RAM: a hole in the machine's memory map (pfn 0, the PC's 640 KiB–1 MiB gap).</summary>
    Hole,
    /// <summary>PG_reserved: kept by the kernel at boot (the first MiB, the kernel image, the memmap).</summary>
    Reserved,
    /// <summary>On a buddy free list (PageBuddy), inside a free block of some order.</summary>
    Free,
    /// <summary>On a CPU's per-CPU page list: free, but not on the buddy lists.</summary>
    PerCpuList,
    /// <summary>PG_slab: a page of a slab cache (the head's flag for a multi-page slab).</summary>
    Slab,
    /// <summary>A kmalloc above KMALLOC_MAX_CACHE_SIZE (8 KiB): a compound page straight from the page allocator.</summary>
    LargeKmalloc,
    /// <summary>A frame a vmalloc area owns (vm->pages).</summary>
    Vmalloc,
    /// <summary>PG_table: a page-table page of a task.</summary>
    PageTable,
    /// <summary>An anonymous page of a task (PG_swapbacked).</summary>
    TaskAnon,
    /// <summary>A page-cache page of a file (on an LRU list, not swap-backed).</summary>
    PageCache,
    /// <summary>Allocated, with no mark that tells more: alloc_pages callers, kernel stacks, page arrays…</summary>
    Kernel,
}
