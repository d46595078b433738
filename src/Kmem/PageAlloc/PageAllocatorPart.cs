// A part of the page allocator kept in its own class for size (MemoryInit, WatermarkSetup): the
// allocator it belongs to and the views of it every part reads. No state of its own; a part runs
// under the locking its caller in PageAllocator documents.
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal abstract class PageAllocatorPart(PageAllocator allocator)
{
    private protected readonly PageAllocator _allocator = allocator;
    private protected readonly PhysMem _mem = allocator.Mem;

    private protected Arch Arch => _allocator.Arch;
    private protected MachineOptions Options => _allocator.Options;
    private protected Node[] Nodes => _allocator.Nodes;
    private protected Zone[] Zones => _allocator.Zones;
}
