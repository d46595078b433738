// vmalloc's public face on Machine (include/linux/vmalloc.h, mm/vmalloc.c,
// mm/util.c kvmalloc): virtually contiguous memory over scattered frames, vmap and
// vm_map_ram of the caller's frames, and kvmalloc's choice between kmalloc and vmalloc,
// which sits above both the slab and the vmalloc layer. The VmapSpace is created on
// first use under _vmallocLock with the page allocator and the slab layer it builds on,
// and given back by DisposeVmalloc; callers are shown in /proc/vmallocinfo by method name.
using System.Runtime.CompilerServices;
using Kmem.Physical;
using Kmem.Vmalloc;

namespace Kmem;

public sealed partial class Machine
{
    private readonly Lock _vmallocLock = new();
    private VmapSpace? _vmapSpace;
    private bool _vmallocDisposed;
    private int _kvmallocWarned;

    /// <summary>VMALLOC_START: the kernel-style address where the vmalloc area begins
    /// (0xffffc90000000000 on X64; high_memory + 8 MiB on the 32-bit presets).</summary>
    /// <remarks>Never sleeps.</remarks>
    public ulong VmallocStart { get { using var _ = _life.Enter(); return VmallocLayout.For(Arch, _mem.LowmemPfns).Start; } }

    /// <summary>VMALLOC_END: the kernel-style address where the vmalloc area ends (exclusive).</summary>
    /// <remarks>Never sleeps.</remarks>
    public ulong VmallocEnd { get { using var _ = _life.Enter(); return VmallocLayout.For(Arch, _mem.LowmemPfns).End; } }

    /// <summary>vmalloc: <paramref name="size"/> bytes (rounded up to pages), virtually contiguous, over
    /// order-0 frames from anywhere (highmem too on the 32-bit presets). The bytes are not zeroed.</summary>
    /// <param name="size">Bytes wanted.</param>
    /// <param name="caller">The calling method, shown in /proc/vmallocinfo; filled in by the compiler.</param>
    /// <returns>A writable pointer to the area, or 0 with a kernel-style warning in the log when the size is 0,
    /// above RAM, the vmalloc space is full, frames run out or the host's map-count budget would be exceeded.</returns>
    /// <remarks>May sleep (GFP_KERNEL).</remarks>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public nint Vmalloc(nuint size, [CallerMemberName] string caller = "") { using var _ = _life.Enter(); return VmallocSpace.Vmalloc(size, PageSize, Gfp.Kernel, -1, 0, caller); }

    /// <summary>vzalloc: as <see cref="Vmalloc"/>, zeroed.</summary>
    /// <returns>The pointer, or 0 (see <see cref="Vmalloc"/>).</returns>
    /// <remarks>May sleep.</remarks>
    public nint Vzalloc(nuint size, [CallerMemberName] string caller = "") { using var _ = _life.Enter(); return VmallocSpace.Vmalloc(size, PageSize, Gfp.Kernel | Gfp.Zero, -1, 0, caller); }

    /// <summary>vmalloc_node: as <see cref="Vmalloc"/>, with frames preferably from node <paramref name="nid"/>
    /// (-1: the current CPU's node).</summary>
    /// <returns>The pointer, or 0 (see <see cref="Vmalloc"/>).</returns>
    /// <remarks>May sleep.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The node does not exist.</exception>
    public nint VmallocNode(nuint size, int nid, [CallerMemberName] string caller = "") { using var _ = _life.Enter(); return VmallocSpace.Vmalloc(size, PageSize, Gfp.Kernel, CheckVmallocNode(nid), 0, caller); }

    /// <summary>__vmalloc_node: <paramref name="size"/> bytes at an address aligned to <paramref name="align"/>, with
    /// <paramref name="gfp"/> for the frames (__GFP_ZERO zeroes them), preferably from node <paramref name="nid"/>
    /// (-1: the current CPU's node). An alignment below a page is a page.</summary>
    /// <param name="size">Bytes wanted.</param>
    /// <param name="align">The alignment of the area's address: a power of two.</param>
    /// <param name="gfp">The allocation's flags.</param>
    /// <param name="nid">The node, or -1.</param>
    /// <param name="caller">The calling method, shown in /proc/vmallocinfo.</param>
    /// <returns>The pointer, or 0 with the kernel's warning (unless <see cref="Gfp.NoWarn"/>) for the reasons of
    /// <see cref="Vmalloc"/>, an alignment that is not a power of two, or one no free range of the area meets.</returns>
    /// <remarks>May sleep if <paramref name="gfp"/> allows it.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The node does not exist.</exception>
#pragma warning disable RS0026 // vmalloc_node and __vmalloc_node share the C# name; their arities keep calls unambiguous
    public nint VmallocNode(nuint size, nuint align, Gfp gfp, int nid, [CallerMemberName] string caller = "") { using var _ = _life.Enter(); return VmallocSpace.Vmalloc(size, align, gfp, CheckVmallocNode(nid), 0, caller); }
#pragma warning restore RS0026

    /// <summary>vzalloc_node: <see cref="VmallocNode(nuint, int, string)"/>, zeroed.</summary>
    /// <returns>The pointer, or 0 (see <see cref="Vmalloc"/>).</returns>
    /// <remarks>May sleep.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The node does not exist.</exception>
    public nint VzallocNode(nuint size, int nid, [CallerMemberName] string caller = "") { using var _ = _life.Enter(); return VmallocSpace.Vmalloc(size, PageSize, Gfp.Kernel | Gfp.Zero, CheckVmallocNode(nid), 0, caller); }

    /// <summary>vmalloc_32: as <see cref="Vmalloc"/>, with frames below 4 GiB (GFP_DMA32 on X64; lowmem on
    /// the 32-bit presets).</summary>
    /// <returns>The pointer, or 0 (see <see cref="Vmalloc"/>).</returns>
    /// <remarks>May sleep.</remarks>
    public nint Vmalloc32(nuint size, [CallerMemberName] string caller = "") { using var _ = _life.Enter(); return VmallocSpace.Vmalloc(size, PageSize, Gfp.Kernel | Gfp.Dma32, -1, 0, caller); }

    /// <summary>vmalloc_user: zeroed, marked VM_USERMAP ("user" in /proc/vmallocinfo) so that it may be mapped
    /// to user space.</summary>
    /// <returns>The pointer, or 0 (see <see cref="Vmalloc"/>).</returns>
    /// <remarks>May sleep.</remarks>
    public nint VmallocUser(nuint size, [CallerMemberName] string caller = "") { using var _ = _life.Enter(); return VmallocSpace.Vmalloc(size, PageSize, Gfp.Kernel | Gfp.Zero, -1, VmFlags.UserMap, caller); }

    /// <summary>vfree: unmaps the area that starts at <paramref name="addr"/> and frees its frames at once; the
    /// address range is freed lazily (shown as "unpurged vm_area" until the next purge). 0 is ignored. A pointer
    /// that is not the start of an area logs the kernel's "Trying to vfree() nonexistent vm area" warning and
    /// frees nothing.</summary>
    /// <remarks>May sleep.</remarks>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public void Vfree(nint addr)
    {
        using var _ = _life.Enter();
        if (addr != 0)
        {
            VmallocSpace.Unmap(addr, deallocatePages: true, "vfree");
        }
    }

    /// <summary>vmap: maps the caller's frames (lowmem or highmem) into one virtually contiguous range. The
    /// caller keeps the frames, unless <paramref name="flags"/> has <see cref="VmFlags.MapPutPages"/>, in which
    /// case <see cref="Vfree"/> frees them.</summary>
    /// <param name="pages">The frames, in order.</param>
    /// <param name="flags">VM_* flags of the area; <see cref="VmFlags.Map"/> is what the kernel's callers pass.</param>
    /// <param name="prot">The protection of the mapping.</param>
    /// <param name="caller">The calling method, shown in /proc/vmallocinfo.</param>
    /// <returns>The pointer, or 0 when <paramref name="pages"/> is empty or larger than RAM, the vmalloc space
    /// is full (with the kernel's "vmap allocation" warning) or the host's map-count budget would be exceeded.</returns>
    /// <remarks>May sleep.</remarks>
    /// <exception cref="ArgumentException">A page is <see cref="Page.Null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A page is beyond the machine's memory.</exception>
    public nint Vmap(ReadOnlySpan<Page> pages, VmFlags flags, PageProt prot, [CallerMemberName] string caller = "")
    {
        using var _ = _life.Enter();
        var pfns = new uint[pages.Length];
        for (int i = 0; i < pages.Length; i++)
        {
            pfns[i] = CheckedPfn(pages[i]);
        }
        return VmallocSpace.Vmap(pfns, flags, prot == PageProt.PageKernel, caller);
    }

    /// <summary>vm_map_ram: maps the caller's frames (lowmem or highmem) into one virtually contiguous range without
    /// a guard page, for short-lived mappings; /proc/vmallocinfo shows it as "vm_map_ram". Undo it with
    /// <see cref="VmUnmapRam"/> and the same page count; <see cref="Vfree"/> and <see cref="Vunmap"/> do not
    /// know it, as in the kernel.</summary>
    /// <param name="pages">The frames, in order; the caller keeps them.</param>
    /// <param name="nid">The node for the kernel's bookkeeping (-1: any); the frames are the caller's.</param>
    /// <returns>The pointer, or 0 when <paramref name="pages"/> is empty or larger than RAM, the vmalloc space
    /// is full or the host's map-count budget would be exceeded.</returns>
    /// <remarks>May sleep.</remarks>
    /// <exception cref="ArgumentException">A page is <see cref="Page.Null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A page is beyond the machine's memory, or the node does not exist.</exception>
    public nint VmMapRam(ReadOnlySpan<Page> pages, int nid)
    {
        using var _ = _life.Enter();
        int node = CheckVmallocNode(nid);
        var pfns = new uint[pages.Length];
        for (int i = 0; i < pages.Length; i++)
        {
            pfns[i] = CheckedPfn(pages[i]);
        }
        return VmallocSpace.MapRam(pfns, node);
    }

    /// <summary>vm_unmap_ram: removes a <see cref="VmMapRam"/> mapping of <paramref name="count"/> pages; the frames
    /// stay the caller's, the address range is freed lazily. An address that starts no such mapping of that many
    /// pages logs the kernel's WARNING and changes nothing.</summary>
    /// <param name="mem">The pointer <see cref="VmMapRam"/> returned.</param>
    /// <param name="count">The number of pages it mapped.</param>
    /// <remarks>May sleep.</remarks>
    /// <exception cref="KernelBugException">The kernel's BUG_ON: a null or unaligned pointer, one outside the vmalloc
    /// area, or no pages; nothing changes (logged instead with <c>OnBug = Report</c>).</exception>
    public void VmUnmapRam(nint mem, int count)
    {
        using var _ = _life.Enter();
        if (VmallocSpace.UnmapRam(mem, count) is string bug)
        {
            Bug(new KernelBugException(bug));
        }
    }

    /// <summary>vunmap: removes a <see cref="Vmap"/> mapping; the frames stay the caller's. 0 is ignored; a
    /// pointer that is not the start of an area logs the kernel's warning and changes nothing.</summary>
    /// <remarks>May sleep.</remarks>
    public void Vunmap(nint addr)
    {
        using var _ = _life.Enter();
        if (addr != 0)
        {
            VmallocSpace.Unmap(addr, deallocatePages: false, "vunmap");
        }
    }

    /// <summary>vmalloc_to_page: the frame mapped at a vmalloc address, found by walking Kmem's page tables.</summary>
    /// <returns>The frame, or <see cref="Page.Null"/> when the address is outside the area or not mapped
    /// (a guard page, a freed area).</returns>
    /// <remarks>Never sleeps.</remarks>
    public Page VmallocToPage(nint addr)
    {
        using var _ = _life.Enter();
        if (Volatile.Read(ref _vmapSpace) is not { } space)
        {
            return Page.Null;
        }
        uint pfn = space.PfnAt(addr);
        return pfn == PhysMem.NoPfn ? Page.Null : new Page(pfn);
    }

    /// <summary>is_vmalloc_addr: whether the pointer lies in this machine's vmalloc area.</summary>
    /// <remarks>Never sleeps.</remarks>
    public bool IsVmallocAddr(nint addr) { using var _ = _life.Enter(); return Volatile.Read(ref _vmapSpace) is { } space && space.Contains(addr); }

    /// <summary>The kernel-style address (VMALLOC_START + offset) of a pointer into the vmalloc area, as the
    /// reports show it.</summary>
    /// <returns>The address, or 0 when the pointer is not in the area.</returns>
    /// <remarks>Never sleeps.</remarks>
    public ulong VmallocKernelAddress(nint addr) { using var _ = _life.Enter(); return Volatile.Read(ref _vmapSpace) is { } space ? space.KernelAddress(addr) : 0; }

    /// <summary>The pointer for a kernel-style vmalloc address (the inverse of <see cref="VmallocKernelAddress"/>).</summary>
    /// <returns>The pointer, or 0 when the address is outside the part of the area the machine has reserved.</returns>
    /// <remarks>Never sleeps.</remarks>
    public nint VmallocHostAddress(ulong address) { using var _ = _life.Enter(); return Volatile.Read(ref _vmapSpace) is { } space ? space.HostAddress(address) : 0; }

    /// <summary>vm_unmap_aliases: purges every lazily freed area now, so that its range can be reused.</summary>
    /// <remarks>May sleep.</remarks>
    public void VmUnmapAliases() { using var _ = _life.Enter(); VmallocSpace.PurgeLazy(); }

    /// <summary>kvmalloc: kmalloc when it can, vmalloc otherwise (6.1's kvmalloc_node). Above a page the kmalloc
    /// attempt is made with __GFP_NOWARN and, unless <see cref="Gfp.RetryMayfail"/>, __GFP_NORETRY; when it fails,
    /// a gfp that may block falls back to vmalloc. Sizes above INT_MAX are refused.</summary>
    /// <returns>The pointer (from kmalloc or vmalloc; free it with <see cref="Kvfree"/>), or 0.</returns>
    /// <remarks>Sleeps only if <paramref name="gfp"/> allows it.</remarks>
    public nint Kvmalloc(nuint size, Gfp gfp, [CallerMemberName] string caller = "") { using var _ = _life.Enter(); return KvmallocNodeCore(size, gfp, -1, caller); }

    /// <summary>kvzalloc: <see cref="Kvmalloc"/>, zeroed.</summary>
    /// <returns>The pointer, or 0.</returns>
    /// <remarks>Sleeps only if <paramref name="gfp"/> allows it.</remarks>
    public nint Kvzalloc(nuint size, Gfp gfp, [CallerMemberName] string caller = "") { using var _ = _life.Enter(); return KvmallocNodeCore(size, gfp | Gfp.Zero, -1, caller); }

    /// <summary>kvmalloc_node: <see cref="Kvmalloc"/> from node <paramref name="nid"/> (-1: any).</summary>
    /// <returns>The pointer, or 0.</returns>
    /// <remarks>Sleeps only if <paramref name="gfp"/> allows it.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The node does not exist.</exception>
    public nint KvmallocNode(nuint size, Gfp gfp, int nid, [CallerMemberName] string caller = "") { using var _ = _life.Enter(); return KvmallocNodeCore(size, gfp, CheckVmallocNode(nid), caller); }

    /// <summary>kvfree: <see cref="Vfree"/> for a vmalloc address, <see cref="Kfree"/> otherwise; 0 is ignored.</summary>
    /// <remarks>May sleep for a vmalloc address.</remarks>
    public void Kvfree(nint addr)
    {
        using var _ = _life.Enter();
        if (IsVmallocAddr(addr))
        {
            Vfree(addr);
        }
        else
        {
            Kfree(addr);
        }
    }

    /// <summary>The vmalloc space, for tests and reports.</summary>
    internal VmapSpace VmallocSpace => CreateOnce(ref _vmapSpace, _vmallocLock, ref _vmallocDisposed, static m =>
        new VmapSpace(VmallocLayout.For(m.Arch, m._mem.LowmemPfns), m.Arch.PageOffset, m._mem, m.PageAllocator, m.SlabLayer, m.Log,
            numa: m.Preset == Preset.X64));

    /// <summary>Pages backing vmalloc areas (meminfo's VmallocUsed), 0 before the first vmalloc.</summary>
    /// <summary>Marks in <paramref name="bits"/> (a bit per pfn) the frames vmalloc areas own; nothing when the
    /// vmalloc space was never used.</summary>
    internal void MarkVmallocPages(ulong[] bits) => Volatile.Read(ref _vmapSpace)?.MarkVmallocPages(bits);

    /// <summary>Whether a vmalloc area owns frame <paramref name="pfn"/>.</summary>
    internal bool IsVmallocPage(uint pfn) => Volatile.Read(ref _vmapSpace) is { } space && space.OwnsVmallocPage(pfn);

    internal long VmallocPages => Volatile.Read(ref _vmapSpace)?.VmallocPages ?? 0;

    /// <summary>purge_vmap_area_lazy, for reclaim: the lazily freed areas become reusable now. Never creates the
    /// space, never throws (nothing on a disposed machine).</summary>
    /// <returns>The lazy pages purged.</returns>
    internal long PurgeVmapAreaLazy() => Volatile.Read(ref _vmapSpace)?.PurgeVmapAreaLazy() ?? 0;

    /// <summary>Gives back the vmalloc area's host window and every mapping in it.</summary>
    internal void DisposeVmalloc()
    {
        lock (_vmallocLock)
        {
            _vmallocDisposed = true;
            _vmapSpace?.Dispose();
        }
    }

    private nint KvmallocNodeCore(nuint size, Gfp gfp, int nid, string caller)
    {
        Gfp kmallocGfp = gfp;
        if (size > PageSize)
        {
            kmallocGfp |= Gfp.NoWarn;
            if ((kmallocGfp & Gfp.RetryMayfail) == 0)
            {
                kmallocGfp |= Gfp.NoRetry;
            }
            // The vmalloc fallback carries __GFP_NOFAIL's promise.
            kmallocGfp &= ~Gfp.NoFail;
        }
        nint p = nid < 0 ? Kmalloc(size, kmallocGfp) : KmallocNode(size, kmallocGfp, nid);
        if (p != 0 || size <= PageSize)
        {
            return p;
        }
        // vmalloc may sleep: non-blocking requests get no fallback.
        if ((gfp & Gfp.DirectReclaim) == 0)
        {
            return 0;
        }
        if (size > int.MaxValue)
        {
            if ((gfp & Gfp.NoWarn) == 0 && Interlocked.Exchange(ref _kvmallocWarned, 1) == 0)
            {
                Log.Printk($"WARNING: CPU: {CurrentCpu} PID: {Environment.ProcessId} at mm/util.c kvmalloc_node");
            }
            return 0;
        }
        return VmallocSpace.Vmalloc(size, PageSize, gfp, nid, VmFlags.AllowHugeVmap, caller);
    }

    private int CheckVmallocNode(int nid) => nid >= -1 && nid < NrNodes ? nid
        : throw new ArgumentOutOfRangeException(nameof(nid), nid, $"node {nid} does not exist: the machine has nodes 0..{NrNodes - 1}");
}
