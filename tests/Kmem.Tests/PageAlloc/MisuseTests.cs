// Misuse the kernel would BUG() on, as its test-wrong cases do: double free,
// free with the wrong order, freeing a reserved frame or a hole, a reference
// dropped below zero, freeing an address outside the direct map. Each is
// refused with "BUG: Bad page state" naming the pfn (or an ArgumentException),
// fires exactly once, and leaves the allocator exactly as it was; with
// OnBug.Report the same report goes to the log and the machine carries on.
using static Kmem.Tests.PageAlloc.PageAllocCheck;

namespace Kmem.Tests.PageAlloc;

public class MisuseTests
{
    private static Machine Boot(OnBug onBug = OnBug.Throw) =>
        Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, OnBug = onBug, Seed = 1 });

    /// <summary>A misuse and the page whose pfn its report must name.</summary>
    public record Misuse(string Name, Func<Machine, (Page Page, Action Act)> Setup, string Reason);

    public static TheoryData<string> Cases => [.. s_cases.Keys];

    private static readonly Dictionary<string, Misuse> s_cases = new[]
    {
        new Misuse("double free of an order-0 page", m =>
        {
            var p = m.AllocPage(Gfp.Kernel);
            m.FreePage(p);
            return (p, () => m.FreePage(p));
        }, "page_ref_count(page) == 0"),
        new Misuse("double free of an order-3 page after its block merged back", m =>
        {
            var p = m.AllocPages(Gfp.Kernel, 3);
            m.FreePages(p, 3);
            m.DrainAllPages();
            return (p, () => m.FreePages(p, 3));
        }, "page_ref_count(page) == 0"),
        new Misuse("double free of an order-6 page", m =>
        {
            var p = m.AllocPages(Gfp.Kernel, 6);
            m.FreePages(p, 6);
            return (p, () => m.FreePages(p, 6));
        }, "page_ref_count(page) == 0"),
        new Misuse("free with a smaller order than allocated", m =>
        {
            var p = m.AllocPages(Gfp.Kernel, 2);
            return (p, () => m.FreePages(p, 1));
        }, "freed with order 1, allocated with order 2"),
        new Misuse("free with a larger order than allocated", m =>
        {
            var p = m.AllocPages(Gfp.Kernel, 2);
            return (p, () => m.FreePages(p, 5));
        }, "freed with order 5, allocated with order 2"),
        new Misuse("free of a compound page with the wrong order", m =>
        {
            var p = m.AllocPages(Gfp.Kernel | Gfp.Comp, 3);
            return (p, () => m.FreePages(p, 2));
        }, "compound_order(page) != order"),
        new Misuse("free of a compound tail", m =>
        {
            var p = m.AllocPages(Gfp.Kernel | Gfp.Comp, 3);
            return (p.Add(2), () => m.FreePages(p.Add(2), 0));
        }, "page_ref_count(page) == 0"),
        new Misuse("free of a reserved frame", m =>
        {
            var p = m.PfnToPage(1);
            return (p, () => m.FreePage(p));
        }, "PAGE_FLAGS_CHECK_AT_FREE"),
        new Misuse("free of a frame of the kernel image", m =>
        {
            var p = m.PfnToPage(4096 + 100);
            return (p, () => m.FreePages(p, 0));
        }, "PAGE_FLAGS_CHECK_AT_FREE"),
        new Misuse("free of a hole", m =>
        {
            var p = m.PfnToPage(200);
            return (p, () => m.FreePage(p));
        }, "hole"),
        new Misuse("free of pfn 0", m =>
        {
            var p = m.PfnToPage(0);
            return (p, () => m.FreePage(p));
        }, "hole"),
        new Misuse("put_page of a free page", m =>
        {
            var p = m.AllocPage(Gfp.Kernel);
            m.PutPage(p);
            return (p, () => m.PutPage(p));
        }, "page_ref_count(page) == 0"),
        new Misuse("get_page of a free page", m =>
        {
            var p = m.AllocPage(Gfp.Kernel);
            m.FreePage(p);
            return (p, () => m.GetPage(p));
        }, "page_ref_count(page) <= 0"),
        new Misuse("put_page below zero after get_page and two frees", m =>
        {
            var p = m.AllocPages(Gfp.Kernel | Gfp.Comp, 2);
            m.GetPage(p.Add(1));
            m.PutPage(p.Add(1));
            m.PutPage(p);
            return (p.Add(3), () => m.PutPage(p.Add(3)));
        }, "page_ref_count(page) == 0"),
        new Misuse("split_page with the wrong order", m =>
        {
            var p = m.AllocPages(Gfp.Kernel, 3);
            return (p, () => m.SplitPage(p, 2));
        }, "split_page order 2"),
        new Misuse("free of order 11", m =>
        {
            var p = m.AllocPages(Gfp.Kernel, 10);
            return (p, () => m.FreePages(p, 11));
        }, "MAX_ORDER"),
    }.ToDictionary(c => c.Name);

    [Theory]
    [MemberData(nameof(Cases))]
    public void MisuseThrowsBadPageStateNamingThePfnAndChangesNothing(string name)
    {
        var misuse = s_cases[name];
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        var (page, act) = misuse.Setup(m);
        string before = State(m);
        long refs = m.PageRefCount(page);
        m.Log.Clear();

        var e = Assert.Throws<BadPageStateException>(act);

        Assert.StartsWith("BUG: Bad page state in process ", e.Message, StringComparison.Ordinal);
        Assert.Contains($"pfn:{page.Pfn:x5}", e.Message, StringComparison.Ordinal);
        Assert.Contains($"pfn:0x{page.Pfn:x}", e.Message, StringComparison.Ordinal);
        Assert.Contains("page dumped because: ", e.Message, StringComparison.Ordinal);
        Assert.Contains(misuse.Reason, e.Reason, StringComparison.Ordinal);
        Assert.Equal(page.Pfn, e.Pfn);
        Assert.Equal(e.Message, e.Report);
        // Reported once, in the log too.
        Assert.Single(m.Log.Lines, l => l.StartsWith("BUG: Bad page state", StringComparison.Ordinal));
        Assert.Equal(before, State(m));
        Assert.Equal(refs, m.PageRefCount(page));
        ValidateAll(m);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void WithOnBugReportMisuseIsLoggedAndTheMachineCarriesOn(string name)
    {
        var misuse = s_cases[name];
        using var m = Boot(OnBug.Report);
        using var cpu = m.OnCpu(0);
        var (page, act) = misuse.Setup(m);
        string before = State(m);
        m.Log.Clear();

        act();

        Assert.Single(m.Log.Lines, l => l.StartsWith("BUG: Bad page state", StringComparison.Ordinal));
        Assert.Contains(m.Log.Lines, l => l.Contains($"pfn:{page.Pfn:x5}", StringComparison.Ordinal));
        Assert.Contains(m.Log.Lines, l => l.Contains(misuse.Reason, StringComparison.Ordinal));
        Assert.Equal(before, State(m));
        ValidateAll(m);
        // The machine still allocates and frees.
        var p = m.AllocPages(Gfp.Kernel, 1);
        Assert.False(p.IsNull);
        m.FreePages(p, 1);
    }

    [Fact]
    public void ARefusedDoubleFreeLeavesTheAccountingIntact()
    {
        using var m = Boot();
        using var cpu = m.OnCpu(0);
        var held = Enumerable.Range(0, 50).Select(i => (Page: m.AllocPages(Gfp.Kernel, i % 5), Order: i % 5)).ToList();
        m.FreePages(held[7].Page, held[7].Order);
        Assert.Throws<BadPageStateException>(() => m.FreePages(held[7].Page, held[7].Order));
        held.RemoveAt(7);
        AssertAccounted(m, held.Sum(h => 1L << h.Order));
        foreach (var (p, o) in held)
        {
            m.FreePages(p, o);
        }
        m.DrainAllPages();
        AssertAccounted(m, 0);
        ValidateAll(m);
    }

    [Fact]
    public void FreeingAnAddressOutsideTheDirectMapIsAnArgumentError()
    {
        using var m = Boot();
        string before = State(m);
        var e = Assert.Throws<ArgumentException>(() => m.FreePages(0x1000, 0));
        Assert.Contains("0x1000", e.Message, StringComparison.Ordinal);
        Assert.Contains("direct-map", e.Message, StringComparison.Ordinal);
        nint end = m.PageAddress(m.PfnToPage(m.MaxPfn - 1)) + Machine.PageSize;
        Assert.Throws<ArgumentException>(() => m.FreePages(end, 0));
        Assert.Throws<ArgumentException>(() => m.FreePagesExact(end + 4096, 4096));
        Assert.Equal(before, State(m));
    }

    [Fact]
    public void FreeingAHighmemFrameByAddressIsImpossible()
    {
        using var m = Machine.Boot(new MachineOptions { Preset = Preset.X86Pae, Memory = "1536M" });
        var high = m.AllocPage(Gfp.HighUser);
        // There is no address for it, and the end of lowmem is not one either.
        Assert.Equal(0, m.PageAddress(high));
        nint lowEnd = m.PageAddress(m.PfnToPage(m.Mem.LowmemPfns - 1)) + Machine.PageSize;
        Assert.Throws<ArgumentException>(() => m.FreePages(lowEnd, 0));
        m.FreePage(high);
    }

    [Fact]
    public void NullAndOutOfRangePagesAreArgumentErrors()
    {
        using var m = Boot();
        Assert.Throws<ArgumentException>(() => m.FreePages(Page.Null, 0));
        Assert.Throws<ArgumentException>(() => m.PutPage(Page.Null));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.FreePages(m.PfnToPage(m.MaxPfn - 1).Add(1), 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.GetPage(m.PfnToPage(m.MaxPfn - 1).Add(5)));
        AssertAccounted(m, 0);
    }

    [Fact]
    public void AnInvalidGfpZoneCombinationIsAKernelBug()
    {
        using var m = Boot();
        var e = Assert.Throws<KernelBugException>(() => m.AllocPage(Gfp.Dma | Gfp.Dma32 | Gfp.Kernel));
        Assert.Contains("invalid gfp mask", e.Message, StringComparison.Ordinal);
        Assert.Throws<KernelBugException>(() => m.AllocPage(Gfp.Kernel | Gfp.Movable | Gfp.Reclaimable));
        AssertAccounted(m, 0);

        using var r = Boot(OnBug.Report);
        Assert.True(r.AllocPage(Gfp.Dma | Gfp.HighMem).IsNull);
        Assert.True(r.Log.Contains("invalid gfp mask"));
    }
}
