// Task kernel stacks (kernel/fork.c alloc_thread_stack_node, free_thread_stack): on X64, VMAP_STACK's
// THREAD_SIZE of 16 KiB from vmalloc, with 6.1's per-CPU cache of NR_CACHED_STACKS freed stacks that a new
// task takes (cleared) before it asks vmalloc; on x86-32, THREAD_SIZE 8 KiB as one zeroed order-1 block, with
// no cache (6.1 caches only vmalloc'd stacks).
// Invariants: a cached stack belongs to no task and is not counted in NR_KERNEL_STACK_KB (the owner counts a
// task's stack), but its vmalloc area stays, listed in vmallocinfo under alloc_thread_stack_node as in the
// kernel; the cache is emptied only by the machine's end (the kernel empties it when a CPU goes offline).
// Locking: none of its own. A cache slot is taken with an atomic exchange and filled with a compare-exchange
// (this_cpu_xchg, this_cpu_cmpxchg), so callers on any CPU may race for one.
using Kmem.PageAlloc;
using Kmem.Physical;
using Kmem.Vmalloc;

namespace Kmem.Reclaim;

internal sealed unsafe class KernelStacks(PageAllocator pa, Preset preset, Func<VmapSpace> vmalloc)
{
    /// <summary>NR_CACHED_STACKS: freed stacks each CPU keeps for its next new task.</summary>
    public const int NrCachedStacks = 2;

    private const int VmapStackBytes = 16 << 10;

    private readonly nint[] _cached = new nint[pa.Cpus.Count * NrCachedStacks];

    /// <summary>THREAD_SIZE in KiB: what one task's stack adds to NR_KERNEL_STACK_KB.</summary>
    public int StackKb => preset == Preset.X64 ? VmapStackBytes >> 10 : 8;

    /// <summary>alloc_thread_stack_node: a stack from this CPU's cache, else a new one.</summary>
    /// <returns>False when the allocation failed (both outputs are then empty).</returns>
    public bool Alloc(out nint vmap, out Page pages)
    {
        pages = Page.Null;
        if (preset != Preset.X64)
        {
            vmap = 0;
            pages = pa.AllocPages(Gfp.KernelAccount | Gfp.Zero, 1, -1);
            return !pages.IsNull;
        }
        int first = pa.Cpus.Current * NrCachedStacks;
        for (int i = first; i < first + NrCachedStacks; i++)
        {
            vmap = Interlocked.Exchange(ref _cached[i], 0);
            if (vmap != 0)
            {
                new Span<byte>((void*)vmap, VmapStackBytes).Clear(); // stale pointers of the task before
                return true;
            }
        }
        vmap = vmalloc().Vmalloc(VmapStackBytes, PhysMem.PageSize, Gfp.Kernel, -1, 0, "alloc_thread_stack_node");
        return vmap != 0;
    }

    /// <summary>free_thread_stack: into a free slot of this CPU's cache, else back to vmalloc or the page allocator.</summary>
    public void Free(nint vmap, Page pages)
    {
        if (vmap != 0)
        {
            int first = pa.Cpus.Current * NrCachedStacks;
            for (int i = first; i < first + NrCachedStacks; i++)
            {
                if (Interlocked.CompareExchange(ref _cached[i], vmap, 0) == 0)
                {
                    return;
                }
            }
            vmalloc().Unmap(vmap, deallocatePages: true, "vfree");
        }
        if (!pages.IsNull)
        {
            pa.FreePages(pages, 1);
        }
    }
}
