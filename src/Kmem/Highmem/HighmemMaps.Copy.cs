// The page copy and clear helpers of include/linux/highmem.h (clear_highpage,
// copy_highpage, memcpy_to_page, memcpy_from_page, memcpy_page, memmove_page,
// memset_page, memzero_page, zero_user_segments): each maps its page(s) with
// kmap_local for the time of the copy, so they work on highmem frames too.
// Each uses one kmap_local slot per page while it runs; if it cannot have them
// (already KM_MAX_IDX nested: the kernel's BUG, thrown or reported) nothing is done.
// Ranges and pages are checked before anything is mapped. The layers that move page
// contents (swap I/O, page cache, migration) call the pfn forms, whose frames and ranges
// are theirs to get right. No lock: the slots are the thread's.
using Kmem.PageAlloc;

namespace Kmem.Highmem;

internal sealed partial class HighmemMaps
{
    /// <summary>clear_highpage: fills the page with zeros.</summary>
    public void ClearHighpage(Page page) => ClearHighpage(_mem.CheckedPfn(page));

    /// <summary>clear_highpage of a frame.</summary>
    public unsafe void ClearHighpage(uint pfn)
    {
        nint kaddr = KmapLocalPfn(pfn);
        if (kaddr != 0)
        {
            new Span<byte>((void*)kaddr, PageSize).Clear();
            KunmapLocal(kaddr);
        }
    }

    /// <summary>copy_highpage: copies the bytes of <paramref name="from"/> into <paramref name="to"/>.</summary>
    public void CopyHighpage(Page to, Page from)
    {
        uint fromPfn = _mem.CheckedPfn(from);
        CopyHighpage(_mem.CheckedPfn(to), fromPfn);
    }

    /// <summary>copy_highpage of two frames.</summary>
    public void CopyHighpage(uint to, uint from) => CopyBetween(to, 0, from, 0, PageSize);

    /// <summary>memcpy_to_page: copies <paramref name="source"/> into the page at <paramref name="offset"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the page.</exception>
    public void MemcpyToPage(Page page, int offset, ReadOnlySpan<byte> source)
    {
        CheckRange(offset, source.Length, nameof(offset));
        MemcpyToPage(_mem.CheckedPfn(page), offset, source);
    }

    /// <summary>memcpy_to_page of a frame; the range is the caller's to check.</summary>
    public unsafe void MemcpyToPage(uint pfn, int offset, ReadOnlySpan<byte> source)
    {
        nint kaddr = KmapLocalPfn(pfn);
        if (kaddr != 0)
        {
            source.CopyTo(new Span<byte>((void*)(kaddr + offset), source.Length));
            KunmapLocal(kaddr);
        }
    }

    /// <summary>memcpy_from_page: fills <paramref name="destination"/> from the page's bytes at <paramref name="offset"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the page.</exception>
    public void MemcpyFromPage(Span<byte> destination, Page page, int offset)
    {
        CheckRange(offset, destination.Length, nameof(offset));
        MemcpyFromPage(destination, _mem.CheckedPfn(page), offset);
    }

    /// <summary>memcpy_from_page of a frame; the range is the caller's to check.</summary>
    public unsafe void MemcpyFromPage(Span<byte> destination, uint pfn, int offset)
    {
        nint kaddr = KmapLocalPfn(pfn);
        if (kaddr != 0)
        {
            new ReadOnlySpan<byte>((void*)(kaddr + offset), destination.Length).CopyTo(destination);
            KunmapLocal(kaddr);
        }
    }

    /// <summary>memcpy_page: copies <paramref name="length"/> bytes between two pages, each through its own
    /// mapping (overlapping ranges of one highmem page give memcpy's undefined result).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A range is not inside its page.</exception>
    public void MemcpyPage(Page to, int toOffset, Page from, int fromOffset, int length)
    {
        CheckRange(toOffset, length, nameof(toOffset));
        CheckRange(fromOffset, length, nameof(fromOffset));
        uint fromPfn = _mem.CheckedPfn(from);
        CopyBetween(_mem.CheckedPfn(to), toOffset, fromPfn, fromOffset, length);
    }

    /// <summary>memmove_page: as memcpy_page, but ranges of one page may overlap.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A range is not inside its page.</exception>
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

    /// <summary>memset_page: sets <paramref name="length"/> bytes at <paramref name="offset"/> to <paramref name="value"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the page.</exception>
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

    /// <summary>memzero_page and zero_user: zeroes <paramref name="length"/> bytes at <paramref name="offset"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the page.</exception>
    public void MemzeroPage(Page page, int offset, int length, string offsetName)
    {
        CheckRange(offset, length, offsetName);
        ZeroUserSegments(page, offset, offset + length, 0, 0);
    }

    /// <summary>zero_user_segments: zeroes [start1, end1) and [start2, end2) through one mapping; a segment
    /// whose end is not above its start is left alone.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A bound is negative or an end is beyond PAGE_SIZE.</exception>
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

    /// <summary>The copy of copy_highpage and memcpy_page, with checked ranges: two mappings, source first.</summary>
    private unsafe void CopyBetween(uint to, int toOffset, uint from, int fromOffset, int length)
    {
        nint vfrom = KmapLocalPfn(from);
        if (vfrom == 0)
        {
            return;
        }
        nint vto = KmapLocalPfn(to);
        if (vto != 0)
        {
            new ReadOnlySpan<byte>((void*)(vfrom + fromOffset), length).CopyTo(new Span<byte>((void*)(vto + toOffset), length));
            KunmapLocal(vto);
        }
        KunmapLocal(vfrom);
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
