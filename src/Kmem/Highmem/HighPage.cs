// The page-copy helpers of include/linux/highmem.h (copy_highpage,
// memcpy_to_page, memcpy_from_page) over kmap_local: a mapping primitive for
// the layers above that move page contents (reclaim's swap I/O and page cache,
// compaction's migration, the machine's public helpers). A lowmem frame is used
// through the direct map; a highmem one through a kmap_local slot of the
// calling thread, held only while the copy runs. The kmap_local stacks are
// made on first use by their owner, so this helper asks for them only when a
// highmem frame comes (never on X64). Locking: none of its own; a slot stack
// belongs to its thread.
using Kmem.Physical;

namespace Kmem.Highmem;

/// <summary>Copies into and out of page frames, lowmem or highmem.</summary>
internal sealed class HighPage(PhysMem mem, Func<KmapLocal> localSlots)
{
    /// <summary>kmap_local_page: the direct-map address, or a kmap_local slot for a highmem frame (0 when the
    /// thread's slots are all in use, the BUG reported by the slots).</summary>
    public nint KmapLocalPage(uint pfn)
    {
        nint address = mem.PageAddress(pfn);
        return address != 0 ? address : localSlots().Map(pfn);
    }

    /// <summary>kunmap_local: nothing for a direct-map address.</summary>
    public void KunmapLocal(nint address)
    {
        if (mem.VirtToPfn(address) == PhysMem.NoPfn)
        {
            localSlots().Unmap(address);
        }
    }

    /// <summary>copy_highpage: the bytes of frame <paramref name="from"/> into frame <paramref name="to"/>.</summary>
    public unsafe void CopyHighpage(uint to, uint from)
    {
        nint vfrom = KmapLocalPage(from);
        if (vfrom == 0)
        {
            return;
        }
        nint vto = KmapLocalPage(to);
        if (vto != 0)
        {
            new ReadOnlySpan<byte>((void*)vfrom, PhysMem.PageSize).CopyTo(new Span<byte>((void*)vto, PhysMem.PageSize));
            KunmapLocal(vto);
        }
        KunmapLocal(vfrom);
    }

    /// <summary>memcpy_to_page: <paramref name="source"/> into the frame at <paramref name="offset"/> (the range
    /// is the caller's to check).</summary>
    public unsafe void MemcpyToPage(uint pfn, int offset, ReadOnlySpan<byte> source)
    {
        nint kaddr = KmapLocalPage(pfn);
        if (kaddr != 0)
        {
            source.CopyTo(new Span<byte>((void*)(kaddr + offset), source.Length));
            KunmapLocal(kaddr);
        }
    }

    /// <summary>memcpy_from_page: the frame's bytes at <paramref name="offset"/> into <paramref name="destination"/>.</summary>
    public unsafe void MemcpyFromPage(Span<byte> destination, uint pfn, int offset)
    {
        nint kaddr = KmapLocalPage(pfn);
        if (kaddr != 0)
        {
            new ReadOnlySpan<byte>((void*)(kaddr + offset), destination.Length).CopyTo(destination);
            KunmapLocal(kaddr);
        }
    }
}
