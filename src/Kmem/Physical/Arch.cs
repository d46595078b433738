// Per-preset constants of the architectures Kmem models: which zones are
// compiled in, where lowmem ends, the pageblock order, whether THP pages ride
// on the per-CPU lists, and where the kernel's address space puts things.
// Immutable.
namespace Kmem.Physical;

internal sealed class Arch
{
    /// <summary>MAX_ORDER in 6.1: orders 0..10 are valid.</summary>
    public const int MaxOrder = 11;
    /// <summary>The PC's first MiB: pfn 0 is not RAM, 1..158 is RAM the kernel reserves, 159..255 is the
    /// EBDA, VGA and BIOS hole (e820 on a qemu "pc" machine).</summary>
    public const uint FirstMibPfns = 256, LowRamEndPfn = 159;
    /// <summary>The kernel image is loaded at 16 MiB (CONFIG_PHYSICAL_START).</summary>
    public const uint KernelStartPfn = 4096;
    public const uint KernelImagePfns = (16 << 20) >> PhysMem.PageShift;
    public const long MinMemory = 64L << 20;
    /// <summary>MAXMEM on x86-32 with the 3G/1G split: VMALLOC_END (0xfeffe000) − PAGE_OFFSET − the 128 MiB
    /// vmalloc reserve, so lowmem ends 8 KiB short of 880 MiB ("879MB LOWMEM available"), as the real
    /// 6.1 i386 kernel shows. The usual "896 MiB" is this plus the vmalloc gap and fixmap.</summary>
    public const ulong MaxLowmem32 = 0x36ffe000;

    private Arch(Preset preset, ZoneType[] zones, int pageblockOrder, bool thp, ulong lowmemLimit, long maxMemory,
        ulong pageOffset, ulong vmemmapBase, int structPageSize, string name)
    {
        Preset = preset;
        Zones = zones;
        PageblockOrder = pageblockOrder;
        HasThp = thp;
        LowmemLimit = lowmemLimit;
        MaxMemory = maxMemory;
        PageOffset = pageOffset;
        VmemmapBase = vmemmapBase;
        StructPageSize = structPageSize;
        Name = name;
        HasHighMem = Array.IndexOf(zones, ZoneType.HighMem) >= 0;
        HasDma32 = Array.IndexOf(zones, ZoneType.Dma32) >= 0;
    }

    public Preset Preset { get; }
    /// <summary>The zone types compiled in, in index order (MAX_NR_ZONES = Zones.Length).</summary>
    public ZoneType[] Zones { get; }
    public int PageblockOrder { get; }
    /// <summary>CONFIG_TRANSPARENT_HUGEPAGE: pageblock-order pages also use the pcp lists.</summary>
    public bool HasThp { get; }
    /// <summary>Physical address where highmem starts (ulong.MaxValue when there is none).</summary>
    public ulong LowmemLimit { get; }
    public long MaxMemory { get; }
    /// <summary>PAGE_OFFSET: where the direct map starts in the kernel's address space.</summary>
    public ulong PageOffset { get; }
    /// <summary>Kernel address of struct page for pfn 0 (for dump_page).</summary>
    public ulong VmemmapBase { get; }
    /// <summary>Linux's sizeof(struct page) on this architecture (64 on x86-64, 32 on x86-32): what the
    /// simulated kernel's memmap reserves per frame.</summary>
    public int StructPageSize { get; }

    /// <summary>Frames the kernel's memmap takes for <paramref name="frames"/> frames.</summary>
    public uint MemmapPages(uint frames) => (uint)(((long)frames * StructPageSize + PhysMem.PageSize - 1) >> PhysMem.PageShift);
    public string Name { get; }
    public bool HasHighMem { get; }
    /// <summary>CONFIG_ZONE_DMA32.</summary>
    public bool HasDma32 { get; }
    public bool HasZone(ZoneType t) => Array.IndexOf(Zones, t) >= 0;

    public static Arch For(Preset preset) => preset switch
    {
        Preset.X64 => new Arch(preset, [ZoneType.Dma, ZoneType.Dma32, ZoneType.Normal, ZoneType.Movable, ZoneType.Device],
            9, true, ulong.MaxValue, 1L << 46, 0xffff888000000000, 0xffffea0000000000, 64, "x86_64"),
        Preset.X86 => new Arch(preset, [ZoneType.Dma, ZoneType.Normal, ZoneType.HighMem, ZoneType.Movable],
            10, false, MaxLowmem32, 4L << 30, 0xc0000000, 0xf5800000, 32, "i686"),
        Preset.X86Pae => new Arch(preset, [ZoneType.Dma, ZoneType.Normal, ZoneType.HighMem, ZoneType.Movable],
            9, true, MaxLowmem32, 64L << 30, 0xc0000000, 0xf5800000, 32, "i686-pae"),
        _ => throw new ArgumentOutOfRangeException(nameof(preset), preset, "unknown preset"),
    };

    /// <summary>The physical range [start, end) in pfns that a zone type covers on this architecture.</summary>
    public (uint Start, uint End) ZoneSpan(ZoneType t, uint maxPfn)
    {
        uint dmaEnd = (16u << 20) >> PhysMem.PageShift;
        uint lowEnd = LowmemLimit == ulong.MaxValue ? maxPfn : (uint)Math.Min(maxPfn, LowmemLimit >> PhysMem.PageShift);
        uint dma32End = (uint)Math.Min(maxPfn, (4UL << 30) >> PhysMem.PageShift);
        (uint s, uint e) = t switch
        {
            ZoneType.Dma => (1u, dmaEnd),
            ZoneType.Dma32 => (dmaEnd, dma32End),
            ZoneType.Normal => (HasZone(ZoneType.Dma32) ? dma32End : dmaEnd, lowEnd),
            ZoneType.HighMem => (lowEnd, maxPfn),
            _ => (0u, 0u),
        };
        s = Math.Min(s, maxPfn);
        e = Math.Min(e, maxPfn);
        return e > s ? (s, e) : (0, 0);
    }
}
