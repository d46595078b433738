// mm/vmalloc.c vm_map_ram and vm_unmap_ram: the caller's frames mapped in an
// area of their own, with no guard page and no vm_struct, freed lazily like any
// other area. Locking: the space's one lock, as in VmapSpace.cs.

namespace Kmem.Vmalloc;

internal sealed partial class VmapSpace
{
    /// <summary>vm_map_ram: maps the caller's frames contiguously in an area with no guard page and no
    /// vm_struct (/proc/vmallocinfo shows it as "vm_map_ram"). The kernel carves requests of up to
    /// VMAP_MAX_ALLOC pages from per-CPU vmap blocks; here every request gets its own vmap area, as the
    /// kernel does above that size.</summary>
    /// <returns>The host address, or 0 when the area or the host mappings cannot be had.</returns>
    public nint MapRam(uint[] pfns, int node)
    {
        _ = node; // the area's address does not depend on the node; the frames are the caller's
        if (pfns.Length == 0 || pfns.Length > _pa.TotalRamPages)
        {
            return 0;
        }
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var vm = GetVmArea((ulong)pfns.Length * PageSize, PageSize, VmFlags.NoGuard, Gfp.Kernel, "vm_map_ram");
            if (vm is null)
            {
                return 0;
            }
            vm.IsMapRam = true;
            if (!MapArea(vm, pfns, writable: true))
            {
                RemoveArea(vm);
                return 0;
            }
            vm.Pages = pfns;
            return _host + (nint)(vm.Address - Layout.Start);
        }
    }

    /// <summary>vm_unmap_ram: removes a <see cref="MapRam"/> area of <paramref name="count"/> pages; the range is
    /// freed lazily, the frames stay the caller's. An address that starts no vm_map_ram area of that size
    /// gets the kernel's WARN in the log and changes nothing.</summary>
    /// <returns>Null, or the report of a BUG_ON the kernel hits (a null, unaligned or foreign address, no
    /// pages), with nothing changed: the caller applies the machine's bug policy.</returns>
    public string? UnmapRam(nint p, int count)
    {
        ulong k = KernelAddress(p);
        if (p == 0 || k == 0 || (p & (nint)(PageSize - 1)) != 0 || count <= 0)
        {
            string what = p == 0 ? "!addr" : k == 0 ? "addr < VMALLOC_START || addr > VMALLOC_END" : count <= 0 ? "!count" : "!PAGE_ALIGNED(addr)";
            return $"kernel BUG at mm/vmalloc.c: vm_unmap_ram: BUG_ON({what}) for {PointerText(p)}, {count} pages";
        }
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_busy.TryGetValue(k, out var vm) || !vm.IsMapRam || vm.Size != (ulong)count * PageSize)
            {
                _log.Printk($"vm_unmap_ram: no vm_map_ram area of {count} pages at {PointerText(p)}\n"
                    + $"WARNING: CPU: {_pa.Cpus.Current} PID: {Environment.ProcessId} at mm/vmalloc.c vm_unmap_ram");
                return null;
            }
            UnmapHost(vm);
            RemoveArea(vm);
            return null;
        }
    }
}
