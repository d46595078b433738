// The page allocations a replay holds back on their CPU until it is known whether they were new slab pages
// (TraceReplayer.Pages.cs), and the trace's direct-map base inferred from them. Only an allocation whose gfp a
// new slab page or a large kmalloc can carry is held (MayBeSlabPage), and at most one per CPU: the CPU's next page
// event replays it first, so the held one is always the CPU's latest page allocation. The slab allocation that
// falls inside its frame (the CPU's next event, in 6.1's allocate_slab) makes it a slab page; one that waited
// HeldEvents of its CPU's events, or saw HeldSlabAllocs slab allocations outside its frame, is a page allocation.
// Turning an object's address into a pfn needs the direct-map base, which x86 puts on a 1 GiB boundary (KASLR or
// not): it is the boundary BaseVotes pairs in a row agree on. Replaying thread only.
namespace Kmem;

internal sealed class HeldPageAllocs(int cpus)
{
    // A slab allocation arrives right after its new slab page; these bounds only let an interrupt's slab allocation
    // slip in between.
    private const int HeldEvents = 64;
    private const int HeldSlabAllocs = 3;
    private const int BaseVotes = 3;
    private const ulong GiB = 1UL << 30;

    // The gfp bits a new slab page can carry in 6.1: new_slab keeps the slab allocation's GFP_RECLAIM_MASK and
    // GFP_CONSTRAINT_MASK bits (6.1's reclaim mask includes __GFP_ATOMIC), and allocate_slab adds the cache's
    // allocflags (__GFP_COMP above order 0, __GFP_DMA, __GFP_DMA32, __GFP_RECLAIMABLE) and __GFP_NOWARN | __GFP_NORETRY.
    private const Gfp SlabPageGfp = Gfp.DirectReclaim | Gfp.KswapdReclaim | Gfp.High | Gfp.Io | Gfp.Fs | Gfp.NoWarn | Gfp.RetryMayfail
        | Gfp.NoFail | Gfp.NoRetry | Gfp.Memalloc | Gfp.NoMemalloc | Gfp.AtomicBit | Gfp.Hardwall | Gfp.ThisNode
        | Gfp.Comp | Gfp.Dma | Gfp.Dma32 | Gfp.Reclaimable;

    private readonly TraceReplayer.PendingPage[] _held = new TraceReplayer.PendingPage[cpus];
    private readonly bool[] _has = new bool[cpus];
    private ulong _baseCandidate;
    private int _baseVotes;

    /// <summary>The trace's direct-map base, once known.</summary>
    public ulong? Base { get; private set; }

    /// <summary>Whether an allocation is held on CPU <paramref name="cpu"/>.</summary>
    public bool Any(int cpu) => _has[cpu];

    /// <summary>Whether a page allocation may be a new slab page or a large kmalloc (kmalloc_large: the caller's gfp with
    /// __GFP_COMP, above KMALLOC_MAX_CACHE_SIZE, so order 2 at least). Anything else (__GFP_ZERO, __GFP_ACCOUNT,
    /// __GFP_HIGHMEM, __GFP_MOVABLE: page tables, pipe buffers, the page cache) is a page allocation.</summary>
    public static bool MayBeSlabPage(Gfp gfp, int order) => (order >= 2 && (gfp & Gfp.Comp) != 0) || (gfp & ~SlabPageGfp) == 0;

    /// <summary>Holds <paramref name="p"/> on CPU <paramref name="cpu"/>, whose held allocation was taken before.</summary>
    public void Hold(int cpu, in TraceReplayer.PendingPage p)
    {
        VmBug.On(_has[cpu]); // the CPU's page event takes the held one first
        _held[cpu] = p;
        _has[cpu] = true;
    }

    /// <summary>Takes the allocation held on CPU <paramref name="cpu"/>, if any.</summary>
    public bool TryTake(int cpu, out TraceReplayer.PendingPage p)
    {
        p = _held[cpu];
        if (!_has[cpu])
        {
            return false;
        }
        _held[cpu] = default;
        _has[cpu] = false;
        return true;
    }

    /// <summary>Takes the allocation held on CPU <paramref name="cpu"/> when it has waited long enough to be a page
    /// allocation (<paramref name="now"/>: the CPU's event count).</summary>
    public bool TryTakeDue(int cpu, long now, out TraceReplayer.PendingPage p)
    {
        ref var h = ref _held[cpu];
        if (_has[cpu] && (now - h.Seq >= HeldEvents || h.SlabAllocs >= HeldSlabAllocs))
        {
            return TryTake(cpu, out p);
        }
        p = default;
        return false;
    }

    /// <summary>Takes the held allocation whose block holds frame <paramref name="pfn"/> (being freed), looking at
    /// CPU <paramref name="cpu"/> first: a page allocated on one CPU may be freed on the other (a pipe's page); its
    /// CPU goes to <paramref name="heldCpu"/>, the allocation to <paramref name="p"/>.</summary>
    public bool TryTakeHolding(int cpu, ulong pfn, out int heldCpu, out TraceReplayer.PendingPage p)
    {
        for (int k = 0; k < _held.Length; k++)
        {
            heldCpu = (cpu + k) % _held.Length;
            if (_has[heldCpu] && pfn - _held[heldCpu].Pfn < 1UL << _held[heldCpu].Order)
            {
                return TryTake(heldCpu, out p);
            }
        }
        heldCpu = -1;
        p = default;
        return false;
    }

    /// <summary>A slab object at trace address <paramref name="ptr"/> was allocated on CPU <paramref name="cpu"/>: the
    /// held frame that holds it is a slab page, taken; otherwise the held one has seen one more slab allocation.</summary>
    public bool TryTakeSlabPage(int cpu, ulong ptr, out TraceReplayer.PendingPage p)
    {
        ref var h = ref _held[cpu];
        if (_has[cpu])
        {
            ulong span = 1UL << (h.Order + 12);
            bool inside;
            if (Base is ulong b)
            {
                inside = ptr - b - (h.Pfn << 12) < span;
            }
            else
            {
                ulong d = ptr - (h.Pfn << 12);
                inside = (d & (GiB - 1)) < span;
                if (inside)
                {
                    Vote(d & ~(GiB - 1));
                }
            }
            if (inside)
            {
                return TryTake(cpu, out p);
            }
            h.SlabAllocs++;
        }
        p = default;
        return false;
    }

    private void Vote(ulong candidate)
    {
        if (candidate == _baseCandidate && _baseVotes > 0)
        {
            if (++_baseVotes >= BaseVotes)
            {
                Base = candidate;
            }
        }
        else
        {
            _baseCandidate = candidate;
            _baseVotes = 1;
        }
    }
}
