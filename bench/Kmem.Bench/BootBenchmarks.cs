// Boot and shutdown under BenchmarkDotNet: Machine.Boot then Dispose of an X64
// machine with 1, 16 and 64 GiB and two CPUs: the memfd arena, the memmap, the
// boot reservations and the buddy lists filled with every free frame.
using BenchmarkDotNet.Attributes;

namespace Kmem.Bench;

[MemoryDiagnoser]
public class BootBenchmarks
{
    /// <summary>RAM size in GiB.</summary>
    [Params(1, 16, 64)]
    public int GiB { get; set; } = 1;

    [Benchmark]
    public void BootAndDispose()
    {
        using var machine = Machine.Boot(new MachineOptions { Memory = $"{GiB}G", Cpus = 2, Preset = Preset.X64, Seed = 1 });
    }
}
