// The host mappings behind vmalloc areas: a freed area's mappings kept (stale) and
// reused by a later area that maps the same frame at the same address, with no host
// call; replaced when the frame differs; guard pages that are holes; stale mappings
// given back when the map budget runs short (this machine's, then another's), on
// vm_unmap_aliases and at Dispose; and a hole taken by another mapping of the
// process, which fails the vmalloc cleanly and is never unmapped. What the host
// holds is read from /proc/self/maps.
using System.Runtime.InteropServices;
using Kmem.Vmalloc;

namespace Kmem.Tests.Vmalloc;

[Collection("VmallocHostMappings")]
public partial class VmallocHostMappingTests
{
    private const int Page = Machine.PageSize;

    private static Machine Boot() => VmallocTests.Boot(Preset.X64, "256M", cpus: 1);

    /// <summary>The host's mapping at <paramref name="address"/>: permissions and the memfd offset of its page, or
    /// an empty permission string for a hole.</summary>
    private static (string Perms, long Offset) Host(nint address)
    {
        var (perms, offset, _) = Highmem.HighmemFixtures.HostMapping(address);
        return (perms, offset);
    }

    /// <summary>The lazy areas become reusable (purge_vmap_area_lazy), their host mappings staying.</summary>
    private static void Purge(Machine m) => m.VmallocSpace.PurgeVmapAreaLazy();

    [Fact]
    public unsafe void AFreedAreasMappingIsReusedWithNoHostCallWhenTheSameFrameComesBackToTheSameAddress()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        nint p = m.Vmalloc(Page);
        Page frame = m.VmallocToPage(p);
        m.Vfree(p);
        Assert.True(m.VmallocToPage(p).IsNull); // the ptes go at once
        Assert.Equal(("rw-s", (long)frame.Pfn * Page), Host(p)); // the host mapping stays, stale
        Assert.Equal(1, m.VmallocSpace.StaleHostPages);
        Purge(m);
        long calls = m.VmallocSpace.HostCalls;

        nint q = m.Vmalloc(Page);
        Assert.Equal(p, q);
        Assert.Equal(frame, m.VmallocToPage(q)); // the pcp list gives the same frame back
        Assert.Equal(calls, m.VmallocSpace.HostCalls);
        Assert.Equal(0, m.VmallocSpace.StaleHostPages);
        *(long*)q = 0x1234_5678;
        Assert.Equal(0x1234_5678, MemoryMarshal.Read<long>(m.PageSpan(frame, 0)));
        m.Vfree(q);
    }

    [Fact]
    public unsafe void AStaleMappingOfAnotherFrameIsReplacedAndTheGuardPageBecomesAHole()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        nint p = m.Vmalloc(2 * Page);
        Page second = m.VmallocToPage(p + Page);
        m.Vfree(p);
        Purge(m);
        Page taken = m.AllocPage(Gfp.Kernel); // the frames come back in another order
        nint q = m.Vmalloc(Page);
        Assert.Equal(p, q);
        Page frame = m.VmallocToPage(q);
        Assert.Equal((long)frame.Pfn * Page, Host(q).Offset);
        *(long*)q = 0x0ddba11;
        Assert.Equal(0x0ddba11, MemoryMarshal.Read<long>(m.PageSpan(frame, 0)));
        // The guard page had the second frame mapped: now nothing is, on the host as in the ptes.
        Assert.Equal("", Host(q + Page).Perms);
        Assert.True(m.VmallocToPage(q + Page).IsNull);
        Assert.NotEqual(second, m.VmallocToPage(q));
        m.Vfree(q);
        m.FreePage(taken);
    }

    [Fact]
    public void VmUnmapAliasesTakesEveryStaleMappingAway()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        var kept = VmallocTests.Scatter(m, 16, Gfp.Kernel);
        nint p = m.Vmalloc(16 * Page); // sixteen runs of one frame
        nint busy = m.Vmalloc(Page);
        m.Vfree(p);
        Assert.Equal(16, m.VmallocSpace.StaleHostPages);
        int held = m.VmallocSpace.HostMaps;
        m.VmUnmapAliases();
        Assert.Equal(0, m.VmallocSpace.StaleHostPages);
        Assert.Equal(held - 16, m.VmallocSpace.HostMaps);
        Assert.Equal(m.VmallocSpace.HostMaps, m.VmallocSpace.BudgetCharged);
        for (int i = 0; i < 16; i++)
        {
            Assert.Equal("", Host(p + i * Page).Perms);
        }
        Assert.Equal("rw-s", Host(busy).Perms); // a busy area keeps its mapping
        m.Vfree(busy);
        foreach (var page in kept)
        {
            m.FreePage(page);
        }
    }

    [Fact]
    public void StaleMappingsGiveWayWhenTheMachinesMapBudgetRunsShort()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        var kept = VmallocTests.Scatter(m, 64, Gfp.Kernel);
        m.VmallocSpace.HostMapLimit = 40;
        long free = VmallocTests.FreeAfterDrain(m);
        // 200 areas of 8 scattered frames, freed at once: far more mappings than the cap over the run.
        for (int i = 0; i < 200; i++)
        {
            nint p = m.Vmalloc(8 * Page);
            Assert.NotEqual(0, p);
            Assert.InRange(m.VmallocSpace.HostMaps, 1, 40);
            m.Vfree(p);
        }
        Assert.True(m.VmallocSpace.StaleHostPages > 0);
        Assert.Equal(m.VmallocSpace.HostMaps, m.VmallocSpace.BudgetCharged);
        Assert.Equal(free, VmallocTests.FreeAfterDrain(m));
        m.VmallocSpace.HostMapLimit = null;
        foreach (var page in kept)
        {
            m.FreePage(page);
        }
    }

    [Fact]
    public void AnotherMachinesStaleMappingsAreGivenBackOnRequest()
    {
        using var a = Boot();
        using var b = Boot();
        nint p = a.Vmalloc(64 * Page);
        a.Vfree(p);
        Assert.True(a.VmallocSpace.StaleHostPages > 0);
        b.Vfree(b.Vmalloc(Page));
        HostMapBudget.ReclaimOthers(b.VmallocSpace);
        Assert.Equal(0, a.VmallocSpace.StaleHostPages);
        Assert.Equal(1, b.VmallocSpace.StaleHostPages); // the asker's own are its to flush
        Assert.Equal(a.VmallocSpace.HostMaps, a.VmallocSpace.BudgetCharged);
        Assert.Equal("", Host(p).Perms);
    }

    [Fact]
    public unsafe void AHoleTakenByAnotherMappingFailsTheVmallocCleanlyAndIsLeftAlone()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        nint p = m.Vmalloc(Page);
        m.Vfree(p);
        m.VmUnmapAliases();
        Assert.Equal("", Host(p).Perms);
        // Someone else in the process maps the hole.
        nint foreign = Mmap(p, Page, 0x3, 0x02 | 0x20 | 0x100000, -1, 0);
        Assert.Equal(p, foreign);
        *(long*)foreign = 42;
        long free = VmallocTests.FreeAfterDrain(m);
        string info = m.Proc.Vmallocinfo();

        Assert.Equal(0, m.Vmalloc(Page));
        Assert.Contains(m.Log.Lines, l => l.Contains("vmalloc error: size 4096, failed to map pages", StringComparison.Ordinal));
        Assert.Equal(42, *(long*)foreign); // not replaced
        Assert.Equal("rw-p", Host(p).Perms);
        Assert.Equal(free, VmallocTests.FreeAfterDrain(m));
        Assert.Equal(0, m.VmallocSpace.AreaCount);
        Assert.StartsWith(info, m.Proc.Vmallocinfo(), StringComparison.Ordinal); // plus the failed range, unpurged

        Assert.Equal(0, Munmap(foreign, Page));
        m.VmUnmapAliases();
        nint q = m.Vmalloc(Page);
        Assert.Equal(p, q);
        *(long*)q = 7;
        m.Vfree(q);
    }

    [Fact]
    public void DisposeUnmapsStaleMappingsAndTheReservationButNoHole()
    {
        var m = Boot();
        nint a = m.Vmalloc(3 * Page);
        nint b = m.Vmalloc(Page);
        m.Vfree(a);
        var space = m.VmallocSpace;
        Assert.Equal("rw-s", Host(a).Perms);
        Assert.Equal("---p", Host(b + 1024 * Page).Perms); // the reservation, two chunks on
        m.Dispose();
        Assert.Equal("", Host(a).Perms);
        Assert.Equal("", Host(b).Perms);
        Assert.Equal("", Host(b + 1024 * Page).Perms);
        Assert.Equal(0, space.BudgetCharged);
        Assert.Equal(0, space.HostMaps);
    }

    [Fact]
    public void AOnePageAreaTakesOneHostMapping()
    {
        using var m = Boot();
        nint first = m.Vmalloc(Page);
        int held = m.VmallocSpace.HostMaps;
        var areas = Enumerable.Range(0, 1000).Select(_ => m.Vmalloc(Page)).ToList();
        Assert.Equal(held + 1000, m.VmallocSpace.HostMaps);
        Assert.Equal("", Host(areas[0] + Page).Perms); // the guard page: a hole, no mapping of its own
        foreach (nint p in areas)
        {
            m.Vfree(p);
        }
        m.Vfree(first);
    }

    [LibraryImport("libc", EntryPoint = "mmap")]
    private static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap")]
    private static partial int Munmap(nint addr, nuint length);
}
