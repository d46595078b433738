// The per-CPU allocator's first chunk (mm/percpu.c pcpu_build_alloc_info,
// pcpu_embed_first_chunk, pcpu_page_first_chunk, pcpu_alloc_first_chunk) and the
// page and vmap calls chunks are built with. The embedded first chunk lives in memory
// boot reserved (memblock), as the kernel's does, so it never passes the buddy lists. The first chunk is built in the
// constructor, before the allocator is shared; the helpers take no lock of their own
// (see PercpuAllocator.cs for the lock order).
using Kmem.Physical;

namespace Kmem.Percpu;

internal sealed partial class PercpuAllocator
{
    private readonly record struct AllocInfo(int UnitSize, int AtomSize, int AllocSize);

    /// <summary>__pa(MAX_DMA_ADDRESS): 16 MiB, the goal of memblock allocations made for the first chunk.</summary>
    private const uint MaxDmaPfn = (16 << 20) >> PhysMem.PageShift;

    /// <summary>pcpu_build_alloc_info for one group: units per allocation (upa) as large as the atom allows
    /// while wasting at most a third of the CPUs' worth of units, then as few allocations as possible.</summary>
    private static AllocInfo BuildAllocInfo(int sizeSum, int atomSize, int nrCpus)
    {
        int minUnitSize = Math.Max(sizeSum, MinUnitSize);
        int allocSize = (minUnitSize + atomSize - 1) / atomSize * atomSize;
        int maxUpa = allocSize / minUnitSize;
        while (allocSize % maxUpa != 0 || (allocSize / maxUpa) % PhysMem.PageSize != 0)
        {
            maxUpa--;
        }
        int bestUpa = 0, lastAllocs = int.MaxValue;
        for (int upa = maxUpa; upa > 0; upa--)
        {
            if (allocSize % upa != 0 || (allocSize / upa) % PhysMem.PageSize != 0)
            {
                continue;
            }
            int allocs = (nrCpus + upa - 1) / upa;
            int wasted = allocs * upa - nrCpus;
            if (wasted > nrCpus / 3)
            {
                continue;
            }
            if (allocs > lastAllocs)
            {
                break;
            }
            lastAllocs = allocs;
            bestUpa = upa;
        }
        return new AllocInfo(allocSize / bestUpa, atomSize, allocSize);
    }

    /// <summary>The first chunk's memory: pcpu_embed_first_chunk takes every unit as one physically contiguous
    /// block from memblock (pcpu_fc_alloc: atom-aligned, goal __pa(MAX_DMA_ADDRESS)), which is memory boot
    /// reserved and the buddy allocator never held. Where no boot reservation holds the block, a block from the
    /// page allocator stands in (the part of each unit past <paramref name="sizeSum"/> given back, as the kernel
    /// gives it back to memblock); else pcpu_page_first_chunk: units of sizeSum bytes, page by page, mapped in
    /// the vmalloc area.</summary>
    private (nint Region, bool Embedded, nint HostArea) AllocFirstChunk(int sizeSum, ref AllocInfo layout)
    {
        long total = (long)layout.UnitSize * NrUnits;
        uint boot = _pa.BootReserved.Claim((uint)(total >> PhysMem.PageShift), (uint)(layout.AtomSize >> PhysMem.PageShift), MaxDmaPfn);
        if (boot != PhysMem.NoPfn)
        {
            return (_pa.Mem.PageAddress(boot), true, 0);
        }
        int order = PhysMem.GetOrder((nuint)total);
        if (order < Arch.MaxOrder)
        {
            var block = _pa.AllocPages(Gfp.Kernel | Gfp.NoWarn, order, -1);
            if (!block.IsNull)
            {
                _pa.SplitPage(block, order);
                int unitPages = layout.UnitSize >> PhysMem.PageShift, usedPages = sizeSum >> PhysMem.PageShift;
                for (int i = 0; i < 1 << order; i++)
                {
                    int u = i / unitPages, inUnit = i % unitPages;
                    if (u >= NrUnits || inUnit >= usedPages)
                    {
                        FreePage(block.Add(i));
                    }
                }
                return (_pa.Mem.PageAddress(block.RawPfn), true, 0);
            }
        }
        layout = new AllocInfo(sizeSum, PhysMem.PageSize, sizeSum);
        int pages = (sizeSum >> PhysMem.PageShift) * NrUnits;
        var frames = new Page[pages];
        for (int i = 0; i < pages; i++)
        {
            frames[i] = _pa.AllocPages(Gfp.Kernel, 0, -1);
            if (frames[i].IsNull)
            {
                throw new InsufficientMemoryException($"percpu: failed to allocate the first chunk ({pages} pages)");
            }
        }
        nint area = Vmap(frames, "pcpu_page_first_chunk");
        if (area == 0)
        {
            foreach (var f in frames)
            {
                FreePage(f);
            }
            throw new InsufficientMemoryException("percpu: failed to map the first chunk");
        }
        return (area, false, area);
    }

    /// <summary>pcpu_alloc_first_chunk: a chunk over [tmp, tmp + mapSize) of the first chunk's region; the
    /// page-aligned region around it is the chunk, the parts outside hidden in its map.</summary>
    private static PcpuChunk FirstChunkPart(nint tmp, int mapSize)
    {
        nint aligned = tmp & ~(nint)(PhysMem.PageSize - 1);
        int startOffset = (int)(tmp - aligned);
        int regionSize = PageAlign(startOffset + mapSize);
        return new PcpuChunk(regionSize >> PhysMem.PageShift, startOffset, regionSize - startOffset - mapSize)
        {
            BaseAddr = aligned,
            Immutable = true,
        };
    }

    private void FreePage(Page page) => _pa.FreePages(page, 0);

    /// <summary>vmap of freshly allocated frames, which vfree gives back with the area (VM_MAP_PUT_PAGES).</summary>
    private nint Vmap(Page[] frames, string caller)
    {
        var pfns = new uint[frames.Length];
        for (int i = 0; i < frames.Length; i++)
        {
            pfns[i] = frames[i].RawPfn;
        }
        return _vmap.Vmap(pfns, VmFlags.Map | VmFlags.MapPutPages, writable: true, caller);
    }
}
