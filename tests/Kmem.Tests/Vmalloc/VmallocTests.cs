// vmalloc over scattered frames: one contiguous writable range whose bytes land in
// the frames the page tables name, the vmallocinfo line, frames back on vfree and
// the range reused after the lazy purge; vmalloc_32, vmalloc_user, vzalloc; the
// area's bounds per preset. Every test pins CPU 0 so frames come from one pcp list.
namespace Kmem.Tests.Vmalloc;

// Serial with the other vmalloc tests: they share the process-wide host-mapping count that one of them checks.
[Collection("VmallocHostMappings")]
public class VmallocTests
{
    internal static Machine Boot(Preset preset, string memory = "512M", int cpus = 2, OnBug onBug = OnBug.Throw) =>
        Machine.Boot(new MachineOptions { Memory = memory, Cpus = cpus, Preset = preset, Seed = 1, OnBug = onBug });

    /// <summary>Allocates 2n frames and frees every other one, so the next n order-0 allocations on this
    /// CPU get frames that are not contiguous. Returns the frames kept.</summary>
    internal static List<Page> Scatter(Machine m, int n, Gfp gfp)
    {
        var kept = new List<Page>();
        var freed = new List<Page>();
        for (int i = 0; i < 2 * n; i++)
        {
            var page = m.AllocPage(gfp);
            Assert.False(page.IsNull);
            (i % 2 == 0 ? kept : freed).Add(page);
        }
        foreach (var page in freed)
        {
            m.FreePage(page);
        }
        return kept;
    }

    /// <summary>MemFree + Slab in kB once the pcp lists are drained: the page pointer arrays of small areas
    /// are kmalloc objects, whose slabs stay cached after kfree.</summary>
    internal static long FreeAfterDrain(Machine m)
    {
        m.DrainAllPages();
        return Meminfo(m, "MemFree") + Meminfo(m, "Slab");
    }

    internal static long Meminfo(Machine m, string key) =>
        m.Proc.Meminfo().Split('\n').Where(l => l.StartsWith(key + ":", StringComparison.Ordinal))
            .Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1])).Single();

    private static byte Pattern(int page, int offset) => (byte)(page * 31 + offset * 7 + 1);

    [Theory]
    [InlineData(Preset.X64)]
    [InlineData(Preset.X86Pae)]
    [InlineData(Preset.X86)]
    public unsafe void AVmallocOverScatteredFramesIsOneContiguousRangeWhoseBytesLandInTheRightFrames(Preset preset)
    {
        const int n = 200;
        using var m = Boot(preset, preset == Preset.X64 ? "512M" : "1536M");
        using var cpu = m.OnCpu(0);
        var kept = Scatter(m, n + 8, preset == Preset.X64 ? Gfp.Kernel : Gfp.HighUser);
        long freeBefore = FreeAfterDrain(m);

        nint p = m.Vmalloc(n * Machine.PageSize);
        Assert.NotEqual(0, p);
        Assert.True(m.IsVmallocAddr(p));
        var bytes = new Span<byte>((void*)p, n * Machine.PageSize);
        for (int i = 0; i < bytes.Length; i++)
        {
            bytes[i] = Pattern(i / Machine.PageSize, i % Machine.PageSize);
        }
        var frames = new List<Page>();
        for (int i = 0; i < n; i++)
        {
            var page = m.VmallocToPage(p + i * Machine.PageSize + 123);
            Assert.False(page.IsNull);
            frames.Add(page);
            nint mapped = m.KmapLocalPage(page);
            try
            {
                var frame = new ReadOnlySpan<byte>((void*)mapped, Machine.PageSize);
                for (int j = 0; j < Machine.PageSize; j += 97)
                {
                    Assert.Equal(Pattern(i, j), frame[j]);
                }
            }
            finally
            {
                m.KunmapLocal(mapped);
            }
        }
        Assert.Equal(n, frames.Distinct().Count());
        int gaps = frames.Zip(frames.Skip(1)).Count(f => f.Second.Pfn != f.First.Pfn + 1);
        Assert.True(gaps > n / 4, $"only {gaps} discontinuities: the frames were not scattered");
        if (preset != Preset.X64)
        {
            Assert.Contains(frames, f => m.PageHighMem(f));
        }
        Assert.True(m.VmallocToPage(p + n * Machine.PageSize).IsNull, "the guard page is mapped");

        ulong k = m.VmallocKernelAddress(p);
        Assert.Equal(m.VmallocStart, k);
        Assert.Equal(p, m.VmallocHostAddress(k));
        string width = preset == Preset.X64 ? "x16" : "x8";
        string line = m.Proc.Vmallocinfo().Split('\n').Single(l => l.Length > 0);
        string expected = $"0x{k.ToString(width)}-0x{(k + (n + 1) * 4096UL).ToString(width)} {(n + 1) * 4096,7} "
            + $"{nameof(AVmallocOverScatteredFramesIsOneContiguousRangeWhoseBytesLandInTheRightFrames)} pages={n} vmalloc"
            + (preset == Preset.X64 ? $" N0={n}" : "");
        Assert.Equal(expected, line);
        Assert.Equal(n * 4, Meminfo(m, "VmallocUsed"));

        m.Vfree(p);
        Assert.Equal(freeBefore, FreeAfterDrain(m));
        Assert.Equal(0, Meminfo(m, "VmallocUsed"));
        Assert.True(m.VmallocToPage(p).IsNull);
        Assert.Equal($"0x{k.ToString(width)}-0x{(k + (n + 1) * 4096UL).ToString(width)} {(n + 1) * 4096,7} unpurged vm_area\n", m.Proc.Vmallocinfo());

        // The lazily freed range is not reused before a purge, and is after one.
        nint again = m.Vmalloc(n * Machine.PageSize);
        Assert.True(again > p);
        m.Vfree(again);
        m.VmUnmapAliases();
        Assert.Equal("", m.Proc.Vmallocinfo());
        nint reused = m.Vmalloc(n * Machine.PageSize);
        Assert.Equal(p, reused);
        m.Vfree(reused);
        foreach (var page in kept)
        {
            m.FreePage(page);
        }
    }

    [Fact]
    public void LazilyFreedAreasArePurgedOnceTheyExceedLazyMaxPages()
    {
        using var m = Boot(Preset.X64, "512M", cpus: 1);
        using var cpu = m.OnCpu(0);
        Assert.Equal(8192, m.VmallocSpace.LazyMaxPages); // fls(1) × 32 MiB of pages
        nint a = m.Vmalloc(16 << 20);
        m.Vfree(a);
        Assert.Equal(4097 + 9, m.VmallocSpace.LazyPages); // and the 32 KiB page array's own area
        Assert.EndsWith(" unpurged vm_area\n", m.Proc.Vmallocinfo(), StringComparison.Ordinal);
        nint b = m.Vmalloc(16 << 20);
        Assert.NotEqual(a, b);
        m.Vfree(b);
        // b's area pushed the lazy pages past 8192 and purged them; its page array was freed after that.
        Assert.Equal(9, m.VmallocSpace.LazyPages);
        Assert.Single(m.Proc.Vmallocinfo().Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(a, m.Vmalloc(Machine.PageSize));
    }

    [Fact]
    public void AdjacentLazilyFreedAreasShowAsOneUnpurgedRange()
    {
        using var m = Boot(Preset.X64);
        nint a = m.Vmalloc(Machine.PageSize);
        nint b = m.Vmalloc(3 * Machine.PageSize);
        Assert.Equal(a + 2 * Machine.PageSize, b);
        m.Vfree(a);
        m.Vfree(b);
        ulong k = m.VmallocStart;
        Assert.Equal($"0x{k:x16}-0x{k + 0x6000:x16}   24576 unpurged vm_area\n", m.Proc.Vmallocinfo());
    }

    [Theory]
    [InlineData(Preset.X64)]
    [InlineData(Preset.X86Pae)]
    public unsafe void VzallocAndVmallocUserAreZeroedAndVmallocUserIsMarkedUser(Preset preset)
    {
        using var m = Boot(preset, preset == Preset.X64 ? "512M" : "1536M");
        using var cpu = m.OnCpu(0);
        nint dirty = m.Vmalloc(8 * Machine.PageSize);
        new Span<byte>((void*)dirty, 8 * Machine.PageSize).Fill(0xa5);
        m.Vfree(dirty);
        nint z = m.Vzalloc(8 * Machine.PageSize);
        Assert.True(new ReadOnlySpan<byte>((void*)z, 8 * Machine.PageSize).IndexOfAnyExcept((byte)0) < 0);
        new Span<byte>((void*)z, 8 * Machine.PageSize).Fill(0x5a);
        m.Vfree(z);
        nint u = m.VmallocUser(8 * Machine.PageSize);
        Assert.True(new ReadOnlySpan<byte>((void*)u, 8 * Machine.PageSize).IndexOfAnyExcept((byte)0) < 0);
        Assert.Contains(preset == Preset.X64 ? " pages=8 vmalloc user N0=8\n" : " pages=8 vmalloc user\n", m.Proc.Vmallocinfo(), StringComparison.Ordinal);
        m.Vfree(u);
    }

    [Fact]
    public void Vmalloc32TakesFramesBelow4GiB()
    {
        using var m = Boot(Preset.X64, "6G");
        nint p = m.Vmalloc32(64 * Machine.PageSize);
        Assert.NotEqual(0, p);
        for (int i = 0; i < 64; i++)
        {
            var page = m.VmallocToPage(p + i * Machine.PageSize);
            Assert.True(page.Pfn < (4UL << 30) / Machine.PageSize, $"{page} is above 4 GiB");
            Assert.Contains(m.PageZone(page), new[] { ZoneType.Dma, ZoneType.Dma32 });
        }
        m.Vfree(p);
        nint plain = m.Vmalloc(64 * Machine.PageSize);
        Assert.Equal(ZoneType.Normal, m.PageZone(m.VmallocToPage(plain)));
        m.Vfree(plain);
    }

    [Fact]
    public void Vmalloc32On32BitTakesLowmemAndVmallocPrefersHighmem()
    {
        using var m = Boot(Preset.X86Pae, "1536M");
        nint low = m.Vmalloc32(16 * Machine.PageSize);
        nint any = m.Vmalloc(16 * Machine.PageSize);
        for (int i = 0; i < 16; i++)
        {
            Assert.False(m.PageHighMem(m.VmallocToPage(low + i * Machine.PageSize)));
            Assert.True(m.PageHighMem(m.VmallocToPage(any + i * Machine.PageSize)));
        }
        m.Vfree(low);
        m.Vfree(any);
    }

    [Fact]
    public void VmallocNodeTakesFramesFromTheNode()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "1G", Cpus = 2, Nodes = 2, Seed = 1 });
        nint p = m.VmallocNode(16 * Machine.PageSize, 1);
        Assert.All(Enumerable.Range(0, 16), i => Assert.Equal(1, m.PageToNid(m.VmallocToPage(p + i * Machine.PageSize))));
        Assert.Contains(" pages=16 vmalloc N1=16\n", m.Proc.Vmallocinfo(), StringComparison.Ordinal);
        m.Vfree(p);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.VmallocNode(4096, 2));
    }

    [Fact]
    public void ZeroAndHugeSizesFailWithTheKernelsWarnings()
    {
        using var m = Boot(Preset.X64);
        Assert.Equal(0, m.Vmalloc(0));
        Assert.Contains(m.Log.Lines, l => l.Contains("at mm/vmalloc.c __vmalloc_node_range", StringComparison.Ordinal));
        Assert.Equal(0, m.Vmalloc(1UL << 40 is var big ? (nuint)big : 0));
        Assert.Contains(m.Log.Lines, l => l.Contains($"vmalloc error: size {1UL << 40}, exceeds total pages, mode:0xcc0(GFP_KERNEL)", StringComparison.Ordinal));
        Assert.Equal(0, m.VmallocSpace.AreaCount);
    }

    [Theory]
    [InlineData(Preset.X64, 0xffffc90000000000UL, 0xffffe90000000000UL, 4, 34359738367L)]
    [InlineData(Preset.X86Pae, 0xf77fe000UL, 0xfeffe000UL, 3, 122880L)]
    [InlineData(Preset.X86, 0xf77fe000UL, 0xfeffe000UL, 2, 122880L)]
    public void TheAreaSitsWhereThePresetsKernelPutsIt(Preset preset, ulong start, ulong end, int levels, long totalKb)
    {
        using var m = Boot(preset, preset == Preset.X64 ? "512M" : "1536M");
        Assert.Equal(start, m.VmallocStart);
        Assert.Equal(end, m.VmallocEnd);
        Assert.Equal(levels, m.VmallocSpace.PageTableLevels);
        Assert.Equal(totalKb, Meminfo(m, "VmallocTotal"));
        nint p = m.Vmalloc(1);
        Assert.Equal(start, m.VmallocKernelAddress(p));
        Assert.Equal(0UL, m.VmallocKernelAddress(p - 1));
        Assert.False(m.IsVmallocAddr(p - 1));
        Assert.False(m.IsVmallocAddr(m.GetFreePage(Gfp.Kernel)));
        m.Vfree(p);
    }
}
