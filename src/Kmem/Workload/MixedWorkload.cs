// A built-in mixed workload: what a small kernel does in a few seconds of life. Each
// step, on a CPU chosen round-robin, either allocates or frees a random held item.
// Allocations are pages (mostly order 0, some orders 1-3, rarely larger; GFP_KERNEL,
// movable user pages, reclaimable, atomic, DMA) and, when their shares are set,
// kmalloc blocks (mostly small, a few above a page), objects of a few kmem_caches the
// workload creates (dentry-, inode-, buffer_head- and vm_area-like) and vmalloc areas.
// It ends with part of its working set still held, so the reports show a used,
// somewhat fragmented machine. Deterministic for a given seed.
namespace Kmem.Workload;

/// <summary>The outcome of a <see cref="MixedWorkload"/> run.</summary>
/// <param name="Allocations">Successful allocations.</param>
/// <param name="Failures">Allocations that returned null.</param>
/// <param name="Frees">Blocks freed.</param>
/// <param name="HeldBlocks">Blocks still held at the end.</param>
/// <param name="HeldPages">Pages still held at the end.</param>
/// <param name="HeldObjects">kmalloc blocks and cache objects still held at the end.</param>
/// <param name="HeldVmallocAreas">vmalloc areas still held at the end.</param>
public readonly record struct WorkloadResult(long Allocations, long Failures, long Frees, int HeldBlocks, long HeldPages,
    int HeldObjects = 0, int HeldVmallocAreas = 0);

/// <summary>A mixed workload: page allocations of several orders and kinds, and (with their shares set) kmalloc,
/// kmem_cache and vmalloc allocations, with random lifetimes.</summary>
public sealed class MixedWorkload
{
    // The workload's own caches: name, object size, flags (shaped after dentry, inode, buffer_head, vm_area_struct).
    private static readonly (string Name, uint Size, SlabFlags Flags)[] s_caches =
    [
        ("workload_dentry", 192, SlabFlags.ReclaimAccount),
        ("workload_inode", 600, SlabFlags.ReclaimAccount | SlabFlags.HwcacheAlign),
        ("workload_buffer_head", 104, SlabFlags.ReclaimAccount),
        ("workload_vm_area", 152, SlabFlags.None),
    ];

    private static readonly (Gfp Gfp, int Weight)[] s_kinds =
    [
        (Gfp.Kernel, 40),
        (Gfp.HighUserMovable, 35),
        (Gfp.Kernel | Gfp.Reclaimable, 12),
        (Gfp.Atomic, 8),
        (Gfp.Kernel | Gfp.Dma, 1),
        (Gfp.Kernel | Gfp.Comp, 4),
    ];

    private readonly List<(Page Page, int Order)> _held = [];
    private readonly List<(nint Ptr, KmemCache? Cache, long Bytes)> _objects = [];
    private readonly List<(nint Ptr, long Bytes)> _areas = [];
    private KmemCache?[]? _caches;

    /// <summary>Allocation steps to run. Default 200 000.</summary>
    public int Steps { get; init; } = 200_000;

    /// <summary>Largest working set, as a fraction of the machine's managed memory. Default 0.6.</summary>
    public double MaxWorkingSet { get; init; } = 0.6;

    /// <summary>Fraction of the working set still held when the run ends. Default 0.5.</summary>
    public double KeepAtEnd { get; init; } = 0.5;

    /// <summary>Share (0..1) of allocations that are kmalloc blocks. Default 0 (pages only).</summary>
    public double KmallocShare { get; init; }

    /// <summary>Share (0..1) of allocations that are objects of the workload's own kmem_caches. Default 0.</summary>
    public double CacheShare { get; init; }

    /// <summary>Share (0..1) of allocations that are vmalloc areas (1 to 64 pages). Default 0.</summary>
    public double VmallocShare { get; init; }

    /// <summary>The workload's settings for <c>kmem proc</c>: every kind of allocation.</summary>
    public static MixedWorkload Everything(int steps) =>
        new() { Steps = steps, KmallocShare = 0.35, CacheShare = 0.25, VmallocShare = 0.01 };

    /// <summary>The blocks still held after <see cref="Run"/>.</summary>
    public IReadOnlyList<(Page Page, int Order)> Held => _held;

    /// <summary>Runs the workload on <paramref name="m"/>, drawing every choice from a generator seeded
    /// with <paramref name="seed"/>.</summary>
    /// <exception cref="InvalidOperationException">Slab shares are set and the machine has no slab layer
    /// (a backend this build lacks).</exception>
    public WorkloadResult Run(Machine m, int seed)
    {
        ArgumentNullException.ThrowIfNull(m);
        var rng = new Random(seed);
        long managedPages = m.PageAllocator.TotalRamPages;
        long limit = (long)(managedPages * MaxWorkingSet);
        long heldPages = _held.Sum(h => 1L << h.Order) + (_objects.Sum(o => o.Bytes) + _areas.Sum(a => a.Bytes)) / Machine.PageSize;
        long allocs = 0, fails = 0, frees = 0;
        int totalWeight = s_kinds.Sum(k => k.Weight);
        if (CacheShare > 0 && _caches is null)
        {
            // Pinned, as every step is: an unpinned thread's CPU is the host's choice, and the run must repeat.
            using var boot = m.OnCpu(0);
            _caches = [.. s_caches.Select(c => m.KmemCacheCreate(c.Name, c.Size, 0, c.Flags, null))];
        }
        for (int step = 0; step < Steps; step++)
        {
            using var cpu = m.OnCpu(step % m.NrCpus);
            int items = _held.Count + _objects.Count + _areas.Count;
            bool allocate = items == 0 || (heldPages < limit && rng.Next(100) < 55);
            if (!allocate)
            {
                heldPages -= FreeRandom(m, rng, items);
                frees++;
                continue;
            }
            // Page-only runs draw exactly as before the other kinds existed, so their outcome for a seed is unchanged.
            double kind = KmallocShare + CacheShare + VmallocShare > 0 ? rng.NextDouble() : 1;
            long pages;
            if (kind < KmallocShare)
            {
                pages = AllocKmalloc(m, rng);
            }
            else if (kind < KmallocShare + CacheShare)
            {
                pages = AllocObject(m, rng);
            }
            else if (kind < KmallocShare + CacheShare + VmallocShare)
            {
                pages = AllocArea(m, rng);
            }
            else
            {
                int order = PickOrder(rng);
                Gfp gfp = PickKind(rng, totalWeight);
                var page = m.AllocPages(gfp | Gfp.NoWarn, order);
                pages = page.IsNull ? -1 : 1L << order;
                if (!page.IsNull)
                {
                    _held.Add((page, order));
                }
            }
            if (pages < 0)
            {
                fails++;
                continue;
            }
            allocs++;
            heldPages += pages;
        }
        long keep = (long)(heldPages * KeepAtEnd);
        while (heldPages > keep && _held.Count + _objects.Count + _areas.Count > 0)
        {
            using var cpu = m.OnCpu((int)(frees % m.NrCpus));
            heldPages -= FreeRandom(m, rng, _held.Count + _objects.Count + _areas.Count);
            frees++;
        }
        return new WorkloadResult(allocs, fails, frees, _held.Count, _held.Sum(h => 1L << h.Order), _objects.Count, _areas.Count);
    }

    // kmalloc: mostly small sizes (a lognormal-ish spread from 8 bytes), a few above a page.
    private long AllocKmalloc(Machine m, Random rng)
    {
        int r = rng.Next(1000);
        nuint size = r < 970 ? (nuint)(8 << rng.Next(0, 9)) - (nuint)rng.Next(0, 8) : (nuint)rng.Next(4097, 64 << 10);
        Gfp gfp = rng.Next(10) switch { 0 => Gfp.Atomic, 1 => Gfp.Kernel | Gfp.Account, _ => Gfp.Kernel };
        nint p = m.Kmalloc(size, gfp | Gfp.NoWarn);
        if (p == 0)
        {
            return -1;
        }
        long bytes = (long)m.Ksize(p);
        _objects.Add((p, null, bytes));
        return bytes / Machine.PageSize;
    }

    private long AllocObject(Machine m, Random rng)
    {
        var cache = _caches![rng.Next(_caches.Length)]!;
        nint p = m.KmemCacheAlloc(cache, Gfp.Kernel | Gfp.NoWarn);
        if (p == 0)
        {
            return -1;
        }
        _objects.Add((p, cache, cache.Size));
        return 0;
    }

    private long AllocArea(Machine m, Random rng)
    {
        long bytes = (long)rng.Next(1, 65) * Machine.PageSize;
        nint p = m.Vmalloc((nuint)bytes);
        if (p == 0)
        {
            return -1;
        }
        _areas.Add((p, bytes));
        return bytes / Machine.PageSize;
    }

    // Frees a random item of all held (blocks, objects, areas), each equally likely; returns its pages.
    private long FreeRandom(Machine m, Random rng, int items)
    {
        int i = rng.Next(items);
        if (i < _held.Count)
        {
            return FreeAt(m, i);
        }
        i -= _held.Count;
        if (i < _objects.Count)
        {
            var (p, cache, bytes) = _objects[i];
            _objects[i] = _objects[^1];
            _objects.RemoveAt(_objects.Count - 1);
            if (cache is null)
            {
                m.Kfree(p);
            }
            else
            {
                m.KmemCacheFree(cache, p);
            }
            return bytes / Machine.PageSize;
        }
        i -= _objects.Count;
        var (area, areaBytes) = _areas[i];
        _areas[i] = _areas[^1];
        _areas.RemoveAt(_areas.Count - 1);
        m.Vfree(area);
        return areaBytes / Machine.PageSize;
    }

    /// <summary>Frees every block, object and area still held.</summary>
    public void FreeAll(Machine m)
    {
        ArgumentNullException.ThrowIfNull(m);
        var rng = new Random(0);
        while (_held.Count + _objects.Count + _areas.Count > 0)
        {
            FreeRandom(m, rng, _held.Count + _objects.Count + _areas.Count);
        }
    }

    private long FreeAt(Machine m, int i)
    {
        var (page, order) = _held[i];
        _held[i] = _held[^1];
        _held.RemoveAt(_held.Count - 1);
        m.FreePages(page, order);
        return 1L << order;
    }

    private static int PickOrder(Random rng)
    {
        int r = rng.Next(1000);
        return r < 800 ? 0 : r < 880 ? 1 : r < 940 ? 2 : r < 980 ? 3 : r < 995 ? rng.Next(4, 9) : rng.Next(9, Machine.MaxOrder);
    }

    private static Gfp PickKind(Random rng, int totalWeight)
    {
        int r = rng.Next(totalWeight);
        foreach (var (gfp, weight) in s_kinds)
        {
            if (r < weight)
            {
                return gfp;
            }
            r -= weight;
        }
        return Gfp.Kernel;
    }
}
