// One machine's vmalloc space (mm/vmalloc.c): vmap areas from the free tree with
// a guard page each, lazy freeing purged past lazy_max_pages, frames mapped in
// Kmem's page tables and on the host (HostWindow: one mmap of the memfd per run of
// contiguous frames, a freed area's host mappings kept until reused or flushed, as
// the kernel keeps TLB entries until its lazy purge). It sits above the page
// allocator and the slab layer (the page pointer arrays of small areas are kmalloc
// objects), both given to its constructor.
// Invariants: busy, free and unpurged ranges never overlap and cover the host window;
// a busy area's frames are mapped on the host and in the ptes; a freed area's ptes
// are cleared at once; BudgetCharged is what this space holds of the process-wide
// host-mapping budget, the window's VMAs (after every call).
// Locking: one lock (vmap_area_lock, free_vmap_area_lock and vmap_purge_lock in one),
// reentered for page arrays; another space's lock is only ever tried, never waited for.
// The host mappings are in VmapSpace.Host.cs, vm_map_ram/vm_unmap_ram in VmapSpace.MapRam.cs,
// /proc/vmallocinfo in VmapSpace.Show.cs.
using System.Numerics;
using Kmem.PageAlloc;
using Kmem.Physical;
using Kmem.Slab;

namespace Kmem.Vmalloc;

/// <summary>One machine's vmalloc area: vmalloc, vmap, vfree and the reports.</summary>
internal sealed partial class VmapSpace : IDisposable
{
    private const ulong PageSize = PhysMem.PageSize;
    private readonly Lock _lock = new();
    private readonly PhysMem _mem;
    private readonly PageAllocator _pa;
    private readonly KernelLog _log;
    private readonly bool _numa;
    private readonly ulong _pageOffset;
    /// <summary>The slab layer for page pointer arrays; null on a machine without one.</summary>
    private readonly SlabBackend? _slab;
    private readonly FreeVmapTree _free = new();
    /// <summary>vmap_area_root/list: busy areas by address.</summary>
    private readonly SortedDictionary<ulong, VmStruct> _busy = [];
    private readonly VmallocPageTables _tables;
    private readonly RateLimit _vmapWarn = new(TimeSpan.FromSeconds(5), 10);
    private readonly RateLimit _allocWarn = new(TimeSpan.FromSeconds(5), 10);
    /// <summary>purge_vmap_area_root: lazily freed areas, merged when adjacent, not yet reusable.</summary>
    private FreeVmapTree _purge = new();
    private nint _host;
    private HostWindow? _window;
    private bool _hostFailed;
    private long _lazyPages;
    private long _vmallocPages;
    private int _budgetCharged;
    private int _zeroSizeWarned;
    private bool _disposed;

    /// <summary>The space of one machine; nothing is reserved on the host before the first area.</summary>
    /// <param name="layout">The area's bounds and page-table geometry.</param>
    /// <param name="pageOffset">PAGE_OFFSET, to print direct-map pointers in warnings.</param>
    /// <param name="mem">Physical memory (the memfd mapped into areas).</param>
    /// <param name="pa">The page allocator the frames come from.</param>
    /// <param name="slab">The slab layer: kmalloc_node and kfree for the page pointer arrays of small areas;
    /// null on a machine without one (the arrays are then not allocated).</param>
    /// <param name="log">The kernel log for warnings.</param>
    /// <param name="numa">Print N&lt;node&gt;= counts (CONFIG_NUMA).</param>
    public VmapSpace(VmallocLayout layout, ulong pageOffset, PhysMem mem, PageAllocator pa, SlabBackend? slab, KernelLog log, bool numa)
    {
        _pageOffset = pageOffset;
        _slab = slab;
        Layout = layout;
        _mem = mem;
        _pa = pa;
        _log = log;
        _numa = numa;
        LazyMaxPages = VmallocLayout.LazyMaxPages(pa.Cpus.Count);
        _tables = new VmallocPageTables(layout);
        _free.Insert(layout.Start, layout.Start + layout.HostBytes);
    }

    public VmallocLayout Layout { get; }

    /// <summary>lazy_max_pages() for this machine's CPUs.</summary>
    public long LazyMaxPages { get; }

    /// <summary>nr_vmalloc_pages: frames backing vmalloc areas (meminfo VmallocUsed).</summary>
    public long VmallocPages => Interlocked.Read(ref _vmallocPages);

    /// <summary>vmap_lazy_nr: pages of lazily freed areas waiting for a purge.</summary>
    public long LazyPages { get { lock (_lock) { return _lazyPages; } } }

    /// <summary>Free bytes of the host window that an allocation can use now (unpurged areas excluded).</summary>
    public ulong FreeBytes { get { lock (_lock) { return _free.FreeBytes; } } }

    /// <summary>Busy areas.</summary>
    public int AreaCount { get { lock (_lock) { return _busy.Count; } } }

    /// <summary>Host mappings (VMAs) the window holds: the pieces of its reservation, the busy areas' mappings
    /// and the stale ones of freed areas; 0 before the first area and after <see cref="Dispose"/>.</summary>
    public int HostMaps { get { lock (_lock) { return _window?.Vmas ?? 0; } } }

    /// <summary>Pages still mapped on the host for areas that were freed, to be reused or flushed.</summary>
    public long StaleHostPages { get { lock (_lock) { return _window?.StalePages ?? 0; } } }

    /// <summary>mmap and munmap calls made for the window so far.</summary>
    public long HostCalls { get { lock (_lock) { return _window?.HostCalls ?? 0; } } }

    /// <summary>What this space holds of the process-wide host-mapping budget: 0 after <see cref="Dispose"/>.</summary>
    public int BudgetCharged { get { lock (_lock) { return _budgetCharged; } } }

    /// <summary>Levels of the area's page tables.</summary>
    public int PageTableLevels => _tables.Levels;

    /// <summary>Page tables allocated for the area.</summary>
    public int PageTables { get { lock (_lock) { return _tables.Tables; } } }

    /// <summary>A per-machine cap on host mappings below the process-wide budget, so that a test can
    /// reach the limit without exhausting the real one; null for none.</summary>
    public int? HostMapLimit { get; set; }

    /// <summary>is_vmalloc_addr, on host addresses: inside the host window.</summary>
    public bool Contains(nint p)
    {
        nint host = Volatile.Read(ref _host);
        return host != 0 && (nuint)(p - host) < (nuint)Layout.HostBytes;
    }

    /// <summary>The kernel-style address of a host address in the window, or 0.</summary>
    public ulong KernelAddress(nint p) => Contains(p) ? Layout.Start + (ulong)(p - _host) : 0;

    /// <summary>The host address of a kernel-style address in the host window, or 0.</summary>
    public nint HostAddress(ulong k)
    {
        nint host = Volatile.Read(ref _host);
        return host != 0 && k >= Layout.Start && k - Layout.Start < Layout.HostBytes ? host + (nint)(k - Layout.Start) : 0;
    }

    /// <summary>__vmalloc_node_range: an area of <paramref name="size"/> bytes (rounded up to pages) backed
    /// by order-0 frames from <paramref name="node"/> (-1: any), mapped contiguously.</summary>
    /// <returns>The host address, or 0 with the kernel's warning (unless __GFP_NOWARN).</returns>
    public nint Vmalloc(ulong size, ulong align, Gfp gfp, int node, VmFlags flags, string caller)
    {
        if (size == 0)
        {
            if (Interlocked.Exchange(ref _zeroSizeWarned, 1) == 0)
            {
                Warn("__vmalloc_node_range", null);
            }
            return 0;
        }
        if (!BitOperations.IsPow2(align))
        {
            // alloc_vmap_area's -EINVAL: the alignment is a power of two.
            WarnAlloc(gfp, $"vmalloc error: size {size}, vm_struct allocation failed");
            return 0;
        }
        ulong realSize = size;
        size = (size + PageSize - 1) & ~(PageSize - 1);
        if (size < realSize || (long)(size / PageSize) > _pa.TotalRamPages)
        {
            WarnAlloc(gfp, $"vmalloc error: size {realSize}, exceeds total pages");
            return 0;
        }
        int nrPages = (int)(size / PageSize);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var vm = GetVmArea(size, Math.Max(align, PageSize), flags | VmFlags.Alloc | VmFlags.Uninitialized, gfp, caller);
            if (vm is null)
            {
                WarnAlloc(gfp, $"vmalloc error: size {realSize}, vm_struct allocation failed");
                return 0;
            }
            // The page pointer array: kmalloc up to a page, a nested vmalloc above (the recursion is bounded:
            // each level's array is 1/512 or 1/1024 of the level above).
            ulong arraySize = (ulong)nrPages * (Layout.Start > uint.MaxValue ? 8UL : 4UL);
            Gfp nestedGfp = (gfp & (Gfp.Reclaim | Gfp.Io | Gfp.Fs | Gfp.NoWarn | Gfp.RetryMayfail | Gfp.NoFail | Gfp.NoRetry)) | Gfp.Zero;
            nint array = arraySize > PageSize ? Vmalloc(arraySize, PageSize, nestedGfp, node, 0, caller)
                : _slab?.Kmalloc((nuint)arraySize, nestedGfp, node) ?? -1;
            if (array == 0)
            {
                RemoveArea(vm);
                WarnAlloc(gfp, $"vmalloc error: size {size}, failed to allocated page array size {arraySize}");
                return 0;
            }
            vm.PagesArray = array == -1 ? 0 : array;
            // vm_area_alloc_pages: silent order-0 allocations, from highmem when the zone allows it.
            Gfp pageGfp = gfp | Gfp.NoWarn;
            if ((gfp & (Gfp.Dma | Gfp.Dma32)) == 0)
            {
                pageGfp |= Gfp.HighMem;
            }
            var pages = new uint[nrPages];
            for (int i = 0; i < nrPages; i++)
            {
                var page = _pa.AllocPages(pageGfp, 0, node);
                if (page.IsNull)
                {
                    FreeFrames(pages.AsSpan(0, i));
                    FreePagesArray(vm);
                    RemoveArea(vm);
                    WarnAlloc(gfp, $"vmalloc error: size {(ulong)i * PageSize}, failed to allocate pages");
                    return 0;
                }
                pages[i] = page.RawPfn;
            }
            if (!MapArea(vm, pages, writable: true))
            {
                FreeFrames(pages);
                FreePagesArray(vm);
                RemoveArea(vm);
                WarnAlloc(gfp, $"vmalloc error: size {size}, failed to map pages");
                return 0;
            }
            vm.Pages = pages;
            vm.NrPages = nrPages;
            vm.Flags &= ~VmFlags.Uninitialized;
            Interlocked.Add(ref _vmallocPages, nrPages);
            return _host + (nint)(vm.Address - Layout.Start);
        }
    }

    /// <summary>vmap: maps the caller's frames contiguously.</summary>
    /// <returns>The host address, or 0 when the area or the host mappings cannot be had.</returns>
    public nint Vmap(uint[] pfns, VmFlags flags, bool writable, string caller)
    {
        if (pfns.Length == 0 || pfns.Length > _pa.TotalRamPages)
        {
            return 0;
        }
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var vm = GetVmArea((ulong)pfns.Length * PageSize, PageSize, flags, Gfp.Kernel, caller);
            if (vm is null)
            {
                return 0;
            }
            if (!MapArea(vm, pfns, writable))
            {
                RemoveArea(vm);
                return 0;
            }
            vm.Pages = pfns;
            vm.NrPages = (flags & VmFlags.MapPutPages) != 0 ? pfns.Length : 0;
            return _host + (nint)(vm.Address - Layout.Start);
        }
    }

    /// <summary>__vunmap: removes the area that starts at <paramref name="p"/>; with
    /// <paramref name="deallocatePages"/> (vfree) its frames go back to the page allocator.</summary>
    /// <param name="p">The host address of the area's start.</param>
    /// <param name="deallocatePages">Free the area's frames (vfree) or leave them to the caller (vunmap).</param>
    /// <param name="function">vfree or vunmap, for the warning.</param>
    public void Unmap(nint p, bool deallocatePages, string function)
    {
        if (p == 0)
        {
            return;
        }
        ulong k = KernelAddress(p);
        if ((p & (nint)(PageSize - 1)) != 0)
        {
            Warn("__vunmap", $"Trying to {function}() bad address ({PointerText(p)})");
            return;
        }
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (k == 0 || !_busy.TryGetValue(k, out var vm) || vm.IsMapRam)
            {
                // A vm_map_ram area has no vm_struct: find_vm_area does not see it.
                Warn("__vunmap", $"Trying to {function}() nonexistent vm area ({PointerText(p)})");
                return;
            }
            UnmapHost(vm);
            RemoveArea(vm);
            if (deallocatePages && vm.NrPages > 0)
            {
                FreeFrames(vm.Pages.AsSpan(0, vm.NrPages));
                if ((vm.Flags & VmFlags.Alloc) != 0)
                {
                    Interlocked.Add(ref _vmallocPages, -vm.NrPages);
                }
                FreePagesArray(vm);
            }
        }
    }

    /// <summary>vmalloc_to_page: the frame mapped at <paramref name="p"/>, from the page tables.</summary>
    public uint PfnAt(nint p)
    {
        ulong k = KernelAddress(p);
        if (k == 0)
        {
            return PhysMem.NoPfn;
        }
        lock (_lock)
        {
            return _tables.Lookup(k & ~(PageSize - 1));
        }
    }

    /// <summary>Sets the bit of every frame a vmalloc area owns (vm->pages[0 .. nr_pages) of the busy areas) in
    /// <paramref name="bits"/>, one bit per pfn. Frames a vmap area maps but does not own stay unmarked: they
    /// are their caller's. The kernel marks no vmalloc frame, so the memory map asks here.</summary>
    public void MarkVmallocPages(ulong[] bits)
    {
        lock (_lock)
        {
            foreach (var vm in _busy.Values)
            {
                for (int i = 0; i < vm.NrPages; i++)
                {
                    uint pfn = vm.Pages[i];
                    bits[pfn >> 6] |= 1UL << (int)(pfn & 63);
                }
            }
        }
    }

    /// <summary>Whether a busy vmalloc area owns frame <paramref name="pfn"/> (a walk of every area).</summary>
    public bool OwnsVmallocPage(uint pfn)
    {
        lock (_lock)
        {
            foreach (var vm in _busy.Values)
            {
                if (Array.IndexOf(vm.Pages, pfn, 0, vm.NrPages) >= 0)
                {
                    return true;
                }
            }
            return false;
        }
    }

    /// <summary>vm_unmap_aliases: makes every lazily freed area reusable now and takes every stale host
    /// mapping away, so that no alias of a freed frame remains.</summary>
    public void PurgeLazy()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            Purge();
            FlushStale();
        }
    }

    /// <summary>purge_vmap_area_lazy as the drain work runs it: the lazily freed areas become reusable; their host
    /// mappings stay for reuse. Nothing on a disposed space.</summary>
    /// <returns>The lazy pages purged.</returns>
    public long PurgeVmapAreaLazy()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return 0;
            }
            long pages = _lazyPages;
            Purge();
            return pages;
        }
    }

    /// <summary>Gives the whole host window back (every mapping in it at once).</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            if (_window is { } window)
            {
                window.Dispose();
                Release(_budgetCharged);
                HostMapBudget.Unregister(this);
                Volatile.Write(ref _host, 0);
            }
        }
    }

    /// <summary>__get_vm_area_node + alloc_vmap_area: the lowest free range that fits the area and its
    /// guard page; one purge of the lazy areas and a retry before giving up.</summary>
    private VmStruct? GetVmArea(ulong size, ulong align, VmFlags flags, Gfp gfp, string caller)
    {
        if ((flags & VmFlags.NoGuard) == 0)
        {
            size += PageSize;
        }
        if (!ReserveHost())
        {
            return null;
        }
        if (!_free.FindLowest(size, align, out ulong address, out ulong block))
        {
            Purge();
            if (!_free.FindLowest(size, align, out address, out block))
            {
                if ((gfp & Gfp.NoWarn) == 0 && _vmapWarn.Allow())
                {
                    _log.Printk($"vmap allocation for size {size} failed: use vmalloc=<size> to increase size");
                }
                return null;
            }
        }
        _free.Carve(block, address, size);
        var vm = new VmStruct(address, size, flags, caller);
        _busy.Add(address, vm);
        return vm;
    }

    /// <summary>free_vmap_area_noflush: the area leaves the busy tree for the purge tree; past
    /// lazy_max_pages every lazy area is purged (the kernel's drain work, done here at once).</summary>
    private void RemoveArea(VmStruct vm)
    {
        _busy.Remove(vm.Address);
        _purge.Insert(vm.Address, vm.Address + vm.Size);
        _lazyPages += (long)(vm.Size / PageSize);
        if (_lazyPages > LazyMaxPages)
        {
            Purge();
        }
    }

    private void Purge()
    {
        foreach (var (start, end) in _purge.Blocks())
        {
            _free.Insert(start, end);
        }
        _purge = new FreeVmapTree();
        _lazyPages = 0;
    }

    /// <summary>kvfree(area->pages).</summary>
    private void FreePagesArray(VmStruct vm)
    {
        nint array = vm.PagesArray;
        vm.PagesArray = 0;
        if (array != 0 && Contains(array))
        {
            Unmap(array, deallocatePages: true, "vfree");
        }
        else if (array != 0)
        {
            _slab?.Kfree(array);
        }
    }

    private void FreeFrames(ReadOnlySpan<uint> pfns)
    {
        foreach (uint pfn in pfns)
        {
            _pa.FreePages(new Page(pfn), 0);
        }
    }

    /// <summary>%p of a pointer: the kernel-style address when Kmem knows it, as the kernel prints it
    /// (hex digits, no 0x).</summary>
    private string PointerText(nint p)
    {
        string width = Layout.Start > uint.MaxValue ? "x16" : "x8";
        ulong k = KernelAddress(p);
        if (k == 0 && _mem.VirtToPfn(p) is var pfn && pfn != PhysMem.NoPfn)
        {
            k = _pageOffset + ((ulong)pfn << PhysMem.PageShift) + (ulong)(p & (nint)(PageSize - 1));
        }
        return k != 0 ? k.ToString(width) : "(____ptrval____)";
    }

    /// <summary>WARN(): the message, then the WARNING line naming the function.</summary>
    private void Warn(string function, string? message)
    {
        string warning = $"WARNING: CPU: {_pa.Cpus.Current} PID: {Environment.ProcessId} at mm/vmalloc.c {function}";
        _log.Printk(message is null ? warning : $"{message}\n{warning}");
    }

    /// <summary>warn_alloc with a vmalloc message, ratelimited, silent with __GFP_NOWARN.</summary>
    private void WarnAlloc(Gfp gfp, string message)
    {
        if ((gfp & Gfp.NoWarn) != 0 || !_allocWarn.Allow())
        {
            return;
        }
        int nodes = _pa.Nodes.Length;
        string mems = nodes == 1 ? "0" : $"0-{nodes - 1}";
        _log.Printk($"{PageAllocReports.Comm}: {message}, mode:0x{(uint)gfp:x}({GfpFlags.Format(gfp)}), nodemask=(null),cpuset=/,mems_allowed={mems}");
    }
}
