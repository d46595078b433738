// The random object sizes of the batch and larson workloads: log-uniform from
// 16 to 4095 bytes (every power-of-two octave equally likely, uniform inside
// it), from a seeded generator, so every contender gets the same sequence.
namespace Kmem.Bench;

internal static class SizeDistribution
{
    /// <summary>The smallest size drawn.</summary>
    public const int MinSize = 16;

    /// <summary>The largest size drawn.</summary>
    public const int MaxSize = 4095;

    /// <summary>The distribution in words, for tables and JSON.</summary>
    public const string Description =
        "log-uniform 16..4095 B: each octave [2^k, 2^(k+1)) for k = 4..11 equally likely, uniform inside it (mean 764.5 B)";

    /// <summary>The mean of the distribution: the mean of the 8 octaves' means, (2^k + 2^(k+1) - 1) / 2.</summary>
    public static double Mean
    {
        get
        {
            double sum = 0;
            for (int k = 4; k < 12; k++)
            {
                sum += ((1 << k) + (1 << (k + 1)) - 1) / 2.0;
            }
            return sum / 8;
        }
    }

    /// <summary><paramref name="count"/> sizes from the seeded sequence <paramref name="seed"/>.</summary>
    public static int[] Sizes(int count, int seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var random = new Random(seed);
        var sizes = new int[count];
        for (int i = 0; i < count; i++)
        {
            sizes[i] = Next(random);
        }
        return sizes;
    }

    /// <summary>One size: an octave k = 4 .. 11 chosen uniformly, then a size uniform in [2^k, 2^(k+1)).</summary>
    public static int Next(Random random)
    {
        int low = 1 << random.Next(4, 12);
        return low + random.Next(low);
    }

    /// <summary>A random permutation of 0 .. count-1 (Fisher–Yates), the order the batch frees in.</summary>
    public static int[] Permutation(int count, int seed)
    {
        var random = new Random(seed);
        var order = new int[count];
        for (int i = 0; i < count; i++)
        {
            order[i] = i;
        }
        random.Shuffle(order);
        return order;
    }
}
