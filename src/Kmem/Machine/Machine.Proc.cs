// The reports' public face on Machine: the /proc and debugfs files (Proc),
// /sys/kernel/slab (SysSlab) and the same counters as System.Diagnostics.Metrics
// instruments (Metrics), all created on first use. The meter lives as long as the
// machine: DisposeProc, called from Dispose, stops it; _procLock makes creation
// and disposal race-free. The machine is the reports' IProcSources: the layers it
// creates on first use reach Proc only through that interface.
using Kmem.Percpu;
using Kmem.Proc;
using Kmem.Vmalloc;

namespace Kmem;

public sealed partial class Machine : IProcSources
{
    private readonly Lock _procLock = new();
    private ProcFs? _proc;
    private SysSlab? _sysSlab;
    private MachineMetrics? _metrics;
    private bool _procDisposed;

    /// <summary>The machine's /proc and debugfs memory-management files (buddyinfo, meminfo, vmstat, …).</summary>
    public ProcFs Proc { get { using var _ = _life.Enter(); return _proc ??= new ProcFs(PageAllocator, SlabLayer, Mm, this, _life); } }

    /// <summary>The machine's /sys/kernel/slab: every SLUB cache's sysfs attributes in the kernel's text, and
    /// the links of merged caches. Only a machine booted with SLUB has it (<see cref="SysSlab.Available"/>).</summary>
    public SysSlab SysSlab { get { using var _ = _life.Enter(); return _sysSlab ??= new SysSlab(SlabLayer, _options.Slab, Arch, NrCpus, NrNodes, _life); } }

    /// <summary>
    /// The machine's counters as System.Diagnostics.Metrics instruments of a meter named "Kmem": one per
    /// /proc/vmstat line, under the same name, for any metrics listener that selects the meter "Kmem".
    /// Created on first access; disposed with the machine.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public MachineMetrics Metrics
    {
        get
        {
            using var _ = _life.Enter();
            return CreateOnce(ref _metrics, _procLock, ref _procDisposed, static m => new MachineMetrics(m.PageAllocator, VmstatText.For(m.Preset), m._life));
        }
    }

    /// <summary>Stops publishing the metrics; the machine calls it when it is disposed.</summary>
    internal void DisposeProc()
    {
        lock (_procLock)
        {
            _procDisposed = true;
            _metrics?.Dispose();
            Volatile.Write(ref _metrics, null);
        }
    }

    VmapSpace IProcSources.VmallocSpace => VmallocSpace;

    long IProcSources.VmallocPages => VmallocPages;

    PercpuAllocator IProcSources.PercpuAllocator => PercpuAllocator;

    long IProcSources.PercpuPages => PercpuPages;
}
