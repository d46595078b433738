// One rmqueue_bulk as the trace shows it: a run of mm_page_alloc_zone_locked percpu_refill=1
// events on one CPU, with the fallback steal seen during it. TraceReplayer keeps one per CPU
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

    public bool Open => Pfns.Count > 0;

    public void Start(int order, MigrateType mt, long line, (bool, bool) steal)
    {
        Pfns.Clear();
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
    }
}
