// Highmem's public face on Machine (include/linux/highmem.h, highmem-internal.h):
// kmap/kunmap over the pkmap window, kmap_local/kmap_atomic over per-thread slots,
// and the helpers that copy or clear a page through kmap_local. Lowmem frames (all
// of them on X64) need no mapping: their direct-map address is returned. The window
// and the slot stacks are created on first use under _highmemLock and given back by
// DisposeHighmem; after that every call throws ObjectDisposedException.
using Kmem.Highmem;
using Kmem.Physical;

namespace Kmem;

public sealed partial class Machine
{
    /// <summary>KM_MAX_IDX: how many kmap_local (and kmap_atomic) mappings a thread may nest.</summary>
    public const int KmMaxIdx = KmapLocal.KmMaxIdx;

    private readonly Lock _highmemLock = new();
    private Pkmap? _pkmap;
    private KmapLocal? _kmapLocal;
    private HighPage? _highPages;
    private bool _highmemDisposed;

    /// <summary>LAST_PKMAP: slots in the pkmap window (1024 on X86, 512 on X86Pae, 0 without highmem).</summary>
    public int LastPkmap => Preset switch
    {
        Preset.X86 => 1024,
        Preset.X86Pae => 512,
        _ => 0,
    };

    /// <summary>PKMAP_BASE: the kernel-style address of the pkmap window (0xff000000 on the 32-bit presets,
    /// right above VMALLOC_END and its two guard pages); 0 on presets without highmem.</summary>
    public ulong PkmapBase => Arch.HasHighMem ? Pkmap.Base : 0;

    /// <summary>kmap: a pointer to the page's bytes, valid until the matching <see cref="Kunmap"/>.</summary>
    /// <returns>The direct-map address of a lowmem page; for a highmem page, its slot in the pkmap window
    /// (the same slot for every holder of the page). 0 only if the host refuses the mapping (its map-count
    /// limit), with a warning in the log.</returns>
    /// <remarks>Blocks, as the kernel sleeps, while every slot of the window is held, until another thread
    /// calls <see cref="Kunmap"/>; use <see cref="Kmap(Page, TimeSpan)"/> or
    /// <see cref="Kmap(Page, CancellationToken)"/> to bound the wait.</remarks>
    /// <exception cref="ArgumentException">The page is <see cref="Page.Null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The page is beyond the machine's memory.</exception>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public nint Kmap(Page page) => KmapWait(page, Timeout.Infinite, CancellationToken.None);

    /// <summary>kmap with a bounded wait: as <see cref="Kmap(Page)"/>, but gives up after
    /// <paramref name="timeout"/> when every pkmap slot stays held.</summary>
    /// <returns>The address, or 0 when the timeout expired before a slot was freed.</returns>
    /// <remarks>Blocks at most <paramref name="timeout"/>; <see cref="Timeout.InfiniteTimeSpan"/> waits for ever.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative (other than infinite) or too large.</exception>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public nint Kmap(Page page, TimeSpan timeout)
    {
        long ms = (long)timeout.TotalMilliseconds;
        if (ms is < -1 or > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "the timeout must be 0..Int32.MaxValue ms, or infinite");
        }
        return KmapWait(page, (int)ms, CancellationToken.None);
    }

    /// <summary>kmap with a cancellable wait: as <see cref="Kmap(Page)"/>, but gives up when
    /// <paramref name="cancellationToken"/> is cancelled while every pkmap slot is held.</summary>
    /// <returns>The address, or 0 when the wait was cancelled (a page that needs no wait is mapped
    /// even with a cancelled token).</returns>
    /// <remarks>Blocks until a slot is free or the token is cancelled.</remarks>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public nint Kmap(Page page, CancellationToken cancellationToken) => KmapWait(page, Timeout.Infinite, cancellationToken);

    /// <summary>kunmap: drops the hold a <see cref="Kmap(Page)"/> took. The slot stays mapped, unused, until the
    /// window is flushed (when a scan for a free slot wraps, or <see cref="KmapFlushUnused"/>); a caller waiting
    /// for a slot is woken. Nothing to do for a lowmem page.</summary>
    /// <exception cref="KernelBugException">The highmem page is not kmapped (kunmap without kmap): the kernel's
    /// BUG; nothing changes (with <see cref="OnBug.Report"/> the report is logged instead).</exception>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public void Kunmap(Page page)
    {
        uint pfn = CheckedPfn(page);
        if (_mem.PageAddress(pfn) == 0)
        {
            PkmapWindow.KunmapHigh(pfn);
        }
    }

    /// <summary>kmap_flush_unused: frees every pkmap slot that is mapped but held by nobody.</summary>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public void KmapFlushUnused()
    {
        if (Arch.HasHighMem)
        {
            PkmapWindow.FlushUnused();
        }
    }

    /// <summary>kmap_local_page: maps the page into the calling thread's next kmap_local slot. Never blocks.
    /// The mapping belongs to this thread and is undone with <see cref="KunmapLocal"/>, innermost first.</summary>
    /// <returns>The direct-map address of a lowmem page (no slot taken), else the slot's address; 0 when
    /// <see cref="KmMaxIdx"/> mappings are already nested (with <see cref="OnBug.Report"/>) or the host
    /// refuses the mapping (logged).</returns>
    /// <exception cref="KernelBugException">The thread already holds <see cref="KmMaxIdx"/> mappings (the kernel's BUG).</exception>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public nint KmapLocalPage(Page page)
    {
        uint pfn = CheckedPfn(page);
        nint address = _mem.PageAddress(pfn);
        return address != 0 ? address : LocalSlots.Map(pfn);
    }

    /// <summary>kunmap_local: undoes the calling thread's last <see cref="KmapLocalPage"/>; any address inside
    /// the mapped page will do. A direct-map address needs nothing.</summary>
    /// <exception cref="KernelBugException">The address is not this thread's last kmap_local mapping (out of
    /// LIFO order, or never mapped): the kernel's warning; nothing is unmapped (with <see cref="OnBug.Report"/>
    /// the report is logged instead).</exception>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public void KunmapLocal(nint address)
    {
        if (_mem.VirtToPfn(address) == PhysMem.NoPfn)
        {
            LocalSlots.Unmap(address);
        }
    }

    /// <summary>kmap_atomic: <see cref="KmapLocalPage"/> with preemption disabled, which here means the calling
    /// thread stays pinned to its current CPU (<see cref="CurrentCpu"/>) until <see cref="KunmapAtomic"/>.
    /// Never blocks.</summary>
    /// <returns>As <see cref="KmapLocalPage"/>; when it returns 0 the CPU is not pinned.</returns>
    /// <exception cref="KernelBugException">As for <see cref="KmapLocalPage"/>; the CPU is not pinned then.</exception>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public nint KmapAtomic(Page page)
    {
        CheckedPfn(page);
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

    /// <summary>kunmap_atomic: undoes the innermost <see cref="KmapAtomic"/> (any address in its page) and
    /// releases its CPU pin.</summary>
    /// <exception cref="KernelBugException">The address is not the thread's innermost kmap_atomic mapping, or
    /// not its last kmap_local one; nothing changes (with <see cref="OnBug.Report"/> the report is logged).</exception>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public void KunmapAtomic(nint address)
    {
        if (!LocalSlots.PeekAtomic(address, out var pin))
        {
            Bug(new KernelBugException($"WARNING: CPU: {CurrentCpu} PID: {Environment.ProcessId} at mm/highmem.c kunmap_local_indexed: "
                + "kunmap_atomic of an address that is not this task's innermost kmap_atomic mapping; nothing unmapped"));
            return;
        }
        if (LocalSlots.Unmap(address))
        {
            LocalSlots.PopAtomic();
            pin.Dispose();
        }
    }

    /// <summary>kmap_to_page: the page behind an address from <see cref="Kmap(Page)"/>, from one of the calling
    /// thread's <see cref="KmapLocalPage"/> mappings, or in the direct map.</summary>
    /// <returns>The page, or <see cref="Page.Null"/> when nothing is mapped at the address.</returns>
    public Page KmapToPage(nint address)
    {
        uint pfn = _mem.VirtToPfn(address);
        if (pfn == PhysMem.NoPfn && Arch.HasHighMem)
        {
            pfn = PkmapWindow.PfnAt(address);
            if (pfn == PhysMem.NoPfn)
            {
                pfn = LocalSlots.PfnAt(address);
            }
        }
        return pfn == PhysMem.NoPfn ? Page.Null : new Page(pfn);
    }

    /// <summary>clear_highpage: fills the page with zeros through a kmap_local mapping. Never blocks.</summary>
    /// <remarks>Uses one kmap_local slot of the calling thread while it runs; if it cannot have one (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public unsafe void ClearHighpage(Page page)
    {
        nint kaddr = KmapLocalPage(page);
        if (kaddr != 0)
        {
            new Span<byte>((void*)kaddr, PageSize).Clear();
            KunmapLocal(kaddr);
        }
    }

    /// <summary>copy_highpage: copies the bytes of <paramref name="from"/> into <paramref name="to"/>. Never blocks.</summary>
    /// <remarks>Uses two kmap_local slots of the calling thread while it runs; if it cannot have them (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public void CopyHighpage(Page to, Page from)
    {
        uint toPfn = CheckedPfn(to);
        HighPages.CopyHighpage(toPfn, CheckedPfn(from));
    }

    /// <summary>memcpy_to_page: copies <paramref name="source"/> into the page at <paramref name="offset"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range [offset, offset + length) is not inside the page.</exception>
    /// <remarks>Uses one kmap_local slot of the calling thread while it runs; if it cannot have one (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public void MemcpyToPage(Page page, int offset, ReadOnlySpan<byte> source)
    {
        CheckRange(offset, source.Length, nameof(offset));
        HighPages.MemcpyToPage(CheckedPfn(page), offset, source);
    }

    /// <summary>memcpy_from_page: fills <paramref name="destination"/> from the page's bytes at <paramref name="offset"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range [offset, offset + length) is not inside the page.</exception>
    /// <remarks>Uses one kmap_local slot of the calling thread while it runs; if it cannot have one (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public void MemcpyFromPage(Span<byte> destination, Page page, int offset)
    {
        CheckRange(offset, destination.Length, nameof(offset));
        HighPages.MemcpyFromPage(destination, CheckedPfn(page), offset);
    }

    /// <summary>memcpy_page: copies <paramref name="length"/> bytes between two pages. Overlapping ranges of one
    /// highmem page are seen through two mappings, so the result is undefined, as memcpy's: use
    /// <see cref="MemmovePage"/> for them.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A range is not inside its page.</exception>
    /// <remarks>Uses two kmap_local slots of the calling thread while it runs; if it cannot have them (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public unsafe void MemcpyPage(Page to, int toOffset, Page from, int fromOffset, int length)
    {
        CheckRange(toOffset, length, nameof(toOffset));
        CheckRange(fromOffset, length, nameof(fromOffset));
        nint vfrom = KmapLocalPage(from);
        if (vfrom == 0)
        {
            return;
        }
        nint vto = KmapLocalPage(to);
        if (vto != 0)
        {
            new ReadOnlySpan<byte>((void*)(vfrom + fromOffset), length).CopyTo(new Span<byte>((void*)(vto + toOffset), length));
            KunmapLocal(vto);
        }
        KunmapLocal(vfrom);
    }

    /// <summary>memmove_page: copies <paramref name="length"/> bytes between two pages; the ranges may overlap
    /// when both are the same page.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A range is not inside its page.</exception>
    /// <remarks>Uses one kmap_local slot per distinct page while it runs; if it cannot have them (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public unsafe void MemmovePage(Page to, int toOffset, Page from, int fromOffset, int length)
    {
        if (to != from)
        {
            MemcpyPage(to, toOffset, from, fromOffset, length);
            return;
        }
        CheckRange(toOffset, length, nameof(toOffset));
        CheckRange(fromOffset, length, nameof(fromOffset));
        // One mapping for both ranges, so the copy sees the overlap and moves the bytes as memmove does.
        nint kaddr = KmapLocalPage(to);
        if (kaddr != 0)
        {
            new ReadOnlySpan<byte>((void*)(kaddr + fromOffset), length).CopyTo(new Span<byte>((void*)(kaddr + toOffset), length));
            KunmapLocal(kaddr);
        }
    }

    /// <summary>memset_page: sets <paramref name="length"/> bytes of the page at <paramref name="offset"/> to
    /// <paramref name="value"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the page.</exception>
    /// <remarks>Uses one kmap_local slot of the calling thread while it runs; if it cannot have one (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public unsafe void MemsetPage(Page page, int offset, byte value, int length)
    {
        CheckRange(offset, length, nameof(offset));
        nint kaddr = KmapLocalPage(page);
        if (kaddr != 0)
        {
            new Span<byte>((void*)(kaddr + offset), length).Fill(value);
            KunmapLocal(kaddr);
        }
    }

    /// <summary>memzero_page: zeroes <paramref name="length"/> bytes of the page at <paramref name="offset"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the page.</exception>
    public void MemzeroPage(Page page, int offset, int length)
    {
        CheckRange(offset, length, nameof(offset));
        ZeroUserSegments(page, offset, offset + length, 0, 0);
    }

    /// <summary>zero_user_segments: zeroes [start1, end1) and [start2, end2) of the page through one kmap_local
    /// mapping; a segment whose end is not above its start is left alone.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A bound is negative or an end is beyond PAGE_SIZE (the kernel BUGs).</exception>
    /// <remarks>Uses one kmap_local slot of the calling thread while it runs; if it cannot have one (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public unsafe void ZeroUserSegments(Page page, int start1, int end1, int start2, int end2)
    {
        CheckSegment(start1, end1, nameof(start1), nameof(end1));
        CheckSegment(start2, end2, nameof(start2), nameof(end2));
        nint kaddr = KmapLocalPage(page);
        if (kaddr == 0)
        {
            return;
        }
        if (end1 > start1)
        {
            new Span<byte>((void*)(kaddr + start1), end1 - start1).Clear();
        }
        if (end2 > start2)
        {
            new Span<byte>((void*)(kaddr + start2), end2 - start2).Clear();
        }
        KunmapLocal(kaddr);
    }

    /// <summary>zero_user_segment: zeroes [start, end) of the page.</summary>
    /// <exception cref="ArgumentOutOfRangeException">As for <see cref="ZeroUserSegments"/>.</exception>
    public void ZeroUserSegment(Page page, int start, int end) => ZeroUserSegments(page, start, end, 0, 0);

    /// <summary>zero_user: zeroes <paramref name="size"/> bytes of the page from <paramref name="start"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the page.</exception>
    public void ZeroUser(Page page, int start, int size)
    {
        CheckRange(start, size, nameof(start));
        ZeroUserSegments(page, start, start + size, 0, 0);
    }

    /// <summary>Gives back the pkmap window and every thread's kmap_local window; Dispose calls it.</summary>
    internal void DisposeHighmem()
    {
        lock (_highmemLock)
        {
            _highmemDisposed = true;
            _pkmap?.Dispose();
            _kmapLocal?.Dispose();
        }
    }

    /// <summary>The pkmap window, reserved on first use.</summary>
    internal Pkmap PkmapWindow => CreateOnce(ref _pkmap, _highmemLock, ref _highmemDisposed,
        static m => new Pkmap(m._mem, m.LastPkmap, m.Bug, m.Log, () => m._cpus.Current));

    /// <summary>The page-copy helpers over kmap_local (for the machine's helpers and the layers that copy pages).</summary>
    internal HighPage HighPages => _highPages ??= new HighPage(_mem, () => LocalSlots);

    /// <summary>The per-thread kmap_local stacks, created on first use.</summary>
    internal KmapLocal LocalSlots => CreateOnce(ref _kmapLocal, _highmemLock, ref _highmemDisposed,
        static m => new KmapLocal(m._mem, m.Bug, m.Log, () => m._cpus.Current));

    private nint KmapWait(Page page, int timeoutMs, CancellationToken cancel)
    {
        uint pfn = CheckedPfn(page);
        nint address = _mem.PageAddress(pfn);
        return address != 0 ? address : PkmapWindow.KmapHigh(pfn, timeoutMs, cancel);
    }

    private static void CheckRange(int offset, int length, string paramName)
    {
        if (offset < 0 || length < 0 || offset > PageSize - length)
        {
            throw new ArgumentOutOfRangeException(paramName, offset,
                $"offset {offset} + length {length} is outside the page (PAGE_SIZE {PageSize})");
        }
    }

    private static void CheckSegment(int start, int end, string startName, string endName)
    {
        if (start < 0)
        {
            throw new ArgumentOutOfRangeException(startName, start, $"segment start {start} is negative (PAGE_SIZE {PageSize})");
        }
        if (end < 0 || end > PageSize)
        {
            throw new ArgumentOutOfRangeException(endName, end, $"segment end {end} is beyond PAGE_SIZE ({PageSize})");
        }
    }
}
