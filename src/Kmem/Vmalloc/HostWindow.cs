// The host side of one machine's vmalloc area: the address space reserved for it
// and the host mappings of the memfd inside it, which stand for the kernel's PTEs
// and TLB entries. A host mapping costs a system call and a VMA out of the
// process's vm.max_map_count, where the kernel writes a PTE; so, as the kernel
// defers its TLB flush to the lazy purge, a freed area's host mappings stay in
// place (stale) and a later area that maps the same frame at the same address
// reuses them with no call at all. Stale mappings are given back on demand:
// when the map budget runs short, on vm_unmap_aliases, and at Dispose.
// Each page of the window is in one of three states: R (still the PROT_NONE
// reservation: whole 2 MiB chunks never used), H (a hole: a guard page, or a
// page whose mapping was taken away; takes no VMA) or M (the memfd mapped at a
// frame, live when a busy area maps it, stale otherwise). Invariants: Vmas is
// the number of VMAs the host holds for the window by the kernel's merge rules
// (R next to R, or frame f+1 right after frame f with the same protection, are
// one VMA); a live page is mapped on the host exactly as the shadow says.
// Holes are never mapped with MAP_FIXED nor unmapped: another mapping of the
// process could have taken one, so they are filled with MAP_FIXED_NOREPLACE,
// and the window is placed far below the host's own mmap area to keep others
// out of it. Locking: none; VmapSpace holds its lock around every call.
using Kmem.Physical;

namespace Kmem.Vmalloc;

/// <summary>The host reservation of a vmalloc area and the memfd mappings in it, as a shadow of per-page states.</summary>
internal sealed class HostWindow
{
    /// <summary>Pages per chunk: the reservation is given up for holes a chunk (2 MiB) at a time.</summary>
    public const int ChunkPages = 512;
    private const int ChunkShift = 9;
    /// <summary>MAP_FIXED_NOREPLACE (Linux 4.17): fails with EEXIST instead of replacing a mapping.</summary>
    private const int MapFixedNoReplace = 0x100000;
    private const ulong Writable = 1UL << 40;
    private const ulong Live = 1UL << 41;
    /// <summary>The state of a page in a chunk still reserved.</summary>
    private const ulong Reserved = ulong.MaxValue;
    private const ulong Hole = 0;
    /// <summary>Where the first window is placed: 16 TiB, far below the host's mmap area (near 128 TiB) and
    /// its program and heap (near 85 TiB), so that the host's own top-down placement never reaches a hole.</summary>
    private const ulong FirstHint = 0x1000_0000_0000;
    private const ulong HintLimit = 0x5000_0000_0000;
    /// <summary>The hint range is cut in slots of at least this size (an X64 machine's window).</summary>
    private const ulong SlotBytes = VmallocLayout.X64HostWindow;
    private static long s_windows;

    private readonly int _fd;
    private readonly long _pages;
    /// <summary>Per chunk: null while reserved, else one entry per page: 0 a hole, else (pfn + 1) with the
    /// Writable and Live bits.</summary>
    private readonly ulong[]?[] _chunks;

    private HostWindow(nint host, long pages, int fd)
    {
        Base = host;
        _pages = pages;
        _fd = fd;
        _chunks = new ulong[(pages + ChunkPages - 1) >> ChunkShift][];
        Vmas = 1;
    }

    /// <summary>The host address of the window's first page.</summary>
    public nint Base { get; }

    /// <summary>VMAs the host holds for the window now: reservation pieces and memfd mappings.</summary>
    public int Vmas { get; private set; }

    /// <summary>Pages mapped on the host that no busy area maps.</summary>
    public long StalePages { get; private set; }

    /// <summary>mmap and munmap calls made for the window since it was reserved.</summary>
    public long HostCalls { get; private set; }

    /// <summary>Reserves <paramref name="bytes"/> of address space (PROT_NONE, no memory) for a window.</summary>
    /// <returns>The window, or null when the host refuses.</returns>
    public static HostWindow? Reserve(ulong bytes, int fd)
    {
        // One slot of the hint range per window, in turn; a hint still in use is simply not honoured.
        ulong slot = Math.Max((bytes + (1UL << 30) - 1) & ~((1UL << 30) - 1), SlotBytes);
        ulong slots = Math.Max(1, (HintLimit - FirstHint) / slot);
        ulong hint = FirstHint + (ulong)(Interlocked.Increment(ref s_windows) - 1) % slots * slot;
        nint host = Libc.Mmap((nint)hint, (nuint)bytes, Libc.ProtNone,
            Libc.MapPrivate | Libc.MapAnonymous | Libc.MapNoReserve, -1, 0, mayFail: true);
        return host == 0 ? null : new HostWindow(host, (long)(bytes >> PhysMem.PageShift), fd);
    }

    /// <summary>VMAs that <see cref="Map"/> would add (negative: give back) for these pages at page
    /// <paramref name="first"/>, with a guard page after them when <paramref name="guard"/>; nothing changes.</summary>
    public int MapDelta(long first, ReadOnlySpan<uint> pfns, bool writable, bool guard)
    {
        int delta = ClaimDelta(first, pfns.Length + (guard ? 1 : 0));
        if (delta != 0)
        {
            // The claim changes the states the mapping's delta is reckoned from: an upper bound is enough.
            return delta + pfns.Length + 2;
        }
        Span<ulong> wanted = pfns.Length + 1 <= 256 ? stackalloc ulong[pfns.Length + 1] : new ulong[pfns.Length + 1];
        int n = Wanted(pfns, writable, guard, wanted);
        return Starts(first, n, wanted) - Starts(first, n, default);
    }

    /// <summary>Maps the frames at page <paramref name="first"/> of the window: pages already mapped to the same
    /// frame are reused, every other run of contiguous frames takes one mmap; the guard page after them, when
    /// <paramref name="guard"/>, becomes a hole. The caller has charged <see cref="MapDelta"/>.</summary>
    /// <returns>True, or false when the host refused a call (its own map limit, or a hole taken by another
    /// mapping): then the area's pages are left stale or holes, and <see cref="Vmas"/> says what is held.</returns>
    public bool Map(long first, ReadOnlySpan<uint> pfns, bool writable, bool guard)
    {
        if (!Claim(first, pfns.Length + (guard ? 1 : 0)))
        {
            return false;
        }
        int length = pfns.Length + (guard ? 1 : 0);
        int before = Starts(first, length, default);
        int prot = writable ? Libc.ProtRead | Libc.ProtWrite : Libc.ProtRead;
        bool ok = true;
        for (int i = 0; i < pfns.Length && ok;)
        {
            ulong want = Entry(pfns[i], writable);
            ulong old = Get(first + i);
            VmBug.On((old & Live) != 0); // the range was free: no busy area maps it
            if ((old & ~Live) == want)
            {
                Set(first + i, want | Live);
                StalePages--;
                i++;
                continue;
            }
            // A run: frames that follow each other, none mapped already, all holes or all ours.
            bool hole = old == Hole;
            int j = i + 1;
            while (j < pfns.Length && pfns[j] == pfns[j - 1] + 1 && (Get(first + j) & ~Live) != Entry(pfns[j], writable)
                && (Get(first + j) == Hole) == hole)
            {
                j++;
            }
            ok = MapRun(first + i, j - i, pfns[i], prot, hole);
            if (ok)
            {
                for (int k = i; k < j; k++)
                {
                    StalePages -= Get(first + k) == Hole ? 0 : 1;
                    Set(first + k, Entry(pfns[k], writable) | Live);
                }
            }
            i = j;
        }
        if (ok && guard && Get(first + pfns.Length) != Hole)
        {
            Unmap(first + pfns.Length, 1);
            StalePages--;
        }
        Vmas += Starts(first, length, default) - before;
        if (!ok)
        {
            Release(first, pfns.Length);
        }
        return ok;
    }

    /// <summary>The area's pages are no longer live: their mappings stay, stale, until reused or flushed.</summary>
    public void Release(long first, int count)
    {
        for (long p = first; p < first + count; p++)
        {
            ulong e = Get(p);
            if ((e & Live) != 0 && e != Reserved)
            {
                Set(p, e & ~Live);
                StalePages++;
            }
        }
    }

    /// <summary>Unmaps every stale mapping (one munmap per run of them), leaving holes.</summary>
    /// <returns>The VMAs given back.</returns>
    public int FlushStale()
    {
        if (StalePages == 0)
        {
            return 0;
        }
        int vmasBefore = Vmas;
        for (long c = 0; c < _chunks.Length; c++)
        {
            if (_chunks[c] is not { } chunk)
            {
                continue;
            }
            long chunkFirst = c << ChunkShift;
            for (int i = 0; i < chunk.Length;)
            {
                if (!IsStale(chunk[i]))
                {
                    i++;
                    continue;
                }
                int j = i + 1;
                while (j < chunk.Length && IsStale(chunk[j]))
                {
                    j++;
                }
                int before = Starts(chunkFirst + i, j - i, default);
                Unmap(chunkFirst + i, j - i);
                StalePages -= j - i;
                Vmas += Starts(chunkFirst + i, j - i, default) - before;
                i = j;
            }
        }
        return vmasBefore - Vmas;
    }

    /// <summary>Gives the whole window back: every reservation piece and mapping, never a hole.</summary>
    public void Dispose()
    {
        for (long c = 0; c < _chunks.Length;)
        {
            if (_chunks[c] is null)
            {
                long d = c + 1;
                while (d < _chunks.Length && _chunks[d] is null)
                {
                    d++;
                }
                Munmap(c << ChunkShift, (int)(Math.Min(d << ChunkShift, _pages) - (c << ChunkShift)));
                c = d;
                continue;
            }
            var chunk = _chunks[c]!;
            for (int i = 0; i < chunk.Length;)
            {
                if (chunk[i] == Hole)
                {
                    i++;
                    continue;
                }
                int j = i + 1;
                while (j < chunk.Length && chunk[j] != Hole)
                {
                    j++;
                }
                Munmap((c << ChunkShift) + i, j - i);
                i = j;
            }
            c++;
        }
        Vmas = 0;
        StalePages = 0;
    }

    private static bool IsStale(ulong e) => e != Hole && (e & Live) == 0;

    private static ulong Entry(uint pfn, bool writable) => ((ulong)pfn + 1) | (writable ? Writable : 0);

    private static int Wanted(ReadOnlySpan<uint> pfns, bool writable, bool guard, Span<ulong> wanted)
    {
        for (int i = 0; i < pfns.Length; i++)
        {
            wanted[i] = Entry(pfns[i], writable);
        }
        if (guard)
        {
            wanted[pfns.Length] = Hole;
        }
        return pfns.Length + (guard ? 1 : 0);
    }

    /// <summary>How many of pages [first, first + length], the page after the range included, start a VMA; with
    /// <paramref name="over"/> (not empty) standing for the states of [first, first + length).</summary>
    private int Starts(long first, int length, ReadOnlySpan<ulong> over)
    {
        int starts = 0;
        long end = Math.Min(first + length, _pages - 1);
        ulong left = first > 0 ? Key(Get(first - 1)) : Hole;
        for (long p = first; p <= end; p++)
        {
            ulong e = Key(over.IsEmpty || p >= first + length ? Get(p) : over[(int)(p - first)]);
            if (e != Hole && !(left == Reserved ? e == Reserved : left != Hole && e == left + 1))
            {
                starts++;
            }
            left = e;
        }
        return starts;
    }

    private static ulong Key(ulong e) => e == Reserved ? e : e & ~Live;

    /// <summary>VMAs added by giving up the reservation of the chunks that [first, first + length) touches.</summary>
    private int ClaimDelta(long first, int length)
    {
        int delta = 0;
        for (long c = first >> ChunkShift; c <= (first + length - 1) >> ChunkShift; c++)
        {
            if (_chunks[c] is null)
            {
                bool prevReserved = c > 0 && _chunks[c - 1] is null;
                bool nextReserved = c + 1 < _chunks.Length && _chunks[c + 1] is null;
                delta += (nextReserved ? 1 : 0) - (prevReserved ? 0 : 1);
            }
        }
        return delta;
    }

    /// <summary>Turns the reserved chunks that [first, first + length) touches into holes.</summary>
    private bool Claim(long first, int length)
    {
        for (long c = first >> ChunkShift; c <= (first + length - 1) >> ChunkShift; c++)
        {
            if (_chunks[c] is null)
            {
                int delta = ClaimDelta(c << ChunkShift, 1);
                Munmap(c << ChunkShift, (int)(Math.Min((c + 1) << ChunkShift, _pages) - (c << ChunkShift)));
                _chunks[c] = new ulong[ChunkPages];
                Vmas += delta;
            }
        }
        return true;
    }

    private ulong Get(long page) => _chunks[page >> ChunkShift] is { } chunk ? chunk[page & (ChunkPages - 1)] : Reserved;

    private void Set(long page, ulong e) => _chunks[page >> ChunkShift]![page & (ChunkPages - 1)] = e;

    private bool MapRun(long page, int count, uint pfn, int prot, bool hole)
    {
        nint at = Base + (nint)(page << PhysMem.PageShift);
        nuint bytes = (nuint)count << PhysMem.PageShift;
        HostCalls++;
        nint p = Libc.Mmap(at, bytes, prot, Libc.MapShared | (hole ? MapFixedNoReplace : Libc.MapFixed), _fd,
            (long)pfn << PhysMem.PageShift, mayFail: true);
        if (p != at && p != 0)
        {
            // A kernel without MAP_FIXED_NOREPLACE took it as a hint and mapped elsewhere.
            Libc.Munmap(p, bytes);
        }
        return p == at;
    }

    /// <summary>Unmaps pages the window holds (stale or live mappings), leaving holes.</summary>
    private void Unmap(long page, int count)
    {
        Munmap(page, count);
        for (long p = page; p < page + count; p++)
        {
            Set(p, Hole);
        }
    }

    private void Munmap(long page, int count)
    {
        HostCalls++;
        Libc.Munmap(Base + (nint)(page << PhysMem.PageShift), (nuint)count << PhysMem.PageShift);
    }
}
