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
using System.Runtime.CompilerServices;
using Kmem.PageAlloc;
using Kmem.Physical;

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

    // ───────────────────────────── the blocks in a page ─────────────────────────────

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int SlobUnits(int size) => (size + SlobUnit - 1) / SlobUnit;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static short* PageBase(short* s) => (short*)((nint)s & ~(nint)(PhysMem.PageSize - 1));

    /// <summary>set_slob: encodes a free block's size and next block into its first units.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SetSlob(short* s, int units, short* next)
    {
        int offset = (int)(next - PageBase(s));
        if (units > 1)
        {
            s[0] = (short)units;
            s[1] = (short)offset;
        }
        else
        {
            s[0] = (short)-offset;
        }
    }

    /// <summary>slob_units: a free block's size in units.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Units(short* s) => s[0] > 0 ? s[0] : 1;

    /// <summary>slob_next: the free block after this one (the next page's start after the last).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static short* Next(short* s) => PageBase(s) + (s[0] < 0 ? -s[0] : s[1]);

    /// <summary>slob_last: whether this is the page's last free block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsLast(short* s) => ((nint)Next(s) & (PhysMem.PageSize - 1)) == 0;

    /// <summary>The list a request of <paramref name="size"/> bytes uses.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int ListIndex(int size) => size < SlobBreak1 ? 0 : size < SlobBreak2 ? 1 : 2;

    // A slob page's struct slab fields live in its frame: Aux = units (free units), Private bits 0-15 =
    // the first free block's offset in units, bits 16-17 = the list it is on; PG_private (PG_slob_free)
    // says it is on a list, PG_slab that it is a slob page.

    private static int FreeOffset(ref PageFrame f) => (int)(f.Private & 0xFFFF);

    private static void SetFreeOffset(ref PageFrame f, long offset) => f.Private = (f.Private & ~0xFFFFUL) | (ulong)offset;

    private static int ListOf(ref PageFrame f) => (int)((f.Private >> 16) & 3);

    private static bool SlobPageFree(ref PageFrame f) => (f.Flags & PageFlags.Private) != 0;

    /// <summary>set_slob_page_free: list_add at the list's head.</summary>
    private void SetSlobPageFree(uint pfn, int list)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        _lists[list].AddHead(_mem, pfn);
        f.Private = (f.Private & 0xFFFF) | ((ulong)list << 16);
        f.Flags |= PageFlags.Private;
    }

    /// <summary>clear_slob_page_free.</summary>
    private void ClearSlobPageFree(uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        _lists[ListOf(ref f)].Remove(_mem, pfn);
        f.Flags &= ~PageFlags.Private;
    }

    /// <summary>list_rotate_to_front: the list starts at <paramref name="pfn"/>, the entries before it move
    /// behind the old tail in their order (the cyclic order is kept, as with the kernel's circular list).</summary>
    private void RotateToFront(ref PfnList list, uint pfn)
    {
        uint first = list.Head;
        if (first == pfn)
        {
            return;
        }
        uint lastBefore = _mem.Frame(pfn).Prev;
        _mem.Frame(list.Tail).Next = first;
        _mem.Frame(first).Prev = list.Tail;
        _mem.Frame(lastBefore).Next = PhysMem.NoPfn;
        _mem.Frame(pfn).Prev = PhysMem.NoPfn;
        list.Head = pfn;
        list.Tail = lastBefore;
    }

    /// <summary>slob_page_alloc: first fit in the page's chain for <paramref name="size"/> bytes such that the
    /// block plus <paramref name="alignOffset"/> is aligned to <paramref name="align"/>; an aligned block
    /// splits a free head fragment off first. A page left with no free unit leaves its list
    /// (<paramref name="removed"/>). Null when no block fits. Called under slob_lock.</summary>
    private short* SlobPageAlloc(uint pfn, int size, int align, int alignOffset, out bool removed)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        short* pageBase = (short*)_mem.PageAddress(pfn);
        int units = SlobUnits(size);
        removed = false;
        short* prev = null;
        short* cur = pageBase + FreeOffset(ref f);
        while (true)
        {
            int avail = Units(cur);
            short* aligned = cur;
            int delta = 0;
            if (align != 0)
            {
                aligned = (short*)((((nint)cur + alignOffset + align - 1) & ~(nint)(align - 1)) - alignOffset);
                delta = (int)(aligned - cur);
            }
            if (avail >= units + delta)
            {
                short* next;
                if (delta != 0)
                {
                    // Split the head off as its own free block so that the allocation starts aligned.
                    next = Next(cur);
                    SetSlob(aligned, avail - delta, next);
                    SetSlob(cur, delta, aligned);
                    prev = cur;
                    cur = aligned;
                    avail = Units(cur);
                }
                next = Next(cur);
                if (avail == units)
                {
                    if (prev != null)
                    {
                        SetSlob(prev, Units(prev), next);
                    }
                    else
                    {
                        SetFreeOffset(ref f, next - pageBase);
                    }
                }
                else
                {
                    if (prev != null)
                    {
                        SetSlob(prev, Units(prev), cur + units);
                    }
                    else
                    {
                        SetFreeOffset(ref f, cur + units - pageBase);
                    }
                    SetSlob(cur + units, avail - units, next);
                }
                f.Aux -= (ushort)units;
                if (f.Aux == 0)
                {
                    ClearSlobPageFree(pfn);
                    removed = true;
                }
                return cur;
            }
            if (IsLast(cur))
            {
                return null;
            }
            prev = cur;
            cur = Next(cur);
        }
    }

    /// <summary>slob_alloc: a block of <paramref name="size"/> bytes from the first page of the size's list
    /// (on <paramref name="node"/> when one is given) that fits it, the list then starting at that page; else
    /// from a new page. The block is recorded as live under the same lock, with <paramref name="owner"/> and
    /// the pointer handed out (the block plus <paramref name="alignOffset"/>); a kmalloc block gets its size
    /// header there too. Returns the pointer handed out, or 0.</summary>
    private nint SlobAlloc(int size, Gfp gfp, int align, int node, int alignOffset, int owner, nuint requested)
    {
        int list = ListIndex(size);
        int units = SlobUnits(size);
        short* b = null;
        lock (_slobLock)
        {
            ref PfnList head = ref _lists[list];
            for (uint pfn = head.Head; pfn != PhysMem.NoPfn; pfn = _mem.Frame(pfn).Next)
            {
                if ((node >= 0 && NodeOf(pfn) != node) || _mem.Frame(pfn).Aux < units)
                {
                    continue;
                }
                b = SlobPageAlloc(pfn, size, align, alignOffset, out bool removed);
                if (b == null)
                {
                    continue;
                }
                if (!removed)
                {
                    // Knuth's next fit: the next search starts at the page that just served.
                    RotateToFront(ref head, pfn);
                }
                Record(b, units, alignOffset, owner, requested);
                break;
            }
        }
        if (b == null)
        {
            var page = _pa.AllocPages(gfp & ~Gfp.Zero, 0, node);
            if (page.IsNull)
            {
                return 0;
            }
            uint pfn = page.RawPfn;
            AccountSlabPages(SlabFlags.None, pfn, 1);
            short* pageBase = (short*)_mem.PageAddress(pfn);
            lock (_slobLock)
            {
                ref PageFrame f = ref _mem.Frame(pfn);
                f.Flags |= PageFlags.Slab;
                f.Aux = UnitsPerPage;
                f.Private = 0;
                f.Next = f.Prev = PhysMem.NoPfn;
                SetSlob(pageBase, UnitsPerPage, pageBase + UnitsPerPage);
                SetSlobPageFree(pfn, list);
                _slobPages++;
                b = SlobPageAlloc(pfn, size, align, alignOffset, out _);
                if (b == null)
                {
                    throw new InvalidOperationException($"kernel BUG at mm/slob.c: a fresh page does not fit {size} bytes aligned to {align}");
                }
                Record(b, units, alignOffset, owner, requested);
            }
        }
        if ((gfp & Gfp.Zero) != 0)
        {
            // The header (if any) is already written; zero what the caller gets.
            new Span<byte>((byte*)b + alignOffset, size - alignOffset).Clear();
        }
        return (nint)b + alignOffset;
    }

    /// <summary>Enters a new block of a slob page in the side table and the counters (slob_lock held).</summary>
    private void Record(short* b, int units, int alignOffset, int owner, nuint requested)
    {
        nint p = (nint)b + alignOffset;
        var blk = new SlobBlock(owner, units, -1, requested);
        _live.Add(p, blk);
        if (owner == KmallocOwner)
        {
            *(uint*)b = (uint)requested;
        }
        Count(blk, 1);
    }

    /// <summary>Adds (<paramref name="sign"/> 1) or removes (-1) a block in its owner's figures (slob_lock held).</summary>
    private void Count(SlobBlock blk, int sign)
    {
        if (blk.Owner == KmallocOwner)
        {
            _kmallocBlocks += sign;
            _kmallocRequested += sign * (long)blk.Requested;
            _kmallocHeld += sign * blk.Held;
        }
        else if (CacheById(blk.Owner)?.BackendState is SlobCacheState st)
        {
            st.Objects += sign;
            st.Held += sign * blk.Held;
        }
        if (!blk.InPage)
        {
            _pageBlocks += sign;
            _pageBlockPages += sign * (1L << blk.Order);
        }
    }

    /// <summary>slob_free: puts a block back into its page's chain in address order, merging it with the
    /// free blocks it touches; a page that was full joins the list of the freed size; a page that becomes
    /// wholly free leaves its list and is returned for the caller to give back (NoPfn otherwise).
    /// Called under slob_lock.</summary>
    private uint SlobFree(short* b, int size)
    {
        uint pfn = _mem.VirtToPfn((nint)b);
        ref PageFrame f = ref _mem.Frame(pfn);
        short* pageBase = PageBase(b);
        int units = SlobUnits(size);
        if (f.Aux + units == UnitsPerPage)
        {
            if (SlobPageFree(ref f))
            {
                ClearSlobPageFree(pfn);
            }
            return pfn;
        }
        if (!SlobPageFree(ref f))
        {
            // The page was full: it becomes partially free with this block alone.
            f.Aux = (ushort)units;
            SetFreeOffset(ref f, b - pageBase);
            SetSlob(b, units, pageBase + UnitsPerPage);
            SetSlobPageFree(pfn, ListIndex(size));
            return PhysMem.NoPfn;
        }
        f.Aux += (ushort)units;
        short* first = pageBase + FreeOffset(ref f);
        if (b < first)
        {
            if (b + units == first)
            {
                units += Units(first);
                first = Next(first);
            }
            SetSlob(b, units, first);
            SetFreeOffset(ref f, b - pageBase);
        }
        else
        {
            short* prev = first;
            short* next = Next(prev);
            while (b > next)
            {
                prev = next;
                next = Next(prev);
            }
            if (!IsLast(prev) && b + units == next)
            {
                units += Units(next);
                SetSlob(b, units, Next(next));
            }
            else
            {
                SetSlob(b, units, next);
            }
            if (prev + Units(prev) == b)
            {
                units = Units(b) + Units(prev);
                SetSlob(prev, units, Next(b));
            }
            else
            {
                SetSlob(prev, Units(prev), b);
            }
        }
        return PhysMem.NoPfn;
    }

    /// <summary>The second half of slob_free for an emptied page: it stops being a slob page and goes back
    /// to the page allocator (outside slob_lock).</summary>
    private void ReleaseSlobPage(uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        f.Private = 0;
        f.Aux = 0;
        AccountSlabPages(SlabFlags.None, pfn, -1);
        _pa.FreePages(new Page(pfn), 0);
    }

    /// <summary>slob_new_pages: a block of 2^<paramref name="order"/> pages, counted as unreclaimable slab,
    /// recorded as live for <paramref name="owner"/>; 0 when the page allocator fails.</summary>
    private nint SlobNewPages(Gfp gfp, int order, int node, int owner, nuint requested)
    {
        var page = _pa.AllocPages(gfp, order, node);
        if (page.IsNull)
        {
            return 0;
        }
        uint pfn = page.RawPfn;
        AccountSlabPages(SlabFlags.None, pfn, 1L << order);
        nint p = _mem.PageAddress(pfn);
        var blk = new SlobBlock(owner, 0, order, requested);
        lock (_slobLock)
        {
            _live.Add(p, blk);
            Count(blk, 1);
        }
        return p;
    }

    /// <summary>slob_free_pages (the side table entry is already gone).</summary>
    private void SlobFreePages(nint p, int order)
    {
        uint pfn = _mem.VirtToPfn(p);
        AccountSlabPages(SlabFlags.None, pfn, -(1L << order));
        _pa.FreePages(new Page(pfn), order);
    }

    /// <summary>Frees a live block found in the side table (slob_lock held): a block in a slob page goes back
    /// into its chain (<paramref name="releasePfn"/> names a page that emptied), a block of pages is only
    /// unrecorded and its order returned in <paramref name="pagesOrder"/> (-1 otherwise) to be freed after
    /// the lock.</summary>
    private void FreeLocked(nint p, SlobBlock blk, int slobSize, out uint releasePfn, out int pagesOrder)
    {
        _live.Remove(p);
        Count(blk, -1);
        ReleaseLocked(p, blk, slobSize, out releasePfn, out pagesOrder);
    }

    /// <summary>The heap half of <see cref="FreeLocked"/>: the block's units go back to its page, or its pages
    /// are named for the caller to free (slob_lock held).</summary>
    private void ReleaseLocked(nint p, SlobBlock blk, int slobSize, out uint releasePfn, out int pagesOrder)
    {
        if (blk.InPage)
        {
            int header = blk.Owner == KmallocOwner ? MinAlign : 0;
            releasePfn = SlobFree((short*)(p - header), slobSize);
            pagesOrder = -1;
            if (releasePfn != PhysMem.NoPfn)
            {
                _mem.Frame(releasePfn).Flags &= ~PageFlags.Slab;
                _slobPages--;
            }
        }
        else
        {
            releasePfn = PhysMem.NoPfn;
            pagesOrder = blk.Order;
        }
    }

    /// <summary>Completes <see cref="FreeLocked"/> outside slob_lock.</summary>
    private void FinishFree(nint p, uint releasePfn, int pagesOrder)
    {
        if (releasePfn != PhysMem.NoPfn)
        {
            ReleaseSlobPage(releasePfn);
        }
        if (pagesOrder >= 0)
        {
            SlobFreePages(p, pagesOrder);
        }
    }

    /// <summary>kmem_rcu_free: after the grace period, an RCU cache's freed block goes back to the heap.</summary>
    private void KmemRcuFree(nint p, int slobSize)
    {
        uint releasePfn;
        int pagesOrder;
        lock (_slobLock)
        {
            if (!_rcuHeld.Remove(p, out var blk))
            {
                // Queued once per free, and the held block cannot be freed any other way: nothing to do.
                return;
            }
            ReleaseLocked(p, blk, slobSize, out releasePfn, out pagesOrder);
        }
        FinishFree(p, releasePfn, pagesOrder);
    }

    /// <summary>sizeof(struct slob_rcu): an rcu_head (two pointers) and an int, padded to a pointer.</summary>
    private uint SlobRcuSize => _pa.Arch.Preset == Preset.X64 ? 24u : 12u;

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
            int order = size < PhysMem.PageSize ? 0 : Machine.GetOrder(size);
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

    /// <summary>kmem_cache_destroy. SLOB in 6.1 cannot see remaining objects and destroys the cache anyway;
    /// Kmem can, so a cache with objects is kept and the warning logged, as the other backends do.</summary>
    public override bool Destroy(KmemCache s, string caller)
    {
        lock (_slabMutex)
        {
            if (s.IsDestroyed)
            {
                return true;
            }
            long objects;
            lock (_slobLock)
            {
                objects = State(s).Objects;
            }
            if (objects != 0)
            {
                WarnDestroyBusy(s, caller);
                return false;
            }
            Unregister(s);
            return true;
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
            : SlobNewPages(gfp, Machine.GetOrder(s.Size), node, s.Id, s.ObjectSize);
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
        int order = size > Machine.KmallocMaxSize ? Arch.MaxOrder : Machine.GetOrder(size);
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
