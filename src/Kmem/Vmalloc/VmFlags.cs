// The vm_struct flags (include/linux/vmalloc.h, 6.1 values) and the page
// protections Vmap accepts. Public API types: the flags are printed by
// /proc/vmallocinfo, the protection decides the host mapping's PROT_* bits.
namespace Kmem;

/// <summary>vm_struct flags (VM_*), with the kernel's 6.1 values.</summary>
[Flags]
public enum VmFlags : uint
{
    /// <summary>VM_IOREMAP: an I/O mapping (shown as "ioremap").</summary>
    Ioremap = 0x1,
    /// <summary>VM_ALLOC: vmalloc() memory (shown as "vmalloc").</summary>
    Alloc = 0x2,
    /// <summary>VM_MAP: vmap()ed pages (shown as "vmap").</summary>
    Map = 0x4,
    /// <summary>VM_USERMAP: suitable for remap_vmalloc_range (shown as "user").</summary>
    UserMap = 0x8,
    /// <summary>VM_DMA_COHERENT: dma_alloc_coherent memory (shown as "dma-coherent").</summary>
    DmaCoherent = 0x10,
    /// <summary>VM_UNINITIALIZED: the area is not fully set up yet.</summary>
    Uninitialized = 0x20,
    /// <summary>VM_NO_GUARD: no guard page after the area.</summary>
    NoGuard = 0x40,
    /// <summary>VM_KASAN.</summary>
    Kasan = 0x80,
    /// <summary>VM_FLUSH_RESET_PERMS.</summary>
    FlushResetPerms = 0x100,
    /// <summary>VM_MAP_PUT_PAGES: vfree() frees the vmap()ed pages.</summary>
    MapPutPages = 0x200,
    /// <summary>VM_ALLOW_HUGE_VMAP.</summary>
    AllowHugeVmap = 0x400,
}

/// <summary>The protection a <see cref="Machine.Vmap"/> mapping gets (pgprot_t).</summary>
public enum PageProt
{
    /// <summary>PAGE_KERNEL: readable and writable.</summary>
    PageKernel,
    /// <summary>PAGE_KERNEL_RO: read-only; a write through the mapping faults the host process.</summary>
    PageKernelRo,
}
