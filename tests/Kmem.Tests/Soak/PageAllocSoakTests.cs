// Long runs of the mixed workload, on every CPU at once, checking the allocator's invariants
// at the end: the free lists validate and every frame comes back to its zone once everything is
// freed and drained. (The buddyinfo of a fresh machine need not come back: high-order atomic
// allocations leave HighAtomic pageblocks, which do not merge above pageblock_order, as in the
// kernel.) Not part of the default run (Category=Soak):
//   dotnet test --filter "Category=Soak"
using Kmem.Workload;

namespace Kmem.Tests.Soak;

[Trait("Category", "Soak")]
public class PageAllocSoakTests
{
    [Theory]
    [InlineData(Preset.X64, "2G", 4)]
    [InlineData(Preset.X86Pae, "2G", 2)]
    public void ConcurrentMixedWorkloadsLeaveNoFrameBehind(Preset preset, string memory, int cpus)
    {
        using var m = Machine.Boot(new MachineOptions { Preset = preset, Memory = memory, Cpus = cpus, Seed = 11 });
        var fresh = FreePagesPerZone(m);
        var workloads = Enumerable.Range(0, cpus)
            .Select(_ => new MixedWorkload { Steps = 1_000_000, MaxWorkingSet = 0.8 / cpus, KeepAtEnd = 0.3 })
            .ToArray();
        var threads = workloads.Select((w, i) => new Thread(() => w.Run(m, 100 + i))).ToArray();
        foreach (var t in threads)
        {
            t.Start();
        }
        foreach (var t in threads)
        {
            t.Join();
        }
        foreach (var z in m.PageAllocator.Zones)
        {
            z.Validate();
        }
        foreach (var w in workloads)
        {
            w.FreeAll(m);
        }
        m.DrainAllPages();
        foreach (var z in m.PageAllocator.Zones)
        {
            z.Validate();
        }
        Assert.Equal(fresh, FreePagesPerZone(m));
    }

    private static long[] FreePagesPerZone(Machine m) => [.. m.PageAllocator.Zones.Select(z => z.FreePages)];
}
