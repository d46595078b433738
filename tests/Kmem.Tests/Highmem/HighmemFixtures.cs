// Machines and pages the highmem tests share: an X86Pae (or X86) machine with
// 1536 MiB, so frames above 880 MiB are in ZONE_HIGHMEM, and helpers that fill
// and check a page's bytes through whatever mapping a test holds.
namespace Kmem.Tests.Highmem;

internal static class HighmemFixtures
{
    public static Machine Boot(Preset preset = Preset.X86Pae, OnBug onBug = OnBug.Throw, int cpus = 2) =>
        Machine.Boot(new MachineOptions { Memory = "1536M", Cpus = cpus, Preset = preset, OnBug = onBug, Seed = 1 });

    /// <summary>A highmem frame; asserts it really is one.</summary>
    public static Page HighPage(Machine m)
    {
        var page = m.AllocPage(Gfp.HighUser);
        Assert.False(page.IsNull);
        Assert.True(m.PageHighMem(page), $"{page} is not in ZONE_HIGHMEM");
        return page;
    }

    public static Page[] HighPages(Machine m, int n) => [.. Enumerable.Range(0, n).Select(_ => HighPage(m))];

    /// <summary>What the host has mapped at <paramref name="address"/> (from /proc/self/maps): the
    /// permissions, the file offset of that byte's page, and the backing file's name.</summary>
    public static (string Perms, long Offset, string Path) HostMapping(nint address)
    {
        ulong a = (ulong)address;
        foreach (string line in File.ReadLines("/proc/self/maps"))
        {
            string[] f = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            string[] range = f[0].Split('-');
            ulong start = Convert.ToUInt64(range[0], 16), end = Convert.ToUInt64(range[1], 16);
            if (a >= start && a < end)
            {
                long offset = Convert.ToInt64(f[2], 16) + (long)((a & ~0xfffUL) - start);
                return (f[1], offset, f.Length > 5 ? f[5].Trim() : "");
            }
        }
        return ("", 0, "");
    }

    public static unsafe void Fill(nint address, byte seed)
    {
        var span = new Span<byte>((void*)address, Machine.PageSize);
        for (int i = 0; i < span.Length; i++)
        {
            span[i] = (byte)(seed + i * 7);
        }
    }

    public static unsafe bool Holds(nint address, byte seed)
    {
        var span = new ReadOnlySpan<byte>((void*)address, Machine.PageSize);
        for (int i = 0; i < span.Length; i++)
        {
            if (span[i] != (byte)(seed + i * 7))
            {
                return false;
            }
        }
        return true;
    }
}
