// Physical memory: the memfd arena that holds every frame's bytes, the memmap
// (the struct page array) and the direct map (lowmem mapped once, contiguously).
// Pageblock tables (owning zone, migrate type) sit here too, one byte each per
// pageblock, so a frame's zone is found without touching its struct page.
// Invariants: pfn < MaxPfn for every frame; frames below LowmemPfns (and only
// those) have a direct-map address. Immutable after construction except the
// migrate-type table, which is written under the owning zone's lock, and the
// untouched bits, which boot sets and which only ever clear after it (atomically,
// since neighbours share a word; a frame's own bit is read by its owner alone).
using System.Runtime.CompilerServices;

namespace Kmem.Physical;

/// <summary>The machine's physical memory: frames, their metadata and the direct map.</summary>
internal sealed unsafe class PhysMem : IDisposable
{
    public const int PageShift = 12;
    public const int PageSize = 1 << PageShift;
    /// <summary>End of an intrusive pfn list.</summary>
    public const uint NoPfn = uint.MaxValue;

    private readonly int _fd;
    private readonly PageFrame* _memmap;
    private readonly nuint _memmapBytes;
    private readonly byte* _directMap;
    private readonly nuint _directMapBytes;
    private readonly ushort[] _blockZone;
    /// <summary>End pfn of each zone, by zone index (zones are registered in index order).</summary>
    private uint[] _zoneEnd = [];
    private readonly byte[] _blockMigrate;
    // One bit per lowmem frame: set while nothing has written the frame since the memfd was made, so it still
    // reads as zeros and ZeroFrames need not clear it (the clear would also fault the host page in for nothing).
    private readonly ulong[] _untouched;
    private bool _disposed;

    /// <summary>Kmem's physical memory needs Linux: memfd_create, mmap MAP_FIXED of the memfd, and the host's
    /// 4 KiB pages. Checked on Linux x86-64; another Linux architecture with 4 KiB pages is allowed.</summary>
    /// <exception cref="PlatformNotSupportedException">The host is not Linux, or its page size is not 4 KiB.</exception>
    public static void ThrowIfUnsupportedHost()
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException(
                $"Kmem needs Linux (memfd_create and mmap MAP_FIXED of a memfd back its physical memory); this host is {System.Runtime.InteropServices.RuntimeInformation.OSDescription}");
        }
        if (Environment.SystemPageSize != PageSize)
        {
            throw new PlatformNotSupportedException(
                $"Kmem needs a host with {PageSize}-byte pages (its frames are mapped one host page each); this host's pages are {Environment.SystemPageSize} bytes");
        }
    }

    /// <param name="maxPfn">Number of frames (RAM size / page size).</param>
    /// <param name="lowmemPfns">Frames [0, lowmemPfns) are in the direct map.</param>
    /// <param name="pageblockOrder">log2 of pages per pageblock.</param>
    public PhysMem(uint maxPfn, uint lowmemPfns, int pageblockOrder)
    {
        MaxPfn = maxPfn;
        LowmemPfns = Math.Min(lowmemPfns, maxPfn);
        PageblockOrder = pageblockOrder;
        ThrowIfUnsupportedHost();
        _fd = Libc.MemfdCreate("kmem-physmem");
        try
        {
            Libc.Ftruncate(_fd, (long)maxPfn << PageShift);
            _memmapBytes = (nuint)maxPfn * (nuint)sizeof(PageFrame);
            // Anonymous and NORESERVE: metadata of frames never touched costs nothing.
            _memmap = (PageFrame*)Libc.Mmap(0, _memmapBytes, Libc.ProtRead | Libc.ProtWrite,
                Libc.MapPrivate | Libc.MapAnonymous | Libc.MapNoReserve, -1, 0);
            _directMapBytes = (nuint)LowmemPfns << PageShift;
            _directMap = (byte*)Libc.Mmap(0, _directMapBytes, Libc.ProtRead | Libc.ProtWrite,
                Libc.MapShared | Libc.MapNoReserve, _fd, 0);
        }
        catch
        {
            Release();
            throw;
        }
        int blocks = (int)((maxPfn + (1u << pageblockOrder) - 1) >> pageblockOrder);
        _blockZone = new ushort[blocks];
        Array.Fill(_blockZone, ushort.MaxValue);
        _blockMigrate = new byte[blocks];
        _untouched = new ulong[(LowmemPfns + 63) / 64];
    }

    /// <summary>The machine's lifetime: every entry point enters it before touching these frames.</summary>
    public MachineLifetime Lifetime { get; } = new();

    /// <summary>Number of frames.</summary>
    public uint MaxPfn { get; }

    /// <summary>Frames below this pfn are in the direct map.</summary>
    public uint LowmemPfns { get; }

    /// <summary>log2 of the pageblock size in pages.</summary>
    public int PageblockOrder { get; }

    /// <summary>The memfd holding every frame's bytes (for later mapping layers).</summary>
    public int Fd => _fd;

    /// <summary>Host address of the direct map (frame 0).</summary>
    public nint DirectMapBase => (nint)_directMap;

    /// <summary>Host bytes used for metadata per frame: struct page plus the pageblock tables.</summary>
    public static double MetadataBytesPerFrame(int pageblockOrder) =>
        sizeof(PageFrame) + (double)(sizeof(ushort) + sizeof(byte)) / (1 << pageblockOrder);

    /// <summary>The struct page of <paramref name="pfn"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref PageFrame Frame(uint pfn) => ref _memmap[pfn];

    /// <summary>compound_head for the direct-map offset <paramref name="rel"/>, which the caller has checked lies
    /// below <see cref="LowmemPfns"/> pages (the slab fast paths' lookup, without VirtToPfn's sentinel): the head
    /// frame, and its pfn in <paramref name="head"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref PageFrame DirectMapHead(nuint rel, out uint head)
    {
        head = (uint)(rel >> PageShift);
        ref PageFrame f = ref _memmap[head];
        if ((f.Flags & PageFlags.Tail) != 0)
        {
            head = (uint)f.Private; // a tail frame's Private is its head's pfn
            f = ref _memmap[head];
        }
        return ref f;
    }

    /// <summary>Direct-map address of a lowmem frame, or 0 for a highmem frame.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint PageAddress(uint pfn) => pfn < LowmemPfns ? (nint)(_directMap + ((nuint)pfn << PageShift)) : 0;

    /// <summary>The frame a direct-map address falls in, or <see cref="NoPfn"/> when outside it.</summary>
    public uint VirtToPfn(nint address)
    {
        nuint off = (nuint)address - (nuint)_directMap;
        return off < _directMapBytes ? (uint)(off >> PageShift) : NoPfn;
    }

    /// <summary>Index of the zone owning <paramref name="pfn"/>: the zone of its pageblock's first frame,
    /// or a later one when a zone boundary falls inside the pageblock (x86-32's lowmem end does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int ZoneIndexOf(uint pfn)
    {
        int z = _blockZone[pfn >> PageblockOrder];
        while (pfn >= _zoneEnd[z])
        {
            z++;
        }
        return z;
    }

    /// <summary>Records zone <paramref name="zoneIndex"/> as [start, end). Zones are registered in index
    /// order, which is also physical order, empty ones included.</summary>
    public void RegisterZone(int zoneIndex, uint startPfn, uint endPfn)
    {
        if (_zoneEnd.Length <= zoneIndex)
        {
            Array.Resize(ref _zoneEnd, zoneIndex + 1);
        }
        _zoneEnd[zoneIndex] = endPfn;
        for (uint b = startPfn >> PageblockOrder; b < ((endPfn + (1u << PageblockOrder) - 1) >> PageblockOrder); b++)
        {
            if (_blockZone[b] == ushort.MaxValue)
            {
                _blockZone[b] = (ushort)zoneIndex;
            }
        }
    }

    /// <summary>get_pageblock_migratetype.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public MigrateType PageblockMigratetype(uint pfn) => (MigrateType)_blockMigrate[pfn >> PageblockOrder];

    /// <summary>set_pageblock_migratetype; caller holds the zone lock.</summary>
    public void SetPageblockMigratetype(uint pfn, MigrateType mt) => _blockMigrate[pfn >> PageblockOrder] = (byte)mt;

    /// <summary>Fills a frame range with zeros: lowmem through the direct map, leaving alone the frames nothing
    /// has written yet (<see cref="MarkUntouched"/>); highmem through the memfd, which gives host memory back.</summary>
    public void ZeroFrames(uint pfn, int count)
    {
        if (pfn + (uint)count <= LowmemPfns)
        {
            for (uint end = pfn + (uint)count; pfn < end; pfn++)
            {
                if ((_untouched[pfn >> 6] & (1UL << (int)(pfn & 63))) == 0)
                {
                    new Span<byte>(_directMap + ((nuint)pfn << PageShift), PageSize).Clear();
                }
            }
            return;
        }
        Libc.PunchHole(_fd, (long)pfn << PageShift, (long)count << PageShift);
    }

    /// <summary>Boot: frames [<paramref name="start"/>, <paramref name="end"/>) go to the buddy lists before anything
    /// wrote them (memblock_free_all of memory no boot reservation took).</summary>
    public void MarkUntouched(uint start, uint end)
    {
        for (end = Math.Min(end, LowmemPfns); start < end; start++)
        {
            _untouched[start >> 6] |= 1UL << (int)(start & 63);
        }
    }

    /// <summary>Frames [<paramref name="pfn"/>, +<paramref name="count"/>) are handed out: their owner may write them
    /// from now on. Every path that takes frames off the free lists for an owner calls it (prep_new_page and
    /// compaction's isolation), after any <see cref="ZeroFrames"/> of the allocation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void HandOut(uint pfn, int count)
    {
        for (uint end = Math.Min(pfn + (uint)count, LowmemPfns); pfn < end; pfn++)
        {
            ulong bit = 1UL << (int)(pfn & 63);
            if ((_untouched[pfn >> 6] & bit) != 0)
            {
                Interlocked.And(ref _untouched[pfn >> 6], ~bit);
            }
        }
    }

    /// <summary>Whether <see cref="Dispose"/> has run: the arena and every frame in it are gone.</summary>
    internal bool IsDisposed => Volatile.Read(ref _disposed);

    /// <summary>get_order (include/asm-generic/getorder.h): the smallest order whose block holds
    /// <paramref name="size"/> bytes.</summary>
    /// <remarks>Exact for every size, the largest included (no rounding that could wrap): a size past what any
    /// zone can hold gives an order above MAX_ORDER, which the allocators then refuse.</remarks>
    internal static int GetOrder(nuint size)
    {
        nuint pages = size / PageSize + (size % PageSize != 0 ? 1u : 0u);
        return pages <= 1 ? 0 : 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)pages - 1);
    }

    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            Release();
        }
    }

    private void Release()
    {
        if (_directMap != null)
        {
            Libc.Munmap((nint)_directMap, _directMapBytes);
        }
        if (_memmap != null)
        {
            Libc.Munmap((nint)_memmap, _memmapBytes);
        }
        Libc.Close(_fd);
    }
}
