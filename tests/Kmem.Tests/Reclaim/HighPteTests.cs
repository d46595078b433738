// CONFIG_HIGHPTE on the x86-32 presets: a task's PTE tables are allocated with __GFP_HIGHMEM, so they come
// from HighMem and are reached through the table window (Highmem/PteWindow.cs); the levels above stay in
// lowmem. Faults, compaction's migration, reclaim's unmap and swap-in, and exit all go through such
// tables, over more tables than the window keeps mapped at once.
using Kmem.Highmem;
using Kmem.Tests.Trace;
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

[Collection("reclaim-files")]
public class HighPteTests
{
    // More PTE tables than the window keeps mapped: each 2 MiB region needs one.
    private const int Regions = PteWindow.Slots + 8;

    private static ulong Region(ulong a, int r) => a + ((ulong)r << 21);

    [Fact]
    public void PteTablesComeFromHighMemAndTheLevelsAboveFromLowmem()
    {
        using var m = Boot("1G", Preset.X86Pae);
        long freeBefore = ReplayData.FreeAndPcpPages(m);
        var t = m.CreateTask("pte")!;
        ulong a = t.Mmap((ulong)Regions << 21);
        for (int r = 0; r < Regions; r++)
        {
            Fill(t, Region(a, r), 3 * Machine.PageSize, (byte)r);
        }
        var tables = m.Mm.PageTables(t);
        Assert.Equal(Regions, tables.Count(x => x.Level == 1));
        Assert.All(tables, x => Assert.Equal(x.Level == 1, m.PageHighMem(new Page(x.Pfn))));
        Assert.True(m.Highmem.PteTables.Maps > PteWindow.Slots, "the window never mapped a slot over"); // slots were reused
        for (int r = 0; r < Regions; r++)
        {
            Check(t, Region(a, r), 3 * Machine.PageSize, (byte)r);
        }
        m.Mm.Validate();
        t.Exit();
        Assert.Equal(0, m.Mm.NrPageTable);
        Assert.Equal(freeBefore, ReplayData.FreeAndPcpPages(m)); // every table, page and the stack back
    }

    [Fact]
    public void WithoutHighPteEveryTableIsInLowmem()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "1G", Preset = Preset.X86Pae, Cpus = 1, Seed = 1, HighPte = false });
        var t = m.CreateTask("lowpte")!;
        ulong a = t.Mmap(4 << 21);
        for (int r = 0; r < 4; r++)
        {
            Fill(t, Region(a, r), Machine.PageSize, (byte)r);
        }
        var tables = m.Mm.PageTables(t);
        Assert.Equal(4, tables.Count(x => x.Level == 1));
        Assert.DoesNotContain(tables, x => m.PageHighMem(new Page(x.Pfn)));
        m.Mm.Validate();
    }

    [Fact]
    public void HighPteOnAPresetWithoutHighMemIsRefusedByName()
    {
        var e = Assert.Throws<MachineOptionException>(() => Machine.Boot(new MachineOptions { Memory = "128M", HighPte = true }));
        Assert.Equal("HighPte", e.Option);
        Assert.Contains("X64", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CompactionRepointsPtesInHighMemTables()
    {
        using var m = Boot("1G", Preset.X86Pae);
        var keeper = m.CreateTask("keeper")!;
        var leaver = m.CreateTask("leaver")!;
        const int chunk = 64, chunks = 128;
        ulong a = keeper.Mmap(chunk * chunks * Machine.PageSize), b = leaver.Mmap(chunk * chunks * Machine.PageSize);
        // Chunks in turn, so that the leaver's exit leaves 64-page holes between the keeper's chunks.
        for (int c = 0; c < chunks; c++)
        {
            Fill(keeper, a + (ulong)(c * chunk) * Machine.PageSize, chunk * Machine.PageSize, 1);
            Fill(leaver, b + (ulong)(c * chunk) * Machine.PageSize, chunk * Machine.PageSize, 2);
        }
        leaver.Exit();
        Assert.True(m.CompactMemory() > 0, "compaction migrated nothing");
        Check(keeper, a, chunk * chunks * Machine.PageSize, 1);
        Assert.All(m.Mm.PageTables(keeper).Where(x => x.Level == 1), x => Assert.True(m.PageHighMem(new Page(x.Pfn))));
        m.Mm.Validate();
    }

    [Fact]
    public void PagesSwapOutAndBackInThroughHighMemTables()
    {
        using var m = Boot("1G", Preset.X86Pae);
        using var swap = Swap(m, 256);
        var t = m.CreateTask("big")!;
        const int size = 1100 << 20; // more than the machine's RAM
        ulong a = t.Mmap(size);
        Fill(t, a, size, 5);
        Assert.True(t.SwapEnts > 0, "nothing was swapped out");
        Assert.Contains(m.Mm.PageTables(t), x => x.Level == 1 && m.PageHighMem(new Page(x.Pfn)));
        Check(t, a, size, 5);
        Assert.True(Vmstat(m)["pswpin"] > 0);
        m.Mm.Validate();
        t.Exit();
        Assert.Equal(Meminfo(m, "SwapTotal"), Meminfo(m, "SwapFree"));
    }
}
