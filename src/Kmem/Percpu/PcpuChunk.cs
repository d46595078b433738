// struct pcpu_chunk (mm/percpu-internal.h, mm/percpu.c of 6.1): one region replicated in
// every unit, and its allocation map. One bit of alloc_map covers PCPU_MIN_ALLOC_SIZE (4)
// bytes; bound_map has a bit at the start of each allocation and one just past its end.
// Every PCPU_BITMAP_BLOCK_SIZE (a page) of the map has a pcpu_block_md of hints (largest free
// run and where it starts, free bits at either edge, first free bit), and the chunk has one
// for the whole map; fits are searched block by block through the hints, then confirmed on
// the bitmap. Invariants (checked by Validate): every hint equals what a scan of the bitmap
// gives; FreeBytes = 4 × clear bits. Not thread-safe: the allocator's lock guards every chunk.
using System.Numerics;
using Kmem.Physical;

namespace Kmem.Percpu;

/// <summary>pcpu_block_md: the free-space hints of one block of the map, or of the whole chunk.</summary>
internal struct PcpuBlockMd
{
    /// <summary>contig_hint: the largest free run, in bits.</summary>
    public int ContigHint;
    /// <summary>contig_hint_start: where it starts (the best-aligned start among runs of that size).</summary>
    public int ContigHintStart;
    /// <summary>left_free: free bits at the start of the block.</summary>
    public int LeftFree;
    /// <summary>right_free: free bits at the end of the block.</summary>
    public int RightFree;
    /// <summary>first_free: the first free bit (NrBits when none).</summary>
    public int FirstFree;
    /// <summary>nr_bits: the bits the block covers.</summary>
    public int NrBits;

    public void Reset(int nrBits)
    {
        ContigHint = 0;
        ContigHintStart = 0;
        LeftFree = 0;
        RightFree = 0;
        FirstFree = nrBits;
        NrBits = nrBits;
    }

    /// <summary>pcpu_block_update: takes the free run [start, end) into account.</summary>
    public void Update(int start, int end)
    {
        int contig = end - start;
        FirstFree = Math.Min(FirstFree, start);
        if (start == 0)
        {
            LeftFree = contig;
        }
        if (end == NrBits)
        {
            RightFree = contig;
        }
        if (contig > ContigHint)
        {
            ContigHintStart = start;
            ContigHint = contig;
        }
        else if (contig == ContigHint && ContigHintStart != 0
            && (start == 0 || BitOperations.TrailingZeroCount(start) > BitOperations.TrailingZeroCount(ContigHintStart)))
        {
            // Same size, better aligned start: aligned requests fit it more often.
            ContigHintStart = start;
        }
    }
}

/// <summary>struct pcpu_chunk: a region of <see cref="NrPages"/> pages in each unit and its allocation map.</summary>
internal sealed class PcpuChunk
{
    /// <summary>PCPU_MIN_ALLOC_SHIFT.</summary>
    public const int MinAllocShift = 2;
    /// <summary>PCPU_MIN_ALLOC_SIZE: the map's granularity in bytes.</summary>
    public const int MinAllocSize = 1 << MinAllocShift;
    /// <summary>PCPU_BITMAP_BLOCK_BITS: map bits per block (one page).</summary>
    public const int BlockBits = PhysMem.PageSize >> MinAllocShift;

    private readonly ulong[] _allocMap;
    private readonly ulong[] _boundMap;
    private readonly PcpuBlockMd[] _blocks;
    private PcpuBlockMd _chunkMd;

    /// <param name="nrPages">Pages per unit the map covers.</param>
    /// <param name="startOffset">Bytes hidden at the start (the first chunk's static area before it).</param>
    /// <param name="endOffset">Bytes hidden at the end.</param>
    public PcpuChunk(int nrPages, int startOffset, int endOffset)
    {
        NrPages = nrPages;
        StartOffset = startOffset;
        EndOffset = endOffset;
        MapBits = nrPages * BlockBits;
        _allocMap = new ulong[(MapBits + 63) / 64];
        _boundMap = new ulong[(MapBits + 1 + 63) / 64];
        _blocks = new PcpuBlockMd[nrPages];
        for (int i = 0; i < nrPages; i++)
        {
            _blocks[i].Reset(BlockBits);
            _blocks[i].Update(0, BlockBits);
        }
        _chunkMd.Reset(MapBits);
        FreeBytes = MapBits * MinAllocSize;
        if (startOffset > 0)
        {
            Hide(0, startOffset / MinAllocSize);
        }
        if (endOffset > 0)
        {
            int bits = endOffset / MinAllocSize;
            Hide(MapBits - bits, bits);
        }
        RefreshChunkHint();
    }

    /// <summary>Pages per unit (nr_pages).</summary>
    public int NrPages { get; }

    /// <summary>Map bits (pcpu_chunk_map_bits).</summary>
    public int MapBits { get; }

    /// <summary>start_offset, end_offset: bytes of the region outside the chunk's map (first chunk only).</summary>
    public int StartOffset { get; }

    /// <inheritdoc cref="StartOffset"/>
    public int EndOffset { get; }

    /// <summary>free_bytes.</summary>
    public int FreeBytes { get; private set; }

    /// <summary>The host address of the region in unit 0 (base_addr); unit u is at BaseAddr + u × unit_size.</summary>
    public nint BaseAddr { get; set; }

    /// <summary>The first chunk's parts (reserved or dynamic) cannot be destroyed.</summary>
    public bool Immutable { get; set; }

    /// <summary>The slot list the chunk is on (-1: none).</summary>
    public int Slot { get; set; } = -1;

    /// <summary>Allocations in the chunk (nr_alloc) and the largest one in bytes (max_alloc_size).</summary>
    public int NrAlloc { get; set; }

    /// <inheritdoc cref="NrAlloc"/>
    public int MaxAllocSize { get; set; }

    /// <summary>The chunk's hints: contig_hint (largest free run) and first_free, in bits.</summary>
    public PcpuBlockMd ChunkMd => _chunkMd;

    /// <summary>The hints of block <paramref name="i"/>.</summary>
    public PcpuBlockMd Block(int i) => _blocks[i];

    /// <summary>Pages of the region with nothing allocated in them (nr_empty_pop_pages; every page is
    /// populated here).</summary>
    public int EmptyPages
    {
        get
        {
            int n = 0;
            foreach (ref readonly var b in _blocks.AsSpan())
            {
                n += b.ContigHint == BlockBits ? 1 : 0;
            }
            return n;
        }
    }

    /// <summary>Whether the byte offset lies in the chunk's region.</summary>
    public bool Contains(nint address) => address >= BaseAddr && address < BaseAddr + ((nint)NrPages << PhysMem.PageShift);

    /// <summary>Whether bit <paramref name="bit"/> of alloc_map is set.</summary>
    public bool IsAllocated(int bit) => (_allocMap[bit >> 6] & (1UL << bit)) != 0;

    /// <summary>Whether bit <paramref name="bit"/> of bound_map is set.</summary>
    public bool IsBound(int bit) => (_boundMap[bit >> 6] & (1UL << bit)) != 0;

    private void Hide(int bitOff, int bits)
    {
        SetBits(_allocMap, bitOff, bits);
        SetBit(_boundMap, bitOff);
        SetBit(_boundMap, bitOff + bits);
        FreeBytes -= bits * MinAllocSize;
        RefreshBlocks(bitOff, bits);
    }

    // ------------------------------------------------------------------ finding a fit

    /// <summary>pcpu_find_block_fit: where a search for <paramref name="bits"/> bits aligned to
    /// <paramref name="align"/> bits should start, using the hints only.</summary>
    /// <returns>The bit offset, or -1 when the chunk's hint already says it cannot fit.</returns>
    public int FindBlockFit(int bits, int align)
    {
        // The chunk's largest free run decides at once whether scanning is worth it.
        if (!FitsHint(_chunkMd, bits, align))
        {
            return -1;
        }
        int bitOff = _chunkMd.FirstFree;
        NextFitRegion(bits, align, ref bitOff, out _);
        return bitOff >= MapBits ? -1 : bitOff;
    }

    /// <summary>pcpu_check_block_hint.</summary>
    private static bool FitsHint(in PcpuBlockMd md, int bits, int align) =>
        AlignUp(md.ContigHintStart, align) - md.ContigHintStart + bits <= md.ContigHint;

    /// <summary>pcpu_next_fit_region: walks the blocks from <paramref name="bitOff"/> and stops at the first free
    /// region that can hold the request: a run across block edges, a block's largest run, or a block's
    /// right edge that may continue into the next block.</summary>
    private void NextFitRegion(int allocBits, int align, ref int bitOff, out int bits)
    {
        int i = bitOff / BlockBits;
        int blockOff = bitOff % BlockBits;
        bits = 0;
        for (; i < _blocks.Length; i++)
        {
            ref readonly var block = ref _blocks[i];
            if (bits != 0)
            {
                // A run that began at the end of the previous block continues here.
                bits += block.LeftFree;
                if (bits >= allocBits)
                {
                    return;
                }
                if (block.LeftFree == BlockBits)
                {
                    continue;
                }
            }
            bits = AlignUp(block.ContigHintStart, align) - block.ContigHintStart;
            if (block.ContigHint != 0 && block.ContigHintStart >= blockOff && block.ContigHint >= bits + allocBits)
            {
                bits += allocBits;
                bitOff = i * BlockBits + block.FirstFree;
                bits += block.ContigHintStart - block.FirstFree;
                return;
            }
            blockOff = 0;
            int start = AlignUp(BlockBits - block.RightFree, align);
            bits = BlockBits - start;
            bitOff = i * BlockBits + start;
            if (bits >= allocBits)
            {
                return;
            }
        }
        bitOff = MapBits;
    }

    // ------------------------------------------------------------------ allocating and freeing

    /// <summary>pcpu_alloc_area: allocates <paramref name="bits"/> bits aligned to <paramref name="align"/>
    /// bits, searching the bitmap from <paramref name="start"/> for at most a block past the request.</summary>
    /// <returns>The byte offset in the region, or -1.</returns>
    public int AllocArea(int bits, int align, int start)
    {
        int end = Math.Min(start + bits + BlockBits, MapBits);
        int bitOff = FindZeroArea(start, end, bits, align);
        if (bitOff < 0)
        {
            return -1;
        }
        SetBits(_allocMap, bitOff, bits);
        SetBit(_boundMap, bitOff);
        ClearBits(_boundMap, bitOff + 1, bits - 1);
        SetBit(_boundMap, bitOff + bits);
        FreeBytes -= bits * MinAllocSize;
        RefreshBlocks(bitOff, bits);
        return bitOff * MinAllocSize;
    }

    /// <summary>pcpu_free_area: frees the allocation that starts at byte <paramref name="off"/>.</summary>
    /// <returns>The bytes freed, or -1 when no allocation starts there (nothing changes).</returns>
    public int FreeArea(int off)
    {
        if (off % MinAllocSize != 0 || off < StartOffset || off >= MapBits * MinAllocSize - EndOffset)
        {
            return -1;
        }
        int bitOff = off / MinAllocSize;
        if (!IsAllocated(bitOff) || !IsBound(bitOff))
        {
            return -1;
        }
        int end = FindNextBit(_boundMap, MapBits + 1, bitOff + 1);
        int bits = end - bitOff;
        ClearBits(_allocMap, bitOff, bits);
        FreeBytes += bits * MinAllocSize;
        RefreshBlocks(bitOff, bits);
        return bits * MinAllocSize;
    }

    /// <summary>bitmap_find_next_zero_area with an alignment mask: the first aligned run of
    /// <paramref name="bits"/> clear bits in [start, end).</summary>
    private int FindZeroArea(int start, int end, int bits, int align)
    {
        while (true)
        {
            int index = FindNextZeroBit(_allocMap, end, start);
            index = AlignUp(index, align);
            int areaEnd = index + bits;
            if (areaEnd > end)
            {
                return -1;
            }
            int used = FindNextBit(_allocMap, areaEnd, index);
            if (used >= areaEnd)
            {
                return index;
            }
            start = used + 1;
        }
    }

    /// <summary>The hints of the blocks a change of [bitOff, bitOff + bits) touched are scanned again from the
    /// bitmap, then the chunk's hint is rebuilt from the blocks' hints.</summary>
    private void RefreshBlocks(int bitOff, int bits)
    {
        int first = bitOff / BlockBits;
        int last = Math.Min((bitOff + bits) / BlockBits, _blocks.Length - 1);
        for (int i = first; i <= last; i++)
        {
            RefreshBlockHint(i);
        }
        RefreshChunkHint();
    }

    /// <summary>pcpu_block_refresh_hint: scans block <paramref name="index"/>'s free runs.</summary>
    private void RefreshBlockHint(int index)
    {
        ref var block = ref _blocks[index];
        block.Reset(BlockBits);
        int baseBit = index * BlockBits;
        int blockEnd = baseBit + BlockBits;
        int pos = baseBit;
        while (pos < blockEnd)
        {
            int start = FindNextZeroBit(_allocMap, blockEnd, pos);
            if (start >= blockEnd)
            {
                break;
            }
            int end = FindNextBit(_allocMap, blockEnd, start);
            block.Update(start - baseBit, end - baseBit);
            pos = end;
        }
    }

    /// <summary>pcpu_chunk_refresh_hint: rebuilds the chunk's hint from the blocks' hints
    /// (pcpu_for_each_md_free_region: each block's largest run, and runs that cross block edges).</summary>
    private void RefreshChunkHint()
    {
        _chunkMd.Reset(MapBits);
        _chunkMd.FirstFree = FindNextZeroBit(_allocMap, MapBits, 0);
        int run = 0, runStart = 0;
        for (int i = 0; i < _blocks.Length; i++)
        {
            ref readonly var block = ref _blocks[i];
            int blockStart = i * BlockBits;
            if (run != 0)
            {
                run += block.LeftFree;
                if (block.LeftFree == BlockBits)
                {
                    continue;
                }
                _chunkMd.Update(runStart, runStart + run);
                run = 0;
            }
            // A block's largest run that touches its right edge is taken with the next block's left edge.
            if (block.ContigHint != 0 && block.ContigHintStart + block.ContigHint < BlockBits)
            {
                _chunkMd.Update(blockStart + block.ContigHintStart, blockStart + block.ContigHintStart + block.ContigHint);
            }
            if (block.RightFree != 0)
            {
                run = block.RightFree;
                runStart = blockStart + BlockBits - block.RightFree;
            }
        }
        if (run != 0)
        {
            _chunkMd.Update(runStart, runStart + run);
        }
    }

    // ------------------------------------------------------------------ checking and reporting

    /// <summary>Checks every hint against a scan of the bitmap, and free_bytes against its clear bits.</summary>
    /// <returns>Null when consistent, else what is wrong.</returns>
    public string? Validate()
    {
        int clear = 0;
        for (int bit = 0; bit < MapBits; bit++)
        {
            clear += IsAllocated(bit) ? 0 : 1;
        }
        if (clear * MinAllocSize != FreeBytes)
        {
            return $"free_bytes {FreeBytes} but {clear} clear bits";
        }
        for (int i = 0; i < _blocks.Length; i++)
        {
            var (contig, first, left, right) = ScanRuns(i * BlockBits, BlockBits);
            var b = _blocks[i];
            if (b.ContigHint != contig || b.FirstFree != first || b.LeftFree != left || b.RightFree != right)
            {
                return $"block {i}: hints contig {b.ContigHint} first {b.FirstFree} left {b.LeftFree} right {b.RightFree}, "
                    + $"bitmap contig {contig} first {first} left {left} right {right}";
            }
            if (b.ContigHint > 0 && !RunIsFree(i * BlockBits + b.ContigHintStart, b.ContigHint))
            {
                return $"block {i}: contig_hint_start {b.ContigHintStart} is not the start of a free run of {b.ContigHint}";
            }
        }
        var (chunkContig, chunkFirst, _, _) = ScanRuns(0, MapBits);
        if (_chunkMd.ContigHint != chunkContig || _chunkMd.FirstFree != chunkFirst)
        {
            return $"chunk: contig_hint {_chunkMd.ContigHint} first_free {_chunkMd.FirstFree}, bitmap {chunkContig} {chunkFirst}";
        }
        if (_chunkMd.ContigHint > 0 && !RunIsFree(_chunkMd.ContigHintStart, _chunkMd.ContigHint))
        {
            return $"chunk: contig_hint_start {_chunkMd.ContigHintStart} is not a free run of {_chunkMd.ContigHint}";
        }
        return null;
    }

    private bool RunIsFree(int start, int bits)
    {
        for (int b = start; b < start + bits; b++)
        {
            if (IsAllocated(b))
            {
                return false;
            }
        }
        return true;
    }

    private (int Contig, int First, int Left, int Right) ScanRuns(int from, int count)
    {
        int contig = 0, first = count, left = 0, right = 0, run = 0;
        for (int i = 0; i < count; i++)
        {
            if (IsAllocated(from + i))
            {
                run = 0;
                continue;
            }
            first = Math.Min(first, i);
            run++;
            contig = Math.Max(contig, run);
            if (run == i + 1)
            {
                left = run;
            }
            if (i == count - 1)
            {
                right = run;
            }
        }
        return (contig, first, left, right);
    }

    /// <summary>The chunk's areas in order, from its start to its last allocation: (bytes, allocated).
    /// What percpu_stats turns into fragment and allocation sizes.</summary>
    public List<(int Bytes, bool Allocated)> Areas()
    {
        var areas = new List<(int, bool)>();
        int lastBits = MapBits - EndOffset / MinAllocSize;
        int last = -1;
        for (int b = lastBits - 1; b >= 0; b--)
        {
            if (IsAllocated(b))
            {
                last = b;
                break;
            }
        }
        int lastAlloc = last >= 0 ? last + 1 : 0;
        int start = StartOffset / MinAllocSize;
        while (start < lastAlloc)
        {
            bool allocated = IsAllocated(start);
            int end = allocated ? FindNextBit(_boundMap, lastAlloc, start + 1) : FindNextBit(_allocMap, lastAlloc, start + 1);
            areas.Add(((end - start) * MinAllocSize, allocated));
            start = end;
        }
        return areas;
    }

    // ------------------------------------------------------------------ bitmap helpers

    private static int AlignUp(int value, int align) => (value + align - 1) & -align;

    private static void SetBit(ulong[] map, int bit) => map[bit >> 6] |= 1UL << bit;

    private static void SetBits(ulong[] map, int start, int count)
    {
        for (int b = start; b < start + count;)
        {
            int shift = b & 63;
            int n = Math.Min(64 - shift, start + count - b);
            ulong mask = (n == 64 ? ulong.MaxValue : ((1UL << n) - 1)) << shift;
            map[b >> 6] |= mask;
            b += n;
        }
    }

    private static void ClearBits(ulong[] map, int start, int count)
    {
        for (int b = start; b < start + count;)
        {
            int shift = b & 63;
            int n = Math.Min(64 - shift, start + count - b);
            ulong mask = (n == 64 ? ulong.MaxValue : ((1UL << n) - 1)) << shift;
            map[b >> 6] &= ~mask;
            b += n;
        }
    }

    /// <summary>find_next_bit: the first set bit in [from, size), or size.</summary>
    private static int FindNextBit(ulong[] map, int size, int from)
    {
        while (from < size)
        {
            ulong word = map[from >> 6] >> (from & 63);
            if (word != 0)
            {
                return Math.Min(size, from + BitOperations.TrailingZeroCount(word));
            }
            from = (from | 63) + 1;
        }
        return size;
    }

    /// <summary>find_next_zero_bit: the first clear bit in [from, size), or size.</summary>
    private static int FindNextZeroBit(ulong[] map, int size, int from)
    {
        while (from < size)
        {
            ulong word = ~map[from >> 6] >> (from & 63);
            if (word != 0)
            {
                return Math.Min(size, from + BitOperations.TrailingZeroCount(word));
            }
            from = (from | 63) + 1;
        }
        return size;
    }
}
