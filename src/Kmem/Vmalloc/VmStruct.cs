// struct vm_struct (include/linux/vmalloc.h): one busy area of the vmalloc space,
// its frames and the call site that made it. Owned by VmapSpace and changed only
// under its lock; the area [Address, Address + Size) includes the guard page.
namespace Kmem.Vmalloc;

/// <summary>One busy vmap area with its vm_struct.</summary>
internal sealed class VmStruct(ulong address, ulong size, VmFlags flags, string caller)
{
    /// <summary>va_start / vm->addr: the area's kernel-style start address.</summary>
    public ulong Address { get; } = address;

    /// <summary>vm->size: bytes, the guard page included.</summary>
    public ulong Size { get; } = size;

    public VmFlags Flags { get; set; } = flags;

    /// <summary>The calling method, shown by /proc/vmallocinfo as the kernel shows %pS of the caller.</summary>
    public string Caller { get; } = caller;

    /// <summary>vm->pages: the frames mapped, in order (empty for a vmap area the caller keeps).</summary>
    public uint[] Pages { get; set; } = [];

    /// <summary>vm->nr_pages: frames the area owns (0 for vmap without VM_MAP_PUT_PAGES).</summary>
    public int NrPages { get; set; }

    /// <summary>The page pointer array the kernel keeps for vm->pages: a kmalloc object, or (above a page)
    /// a vmalloc area of its own, shown as "vpages"; 0 when none was allocated.</summary>
    public nint PagesArray { get; set; }

    /// <summary>A vm_map_ram area: a vmap_area without a vm_struct (va->vm is NULL), which vfree and vunmap
    /// do not find and /proc/vmallocinfo shows as "vm_map_ram".</summary>
    public bool IsMapRam { get; set; }

    /// <summary>Bytes that are mapped: the size less the guard page.</summary>
    public ulong MappedBytes => (Flags & VmFlags.NoGuard) != 0 ? Size : Size - (ulong)Physical.PhysMem.PageSize;
}
