// SLOB (mm/slob.c, 6.1): a K&R-style first-fit heap over order-0 pages, shared by kmalloc and every
// kmem_cache. Pages with free room sit on one of three global lists chosen by the size of the request
// that put them there (free_slob_small < SLOB_BREAK1, free_slob_medium < SLOB_BREAK2, free_slob_large).
// Inside a page the free blocks form an address-ordered chain stored in the page's own bytes, in slob
// units (slob_t, an s16: 2 bytes): a free block of n > 1 units holds n in its first unit and the offset
// of the next free block (in units from the page start) in its second; a 1-unit block holds the negated
// offset; the last block points at offset 2048, the next page. Blocks of a page or more come straight
// from the page allocator. Invariants: per slob page, free blocks + live blocks tile its 2048 units,
// no two free blocks touch, sp->units (Aux) = the free units; a page is on a list iff it has free units.
// Kmem's addition, which the kernel's SLOB does not have: a side table of every live block (returned
// pointer → owner, units, order, size asked), changed under the same lock, so that a double free, a
// pointer SLOB never handed out, a free to the wrong cache or a kfree of a cache object is reported
// and refused with nothing changed (the kernel trusts the kmalloc header and the cache's size).
// SLAB_TYPESAFE_BY_RCU: each object carries the kernel's struct slob_rcu footer and goes back to the
// heap only after a grace period (kmem_rcu_free); meanwhile it sits in a second side table, out of its
// cache's figures, so a second free of it is still "Object already free".
// Locking: slab_mutex → slob_lock. One global slob_lock, as in the kernel, guards the lists, every
// slob page's units/freelist/links, the chains in the pages, the side table and the counters; pages
// come from and go back to the page allocator outside it.
using System.Numerics;
using Kmem.PageAlloc;
using Kmem.Physical;
using static Kmem.Slab.SlobPage;

namespace Kmem.Slab;

/// <summary>The SLOB allocator of one machine: the three free lists, kmalloc with its size header, and
/// caches whose objects come from the same pages.</summary>
internal sealed unsafe partial class Slob : SlabBackend
{
    /// <summary>SLOB_UNIT: sizeof(slob_t), an s16 while PAGE_SIZE &lt;= 65534 (x86-64 and x86-32 alike).</summary>
    public const int SlobUnit = 2;
    /// <summary>SLOB_UNITS(PAGE_SIZE): the units of a page.</summary>
    public const int UnitsPerPage = PhysMem.PageSize / SlobUnit;
    /// <summary>SLOB_BREAK1: requests below it use free_slob_small.</summary>
    public const int SlobBreak1 = 256;
    /// <summary>SLOB_BREAK2: requests below it (and at least SLOB_BREAK1) use free_slob_medium.</summary>
    public const int SlobBreak2 = 1024;
    /// <summary>max(ARCH_KMALLOC_MINALIGN, ARCH_SLAB_MINALIGN): both are __alignof__(unsigned long long),
    /// 8 with GCC on x86-64 and on x86-32 alike; the size header in front of a kmalloc'd block.</summary>
    public const int MinAlign = 8;
    /// <summary>The owner of a kmalloc'd block in the side table.</summary>
    internal const int KmallocOwner = -1;
    /// <summary>SLAB_CACHE_FLAGS under SLOB (6.1 CACHE_CREATE_MASK): the flags a cache keeps; the rest of
    /// the permitted ones (SLAB_RECLAIM_ACCOUNT, SLAB_ACCOUNT) are accepted and dropped.</summary>
    private const SlabFlags CacheCreateMask = SlabFlags.HwcacheAlign | SlabFlags.CacheDma | SlabFlags.CacheDma32 | SlabFlags.Panic
        | SlabFlags.NoMerge | SlabFlags.TypesafeByRcu;

    /// <summary>The names of the three lists, by index.</summary>
    internal static readonly string[] ListNames = ["free_slob_small", "free_slob_medium", "free_slob_large"];

    /// <summary>slob_lock.</summary>
    private readonly Lock _slobLock = new();
    /// <summary>free_slob_small, free_slob_medium, free_slob_large.</summary>
    private readonly PfnList[] _lists = [PfnList.Empty, PfnList.Empty, PfnList.Empty];
    /// <summary>Every live block by the pointer handed out.</summary>
    private readonly Dictionary<nint, SlobBlock> _live = [];
    /// <summary>Blocks of SLAB_TYPESAFE_BY_RCU caches freed by their user and waiting for a grace period.</summary>
    private readonly Dictionary<nint, SlobBlock> _rcuHeld = [];
    /// <summary>Pages marked PG_slab (on a list or full).</summary>
    private long _slobPages;
    /// <summary>Blocks of a page or more, and their pages.</summary>
    private long _pageBlocks, _pageBlockPages;
    /// <summary>kmalloc's live blocks: count, bytes asked, bytes held (units with the header, or pages).</summary>
    private long _kmallocBlocks, _kmallocRequested, _kmallocHeld;

    public Slob(PageAllocator pa, KernelLog log, Action<KernelBugException> bug)
        : base(pa, log, bug)
    {
    }

    /// <inheritdoc/>
    public override SlabAllocator Kind => SlabAllocator.Slob;

    /// <summary>A live block: its owner (a cache id or <see cref="KmallocOwner"/>), its units in a slob
    /// page (0 for pages), its page order (-1 in a slob page) and the size the caller asked for.</summary>
    internal readonly record struct SlobBlock(int Owner, int Units, int Order, nuint Requested)
    {
        public bool InPage => Order < 0;
        /// <summary>Bytes the block occupies.</summary>
        public long Held => InPage ? (long)Units * SlobUnit : (long)PhysMem.PageSize << Order;
    }

    /// <summary>A cache's figures (its BackendState), under slob_lock.</summary>
    internal sealed class SlobCacheState
    {
        public long Objects;
        public long Held;
    }

    // ───────────────────────────── caches ─────────────────────────────

    /// <summary>kmem_cache_create under SLOB: size = object size, alignment from calculate_alignment (at
    /// least 8, at most a page), flags reduced to SLOB's CACHE_CREATE_MASK (so SLAB_RECLAIM_ACCOUNT and
    /// SLAB_ACCOUNT are dropped, and SLAB_CACHE_DMA has no effect: objects come from the shared pages).</summary>
    public override KmemCache? CreateCache(string name, uint size, uint align, SlabFlags flags, Action<nint>? ctor)
    {
        lock (_slabMutex)
        {
            const SlabFlags permitted = SlabFlags.HwcacheAlign | SlabFlags.CacheDma | SlabFlags.CacheDma32 | SlabFlags.ReclaimAccount
                | SlabFlags.Panic | SlabFlags.NoMerge | SlabFlags.Account | SlabFlags.TypesafeByRcu;
            // An alignment above a page could never be met inside a slob page (the kernel would BUG in
            // slob_alloc), nor by page blocks, which are only page-aligned: refused here instead.
            if (!ValidCreateArgs(name, size, align, flags, permitted) || align > PhysMem.PageSize)
            {
                return CreateFailed(name, flags);
            }
            flags &= CacheCreateMask;
            uint a = KmemCache.CalculateAlignment(flags, align, size);
            uint objectSize = size;
            if ((flags & SlabFlags.TypesafeByRcu) != 0)
            {
                // Room for struct slob_rcu (an rcu_head and an int) at the end of every object.
                size += SlobRcuSize;
            }
            int order = size < PhysMem.PageSize ? 0 : PhysMem.GetOrder(size);
            int perPage = 1;
            if (size < PhysMem.PageSize)
            {
                // In an empty page: one at offset 0, then one per aligned stride.
                uint bytes = (uint)SlobUnits((int)size) * SlobUnit;
                uint stride = (bytes + a - 1) / a * a;
                perPage = 1 + (int)((PhysMem.PageSize - bytes) / stride);
            }
            var s = new KmemCache(NextCacheId(), name, objectSize, size, a, order, perPage, flags, ctor, isKmalloc: false, new SlobCacheState());
            Register(s);
            return s;
        }
    }

    /// <summary>__kmem_cache_shutdown: SLOB holds no free objects for a cache; true when it has none in use.</summary>
    private protected override bool Shutdown(KmemCache s)
    {
        lock (_slobLock)
        {
            return State(s).Objects == 0;
        }
    }

    /// <summary>kmem_cache_shrink: SLOB keeps no empty pages (__kmem_cache_shrink returns 0).</summary>
    public override int Shrink(KmemCache s) => 0;

    private static SlobCacheState State(KmemCache s) => (SlobCacheState)s.BackendState!;

    /// <summary>slob_alloc_node: below a page from the slob pages at the cache's alignment (no header), else
    /// pages of get_order(size) (not compound, not PG_slab); the constructor runs on every allocation.</summary>
    public override nint Alloc(KmemCache s, Gfp gfp, int node)
    {
        if ((gfp & GfpSlabBugMask) != 0)
        {
            gfp = KmallocFixFlags(gfp);
        }
        nint b = s.Size < PhysMem.PageSize
            ? SlobAlloc((int)s.Size, gfp, (int)s.Align, node, 0, s.Id, s.ObjectSize)
            : SlobNewPages(gfp, PhysMem.GetOrder(s.Size), node, s.Id, s.ObjectSize);
        if (b != 0 && s.Ctor is { } ctor)
        {
            ctor(b);
        }
        return b;
    }

    /// <summary>kmem_cache_free: the object must be a live object of <paramref name="s"/>.</summary>
    public override void CacheFree(KmemCache s, nint p)
    {
        uint releasePfn = PhysMem.NoPfn;
        int pagesOrder = -1;
        string? what = null;
        KmemCache? owner = null;
        bool wrongCache = false;
        lock (_slobLock)
        {
            if (_live.TryGetValue(p, out var blk))
            {
                if (blk.Owner == s.Id && (s.Flags & SlabFlags.TypesafeByRcu) != 0)
                {
                    // kmem_cache_free of an RCU cache: out of the cache now, back to the heap after a grace period.
                    _live.Remove(p);
                    Count(blk, -1);
                    _rcuHeld.Add(p, blk);
                    int slobSize = (int)s.Size;
                    CallRcu(() => KmemRcuFree(p, slobSize));
                }
                else if (blk.Owner == s.Id)
                {
                    FreeLocked(p, blk, (int)s.Size, out releasePfn, out pagesOrder);
                }
                else
                {
                    wrongCache = true;
                    owner = blk.Owner == KmallocOwner ? null : CacheById(blk.Owner);
                }
            }
            else
            {
                what = WhatIsWrong(p, out owner);
            }
        }
        if (wrongCache)
        {
            ReportWrongCache(s, owner, p);
        }
        else if (what is not null)
        {
            Report(s, p, what, "kmem_cache_free", PageOffsetOf(p));
        }
        else
        {
            FinishFree(p, releasePfn, pagesOrder);
        }
    }

    // ───────────────────────────── kmalloc ─────────────────────────────

    /// <summary>__do_kmalloc_node: below PAGE_SIZE − 8, a slob block of size + 8 whose first 8 bytes hold the
    /// size (the pointer handed out follows them, aligned to 8, or to the size for a power of two); else
    /// pages of get_order(size), compound above order 0.</summary>
    public override nint Kmalloc(nuint size, Gfp gfp, int node)
    {
        if ((gfp & GfpSlabBugMask) != 0)
        {
            gfp = KmallocFixFlags(gfp);
        }
        if (size < PhysMem.PageSize - MinAlign)
        {
            if (size == 0)
            {
                return ZeroSizePtr;
            }
            int align = BitOperations.IsPow2(size) ? Math.Max(MinAlign, (int)size) : MinAlign;
            return SlobAlloc((int)size + MinAlign, gfp, align, node, MinAlign, KmallocOwner, size);
        }
        // Above KMALLOC_MAX_SIZE the page allocator refuses the order with its warning (and get_order
        // would wrap for sizes near the top of nuint).
        int order = size > KmallocMaxSize ? Arch.MaxOrder : PhysMem.GetOrder(size);
        if (order > 0)
        {
            gfp |= Gfp.Comp;
        }
        return SlobNewPages(gfp, order, node, KmallocOwner, size);
    }

    /// <summary>kfree: a kmalloc'd block goes back by the size in its header (checked against the side
    /// table), pages to the page allocator; anything else is reported and nothing changes.</summary>
    public override void Kfree(nint p, string caller = "kfree")
    {
        if ((nuint)p <= (nuint)ZeroSizePtr)
        {
            return;
        }
        uint releasePfn = PhysMem.NoPfn;
        int pagesOrder = -1;
        string? what = null;
        KmemCache? owner = null;
        lock (_slobLock)
        {
            if (!_live.TryGetValue(p, out var blk))
            {
                what = WhatIsWrong(p, out owner);
            }
            else if (blk.Owner != KmallocOwner)
            {
                // 6.1's SLOB would read a header that is not there.
                owner = CacheById(blk.Owner);
                what = "kfree of a kmem_cache object (SLOB needs kmem_cache_free)";
            }
            else if (blk.InPage && *(uint*)(p - MinAlign) != (uint)blk.Requested)
            {
                what = $"kmalloc size header overwritten: {*(uint*)(p - MinAlign)}, allocated {blk.Requested}";
            }
            else
            {
                FreeLocked(p, blk, (int)blk.Requested + MinAlign, out releasePfn, out pagesOrder);
            }
        }
        if (what is not null)
        {
            Report(owner, p, what, caller, PageOffsetOf(p));
            return;
        }
        FinishFree(p, releasePfn, pagesOrder);
    }

    /// <summary>__ksize: SLOB_UNITS(size) * SLOB_UNIT for a block with a header, the whole folio for pages;
    /// 0 for 0 and ZERO_SIZE_PTR. A cache object or a pointer that is no live block is reported (0).</summary>
    public override nuint Ksize(nint p)
    {
        if ((nuint)p <= (nuint)ZeroSizePtr)
        {
            return 0;
        }
        SlobBlock blk;
        bool found;
        lock (_slobLock)
        {
            found = _live.TryGetValue(p, out blk);
        }
        if (!found)
        {
            Report(null, p, "ksize of invalid pointer", "ksize");
            return 0;
        }
        if (blk.Owner != KmallocOwner)
        {
            Report(CacheById(blk.Owner), p, "ksize of a kmem_cache object (SLOB knows only kmalloc sizes)", "ksize", PageOffsetOf(p));
            return 0;
        }
        return blk.InPage ? (blk.Requested + SlobUnit - 1) / SlobUnit * SlobUnit : (nuint)PhysMem.PageSize << blk.Order;
    }

    // ───────────────────────────── misuse ─────────────────────────────

    /// <summary>Why <paramref name="p"/>, which is no live block, cannot be freed (slob_lock held): inside a
    /// free block of a slob page it was freed already; inside a live block it is not that block's start
    /// (<paramref name="owner"/> names its cache); elsewhere SLOB never handed it out.</summary>
    private string WhatIsWrong(nint p, out KmemCache? owner)
    {
        owner = null;
        if (_rcuHeld.ContainsKey(p))
        {
            return "Object already free";
        }
        uint pfn = _mem.VirtToPfn(p);
        if (pfn == PhysMem.NoPfn || (_mem.Frame(pfn).Flags & PageFlags.Slab) == 0)
        {
            return "Freeing invalid pointer";
        }
        ref PageFrame f = ref _mem.Frame(pfn);
        short* pageBase = (short*)_mem.PageAddress(pfn);
        if (SlobPageFree(ref f))
        {
            for (short* cur = pageBase + FreeOffset(ref f); ; cur = Next(cur))
            {
                if ((nint)p >= (nint)cur && (nint)p < (nint)(cur + Units(cur)))
                {
                    return "Object already free";
                }
                if (IsLast(cur))
                {
                    break;
                }
            }
        }
        // The live block that holds p: a recorded pointer at most a header above p whose block spans it.
        for (nint k = (p + MinAlign) & ~(nint)1; k >= (nint)pageBase; k -= SlobUnit)
        {
            if (_live.TryGetValue(k, out var blk) && blk.InPage)
            {
                nint start = k - (blk.Owner == KmallocOwner ? MinAlign : 0);
                if (p >= start && p < start + blk.Units * SlobUnit)
                {
                    owner = blk.Owner == KmallocOwner ? null : CacheById(blk.Owner);
                    return $"Invalid object pointer 0x{KernelAddress(p):x}";
                }
            }
        }
        return "Freeing invalid pointer";
    }

    /// <summary>A pointer's offset in its page (0 outside the direct map).</summary>
    private long PageOffsetOf(nint p) => _mem.VirtToPfn(p) == PhysMem.NoPfn ? 0 : (long)(p & (PhysMem.PageSize - 1));
}
