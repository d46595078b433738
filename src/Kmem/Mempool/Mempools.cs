// The mempool layer of one machine (mm/mempool.c): creating a pool and filling its
// reserve, the checks every mempool call makes of its pool (this machine's, not
// destroyed), and the page pool's functions (mempool_alloc_pages, mempool_free_pages)
// whose element is the struct page pointer: the address of the frame's entry in the
// memmap, as in the kernel. The slab and kmalloc pools' functions go through the
// machine's slab API. No state of its own beyond its collaborators; each pool owns its lock.
using System.Runtime.CompilerServices;
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem;

/// <summary>One machine's mempools: creation, the pool checks and the page pool's functions.</summary>
internal sealed class Mempools
{
    private readonly PhysMem _mem;

    /// <summary>The machine's lifetime: a sleeping mempool_alloc leaves when it ends.</summary>
    internal MachineLifetime Lifetime => _mem.Lifetime;
    private readonly PageAllocator _pa;
    private readonly CpuTopology _cpus;
    private readonly KernelLog _log;
    private readonly Action<KernelBugException> _bug;

    /// <param name="mem">Physical memory, whose memmap a page pool's elements point into.</param>
    /// <param name="pa">The page allocator behind page pools.</param>
    /// <param name="cpus">The CPUs, named in warnings.</param>
    /// <param name="log">The kernel log.</param>
    /// <param name="bug">The machine's policy for a kernel bug (throw, or log and carry on).</param>
    public Mempools(PhysMem mem, PageAllocator pa, CpuTopology cpus, KernelLog log, Action<KernelBugException> bug)
    {
        _mem = mem;
        _pa = pa;
        _cpus = cpus;
        _log = log;
        _bug = bug;
    }

    /// <summary>mempool_create: a pool whose reserve is filled now with GFP_KERNEL.</summary>
    /// <returns>The pool, or null when the reserve cannot be filled (the elements taken are given back).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="minNr"/> is negative.</exception>
    /// <exception cref="ArgumentNullException">A function is null.</exception>
    public Mempool? Create(int minNr, MempoolAllocFn allocFn, MempoolFreeFn freeFn, object? poolData, string name)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(minNr);
        ArgumentNullException.ThrowIfNull(allocFn);
        ArgumentNullException.ThrowIfNull(freeFn);
        var pool = new Mempool(this, name, minNr, allocFn, freeFn, poolData, _log, _bug, _cpus);
        return pool.Fill(Gfp.Kernel) ? pool : null;
    }

    /// <summary>The pool, once it is known to be one of this machine's.</summary>
    /// <exception cref="ArgumentNullException">The pool is null.</exception>
    /// <exception cref="ArgumentException">The pool belongs to another machine.</exception>
    public Mempool Exists(Mempool pool)
    {
        ArgumentNullException.ThrowIfNull(pool);
        return ReferenceEquals(pool.Owner, this) ? pool
            : throw new ArgumentException($"mempool {pool.Name} belongs to another machine", nameof(pool));
    }

    /// <summary>The pool, once it is known to be one of this machine's and not destroyed.</summary>
    /// <exception cref="ObjectDisposedException">The pool has been destroyed.</exception>
    public Mempool Live(Mempool pool) => Exists(pool).IsDestroyed
        ? throw new ObjectDisposedException(pool.Name, $"mempool {pool.Name} was destroyed") : pool;

    /// <summary>mempool_alloc_pages: an order-<paramref name="poolData"/> block's struct page pointer, or 0.</summary>
    public nint AllocPages(Gfp gfp, object? poolData)
    {
        var page = _pa.AllocPages(gfp, PoolDataAs<int>(poolData), -1);
        return page.IsNull ? 0 : PageElement(page);
    }

    /// <summary>mempool_free_pages.</summary>
    public void FreePages(nint element, object? poolData) => _pa.FreePages(ElementPage(element), PoolDataAs<int>(poolData));

    /// <summary>The struct page pointer of a frame: the address of its entry in the memmap.</summary>
    /// <exception cref="ArgumentException">The page is <see cref="Page.Null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The page is beyond the machine's memory.</exception>
    public unsafe nint PageElement(Page page) => (nint)Unsafe.AsPointer(ref _mem.Frame(_mem.CheckedPfn(page)));

    /// <summary>The frame a struct page pointer stands for.</summary>
    /// <exception cref="ArgumentException">The element does not point at an entry of this machine's memmap.</exception>
    public unsafe Page ElementPage(nint element)
    {
        nint memmap = (nint)Unsafe.AsPointer(ref _mem.Frame(0));
        long offset = (long)element - memmap;
        int entry = sizeof(PageFrame);
        return offset >= 0 && offset % entry == 0 && offset / entry < (long)_mem.MaxPfn ? new Page((uint)(offset / entry))
            : throw new ArgumentException($"0x{element:x} is not a struct page pointer of this machine", nameof(element));
    }

    /// <summary>A pool function's data as the type the function expects.</summary>
    /// <exception cref="ArgumentException">The data is of another type.</exception>
    public static T PoolDataAs<T>(object? poolData) => poolData is T t ? t
        : throw new ArgumentException($"the pool data is {poolData?.GetType().Name ?? "null"}, not {typeof(T).Name}", nameof(poolData));
}
