// Statistics of repeated timings: median, minimum and maximum of a sample.
// Pure; no state.
namespace Kmem.Bench;

/// <summary>The median, minimum and maximum of <see cref="Count"/> repeated measurements.</summary>
internal readonly record struct Summary(double Median, double Min, double Max, int Count)
{
    /// <summary>Summarises <paramref name="values"/>; the median of an even count is the mean of the middle two.</summary>
    /// <exception cref="ArgumentException">The sample is empty or holds a NaN.</exception>
    public static Summary Of(ReadOnlySpan<double> values)
    {
        if (values.IsEmpty)
        {
            throw new ArgumentException("no measurements to summarise", nameof(values));
        }
        double[] sorted = values.ToArray();
        Array.Sort(sorted);
        if (double.IsNaN(sorted[^1]) || double.IsNaN(sorted[0]))
        {
            throw new ArgumentException("a measurement is NaN", nameof(values));
        }
        int n = sorted.Length;
        double median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
        return new Summary(median, sorted[0], sorted[^1], n);
    }
}
