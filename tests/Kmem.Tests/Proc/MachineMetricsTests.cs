// The "Kmem" meter: one instrument per /proc/vmstat line, reporting what the
// file prints; listened to with a MeterListener restricted to this machine's
// meter, since other tests' machines publish meters of the same name.
using System.Diagnostics.Metrics;

namespace Kmem.Tests.Proc;

public class MachineMetricsTests
{
    [Fact]
    public void EveryVmstatFieldIsAnInstrumentOfTheKmemMeter()
    {
        using var m = Snapshots.BootX64();
        var meter = m.Metrics.Meter;
        Assert.Equal("Kmem", meter.Name);
        var kinds = new Dictionary<string, Type>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter == meter)
                {
                    kinds.Add(instrument.Name, instrument.GetType().GetGenericTypeDefinition());
                }
            },
        };
        listener.Start();
        var names = Snapshots.SplitLines(m.Proc.Vmstat()).Select(l => l.Split(' ')[0]).ToList();
        Assert.Equal(names.Order(StringComparer.Ordinal), kinds.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(names, m.Metrics.InstrumentNames);
        Assert.Equal(typeof(ObservableGauge<>), kinds["nr_free_pages"]);
        Assert.Equal(typeof(ObservableCounter<>), kinds["pgalloc_dma32"]);
        Assert.Equal(typeof(ObservableCounter<>), kinds["numa_hit"]);
    }

    [Fact]
    public void InstrumentsReportTheValuesVmstatPrints()
    {
        using var m = Snapshots.BootX64();
        using var cpu = m.OnCpu(0);
        var meter = m.Metrics.Meter;
        var seen = new Dictionary<string, long>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter == meter)
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, state) => seen[instrument.Name] = value);
        listener.Start();

        listener.RecordObservableInstruments();
        long allocBefore = seen["pgalloc_dma32"];
        var page = m.AllocPages(Gfp.Kernel, 3);
        Assert.False(page.IsNull);
        listener.RecordObservableInstruments();
        Assert.Equal(8, seen["pgalloc_dma32"] - allocBefore);

        var vmstat = Snapshots.NameValues(m.Proc.Vmstat());
        Assert.Equal(vmstat.Count, seen.Count);
        foreach (var (name, value) in vmstat)
        {
            Assert.True(seen[name] == value, $"{name}: the instrument reports {seen[name]}, /proc/vmstat {value}");
        }
        Assert.True(seen["nr_free_pages"] > 0);
        Assert.True(seen["nr_dirty_threshold"] > 0);
    }

    [Fact]
    public void DisposingTheMachinesMetricsEndsTheInstruments()
    {
        using var m = Snapshots.BootX64();
        var meter = m.Metrics.Meter;
        int instruments = m.Metrics.InstrumentNames.Count;
        int completed = 0;
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter == meter)
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
            MeasurementsCompleted = (instrument, state) => Interlocked.Increment(ref completed),
        };
        listener.Start();
        m.DisposeProc();
        Assert.Equal(instruments, completed);
        Assert.Throws<ObjectDisposedException>(() => m.Metrics);
    }
}
