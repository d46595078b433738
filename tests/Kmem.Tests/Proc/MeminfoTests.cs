// /proc/meminfo against the real snapshots (field order, label and value
// columns) and against the allocator's totals; the HighMem lines of 32-bit.
using System.Globalization;

namespace Kmem.Tests.Proc;

public class MeminfoTests
{
    [Theory]
    [InlineData(Snapshots.X64)]
    [InlineData(Snapshots.I386)]
    public void FieldsAndColumnsMatchTheRealSnapshot(string capture)
    {
        using var m = Snapshots.Boot(capture);
        var ours = Snapshots.SplitLines(m.Proc.Meminfo());
        var real = Snapshots.Lines(capture, "meminfo");
        Assert.Equal(real.Select(Label), ours.Select(Label));
        // Values end in column 24 ("%-16s%8lu", "HardwareCorrupted: %5lu", "HugePages_Total:   %5lu") unless
        // they are too wide for it, as VmallocTotal on x86-64 is.
        foreach (var lines in new[] { real, ours })
        {
            Assert.All(lines.Where(l => !l.StartsWith("VmallocTotal:", StringComparison.Ordinal)), l => Assert.Equal(24, ValueEnd(l)));
            Assert.All(lines, l => Assert.True(l.EndsWith(" kB", StringComparison.Ordinal) || l.StartsWith("HugePages_", StringComparison.Ordinal), l));
        }
    }

    [Fact]
    public void TotalsAreTheAllocatorsManagedAndFreePages()
    {
        using var m = Snapshots.BootX64();
        using (m.OnCpu(0))
        {
            Assert.False(m.AllocPages(Gfp.Kernel, 6).IsNull);
            Assert.False(m.AllocPages(Gfp.Kernel, 0).IsNull);
        }
        var pa = m.PageAllocator;
        var v = Values(m.Proc.Meminfo());
        long managed = pa.Zones.Sum(z => z.ManagedPages);
        long free = pa.Zones.Sum(z => z.FreePages);
        Assert.Equal(managed * 4, v["MemTotal"]);
        Assert.Equal(free * 4, v["MemFree"]);
        Assert.True(free < managed, "the allocations took pages");
        Assert.Equal(Math.Max(0, free - pa.TotalReservePages) * 4, v["MemAvailable"]);
        Assert.True(v["MemAvailable"] < v["MemFree"]);
        Assert.Equal(managed * 4 / 2, v["CommitLimit"]);
        Assert.False(v.ContainsKey("HighTotal"));
    }

    [Fact]
    public void VmallocTotalIsThePresetsAndTheDirectMapCoversLowmem()
    {
        using (var m = Snapshots.BootX64())
        {
            var v = Values(m.Proc.Meminfo());
            Assert.Equal(34359738367, v["VmallocTotal"]);
            Assert.Equal(2048, v["DirectMap4k"]);
            Assert.Equal(512 * 1024, v["DirectMap4k"] + v["DirectMap2M"] + v["DirectMap1G"]);
        }
        using (var m = Machine.Boot(new MachineOptions { Memory = "4G", Cpus = 1 }))
        {
            var v = Values(m.Proc.Meminfo());
            Assert.Equal(3L << 20, v["DirectMap1G"]);
            Assert.Equal((4L << 20) - (3L << 20) - 2048, v["DirectMap2M"]);
        }
        using (var m = Snapshots.BootPae())
        {
            var v = Values(m.Proc.Meminfo());
            Assert.Equal(122880, v["VmallocTotal"]);
            Assert.Equal(2048 + 2040, v["DirectMap4k"]); // the first 2 MiB and the unaligned 2040 kB tail
            Assert.Equal(901112, v["DirectMap4k"] + v["DirectMap2M"]); // lowmem ends at 0x36ffe000, as on the real kernel
            Assert.False(v.ContainsKey("DirectMap1G"));
        }
        using (var m = Machine.Boot(new MachineOptions { Memory = "1G", Cpus = 1, Preset = Preset.X86 }))
        {
            var v = Values(m.Proc.Meminfo());
            Assert.Equal(122880, v["VmallocTotal"]);
            Assert.Equal(901112, v["DirectMap4k"] + v["DirectMap4M"]);
            Assert.Equal(4096, v["Hugepagesize"]);
            Assert.False(v.ContainsKey("AnonHugePages"));
        }
    }

    [Fact]
    public void APaeMachineWith1536MReportsItsHighMem()
    {
        using var m = Snapshots.BootPae();
        using (m.OnCpu(0))
        {
            Assert.False(m.AllocPages(Gfp.HighUserMovable, 4).IsNull);
        }
        var high = m.PageAllocator.Zones.Single(z => z.Type == ZoneType.HighMem);
        var v = Values(m.Proc.Meminfo());
        Assert.True(high.ManagedPages > 0);
        Assert.Equal(high.ManagedPages * 4, v["HighTotal"]);
        Assert.Equal(high.FreePages * 4, v["HighFree"]);
        Assert.True(v["HighFree"] < v["HighTotal"], "the movable user allocation came from HighMem");
        Assert.Equal(v["MemTotal"] - v["HighTotal"], v["LowTotal"]);
        Assert.Equal(v["MemFree"] - v["HighFree"], v["LowFree"]);
    }

    private static string Label(string line) => line[..(line.IndexOf(':', StringComparison.Ordinal) + 1)];

    private static int ValueEnd(string line)
    {
        int end = line.Length;
        if (line.EndsWith(" kB", StringComparison.Ordinal))
        {
            end -= 3;
        }
        Assert.True(char.IsAsciiDigit(line[end - 1]), line);
        return end;
    }

    internal static Dictionary<string, long> Values(string text)
    {
        var d = new Dictionary<string, long>();
        foreach (var line in Snapshots.SplitLines(text))
        {
            string label = Label(line);
            string rest = line[label.Length..].Trim();
            if (rest.EndsWith(" kB", StringComparison.Ordinal))
            {
                rest = rest[..^3];
            }
            d.Add(label[..^1], long.Parse(rest, CultureInfo.InvariantCulture));
        }
        return d;
    }
}
