// The machine's counters as System.Diagnostics.Metrics instruments: a meter
// named "Kmem" with one observable instrument per /proc/vmstat line, named as
// the line. Values come from the same table and readers as /proc/vmstat, read
// when a listener collects. Created by Machine.Metrics, disposed with the machine.
using Kmem.Physical;
using System.Diagnostics.Metrics;
using Kmem.PageAlloc;
using Kmem.Proc;

namespace Kmem;

/// <summary>
/// The instruments of one machine (<see cref="Machine.Metrics"/>): a <see cref="System.Diagnostics.Metrics.Meter"/>
/// named <see cref="MeterName"/> with an observable instrument for every /proc/vmstat field, named exactly as
/// the field ("nr_free_pages", "pgalloc_dma32", "pgfree", …) and reporting the value /proc/vmstat prints.
/// </summary>
/// <remarks>
/// Event counts (vm events and NUMA events) are observable counters; the others (zone, node and
/// computed values such as nr_dirty_threshold) are observable gauges. Each machine has its own meter;
/// tell machines apart by <see cref="Meter"/> when listening in-process.
/// </remarks>
#pragma warning disable CA1001 // the machine disposes the meter (Dispose below), not the user
public sealed class MachineMetrics
#pragma warning restore CA1001
{
    /// <summary>The meter's name, by which metrics listeners select it.</summary>
    public const string MeterName = "Kmem";

    /// <param name="pa">The page allocator whose counters /proc/vmstat prints.</param>
    /// <param name="items">The preset's vmstat table.</param>
    /// <param name="life">The machine's lifetime: a collection racing with Dispose reads 0, never freed memory.</param>
    internal MachineMetrics(PageAllocator pa, VmstatItem[] items, MachineLifetime life)
    {
        _life = life;
        _meter = new Meter(MeterName, "6.1");
        var names = new string[items.Length];
        for (int i = 0; i < items.Length; i++)
        {
            var item = items[i];
            names[i] = item.Name;
            // A counter of a layer Kmem does not have yet is 0; it needs no read of the machine.
            Func<long> observe = item.Source == VmSource.None ? static () => 0 : () => Observe(life, pa, item);
            string description = "/proc/vmstat " + item.Name;
            if (item.Kind is VmstatKind.Event or VmstatKind.Numa)
            {
                _meter.CreateObservableCounter(item.Name, observe, unit: null, description);
            }
            else
            {
                _meter.CreateObservableGauge(item.Name, observe, unit: null, description);
            }
        }
        _names = names;
    }

    private readonly MachineLifetime _life;
    private readonly Meter _meter;
    private readonly string[] _names;

    /// <summary>The machine's meter (name <see cref="MeterName"/>).</summary>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public Meter Meter { get { _life.ThrowIfDisposed(); return _meter; } }

    /// <summary>The instruments' names, in /proc/vmstat order.</summary>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public IReadOnlyList<string> InstrumentNames { get { _life.ThrowIfDisposed(); return _names; } }

    /// <summary>One instrument's value; 0 once the machine is disposed (a listener may collect while it is).</summary>
    private static long Observe(MachineLifetime life, PageAllocator pa, VmstatItem item)
    {
        if (life.IsDisposed)
        {
            return 0;
        }
        try
        {
            using var _ = life.Enter();
            return VmTotals.Read(pa).Value(item);
        }
        catch (ObjectDisposedException)
        {
            return 0;
        }
    }

    /// <summary>Disposes the meter, which ends every instrument's publication.</summary>
    internal void Dispose() => _meter.Dispose();
}
