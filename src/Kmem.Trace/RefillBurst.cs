// One rmqueue_bulk as the trace shows it: a run of mm_page_alloc_zone_locked percpu_refill=1
// events on one CPU, with the fallback steals seen during it. TraceReplayer keeps one per CPU
// and reuses it; used on the replaying thread only.
namespace Kmem;

/// <summary>A run of zone_locked percpu_refill=1 events on one CPU: one rmqueue_bulk.</summary>
internal sealed class RefillBurst
{
    public readonly List<ulong> Pfns = [];
    public int Order;
    public MigrateType Mt;
    public long Line;
    public bool Growing;
    public (bool Yes, bool Ownership) Steal;
    public readonly List<KernelSteal> Steals = [];

    public bool Open => Pfns.Count > 0;

    public void Start(int order, MigrateType mt, long line, (bool, bool) steal, List<KernelSteal> steals)
    {
        Pfns.Clear();
        Steals.Clear();
        Steals.AddRange(steals);
        Order = order;
        Mt = mt;
        Line = line;
        Steal = steal;
    }

    public void Close()
    {
        Pfns.Clear();
        Growing = false;
        Steal = default;
        Steals.Clear();
    }
}

/// <summary>A kernel fallback steal (mm_page_alloc_extfrag): the stolen block's frame, the request's order and type, the
/// block's order and type, whether the pageblock changed owner, and how many blocks of the request's order the
/// allocation took from the type's lists after it (set when an allocation claims the steal).</summary>
internal readonly record struct KernelSteal(ulong Pfn, int Order, int FallbackOrder, MigrateType Mt, MigrateType FallbackMt,
    bool Ownership, int BlocksBefore, int BlocksAfter = 0);
