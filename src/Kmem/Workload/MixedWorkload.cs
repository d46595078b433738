// A built-in mixed workload for the page allocator: what a small kernel does in
// a few seconds of life, reduced to page allocations. Each step, on a CPU chosen
// round-robin, either allocates (mostly order 0, some orders 1-3, rarely larger;
// GFP_KERNEL, movable user pages, reclaimable, atomic, DMA) or frees a random
// held block. It ends with part of its working set still held, so the reports
// show a used, somewhat fragmented machine. Deterministic for a given seed.
namespace Kmem.Workload;

/// <summary>The outcome of a <see cref="MixedWorkload"/> run.</summary>
/// <param name="Allocations">Successful allocations.</param>
/// <param name="Failures">Allocations that returned null.</param>
/// <param name="Frees">Blocks freed.</param>
/// <param name="HeldBlocks">Blocks still held at the end.</param>
/// <param name="HeldPages">Pages still held at the end.</param>
public readonly record struct WorkloadResult(long Allocations, long Failures, long Frees, int HeldBlocks, long HeldPages);

/// <summary>A mixed page-allocator workload: allocations of several orders and kinds, with random lifetimes.</summary>
public sealed class MixedWorkload
{
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

    /// <summary>Allocation steps to run. Default 200 000.</summary>
    public int Steps { get; init; } = 200_000;

    /// <summary>Largest working set, as a fraction of the machine's managed memory. Default 0.6.</summary>
    public double MaxWorkingSet { get; init; } = 0.6;

    /// <summary>Fraction of the working set still held when the run ends. Default 0.5.</summary>
    public double KeepAtEnd { get; init; } = 0.5;

    /// <summary>The blocks still held after <see cref="Run"/>.</summary>
    public IReadOnlyList<(Page Page, int Order)> Held => _held;

    /// <summary>Runs the workload on <paramref name="m"/>, drawing every choice from a generator seeded
    /// with <paramref name="seed"/>.</summary>
    public WorkloadResult Run(Machine m, int seed)
    {
        ArgumentNullException.ThrowIfNull(m);
        var rng = new Random(seed);
        long managedPages = m.PageAllocator.TotalRamPages;
        long limit = (long)(managedPages * MaxWorkingSet);
        long heldPages = _held.Sum(h => 1L << h.Order);
        long allocs = 0, fails = 0, frees = 0;
        int totalWeight = s_kinds.Sum(k => k.Weight);
        for (int step = 0; step < Steps; step++)
        {
            using var cpu = m.OnCpu(step % m.NrCpus);
            bool allocate = _held.Count == 0 || (heldPages < limit && rng.Next(100) < 55);
            if (allocate)
            {
                int order = PickOrder(rng);
                Gfp gfp = PickKind(rng, totalWeight);
                var page = m.AllocPages(gfp | Gfp.NoWarn, order);
                if (page.IsNull)
                {
                    fails++;
                    continue;
                }
                allocs++;
                _held.Add((page, order));
                heldPages += 1L << order;
            }
            else
            {
                heldPages -= FreeAt(m, rng.Next(_held.Count));
                frees++;
            }
        }
        long keep = (long)(heldPages * KeepAtEnd);
        while (heldPages > keep && _held.Count > 0)
        {
            heldPages -= FreeAt(m, rng.Next(_held.Count));
            frees++;
        }
        return new WorkloadResult(allocs, fails, frees, _held.Count, heldPages);
    }

    /// <summary>Frees every block still held.</summary>
    public void FreeAll(Machine m)
    {
        ArgumentNullException.ThrowIfNull(m);
        while (_held.Count > 0)
        {
            FreeAt(m, _held.Count - 1);
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
