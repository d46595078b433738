// Where the vmalloc area sits in the kernel's address space for each preset
// (arch/x86/include/asm/pgtable_64_types.h, pgtable_32_areas.h) and how much of
// it the host backs. The single source of truth for VMALLOC_START/VMALLOC_END:
// /proc/meminfo's VmallocTotal and the vmap allocator both read it. Immutable.
using Kmem.Physical;

namespace Kmem.Vmalloc;

/// <summary>The vmalloc area's bounds and the page-table geometry that maps it.</summary>
internal sealed class VmallocLayout
{
    /// <summary>VMALLOC_START with 4-level paging and no KASLR on x86-64.</summary>
    public const ulong X64Start = 0xffffc90000000000;
    /// <summary>VMALLOC_SIZE_TB = 32 on 4-level x86-64.</summary>
    public const ulong X64Size = 32UL << 40;
    /// <summary>VMALLOC_END on the 32-bit presets: PKMAP_BASE less two guard pages.</summary>
    public const ulong X86End = 0xfeffe000;
    /// <summary>VMALLOC_OFFSET: the gap after high_memory that catches stray direct-map accesses.</summary>
    public const ulong VmallocOffset = 8UL << 20;
    /// <summary>How much address space an X64 machine reserves on the host for its vmalloc area: the
    /// kernel's 32 TiB cannot be reserved, and no machine Kmem boots needs more than this.</summary>
    public const ulong X64HostWindow = 64UL << 30;

    private VmallocLayout(ulong start, ulong end, ulong hostBytes, int[] shifts, int[] bits)
    {
        Start = start;
        End = end;
        HostBytes = hostBytes;
        LevelShifts = shifts;
        LevelBits = bits;
    }

    /// <summary>VMALLOC_START.</summary>
    public ulong Start { get; }

    /// <summary>VMALLOC_END: the area is [Start, End).</summary>
    public ulong End { get; }

    /// <summary>The part of the area, from Start, that the host reserves and areas are carved from.</summary>
    public ulong HostBytes { get; }

    /// <summary>Page-table levels from the top (pgd) down to the pte: the address bit each index starts at.</summary>
    public int[] LevelShifts { get; }

    /// <summary>Index width of each level (entries = 2^bits).</summary>
    public int[] LevelBits { get; }

    /// <summary>VMALLOC_TOTAL in bytes (VMALLOC_END − VMALLOC_START; the kernel's x86-64 VMALLOC_END is the
    /// area's last byte, hence one less than 32 TiB).</summary>
    public ulong TotalBytes => Start == X64Start ? X64Size - 1 : End - Start;

    /// <summary>The layout for a preset whose lowmem holds <paramref name="lowmemPfns"/> frames.</summary>
    public static VmallocLayout For(Arch arch, uint lowmemPfns)
    {
        if (arch.Preset == Preset.X64)
        {
            return new VmallocLayout(X64Start, X64Start + X64Size, X64HostWindow, [39, 30, 21, 12], [9, 9, 9, 9]);
        }
        // 32-bit: VMALLOC_START = high_memory + VMALLOC_OFFSET (not rounded in 6.1, as the real i386
        // kernel's VmallocTotal of 122880 kB shows), so a smaller machine has a larger area.
        ulong highMemory = arch.PageOffset + ((ulong)lowmemPfns << PhysMem.PageShift);
        ulong start = highMemory + VmallocOffset;
        return arch.Preset == Preset.X86
            ? new VmallocLayout(start, X86End, X86End - start, [22, 12], [10, 10])
            : new VmallocLayout(start, X86End, X86End - start, [30, 21, 12], [2, 9, 9]);
    }

    /// <summary>lazy_max_pages(): fls(online CPUs) × 32 MiB worth of pages.</summary>
    public static long LazyMaxPages(int cpus)
    {
        int fls = 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)cpus);
        return fls * ((32L << 20) >> PhysMem.PageShift);
    }
}
