namespace Kmem.Tests.PageAlloc;

public class SmokeTests
{
    [Fact]
    public void BootAllocFree()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "512M" });
        var pa = m.PageAllocator;
        foreach (var z in pa.Zones)
        {
            Console.WriteLine($"{z.Name} start {z.StartPfn} spanned {z.SpannedPages} present {z.PresentPages} managed {z.ManagedPages} free {z.FreePages} min {z.Watermark[0]} low {z.Watermark[1]} high {z.Watermark[2]} batch {z.Pcp[0].Batch} high {z.Pcp[0].High}");
            z.Validate();
        }
        var p = m.AllocPages(Gfp.Kernel, 0);
        Assert.False(p.IsNull);
        m.PageSpan(p)[0] = 42;
        m.FreePages(p, 0);
        var q = m.AllocPages(Gfp.Kernel, 3);
        m.FreePages(q, 3);
        m.DrainAllPages();
        foreach (var z in pa.Zones) z.Validate();
    }
}
