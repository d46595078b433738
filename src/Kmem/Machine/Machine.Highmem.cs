// Highmem's public face on Machine (include/linux/highmem.h, highmem-internal.h):
// kmap/kunmap over the pkmap window, kmap_local/kmap_atomic over per-thread slots,
// and the helpers that copy or clear a page through kmap_local. Every member forwards
// to HighmemMaps (Highmem/), which owns the window, the slot stacks and their
// locking; Dispose gives them back, after which every call throws ObjectDisposedException.
using Kmem.Highmem;

namespace Kmem;

public sealed partial class Machine
{
    /// <summary>KM_MAX_IDX: how many kmap_local (and kmap_atomic) mappings a thread may nest.</summary>
    public const int KmMaxIdx = HighmemMaps.KmMaxIdx;

    /// <summary>LAST_PKMAP: slots in the pkmap window (1024 on X86, 512 on X86Pae, 0 without highmem).</summary>
    public int LastPkmap { get { using var _ = _life.Enter(); return Highmem.LastPkmap; } }

    /// <summary>PKMAP_BASE: the kernel-style address of the pkmap window (0xff000000 on the 32-bit presets,
    /// right above VMALLOC_END and its two guard pages); 0 on presets without highmem.</summary>
    public ulong PkmapBase { get { using var _ = _life.Enter(); return Highmem.PkmapBase; } }

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
    public nint Kmap(Page page) { using var _ = _life.Enter(); return Highmem.Kmap(page, Timeout.Infinite, CancellationToken.None); }

    /// <summary>kmap with a bounded wait: as <see cref="Kmap(Page)"/>, but gives up after
    /// <paramref name="timeout"/> when every pkmap slot stays held.</summary>
    /// <returns>The address, or 0 when the timeout expired before a slot was freed.</returns>
    /// <remarks>Blocks at most <paramref name="timeout"/>; <see cref="Timeout.InfiniteTimeSpan"/> waits for ever.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative (other than infinite) or too large.</exception>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public nint Kmap(Page page, TimeSpan timeout) { using var _ = _life.Enter(); return Highmem.Kmap(page, TimeoutMs(timeout), CancellationToken.None); }

    /// <summary>kmap with a cancellable wait: as <see cref="Kmap(Page)"/>, but gives up when
    /// <paramref name="cancellationToken"/> is cancelled while every pkmap slot is held.</summary>
    /// <returns>The address, or 0 when the wait was cancelled (a page that needs no wait is mapped
    /// even with a cancelled token).</returns>
    /// <remarks>Blocks until a slot is free or the token is cancelled.</remarks>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public nint Kmap(Page page, CancellationToken cancellationToken) { using var _ = _life.Enter(); return Highmem.Kmap(page, Timeout.Infinite, cancellationToken); }

    /// <summary>kunmap: drops the hold a <see cref="Kmap(Page)"/> took. The slot stays mapped, unused, until the
    /// window is flushed (when a scan for a free slot wraps, or <see cref="KmapFlushUnused"/>); a caller waiting
    /// for a slot is woken. Nothing to do for a lowmem page.</summary>
    /// <exception cref="KernelBugException">The highmem page is not kmapped (kunmap without kmap): the kernel's
    /// BUG; nothing changes (with <see cref="OnBug.Report"/> the report is logged instead).</exception>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public void Kunmap(Page page) { using var _ = _life.Enter(); Highmem.Kunmap(page); }

    /// <summary>kmap_flush_unused: frees every pkmap slot that is mapped but held by nobody.</summary>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public void KmapFlushUnused() { using var _ = _life.Enter(); Highmem.KmapFlushUnused(); }

    /// <summary>kmap_local_page: maps the page into the calling thread's next kmap_local slot. Never blocks.
    /// The mapping belongs to this thread and is undone with <see cref="KunmapLocal"/>, innermost first.</summary>
    /// <returns>The direct-map address of a lowmem page (no slot taken), else the slot's address; 0 when
    /// <see cref="KmMaxIdx"/> mappings are already nested (with <see cref="OnBug.Report"/>) or the host
    /// refuses the mapping (logged).</returns>
    /// <exception cref="KernelBugException">The thread already holds <see cref="KmMaxIdx"/> mappings (the kernel's BUG).</exception>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public nint KmapLocalPage(Page page) { using var _ = _life.Enter(); return Highmem.KmapLocalPage(page); }

    /// <summary>kunmap_local: undoes the calling thread's last <see cref="KmapLocalPage"/>; any address inside
    /// the mapped page will do. A direct-map address needs nothing.</summary>
    /// <exception cref="KernelBugException">The address is not this thread's last kmap_local mapping (out of
    /// LIFO order, or never mapped): the kernel's warning; nothing is unmapped (with <see cref="OnBug.Report"/>
    /// the report is logged instead).</exception>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public void KunmapLocal(nint address) { using var _ = _life.Enter(); Highmem.KunmapLocal(address); }

    /// <summary>kmap_atomic: <see cref="KmapLocalPage"/> with preemption disabled, which here means the calling
    /// thread stays pinned to its current CPU (<see cref="CurrentCpu"/>) until <see cref="KunmapAtomic"/>.
    /// Never blocks.</summary>
    /// <returns>As <see cref="KmapLocalPage"/>; when it returns 0 the CPU is not pinned.</returns>
    /// <exception cref="KernelBugException">As for <see cref="KmapLocalPage"/>; the CPU is not pinned then.</exception>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public nint KmapAtomic(Page page) { using var _ = _life.Enter(); return Highmem.KmapAtomic(page); }

    /// <summary>kunmap_atomic: undoes the innermost <see cref="KmapAtomic"/> (any address in its page) and
    /// releases its CPU pin.</summary>
    /// <exception cref="KernelBugException">The address is not the thread's innermost kmap_atomic mapping, or
    /// not its last kmap_local one; nothing changes (with <see cref="OnBug.Report"/> the report is logged).</exception>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public void KunmapAtomic(nint address) { using var _ = _life.Enter(); Highmem.KunmapAtomic(address); }

    /// <summary>kmap_to_page: the page behind an address from <see cref="Kmap(Page)"/>, from one of the calling
    /// thread's <see cref="KmapLocalPage"/> mappings, or in the direct map.</summary>
    /// <returns>The page, or <see cref="Page.Null"/> when nothing is mapped at the address.</returns>
    public Page KmapToPage(nint address) { using var _ = _life.Enter(); return Highmem.KmapToPage(address); }

    /// <summary>clear_highpage: fills the page with zeros through a kmap_local mapping. Never blocks.</summary>
    /// <remarks>Uses one kmap_local slot of the calling thread while it runs; if it cannot have one (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public void ClearHighpage(Page page) { using var _ = _life.Enter(); Highmem.ClearHighpage(page); }

    /// <summary>copy_highpage: copies the bytes of <paramref name="from"/> into <paramref name="to"/>. Never blocks.</summary>
    /// <remarks>Uses two kmap_local slots of the calling thread while it runs; if it cannot have them (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public void CopyHighpage(Page to, Page from) { using var _ = _life.Enter(); Highmem.CopyHighpage(to, from); }

    /// <summary>memcpy_to_page: copies <paramref name="source"/> into the page at <paramref name="offset"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range [offset, offset + length) is not inside the page.</exception>
    /// <remarks>Uses one kmap_local slot of the calling thread while it runs; if it cannot have one (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public void MemcpyToPage(Page page, int offset, ReadOnlySpan<byte> source) { using var _ = _life.Enter(); Highmem.MemcpyToPage(page, offset, source); }

    /// <summary>memcpy_from_page: fills <paramref name="destination"/> from the page's bytes at <paramref name="offset"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range [offset, offset + length) is not inside the page.</exception>
    /// <remarks>Uses one kmap_local slot of the calling thread while it runs; if it cannot have one (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public void MemcpyFromPage(Span<byte> destination, Page page, int offset) { using var _ = _life.Enter(); Highmem.MemcpyFromPage(destination, page, offset); }

    /// <summary>memcpy_page: copies <paramref name="length"/> bytes between two pages. Overlapping ranges of one
    /// highmem page are seen through two mappings, so the result is undefined, as memcpy's: use
    /// <see cref="MemmovePage"/> for them.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A range is not inside its page.</exception>
    /// <remarks>Uses two kmap_local slots of the calling thread while it runs; if it cannot have them (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public void MemcpyPage(Page to, int toOffset, Page from, int fromOffset, int length) { using var _ = _life.Enter(); Highmem.MemcpyPage(to, toOffset, from, fromOffset, length); }

    /// <summary>memmove_page: copies <paramref name="length"/> bytes between two pages; the ranges may overlap
    /// when both are the same page.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A range is not inside its page.</exception>
    /// <remarks>Uses one kmap_local slot per distinct page while it runs; if it cannot have them (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public void MemmovePage(Page to, int toOffset, Page from, int fromOffset, int length) { using var _ = _life.Enter(); Highmem.MemmovePage(to, toOffset, from, fromOffset, length); }

    /// <summary>memset_page: sets <paramref name="length"/> bytes of the page at <paramref name="offset"/> to
    /// <paramref name="value"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the page.</exception>
    /// <remarks>Uses one kmap_local slot of the calling thread while it runs; if it cannot have one (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public void MemsetPage(Page page, int offset, byte value, int length) { using var _ = _life.Enter(); Highmem.MemsetPage(page, offset, value, length); }

    /// <summary>memzero_page: zeroes <paramref name="length"/> bytes of the page at <paramref name="offset"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the page.</exception>
    public void MemzeroPage(Page page, int offset, int length) { using var _ = _life.Enter(); Highmem.MemzeroPage(page, offset, length, nameof(offset)); }

    /// <summary>zero_user_segments: zeroes [start1, end1) and [start2, end2) of the page through one kmap_local
    /// mapping; a segment whose end is not above its start is left alone.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A bound is negative or an end is beyond PAGE_SIZE (the kernel BUGs).</exception>
    /// <remarks>Uses one kmap_local slot of the calling thread while it runs; if it cannot have one (already
    /// <see cref="KmMaxIdx"/> nested: the kernel's BUG, thrown or reported) nothing is done.</remarks>
    public void ZeroUserSegments(Page page, int start1, int end1, int start2, int end2) { using var _ = _life.Enter(); Highmem.ZeroUserSegments(page, start1, end1, start2, end2); }

    /// <summary>zero_user_segment: zeroes [start, end) of the page.</summary>
    /// <exception cref="ArgumentOutOfRangeException">As for <see cref="ZeroUserSegments"/>.</exception>
    public void ZeroUserSegment(Page page, int start, int end) { using var _ = _life.Enter(); ZeroUserSegments(page, start, end, 0, 0); }

    /// <summary>zero_user: zeroes <paramref name="size"/> bytes of the page from <paramref name="start"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the page.</exception>
    public void ZeroUser(Page page, int start, int size) { using var _ = _life.Enter(); Highmem.MemzeroPage(page, start, size, nameof(start)); }

    /// <summary>A public wait bound in milliseconds (Timeout.Infinite for an infinite one).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative (other than infinite) or too large.</exception>
    private static int TimeoutMs(TimeSpan timeout)
    {
        long ms = (long)timeout.TotalMilliseconds;
        return ms is < -1 or > int.MaxValue
            ? throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "the timeout must be 0..Int32.MaxValue ms, or infinite")
            : (int)ms;
    }
}
