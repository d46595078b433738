// The counters the page's two charts draw, sampled along one run (SampledSeries), so the
// charts show the run from its start even after a seek or a restart, which publish nothing on
// the way to their target. A sample reads /proc/vmstat and /proc/meminfo as an update does
// (LiveSnapshot.Counters), at most a few hundred times per doubling of the run's length.
// Replaying thread only (no locks); View copies for an update.
namespace Kmem.Live;

/// <summary>The charted counters, each sampled every <paramref name="Every"/> events (or steps) from the start:
/// sample i is at position i × Every.</summary>
internal sealed record LiveCounterSamples(long Every, Dictionary<string, long[]> Series);

/// <summary>The charted counters of one run, sampled.</summary>
internal sealed class CounterHistory(long every)
{
    /// <summary>What the charts draw: MemFree and Slab in kB, the rest event counts.</summary>
    public static readonly string[] Names =
        ["MemFree", "Slab", "pgalloc", "pgfree", "pgscan", "pgsteal", "pswpout", "compact_stall", "pageoutrun", "oom_kill"];

    private readonly SampledSeries _samples = new(Names.Length, every);
    private readonly long[] _values = new long[Names.Length];

    /// <summary>After an event (or a step), <paramref name="position"/> of them handled.</summary>
    public void After(Machine m, long position)
    {
        if (!_samples.Due(position))
        {
            return;
        }
        var counters = LiveSnapshot.Counters(m.Proc);
        for (int i = 0; i < Names.Length; i++)
        {
            _values[i] = counters.GetValueOrDefault(Names[i]);
        }
        _samples.Add(_values);
    }

    public LiveCounterSamples View() =>
        new(_samples.Every, Names.Select((n, i) => (n, i)).ToDictionary(x => x.n, x => _samples.Samples(x.i), StringComparer.Ordinal));
}
