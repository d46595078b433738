// Mempools' public face on Machine (include/linux/mempool.h, mm/mempool.c): create,
// allocate, free, resize and destroy a pool, and the ready-made slab, kmalloc and page
// pools with the kernel's helper functions. Every member forwards to Mempools (Mempool/)
// and the pools themselves, which own their locking; nothing here holds a lock.
using System.Runtime.CompilerServices;

namespace Kmem;

public sealed partial class Machine
{
    /// <summary>mempool_create: a pool that keeps <paramref name="minNr"/> elements from
    /// <paramref name="allocFn"/> in reserve. The reserve is filled now with GFP_KERNEL.</summary>
    /// <param name="minNr">Elements to keep in reserve (0 or more).</param>
    /// <param name="allocFn">The underlying allocator.</param>
    /// <param name="freeFn">Gives an element back to the underlying allocator.</param>
    /// <param name="poolData">Passed to both functions.</param>
    /// <param name="name">How the pool is named in messages; the calling method by default.</param>
    /// <returns>The pool, or null when the reserve cannot be filled (the elements taken are given back).</returns>
    /// <remarks>May sleep, as the kernel's (GFP_KERNEL).</remarks>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="minNr"/> is negative.</exception>
    /// <exception cref="ArgumentNullException">A function is null.</exception>
    public Mempool? MempoolCreate(int minNr, MempoolAllocFn allocFn, MempoolFreeFn freeFn, object? poolData,
        [CallerMemberName] string name = "") { using var _ = _life.Enter(); return Mempools.Create(minNr, allocFn, freeFn, poolData, name); }

    /// <summary>mempool_create_slab_pool: a pool of objects of <paramref name="cache"/>
    /// (<see cref="MempoolAllocSlab"/>, <see cref="MempoolFreeSlab"/>).</summary>
    /// <returns>The pool, or null when the reserve cannot be filled.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="minNr"/> is negative.</exception>
    /// <exception cref="ArgumentNullException">The cache is null.</exception>
    public Mempool? MempoolCreateSlabPool(int minNr, KmemCache cache)
    {
        using var _ = _life.Enter();
        ArgumentNullException.ThrowIfNull(cache);
        return MempoolCreate(minNr, MempoolAllocSlab, MempoolFreeSlab, cache, $"slab:{cache.Name}");
    }

    /// <summary>mempool_create_kmalloc_pool: a pool of <paramref name="size"/>-byte kmalloc blocks
    /// (<see cref="MempoolKmalloc"/>, <see cref="MempoolKfree"/>).</summary>
    /// <returns>The pool, or null when the reserve cannot be filled.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="minNr"/> is negative, or the size is 0 or
    /// above <see cref="KmallocMaxSize"/>.</exception>
    public Mempool? MempoolCreateKmallocPool(int minNr, nuint size)
    {
        using var _ = _life.Enter();
        if (size == 0 || size > KmallocMaxSize)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, $"a kmalloc pool's element size must be 1..{KmallocMaxSize} bytes");
        }
        return MempoolCreate(minNr, MempoolKmalloc, MempoolKfree, size, $"kmalloc:{size}");
    }

    /// <summary>mempool_create_page_pool: a pool of order-<paramref name="order"/> page blocks
    /// (<see cref="MempoolAllocPages"/>, <see cref="MempoolFreePages"/>). Elements are struct page pointers:
    /// <see cref="MempoolElementPage"/> gives the <see cref="Page"/>.</summary>
    /// <returns>The pool, or null when the reserve cannot be filled.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="minNr"/> is negative, or the order is not
    /// 0 .. <see cref="MaxOrder"/> - 1.</exception>
    public Mempool? MempoolCreatePagePool(int minNr, int order)
    {
        using var _ = _life.Enter();
        if ((uint)order >= MaxOrder)
        {
            throw new ArgumentOutOfRangeException(nameof(order), order, $"a page pool's order must be 0..{MaxOrder - 1}");
        }
        return MempoolCreate(minNr, MempoolAllocPages, MempoolFreePages, order, $"pages:order-{order}");
    }

    /// <summary>mempool_alloc: an element, from the underlying allocator if it can give one without reclaim or
    /// I/O, else from the reserve, else (for a caller that may sleep) after waiting for a free.</summary>
    /// <param name="pool">The pool.</param>
    /// <param name="gfp">The caller's flags; __GFP_NOMEMALLOC, __GFP_NORETRY and __GFP_NOWARN are added.
    /// <see cref="Gfp.Zero"/> is not supported (warned once): a reserved element is not zeroed.</param>
    /// <returns>The element. With <see cref="Gfp.DirectReclaim"/> (GFP_KERNEL, GFP_NOIO…) never 0; without it
    /// (GFP_ATOMIC, GFP_NOWAIT) 0 when the allocator fails and the reserve is empty.</returns>
    /// <remarks>Blocks, as the kernel sleeps, while the reserve is empty and the allocator fails, retrying the
    /// allocator after every free and at least every <see cref="Mempool.RetryInterval"/>. Use
    /// <see cref="MempoolAlloc(Mempool, Gfp, TimeSpan)"/> or
    /// <see cref="MempoolAlloc(Mempool, Gfp, CancellationToken)"/> to bound the wait.</remarks>
    /// <exception cref="ObjectDisposedException">The pool has been destroyed.</exception>
    public nint MempoolAlloc(Mempool pool, Gfp gfp) { using var _ = _life.Enter(); return Mempools.Live(pool).Alloc(gfp, Timeout.Infinite, CancellationToken.None); }

    /// <summary>mempool_alloc with a bounded wait: as <see cref="MempoolAlloc(Mempool, Gfp)"/>, but a sleeping
    /// caller gives up after <paramref name="timeout"/>.</summary>
    /// <returns>The element, or 0 when the wait timed out (or, without <see cref="Gfp.DirectReclaim"/>, when
    /// the allocator failed and the reserve was empty).</returns>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative (other than infinite) or too large.</exception>
    /// <exception cref="ObjectDisposedException">The pool has been destroyed.</exception>
    public nint MempoolAlloc(Mempool pool, Gfp gfp, TimeSpan timeout)
    {
        using var _ = _life.Enter();
        int ms = TimeoutMs(timeout);
        return Mempools.Live(pool).Alloc(gfp, ms, CancellationToken.None);
    }

    /// <summary>mempool_alloc with a cancellable wait: as <see cref="MempoolAlloc(Mempool, Gfp)"/>, but a
    /// sleeping caller gives up when <paramref name="cancellationToken"/> is cancelled.</summary>
    /// <returns>The element, or 0 when the wait was cancelled (an element available without waiting is
    /// returned even with a cancelled token).</returns>
    /// <exception cref="ObjectDisposedException">The pool has been destroyed.</exception>
    public nint MempoolAlloc(Mempool pool, Gfp gfp, CancellationToken cancellationToken) { using var _ = _life.Enter(); return Mempools.Live(pool).Alloc(gfp, Timeout.Infinite, cancellationToken); }

    /// <summary>mempool_free: puts the element back into the reserve while the reserve is below
    /// <see cref="Mempool.MinNr"/> (and wakes the callers waiting for one), else gives it to the underlying
    /// free function. 0 is ignored. Never sleeps.</summary>
    /// <exception cref="KernelBugException">The element is already in the reserve (double free); nothing
    /// changes (with <see cref="OnBug.Report"/> the report is logged instead).</exception>
    public void MempoolFree(nint element, Mempool pool) { using var _ = _life.Enter(); Mempools.Exists(pool).Free(element); }

    /// <summary>mempool_resize: changes <see cref="Mempool.MinNr"/>. Shrinking gives the surplus reserved
    /// elements back at once; growing tries to fill the reserve with GFP_KERNEL and stops quietly when the
    /// allocator fails (frees refill it later).</summary>
    /// <returns>0.</returns>
    /// <remarks>May sleep.</remarks>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="newMinNr"/> is not positive (the kernel's BUG_ON).</exception>
    /// <exception cref="ObjectDisposedException">The pool has been destroyed.</exception>
    public int MempoolResize(Mempool pool, int newMinNr)
    {
        using var _ = _life.Enter();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(newMinNr);
        return Mempools.Live(pool).Resize(newMinNr);
    }

    /// <summary>mempool_destroy: frees the reserved elements and the pool. Elements still out with callers
    /// are reported in the log ("mempool_destroy: … element(s) still allocated"); if they are later given to
    /// <see cref="MempoolFree"/> they go straight back to the allocator. A null pool is ignored.</summary>
    /// <param name="pool">The pool, or null.</param>
    /// <param name="caller">The calling method, named in the report; filled in by the compiler.</param>
    /// <returns>The number of elements still out (0 for a pool all of whose elements came back).</returns>
    /// <exception cref="ArgumentException">The pool belongs to another machine.</exception>
    public long MempoolDestroy(Mempool? pool, [CallerMemberName] string caller = "") { using var _ = _life.Enter(); return pool is null ? 0 : Mempools.Exists(pool).Destroy(caller); }

    /// <summary>mempool_alloc_slab: the slab pool's allocator (<paramref name="poolData"/> is the cache).</summary>
    /// <returns>An object, or 0.</returns>
    public nint MempoolAllocSlab(Gfp gfp, object? poolData) { using var _ = _life.Enter(); return KmemCacheAlloc(Mempools.PoolDataAs<KmemCache>(poolData), gfp); }

    /// <summary>mempool_free_slab: the slab pool's free function.</summary>
    public void MempoolFreeSlab(nint element, object? poolData) { using var _ = _life.Enter(); KmemCacheFree(Mempools.PoolDataAs<KmemCache>(poolData), element); }

    /// <summary>mempool_kmalloc: the kmalloc pool's allocator (<paramref name="poolData"/> is the size, a
    /// boxed <see cref="nuint"/>).</summary>
    /// <returns>A block, or 0.</returns>
    public nint MempoolKmalloc(Gfp gfp, object? poolData) { using var _ = _life.Enter(); return Kmalloc(Mempools.PoolDataAs<nuint>(poolData), gfp); }

    /// <summary>mempool_kfree: the kmalloc pool's free function.</summary>
    public void MempoolKfree(nint element, object? poolData) { using var _ = _life.Enter(); Kfree(element); }

    /// <summary>mempool_alloc_pages: the page pool's allocator (<paramref name="poolData"/> is the order, a
    /// boxed <see cref="int"/>).</summary>
    /// <returns>The block's struct page pointer (see <see cref="MempoolElementPage"/>), or 0.</returns>
    public nint MempoolAllocPages(Gfp gfp, object? poolData) { using var _ = _life.Enter(); return Mempools.AllocPages(gfp, poolData); }

    /// <summary>mempool_free_pages: the page pool's free function.</summary>
    public void MempoolFreePages(nint element, object? poolData) { using var _ = _life.Enter(); Mempools.FreePages(element, poolData); }

    /// <summary>The struct page pointer of a frame: the address of its entry in the memmap, which is what a
    /// page pool hands out as an element.</summary>
    /// <exception cref="ArgumentException">The page is <see cref="Page.Null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The page is beyond the machine's memory.</exception>
    public nint MempoolPageElement(Page page) { using var _ = _life.Enter(); return Mempools.PageElement(page); }

    /// <summary>The frame a page pool's element (a struct page pointer) stands for.</summary>
    /// <exception cref="ArgumentException">The element does not point at an entry of this machine's memmap.</exception>
    public Page MempoolElementPage(nint element) { using var _ = _life.Enter(); return Mempools.ElementPage(element); }
}
