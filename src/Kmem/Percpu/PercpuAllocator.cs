// The per-CPU allocator (mm/percpu.c, mm/percpu-vm.c, arch/x86/kernel/setup_percpu.c of 6.1).
// Memory is handed out in chunks; a chunk has one unit per possible CPU, unit u at
// base + u × unit_size, so per_cpu_ptr(p, cpu) = p + cpu × unit_size for every chunk. The first
// chunk is [static | reserved | dynamic] in each unit: the static area holds DEFINE_PER_CPU
// variables, the reserved one is its own chunk (pcpu_reserved_chunk, for __alloc_reserved_percpu),
// the dynamic one the first chunk proper. Further chunks are mapped into the vmalloc area on demand
// and destroyed when a second chunk becomes wholly free (pcpu_balance_free keeps one spare).
// Chunks sit on slot lists by their largest free run (pcpu_chunk_slot). Locking: _lock (pcpu_alloc_mutex
// and pcpu_lock in one) guards every chunk, the lists and the statistics; under it the page
// allocator and vmalloc may be called (lock order: percpu → vmalloc → zone), never the reverse.
using Kmem.PageAlloc;
using Kmem.Physical;
using Kmem.Vmalloc;

namespace Kmem.Percpu;

/// <summary>The machine's per-CPU allocator: the first chunk, the chunk slot lists and the statistics.</summary>
internal sealed partial class PercpuAllocator
{
    /// <summary>PCPU_MIN_UNIT_SIZE: no unit is smaller, and no allocation larger.</summary>
    public const int MinUnitSize = 32 << 10;
    /// <summary>PERCPU_MODULE_RESERVE.</summary>
    public const int ModuleReserve = 8 << 10;
    /// <summary>PERCPU_DYNAMIC_RESERVE on 64-bit and on 32-bit kernels.</summary>
    public const int DynamicReserve64 = 28 << 10, DynamicReserve32 = 20 << 10;
    /// <summary>Static per-CPU data of the 6.1 kernels Kmem models ("percpu: Embedded … s217088" on the
    /// x86-64 capture, "s104276" on the i386 one).</summary>
    public const int StaticSize64 = 217088, StaticSize32 = 104276;
    /// <summary>PCPU_SLOT_BASE_SHIFT.</summary>
    private const int SlotBaseShift = 5;
    /// <summary>PCPU_SLOT_FAIL_THRESHOLD: a chunk in a slot below it that fails a fit moves to slot 0.</summary>
    private const int SlotFailThreshold = 3;

    private readonly Lock _lock = new();
    private readonly PageAllocator _pa;
    private readonly VmapSpace _vmap;
    private readonly CpuTopology _cpus;
    private readonly KernelLog _log;
    private readonly List<PcpuChunk>[] _slots;
    private readonly PcpuChunk? _reservedChunk;
    private readonly PcpuChunk _firstChunk;
    private readonly int _sidelinedSlot, _freeSlot;
    private int _staticUsed;
    /// <summary>pcpu_nr_populated: populated pages per unit over every chunk.</summary>
    private long _nrPopulated;
    private PcpuStats _stats;

    /// <summary>Sets the allocator up: builds the first chunk (from the page allocator, or mapped in the vmalloc
    /// area when no block is large enough) and logs its geometry as the kernel does at boot.</summary>
    /// <param name="pa">The page allocator chunks' frames come from.</param>
    /// <param name="vmap">The vmalloc space chunks beyond the first are mapped into.</param>
    /// <param name="cpus">The possible CPUs: one unit each.</param>
    /// <param name="log">The kernel log.</param>
    public PercpuAllocator(PageAllocator pa, VmapSpace vmap, CpuTopology cpus, KernelLog log)
    {
        _pa = pa;
        _vmap = vmap;
        _cpus = cpus;
        _log = log;
        NrUnits = cpus.Count;
        bool is64 = pa.Arch.Preset == Preset.X64;
        StaticSize = is64 ? StaticSize64 : StaticSize32;
        // PERCPU_FIRST_CHUNK_RESERVE: the module reserve on x86-64, none on x86-32.
        ReservedSize = is64 ? ModuleReserve : 0;
        int dynReserve = ModuleReserve + (is64 ? DynamicReserve64 : DynamicReserve32) - ReservedSize;
        int sizeSum = PageAlign(StaticSize + ReservedSize + dynReserve);
        DynSize = sizeSum - StaticSize - ReservedSize;
        var layout = BuildAllocInfo(sizeSum, is64 ? 2 << 20 : PhysMem.PageSize, NrUnits);
        var (region, embedded, hostArea) = AllocFirstChunk(sizeSum, ref layout);
        UnitSize = layout.UnitSize;
        AtomSize = layout.AtomSize;
        AllocSize = layout.AllocSize;
        FirstChunkEmbedded = embedded;
        _firstChunkArea = hostArea;
        StaticBase = region;
        UnitPages = UnitSize >> PhysMem.PageShift;

        _sidelinedSlot = SizeToSlotRaw(UnitSize) + 1;
        _freeSlot = _sidelinedSlot + 1;
        _slots = new List<PcpuChunk>[_freeSlot + 2];
        for (int i = 0; i < _slots.Length; i++)
        {
            _slots[i] = [];
        }
        _stats.MinAllocSize = UnitSize;

        if (ReservedSize > 0)
        {
            _reservedChunk = FirstChunkPart(region + StaticSize, ReservedSize);
        }
        _firstChunk = FirstChunkPart(region + StaticSize + ReservedSize, DynSize);
        Relocate(_firstChunk);
        _nrPopulated = sizeSum >> PhysMem.PageShift;
        _stats.NrChunks = _stats.NrMaxChunks = 1;
        log.Printk(embedded
            ? $"percpu: Embedded {sizeSum >> PhysMem.PageShift} pages/cpu s{StaticSize} r{ReservedSize} d{DynSize} u{UnitSize}"
            : $"percpu: {sizeSum >> PhysMem.PageShift} 4K pages/cpu s{StaticSize} r{ReservedSize} d{DynSize}");
    }

    private readonly nint _firstChunkArea;

    public int NrUnits { get; }
    public int UnitSize { get; }
    public int UnitPages { get; }
    public int StaticSize { get; }
    public int ReservedSize { get; }
    public int DynSize { get; }
    public int AtomSize { get; }
    public int AllocSize { get; }
    public bool FirstChunkEmbedded { get; }

    /// <summary>The static area's host address in unit 0.</summary>
    public nint StaticBase { get; }

    /// <summary>pcpu_nr_pages: pages used for per-CPU memory (populated pages × units).</summary>
    public long NrPages
    {
        get
        {
            lock (_lock)
            {
                return _nrPopulated * NrUnits;
            }
        }
    }

    /// <summary>The chunks now in existence (first chunk included, reserved chunk not).</summary>
    public int NrChunks
    {
        get
        {
            lock (_lock)
            {
                return (int)_stats.NrChunks;
            }
        }
    }

    // ------------------------------------------------------------------ static variables

    /// <summary>Places a DEFINE_PER_CPU variable in the static area.</summary>
    /// <returns>Its unit-0 address.</returns>
    public nint DefineStatic(int size, int align, string name)
    {
        lock (_lock)
        {
            int off = (_staticUsed + align - 1) & -align;
            if (off + size > StaticSize)
            {
                throw new InvalidOperationException($"percpu: the static area ({StaticSize} bytes, {_staticUsed} used) has no room for "
                    + $"{name} ({size} bytes); use AllocPercpu for dynamic per-CPU data");
            }
            _staticUsed = off + size;
            nint p = StaticBase + off;
            Zero(p, size);
            return p;
        }
    }

    /// <summary>Bytes of the static area given to DEFINE_PER_CPU variables.</summary>
    public int StaticUsed
    {
        get
        {
            lock (_lock)
            {
                return _staticUsed;
            }
        }
    }

    // ------------------------------------------------------------------ allocation

    /// <summary>pcpu_alloc: <paramref name="size"/> zeroed bytes in every unit.</summary>
    /// <returns>The unit-0 address, or 0 (with the kernel's warning unless __GFP_NOWARN).</returns>
    public nint Alloc(nuint size, nuint align, bool reserved, Gfp gfp, string caller)
    {
        // GFP_KERNEL or bust: anything less may not create a chunk (pcpu_alloc's is_atomic).
        bool isAtomic = (gfp & Gfp.Kernel) != Gfp.Kernel;
        bool doWarn = (gfp & Gfp.NoWarn) == 0;
        // The map's granularity is also the least alignment.
        if (align < PcpuChunk.MinAllocSize)
        {
            align = PcpuChunk.MinAllocSize;
        }
        size = (size + PcpuChunk.MinAllocSize - 1) & ~(nuint)(PcpuChunk.MinAllocSize - 1);
        if (size == 0 || size > MinUnitSize || align > PhysMem.PageSize || (align & (align - 1)) != 0)
        {
            if (doWarn)
            {
                _log.Printk($"WARNING: CPU: {_cpus.Current} at mm/percpu.c pcpu_alloc: illegal size ({size}) or align ({align}) for percpu allocation");
            }
            return 0;
        }
        int bits = (int)size >> PcpuChunk.MinAllocShift;
        int bitAlign = (int)align >> PcpuChunk.MinAllocShift;
        string err;
        lock (_lock)
        {
            if (reserved && _reservedChunk is { } rc)
            {
                int fit = rc.FindBlockFit(bits, bitAlign);
                int off = fit < 0 ? -1 : rc.AllocArea(bits, bitAlign, fit);
                if (off >= 0)
                {
                    return AreaFound(rc, off, (int)size);
                }
                err = "alloc from reserved chunk failed";
            }
            else
            {
                while (true)
                {
                    for (int slot = SizeToSlot((int)size); slot <= _freeSlot; slot++)
                    {
                        // A copy: a failed fit may move the chunk to slot 0.
                        foreach (var chunk in _slots[slot].ToArray())
                        {
                            int fit = chunk.FindBlockFit(bits, bitAlign);
                            if (fit < 0)
                            {
                                if (slot < SlotFailThreshold)
                                {
                                    Move(chunk, 0, front: false);
                                }
                                continue;
                            }
                            int off = chunk.AllocArea(bits, bitAlign, fit);
                            if (off >= 0)
                            {
                                return AreaFound(chunk, off, (int)size);
                            }
                        }
                    }
                    if (isAtomic)
                    {
                        err = "atomic alloc failed, no space left";
                        break;
                    }
                    if (_slots[_freeSlot].Count > 0)
                    {
                        // A wholly free chunk exists yet nothing fitted: the request cannot fit any chunk.
                        err = "no chunk can hold the request";
                        break;
                    }
                    var created = CreateChunk();
                    if (created is null)
                    {
                        err = "failed to allocate new chunk";
                        break;
                    }
                    Relocate(created);
                }
            }
        }
        if (doWarn)
        {
            _log.Printk($"percpu: allocation failed, size={size} align={align} atomic={(isAtomic ? 1 : 0)}, {err}");
        }
        return 0;
    }

    private nint AreaFound(PcpuChunk chunk, int off, int size)
    {
        int oslot = chunk.Slot;
        _stats.NrAlloc++;
        _stats.NrCurAlloc++;
        _stats.NrMaxAlloc = Math.Max(_stats.NrMaxAlloc, _stats.NrCurAlloc);
        _stats.MinAllocSize = Math.Min(_stats.MinAllocSize, size);
        _stats.MaxAllocSize = Math.Max(_stats.MaxAllocSize, size);
        chunk.NrAlloc++;
        chunk.MaxAllocSize = Math.Max(chunk.MaxAllocSize, size);
        if (chunk != _reservedChunk)
        {
            RelocateFrom(chunk, oslot);
        }
        nint p = chunk.BaseAddr + off;
        for (int cpu = 0; cpu < NrUnits; cpu++)
        {
            Zero(p + (nint)cpu * UnitSize, size);
        }
        return p;
    }

    /// <summary>free_percpu: frees the allocation whose unit-0 address is <paramref name="p"/>.</summary>
    /// <returns>Null, or the report of a bad free (nothing changed).</returns>
    public string? Free(nint p)
    {
        List<PcpuChunk>? toDestroy = null;
        lock (_lock)
        {
            var chunk = ChunkOf(p);
            if (chunk is null)
            {
                return $"free_percpu: 0x{p:x} is not in any per-CPU chunk";
            }
            int oslot = chunk.Slot;
            int freed = chunk.FreeArea((int)(p - chunk.BaseAddr));
            if (freed < 0)
            {
                return $"free_percpu: 0x{p:x} is not the start of a per-CPU allocation (double free or a pointer inside an area)";
            }
            _stats.NrDealloc++;
            _stats.NrCurAlloc--;
            chunk.NrAlloc--;
            if (chunk == _reservedChunk)
            {
                return null;
            }
            RelocateFrom(chunk, oslot);
            // A second wholly free chunk: pcpu_balance_free destroys all but the first of them.
            if (chunk.Slot == _freeSlot && _slots[_freeSlot].Count > 1)
            {
                toDestroy = [.. _slots[_freeSlot].Skip(1)];
                foreach (var c in toDestroy)
                {
                    Unlink(c);
                    _nrPopulated -= UnitPages;
                    _stats.NrChunks--;
                }
            }
        }
        if (toDestroy is not null)
        {
            foreach (var c in toDestroy)
            {
                // pcpu_destroy_chunk: the area and its frames go back (outside the lock: vfree may sleep).
                _vmap.Unmap(c.BaseAddr, deallocatePages: true, "vfree");
            }
        }
        return null;
    }

    /// <summary>pcpu_chunk_addr_search.</summary>
    private PcpuChunk? ChunkOf(nint p)
    {
        if (_reservedChunk is { } rc && rc.Contains(p))
        {
            return rc;
        }
        foreach (var list in _slots)
        {
            foreach (var c in list)
            {
                if (c.Contains(p))
                {
                    return c;
                }
            }
        }
        return null;
    }

    /// <summary>pcpu_create_chunk (percpu-vm.c): a chunk of unit_size per unit, its frames mapped into the
    /// vmalloc area. Every page is populated at once (the kernel populates pages as allocations reach them).</summary>
    private PcpuChunk? CreateChunk()
    {
        int pages = UnitPages * NrUnits;
        var frames = new Page[pages];
        for (int i = 0; i < pages; i++)
        {
            // pcpu_alloc_pages: highmem is fine, the pages are only reached through the mapping.
            frames[i] = _pa.AllocPages(Gfp.Kernel | Gfp.HighMem | Gfp.NoWarn, 0, -1);
            if (frames[i].IsNull)
            {
                for (int j = 0; j < i; j++)
                {
                    FreePage(frames[j]);
                }
                return null;
            }
        }
        nint area = Vmap(frames, "pcpu_get_vm_areas");
        if (area == 0)
        {
            foreach (var f in frames)
            {
                FreePage(f);
            }
            return null;
        }
        _nrPopulated += UnitPages;
        _stats.NrChunks++;
        _stats.NrMaxChunks = Math.Max(_stats.NrMaxChunks, _stats.NrChunks);
        return new PcpuChunk(UnitPages, 0, 0) { BaseAddr = area };
    }

    // ------------------------------------------------------------------ slots

    /// <summary>__pcpu_size_to_slot.</summary>
    private static int SizeToSlotRaw(int size) => Math.Max(32 - System.Numerics.BitOperations.LeadingZeroCount((uint)size) - SlotBaseShift + 2, 1);

    /// <summary>pcpu_size_to_slot: a wholly free unit goes to the free slot.</summary>
    private int SizeToSlot(int size) => size == UnitSize ? _freeSlot : SizeToSlotRaw(size);

    /// <summary>pcpu_chunk_slot.</summary>
    private int ChunkSlot(PcpuChunk c)
    {
        var md = c.ChunkMd;
        return c.FreeBytes < PcpuChunk.MinAllocSize || md.ContigHint == 0 ? 0 : SizeToSlot(md.ContigHint * PcpuChunk.MinAllocSize);
    }

    private void Relocate(PcpuChunk c) => RelocateFrom(c, -1);

    /// <summary>pcpu_chunk_relocate: a chunk that gained room goes to the front of its new slot, one that lost
    /// room to the back.</summary>
    private void RelocateFrom(PcpuChunk c, int oslot)
    {
        int nslot = ChunkSlot(c);
        if (oslot != nslot || c.Slot < 0)
        {
            Move(c, nslot, front: oslot < nslot);
        }
    }

    private void Move(PcpuChunk c, int slot, bool front)
    {
        Unlink(c);
        if (front)
        {
            _slots[slot].Insert(0, c);
        }
        else
        {
            _slots[slot].Add(c);
        }
        c.Slot = slot;
    }

    private void Unlink(PcpuChunk c)
    {
        if (c.Slot >= 0)
        {
            _slots[c.Slot].Remove(c);
            c.Slot = -1;
        }
    }

    // ------------------------------------------------------------------ reports

    /// <summary>The global statistics of percpu_stats.</summary>
    internal struct PcpuStats
    {
        public long NrAlloc, NrDealloc, NrCurAlloc, NrMaxAlloc, NrChunks, NrMaxChunks, MinAllocSize, MaxAllocSize;
    }

    /// <summary>One chunk's figures as percpu_stats prints them.</summary>
    internal readonly record struct ChunkReport(string Title, int NrAlloc, int MaxAllocSize, int EmptyPopPages, int FirstBit,
        int FreeBytes, int ContigBytes, List<(int Bytes, bool Allocated)> Areas);

    /// <summary>A consistent snapshot of the statistics and of every chunk, in the report's order (reserved chunk,
    /// then the slot lists from slot 0).</summary>
    public (PcpuStats Stats, int EmptyPopPages, List<ChunkReport> Chunks) Snapshot()
    {
        lock (_lock)
        {
            var chunks = new List<ChunkReport>();
            int empty = 0;
            if (_reservedChunk is { } rc)
            {
                chunks.Add(Report("Chunk: <- Reserved Chunk", rc));
            }
            for (int slot = 0; slot < _slots.Length; slot++)
            {
                foreach (var c in _slots[slot])
                {
                    empty += c.EmptyPages;
                    chunks.Add(Report(c == _firstChunk ? "Chunk: <- First Chunk" : slot == _sidelinedSlot ? "Chunk (sidelined):" : "Chunk:", c));
                }
            }
            return (_stats, empty, chunks);
        }
    }

    private static ChunkReport Report(string title, PcpuChunk c) =>
        new(title, c.NrAlloc, c.MaxAllocSize, c.EmptyPages, c.ChunkMd.FirstFree, c.FreeBytes,
            c.ChunkMd.ContigHint * PcpuChunk.MinAllocSize, c.Areas());

    /// <summary>Every chunk's map checked against its hints (tests).</summary>
    public string? Validate()
    {
        lock (_lock)
        {
            foreach (var c in _slots.SelectMany(s => s).Append(_reservedChunk).OfType<PcpuChunk>())
            {
                if (c.Validate() is { } problem)
                {
                    return problem;
                }
                if (c.Slot >= 0 && c.Slot != ChunkSlot(c) && c.Slot != 0)
                {
                    return $"chunk at 0x{c.BaseAddr:x} is on slot {c.Slot}, belongs on {ChunkSlot(c)}";
                }
            }
            return null;
        }
    }

    private static int PageAlign(int size) => (size + PhysMem.PageSize - 1) & ~(PhysMem.PageSize - 1);

    private static unsafe void Zero(nint p, int size) => new Span<byte>((void*)p, size).Clear();
}
