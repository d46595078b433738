// Helpers for the memory-pressure tests: small machines, vmstat and meminfo
// readers, temporary swap and data files, and a bounded wait for kswapd.
namespace Kmem.Tests.Reclaim;

internal static class ReclaimTestKit
{
    public static Machine Boot(string memory = "64M", Preset preset = Preset.X64, bool kswapd = false, int seed = 1) =>
        Machine.Boot(new MachineOptions { Memory = memory, Preset = preset, Kswapd = kswapd, Seed = seed, Cpus = 1 });

    public static Dictionary<string, long> Vmstat(Machine m) =>
        m.Proc.Vmstat().Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ')).ToDictionary(p => p[0], p => long.Parse(p[1], System.Globalization.CultureInfo.InvariantCulture));

    public static long Meminfo(Machine m, string key)
    {
        foreach (var line in m.Proc.Meminfo().Split('\n'))
        {
            if (line.StartsWith(key + ":", StringComparison.Ordinal))
            {
                return long.Parse(line[(key.Length + 1)..].Replace("kB", "", StringComparison.Ordinal).Trim(), System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        throw new KeyNotFoundException(key);
    }

    /// <summary>A temporary file path, deleted when the returned scope is disposed.</summary>
    public static TempPath Temp(string name) => new(Path.Combine(Path.GetTempPath(), $"kmem-{name}-{Environment.ProcessId}-{Guid.NewGuid():N}"));

    /// <summary>A swap file of <paramref name="mib"/> MiB, made and switched on.</summary>
    public static TempPath Swap(Machine m, int mib)
    {
        var p = Temp("swap");
        m.Mkswap(p.Path, (long)mib << 20);
        m.Swapon(p.Path);
        return p;
    }

    /// <summary>Fills [addr, addr + bytes) with a pattern derived from the address and a tag.</summary>
    public static void Fill(TaskStruct t, ulong addr, int bytes, byte tag)
    {
        var page = new byte[Machine.PageSize];
        for (int off = 0; off < bytes; off += page.Length)
        {
            Pattern(page, addr + (ulong)off, tag);
            t.Write(addr + (ulong)off, page.AsSpan(0, Math.Min(page.Length, bytes - off)));
        }
    }

    /// <summary>Checks what <see cref="Fill"/> wrote.</summary>
    public static void Check(TaskStruct t, ulong addr, int bytes, byte tag)
    {
        var page = new byte[Machine.PageSize];
        var want = new byte[Machine.PageSize];
        for (int off = 0; off < bytes; off += page.Length)
        {
            int n = Math.Min(page.Length, bytes - off);
            t.Read(addr + (ulong)off, page.AsSpan(0, n));
            Pattern(want, addr + (ulong)off, tag);
            Assert.True(want.AsSpan(0, n).SequenceEqual(page.AsSpan(0, n)), $"task {t.Pid}: bytes at 0x{addr + (ulong)off:x} differ");
        }
    }

    private static void Pattern(byte[] page, ulong va, byte tag)
    {
        ulong x = va * 0x9E3779B97F4A7C15UL ^ tag;
        for (int i = 0; i < page.Length; i += 8)
        {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            BitConverter.TryWriteBytes(page.AsSpan(i), x);
        }
    }

    /// <summary>Polls <paramref name="condition"/> every 10 ms for at most <paramref name="seconds"/>.</summary>
    public static bool WaitFor(Func<bool> condition, double seconds = 20)
    {
        var until = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < until)
        {
            if (condition())
            {
                return true;
            }
            Thread.Sleep(10);
        }
        return condition();
    }
}

internal sealed class TempPath(string path) : IDisposable
{
    public string Path { get; } = path;

    public void Dispose()
    {
        try
        {
            File.Delete(Path);
        }
        catch (IOException)
        {
        }
    }
}
