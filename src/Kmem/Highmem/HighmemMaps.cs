// Highmem's mappings of one machine (mm/highmem.c, include/linux/highmem.h,
// highmem-internal.h): kmap/kunmap over the pkmap window, kmap_local/kmap_atomic
// over per-thread slots, page_address and kmap_to_page, the window of HIGHPTE page tables
// (PteWindow.cs), and (HighmemMaps.Copy.cs)
// the helpers that copy or clear a page through kmap_local. Lowmem frames (all of
// them on X64) need no mapping: their direct-map address is returned.
// Invariants: the window and the slot stacks are created at most once, on first
// use, never after Dispose; after Dispose every mapping call throws
// ObjectDisposedException. Locking: _lock guards creation and disposal only; the
// window and the slot stacks own their locking.
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Highmem;

/// <summary>The pkmap window and the kmap_local slots of one machine, and the kernel's mapping helpers.</summary>
internal sealed partial class HighmemMaps : IDisposable
{
    /// <summary>KM_MAX_IDX: how many kmap_local (and kmap_atomic) mappings a thread may nest.</summary>
    public const int KmMaxIdx = KmapLocal.KmMaxIdx;

    private const int PageSize = PhysMem.PageSize;

    private readonly Lock _lock = new();
    private readonly PhysMem _mem;
    private readonly Arch _arch;
    private readonly CpuTopology _cpus;
    private readonly KernelLog _log;
    private readonly Action<KernelBugException> _bug;
    private Pkmap? _pkmap;
    private KmapLocal? _kmapLocal;
    private PteWindow? _pteWindow;
    private bool _disposed;

    /// <summary>The mappings of one machine; nothing is reserved on the host before the first kmap.</summary>
    /// <param name="mem">Physical memory (the memfd mapped into slots, and the direct map).</param>
    /// <param name="arch">The preset: whether there is highmem, and the window's size.</param>
    /// <param name="cpus">The CPUs: kmap_atomic pins the current one; warnings name it.</param>
    /// <param name="log">The kernel log for warnings.</param>
    /// <param name="bug">The machine's policy for a kernel bug (throw, or log and carry on).</param>
    public HighmemMaps(PhysMem mem, Arch arch, CpuTopology cpus, KernelLog log, Action<KernelBugException> bug)
    {
        _mem = mem;
        _arch = arch;
        _cpus = cpus;
        _log = log;
        _bug = bug;
    }

    /// <summary>LAST_PKMAP: slots in the pkmap window (1024 on X86, 512 on X86Pae, 0 without highmem).</summary>
    public int LastPkmap => _arch.Preset switch
    {
        Preset.X86 => 1024,
        Preset.X86Pae => 512,
        _ => 0,
    };

    /// <summary>PKMAP_BASE, or 0 on presets without highmem.</summary>
    public ulong PkmapBase => _arch.HasHighMem ? Pkmap.Base : 0;

    /// <summary>The pkmap window, reserved on first use.</summary>
    public Pkmap PkmapWindow => Volatile.Read(ref _pkmap) ?? CreateOnce(ref _pkmap,
        () => new Pkmap(_mem, LastPkmap, _bug, _log, _cpus));

    /// <summary>The per-thread kmap_local stacks, created on first use.</summary>
    public KmapLocal LocalSlots => Volatile.Read(ref _kmapLocal) ?? CreateOnce(ref _kmapLocal,
        () => new KmapLocal(_mem, _bug, _log, _cpus));

    /// <summary>The window through which user page tables in HighMem (CONFIG_HIGHPTE) are reached, made on first use.</summary>
    public PteWindow PteTables => Volatile.Read(ref _pteWindow) ?? CreateOnce(ref _pteWindow, () => new PteWindow(_mem));

    /// <summary>kmap: the direct-map address of a lowmem page; for a highmem page its pkmap slot, waiting up
    /// to <paramref name="timeoutMs"/> (-1: for ever) for one; 0 when the wait ends without a slot.</summary>
    public nint Kmap(Page page, int timeoutMs, CancellationToken cancel)
    {
        uint pfn = _mem.CheckedPfn(page);
        nint address = _mem.PageAddress(pfn);
        return address != 0 ? address : PkmapWindow.KmapHigh(pfn, timeoutMs, cancel);
    }

    /// <summary>kunmap: drops a kmap hold of a highmem page; nothing for a lowmem one.</summary>
    public void Kunmap(Page page)
    {
        uint pfn = _mem.CheckedPfn(page);
        if (_mem.PageAddress(pfn) == 0)
        {
            PkmapWindow.KunmapHigh(pfn);
        }
    }

    /// <summary>kmap_flush_unused.</summary>
    public void KmapFlushUnused()
    {
        if (_arch.HasHighMem)
        {
            PkmapWindow.FlushUnused();
        }
    }

    /// <summary>kmap_local_page: the direct-map address, or the calling thread's next slot; 0 on failure.</summary>
    public nint KmapLocalPage(Page page) => KmapLocalPfn(_mem.CheckedPfn(page));

    /// <summary>kmap_local_page of a frame: the direct-map address of a lowmem one (the slots are never made for
    /// it), else the calling thread's next slot; 0 on failure.</summary>
    public nint KmapLocalPfn(uint pfn)
    {
        nint address = _mem.PageAddress(pfn);
        return address != 0 ? address : LocalSlots.Map(pfn);
    }

    /// <summary>kunmap_local: undoes the calling thread's last kmap_local mapping; nothing for a direct-map address.</summary>
    public void KunmapLocal(nint address)
    {
        if (_mem.VirtToPfn(address) == PhysMem.NoPfn)
        {
            LocalSlots.Unmap(address);
        }
    }

    /// <summary>kmap_atomic: kmap_local with the calling thread pinned to its CPU until kunmap_atomic.</summary>
    public nint KmapAtomic(Page page)
    {
        _mem.CheckedPfn(page);
        var pin = _cpus.Pin(_cpus.Current);
        nint address = 0;
        try
        {
            address = KmapLocalPage(page);
            if (address != 0)
            {
                LocalSlots.PushAtomic(address, pin);
            }
        }
        finally
        {
            if (address == 0)
            {
                pin.Dispose(); // no mapping (or a BUG thrown): preemption is back on
            }
        }
        return address;
    }

    /// <summary>kunmap_atomic: undoes the innermost kmap_atomic and releases its CPU pin.</summary>
    public void KunmapAtomic(nint address)
    {
        if (!LocalSlots.PeekAtomic(address, out var pin))
        {
            _bug(new KernelBugException($"WARNING: CPU: {_cpus.Current} PID: {Environment.ProcessId} at mm/highmem.c kunmap_local_indexed: "
                + "kunmap_atomic of an address that is not this task's innermost kmap_atomic mapping; nothing unmapped"));
            return;
        }
        if (LocalSlots.Unmap(address))
        {
            LocalSlots.PopAtomic();
            pin.Dispose();
        }
    }

    /// <summary>kmap_to_page: the page behind a kmap, kmap_local or direct-map address, or <see cref="Page.Null"/>.</summary>
    public Page KmapToPage(nint address)
    {
        uint pfn = _mem.VirtToPfn(address);
        if (pfn == PhysMem.NoPfn && _arch.HasHighMem)
        {
            pfn = PkmapWindow.PfnAt(address);
            if (pfn == PhysMem.NoPfn)
            {
                pfn = LocalSlots.PfnAt(address);
            }
        }
        return pfn == PhysMem.NoPfn ? Page.Null : new Page(pfn);
    }

    /// <summary>page_address: the direct-map address; for a highmem frame its pkmap address while kmapped, else 0.
    /// Never creates the window.</summary>
    public nint PageAddress(Page page)
    {
        uint pfn = _mem.CheckedPfn(page);
        nint address = _mem.PageAddress(pfn);
        return address != 0 || Volatile.Read(ref _pkmap) is not { } pkmap ? address : pkmap.AddressOf(pfn);
    }

    /// <summary>Gives back the pkmap window and every thread's kmap_local window.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            _pkmap?.Dispose();
            _kmapLocal?.Dispose();
            _pteWindow?.Dispose();
        }
    }

    /// <summary>Creates a piece of state at most once, under the lock, and never after Dispose.</summary>
    private T CreateOnce<T>(ref T? field, Func<T> create) where T : class
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (field is null)
            {
                Volatile.Write(ref field, create());
            }
            return field;
        }
    }
}
