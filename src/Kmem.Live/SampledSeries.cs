// Figures sampled along one run for the page's charts: one value per series at positions 0,
// Every, 2 × Every, … (events handled, or a scenario's steps), so a chart drawn after a seek
// or a restart still has the whole run behind it. At most MaxSamples per series: when full,
// every other sample is dropped (those kept are at multiples of twice the interval) and
// sampling goes on half as often, so a run of any length fits and the samples stay evenly
// spaced. Replaying thread only (no locks); Samples copies for an update.
namespace Kmem.Live;

/// <summary>Series sampled every <see cref="Every"/> positions from the start of a run.</summary>
internal sealed class SampledSeries
{
    public const int MaxSamples = 256;

    private readonly List<long>[] _series;
    private long _next;

    /// <param name="count">Series sampled together.</param>
    /// <param name="every">Positions between two samples at first.</param>
    public SampledSeries(int count, long every)
    {
        _series = [.. Enumerable.Range(0, count).Select(_ => new List<long>())];
        Every = every;
    }

    /// <summary>Positions between two samples: sample i was taken at position i × Every.</summary>
    public long Every { get; private set; }

    /// <summary>Samples taken (and kept) per series.</summary>
    public int Count { get; private set; }

    /// <summary>Whether a sample is due at <paramref name="position"/>.</summary>
    public bool Due(long position) => position >= _next;

    /// <summary>Takes one sample of every series.</summary>
    public void Add(ReadOnlySpan<long> values)
    {
        for (int i = 0; i < _series.Length; i++)
        {
            _series[i].Add(values[i]);
        }
        if (++Count >= MaxSamples)
        {
            foreach (var s in _series)
            {
                int k = 0;
                for (int j = 0; j < s.Count; j += 2)
                {
                    s[k++] = s[j];
                }
                s.RemoveRange(k, s.Count - k);
            }
            Count = (Count + 1) / 2;
            Every *= 2;
        }
        _next = Count * Every;
    }

    /// <summary>The samples of series <paramref name="i"/>, copied.</summary>
    public long[] Samples(int i) => [.. _series[i]];
}
