// The pressure side of a replay (Pressure/PressureReplay.cs does the work): the vmscan,
// compaction and oom events and the markers go to it before each event is dispatched,
// sys_swapon's and sys_swapoff's slab events turn Kmem's swap on and off, user pages and
// their frees are its instead of the page path's. Part of TraceReplayer.
namespace Kmem;

public sealed partial class TraceReplayer
{
    private PressureReplay? _pressure;

    private void StartPressure(TraceReader reader)
    {
        _pressure = new PressureReplay(_m, _decisions, _kmem is not null, _options.Aligned, reader.FileName) { DriftScope = c => new DriftScope(_drift, c), TracedKswapd = _kernel.Kswapd, Exited = { PgdLent = _tables.PgdIsLent } };
        _tables.TablesGone = _pressure.TablesGone;
    }

    // A user page: the pressure side makes it a page of a Kmem task; Kmem's page-allocator decisions for the fault
    // that allocated it are set against the kernel's like any page allocation's (aligned first, as ReplayPageAlloc does).
    private bool UserPageAlloc(ref TraceEvent e, in PendingPage p)
    {
        if (_options.Aligned && PressureReplay.IsUserPage(in e))
        {
            _pcpModel!.AlignForAlloc(p.Pfn, p.Order, p.Gfp, p.ModelBefore, p.ModelFf, _m.PageAllocator.Cpus.Current);
        }
        _kmem?.Reset();
        if (!_pressure!.PageAlloc(ref e, out uint kmemPfn))
        {
            return false;
        }
        if (kmemPfn != uint.MaxValue)
        {
            _pagesReplayed++;
            if (_kmem is not null)
            {
                DecidePageAlloc(p, _m.PfnToPage(kmemPfn));
                AlignKernelSteals(p.Steals);
            }
        }
        return true;
    }

    private void FinishPressure()
    {
        _pressure!.Finish();
        _pressure.DeleteSwapFile();
    }

    /// <summary>The pressure state of the replay now (between two events, as the snapshot hook sees it): the phase,
    /// Kmem's free pages against its watermarks, and the phase's kernel and Kmem counts so far; null until either side
    /// has shown pressure (a vmscan, compaction or oom event in the trace, or Kmem's own kswapd wakeup, direct reclaim,
    /// direct compaction or OOM kill).</summary>
    public TracePressureNow? PressureNow => _pressure is { PressureSeen: true } p ? p.Report.Now(p) : null;

    private TracePressure? PressureResult() => _pressure is { Active: true } p ? p.Report.Build(p) : null;
}
