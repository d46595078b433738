// vmalloc's failures and misuse: 32-bit vmalloc space exhaustion, the host
// map-count budget (through the per-machine test cap), vfree of a pointer that
// is not an area, and machines disposed with areas still mapped. Each failure
// must return 0 with the kernel's warning and leave frames and areas as they were.
using Kmem.Vmalloc;

namespace Kmem.Tests.Vmalloc;

// Serial with the other vmalloc tests: they share the process-wide host-mapping count that one of them checks.
[Collection("VmallocHostMappings")]
public class VmallocFailureTests
{

    [Fact]
    public void ExhaustingThe32BitVmallocSpaceFailsCleanly()
    {
        using var m = VmallocTests.Boot(Preset.X86Pae, "1536M", cpus: 1);
        using var cpu = m.OnCpu(0);
        const int chunk = 8 << 20;
        var areas = new List<nint>();
        long freeBefore = VmallocTests.FreeAfterDrain(m);
        nint p;
        while ((p = m.Vmalloc(chunk)) != 0)
        {
            areas.Add(p);
            Assert.True(areas.Count < 20, "120 MiB of vmalloc space held more than 19 areas of 8 MiB");
        }
        Assert.Equal(14, areas.Count); // 14 × (8 MiB + guard + 8 KiB array + guard) fit in 120 MiB, a 15th does not
        Assert.Contains($"vmap allocation for size {chunk + 4096} failed: use vmalloc=<size> to increase size", m.Log.Lines);
        Assert.Contains(m.Log.Lines, l => l.EndsWith($": vmalloc error: size {chunk}, vm_struct allocation failed, mode:0xcc0(GFP_KERNEL), nodemask=(null),cpuset=/,mems_allowed=0", StringComparison.Ordinal));
        Assert.Equal(28, m.VmallocSpace.AreaCount); // each with its page array's area (2048 × 4 bytes: "vpages")
        long used = 14L * (chunk + 8192) / 1024;
        Assert.Equal(used, VmallocTests.Meminfo(m, "VmallocUsed"));
        Assert.Equal(freeBefore - used, VmallocTests.FreeAfterDrain(m));
        // A small request still fits in what is left.
        nint small = m.Vmalloc(64 << 10);
        Assert.NotEqual(0, small);
        m.Vfree(small);
        foreach (nint a in areas)
        {
            m.Vfree(a);
        }
        Assert.Equal(freeBefore, VmallocTests.FreeAfterDrain(m));
        // The next allocation that does not fit purges the lazy areas and retries.
        nint again = m.Vmalloc(chunk);
        Assert.Equal(areas[0], again);
        m.Vfree(again);
    }

    [Fact]
    public void TheHostMapCountBudgetFailsCleanly()
    {
        using var m = VmallocTests.Boot(Preset.X64);
        using var cpu = m.OnCpu(0);
        var kept = VmallocTests.Scatter(m, 64, Gfp.Kernel);
        m.VmallocSpace.HostMapLimit = 8;
        nint one = m.Vmalloc(Machine.PageSize); // one run: its mapping, and the rest of the reservation
        Assert.NotEqual(0, one);
        Assert.Equal(2, m.VmallocSpace.HostMaps);
        long freeBefore = VmallocTests.FreeAfterDrain(m);
        string infoBefore = m.Proc.Vmallocinfo();
        nint scattered = m.Vmalloc(32 * Machine.PageSize); // many runs: over the cap
        Assert.Equal(0, scattered);
        Assert.Contains(m.Log.Lines, l => l.Contains(", failed to map pages, mode:0xcc0(GFP_KERNEL)", StringComparison.Ordinal)
            && l.Contains($"vmalloc error: size {32 * Machine.PageSize}", StringComparison.Ordinal));
        Assert.Equal(freeBefore, VmallocTests.FreeAfterDrain(m));
        Assert.Equal(2, m.VmallocSpace.HostMaps);
        Assert.Equal(1, m.VmallocSpace.AreaCount);
        Assert.Equal(4, VmallocTests.Meminfo(m, "VmallocUsed"));
        Assert.StartsWith(infoBefore, m.Proc.Vmallocinfo(), StringComparison.Ordinal); // plus the failed range, unpurged
        m.VmallocSpace.HostMapLimit = null;
        nint fits = m.Vmalloc(32 * Machine.PageSize);
        Assert.NotEqual(0, fits);
        m.Vfree(fits);
        m.Vfree(one);
        Assert.Equal(2 + 32, m.VmallocSpace.HostMaps); // stale until reused or flushed
        m.VmUnmapAliases();
        Assert.Equal(1, m.VmallocSpace.HostMaps); // the reservation's remainder
        Assert.Equal(m.VmallocSpace.HostMaps, m.VmallocSpace.BudgetCharged);
        Assert.True(HostMapBudget.Used <= HostMapBudget.Budget);
        foreach (var page in kept)
        {
            m.FreePage(page);
        }
    }

    [Fact]
    public void VfreeOfAPointerThatIsNotAnAreaWarnsAndFreesNothing()
    {
        using var m = VmallocTests.Boot(Preset.X64);
        using var cpu = m.OnCpu(0);
        nint p = m.Vmalloc(4 * Machine.PageSize);
        long free = VmallocTests.FreeAfterDrain(m);
        string info = m.Proc.Vmallocinfo();
        ulong k = m.VmallocKernelAddress(p);

        m.Vfree(p + Machine.PageSize);
        int at = m.Log.Lines.ToList().IndexOf($"Trying to vfree() nonexistent vm area ({k + 4096:x16})");
        Assert.True(at >= 0);
        Assert.Equal($"WARNING: CPU: 0 PID: {Environment.ProcessId} at mm/vmalloc.c __vunmap", m.Log.Lines[at + 1]);
        m.Vfree(p + 8);
        Assert.Contains(m.Log.Lines, l => l.StartsWith($"Trying to vfree() bad address ({k + 8:x16})", StringComparison.Ordinal));
        nint direct = m.GetFreePage(Gfp.Kernel);
        m.Vfree(direct);
        Assert.Contains(m.Log.Lines, l => l.StartsWith("Trying to vfree() nonexistent vm area (ffff888", StringComparison.Ordinal));
        m.FreePage(direct);
        int lines = m.Log.Lines.Count;
        m.Vfree(0);
        Assert.Equal(lines, m.Log.Lines.Count);

        Assert.Equal(free, VmallocTests.FreeAfterDrain(m));
        Assert.Equal(info, m.Proc.Vmallocinfo());
        Assert.False(m.VmallocToPage(p + 3 * Machine.PageSize).IsNull);
        m.Vfree(p);
        m.Vfree(p); // a second vfree: the area is gone
        Assert.Equal(1, m.Log.Lines.Count(l => l.StartsWith($"Trying to vfree() nonexistent vm area ({k:x16})", StringComparison.Ordinal)));
    }

    [Fact]
    public void DisposeGivesEveryMappingBack()
    {
        for (int i = 0; i < 12; i++)
        {
            var m = VmallocTests.Boot(i % 2 == 0 ? Preset.X64 : Preset.X86Pae, i % 2 == 0 ? "128M" : "1536M", cpus: 1);
            var space = m.VmallocSpace;
            var kept = VmallocTests.Scatter(m, 16, Gfp.HighUser);
            nint a = m.Vmalloc(16 * Machine.PageSize);
            nint b = m.Vmap(kept.ToArray(), VmFlags.Map, PageProt.PageKernel);
            Assert.NotEqual(0, a);
            Assert.NotEqual(0, b);
            Assert.True(space.HostMaps >= 4);
            Assert.Equal(space.HostMaps, space.BudgetCharged); // the areas' mappings and the window's reservation
            m.Vfree(a); // its mappings stay, stale, and go with the window
            m.Dispose();
            Assert.Equal(0, space.HostMaps);
            // What this machine took from the process-wide budget is back. (The budget's own count moves with
            // the machines of tests running in parallel, so it is not what is compared.)
            Assert.Equal(0, space.BudgetCharged);
            Assert.False(space.Contains(a));
            Assert.Throws<ObjectDisposedException>(() => m.Vmalloc(4096));
        }
    }
}
