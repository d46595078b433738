// The kernel's gfp_t (include/linux/gfp_types.h, Linux 6.1) as a flags enum with the
// same bit values, for an x86 configuration without KASAN_HW_TAGS and LOCKDEP, where
// __GFP_SKIP_ZERO, __GFP_SKIP_KASAN_* and __GFP_NOLOCKDEP are 0 and so are left out.
// Values must never change: traces and reports print them, and GfpFlags relies on them.
namespace Kmem;

/// <summary>
/// Allocation flags (gfp_t): where a page may come from, how hard the allocator may try,
/// and what it must do to the memory. Single bits carry the __GFP_* names, the useful
/// combinations the GFP_* names; <see cref="GfpFlags"/> prints and parses them as ftrace does.
/// </summary>
/// <remarks>
/// GFP_DMA and GFP_DMA32 are defined by the kernel as exactly __GFP_DMA and __GFP_DMA32, so
/// the single-bit members <see cref="Dma"/> and <see cref="Dma32"/> serve both names.
/// The value 0 is valid (ftrace prints it as <c>none</c>) and has no member, as in the kernel.
/// </remarks>
[Flags]
public enum Gfp : uint
{
    // Physical address zone modifiers (the low four bits, GFP_ZONEMASK).

    /// <summary>__GFP_DMA, also GFP_DMA: the allocation must come from ZONE_DMA.</summary>
    Dma = 0x01,
    /// <summary>__GFP_HIGHMEM: the allocation may come from ZONE_HIGHMEM.</summary>
    HighMem = 0x02,
    /// <summary>__GFP_DMA32, also GFP_DMA32: the allocation must come from ZONE_DMA32 (a 32-bit address).</summary>
    Dma32 = 0x04,
    /// <summary>
    /// __GFP_MOVABLE: the page can be moved by migration or reclaimed (MIGRATE_MOVABLE);
    /// together with <see cref="HighMem"/> it also allows ZONE_MOVABLE.
    /// </summary>
    Movable = 0x08,

    // Page mobility and placement hints.

    /// <summary>__GFP_RECLAIMABLE: slab pages freeable through shrinkers (MIGRATE_RECLAIMABLE).</summary>
    Reclaimable = 0x10,

    // Watermark modifiers: access to the emergency reserves.

    /// <summary>__GFP_HIGH: high priority; the allocation may dip below the min watermark (ALLOC_HIGH).</summary>
    High = 0x20,

    // Reclaim modifiers (only meaningful for allocations that may sleep).

    /// <summary>__GFP_IO: reclaim may start physical I/O.</summary>
    Io = 0x40,
    /// <summary>__GFP_FS: reclaim may call into the filesystems.</summary>
    Fs = 0x80,

    // Action modifier.

    /// <summary>__GFP_ZERO: return zeroed memory.</summary>
    Zero = 0x100,

    // Watermark modifier.

    /// <summary>
    /// __GFP_ATOMIC: the caller cannot reclaim or sleep and is high priority (ALLOC_HARDER).
    /// 6.1 only (removed in 6.3). Named with a Bit suffix because GFP_ATOMIC takes <see cref="Atomic"/>.
    /// </summary>
    AtomicBit = 0x200,

    // Reclaim modifiers.

    /// <summary>__GFP_DIRECT_RECLAIM: the caller may enter direct reclaim and compaction (may sleep).</summary>
    DirectReclaim = 0x400,
    /// <summary>__GFP_KSWAPD_RECLAIM: wake kswapd when the low watermark is reached.</summary>
    KswapdReclaim = 0x800,

    // Placement hint.

    /// <summary>__GFP_WRITE: the caller will dirty the page (spreads dirty pages between zones).</summary>
    Write = 0x1000,

    // Action modifier.

    /// <summary>__GFP_NOWARN: no allocation-failure report.</summary>
    NoWarn = 0x2000,

    // Reclaim modifiers.

    /// <summary>__GFP_RETRY_MAYFAIL: retry reclaim hard, may still fail, never invokes the OOM killer.</summary>
    RetryMayfail = 0x4000,
    /// <summary>__GFP_NOFAIL: never fail; retry forever.</summary>
    NoFail = 0x8000,
    /// <summary>__GFP_NORETRY: one light reclaim/compaction attempt, no OOM killer.</summary>
    NoRetry = 0x10000,

    // Watermark modifier.

    /// <summary>__GFP_MEMALLOC: ignore the watermarks and use all memory.</summary>
    Memalloc = 0x20000,

    // Action modifier.

    /// <summary>__GFP_COMP: build a compound page (head and tails).</summary>
    Comp = 0x40000,

    // Watermark modifier.

    /// <summary>__GFP_NOMEMALLOC: forbid the emergency reserves; beats <see cref="Memalloc"/>.</summary>
    NoMemalloc = 0x80000,

    // Page mobility and placement hints.

    /// <summary>__GFP_HARDWALL: enforce the cpuset memory policy.</summary>
    Hardwall = 0x100000,
    /// <summary>__GFP_THISNODE: the requested node only, no fallback.</summary>
    ThisNode = 0x200000,
    /// <summary>__GFP_ACCOUNT: charge the allocation to the memory cgroup (kmemcg).</summary>
    Account = 0x400000,

    // Action modifier.

    /// <summary>__GFP_ZEROTAGS: zero the memory tags when zeroing the memory (arm64 MTE; no effect on x86).</summary>
    ZeroTags = 0x800000,

    // Reclaim shorthand.

    /// <summary>__GFP_RECLAIM: <see cref="DirectReclaim"/> | <see cref="KswapdReclaim"/>.</summary>
    Reclaim = DirectReclaim | KswapdReclaim,

    // Useful combinations (GFP_*).

    /// <summary>GFP_ATOMIC (0xa20): cannot sleep, must succeed; may use part of the reserves.</summary>
    Atomic = High | AtomicBit | KswapdReclaim,
    /// <summary>GFP_KERNEL (0xcc0): the usual kernel allocation; may sleep, reclaim, do I/O and call filesystems.</summary>
    Kernel = Reclaim | Io | Fs,
    /// <summary>GFP_KERNEL_ACCOUNT (0x400cc0): <see cref="Kernel"/> charged to kmemcg.</summary>
    KernelAccount = Kernel | Account,
    /// <summary>GFP_PGTABLE_USER (0x400dc0): a user page table, zeroed and charged to kmemcg (GFP_PGTABLE_KERNEL | __GFP_ACCOUNT).</summary>
    PgtableUser = KernelAccount | Zero,
    /// <summary>GFP_NOWAIT (0x800): no direct reclaim, I/O or filesystem callbacks; only wakes kswapd.</summary>
    NoWait = KswapdReclaim,
    /// <summary>GFP_NOIO (0xc00): may reclaim, but without starting I/O. Same value as <see cref="Reclaim"/>.</summary>
    NoIo = Reclaim,
    /// <summary>GFP_NOFS (0xc40): may reclaim and do I/O, but not call into filesystems.</summary>
    NoFs = Reclaim | Io,
    /// <summary>GFP_USER (0x100cc0): user-facing memory the kernel also touches; cpuset limits apply.</summary>
    User = Reclaim | Io | Fs | Hardwall,
    /// <summary>GFP_HIGHUSER (0x100cc2): <see cref="User"/> that may live in ZONE_HIGHMEM.</summary>
    HighUser = User | HighMem,
    /// <summary>
    /// GFP_HIGHUSER_MOVABLE (0x100cca): user pages that reclaim or migration can move; may use
    /// ZONE_MOVABLE. (The kernel also ORs in the __GFP_SKIP_KASAN_* bits, which are 0 here.)
    /// </summary>
    HighUserMovable = HighUser | Movable,
    /// <summary>GFP_TRANSHUGE_LIGHT (0x1c20ca): transparent huge page without any reclaim or compaction.</summary>
    TransHugeLight = (HighUserMovable | Comp | NoMemalloc | NoWarn) & ~Reclaim,
    /// <summary>GFP_TRANSHUGE (0x1c24ca): <see cref="TransHugeLight"/> plus direct reclaim (khugepaged).</summary>
    TransHuge = TransHugeLight | DirectReclaim,
}
