// Vmalloc/Vfree of 64 KiB and 1 MiB against Kmalloc/Kfree of the same size (large kmalloc: compound
// pages from the page allocator) and glibc's NativeMemory.Alloc/Free; the shapes of Linux's
// lib/test_vmalloc.c on its 1 GiB, 2-CPU machine (one vmalloc+vfree per operation); and Kmap/Kunmap
// on a 32-bit PAE machine: of a page that is already mapped (the pkmap count goes up and down, no host
// call), of a new page each time (a real mmap into a pkmap slot), and KmapLocalPage/KunmapLocal of a
// highmem page.
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;

namespace Kmem.Bench;

[MemoryDiagnoser]
public class VmallocBenchmarks
{
    private Machine _m = null!;

    /// <summary>Bytes per allocation.</summary>
    [Params(64 * 1024, 1024 * 1024)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup() => _m = Machine.Boot(new MachineOptions { Memory = "1G", Cpus = 2 });

    [GlobalCleanup]
    public void Cleanup() => _m.Dispose();

    [Benchmark(Baseline = true)]
    public void VmallocVfree() => _m.Vfree(_m.Vmalloc((nuint)Size));

    [Benchmark]
    public void KmallocKfree() => _m.Kfree(_m.Kmalloc((nuint)Size, Gfp.Kernel));

    [Benchmark]
    public unsafe void Glibc() => NativeMemory.Free(NativeMemory.Alloc((nuint)Size));
}

/// <summary>test_vmalloc's shapes, one operation each: fix_size_alloc_test (one page), random_size_alloc_test
/// (1-100 pages), long_busy_list_alloc_test (a 100-page and a one-page area while 15,000 one-page areas stay
/// busy: two vmalloc+vfree pairs) and full_fit_alloc_test's inner loop (one page into the holes between 16,384
/// busy one-page areas).</summary>
[MemoryDiagnoser]
public class TestVmallocBenchmarks
{
    private const nuint Page = Machine.PageSize;
    private Machine _m = null!;
    private Random _rng = null!;
    private nint[] _busy = [];

    [GlobalSetup(Targets = [nameof(FixSize), nameof(RandomSize)])]
    public void Setup()
    {
        _m = Machine.Boot(new MachineOptions { Memory = "1G", Cpus = 2 });
        _rng = new Random(1);
    }

    [GlobalSetup(Target = nameof(LongBusyList))]
    public void SetupLongBusyList()
    {
        Setup();
        _busy = [.. Enumerable.Range(0, 15_000).Select(_ => _m.Vmalloc(Page))];
    }

    [GlobalSetup(Target = nameof(FullFit))]
    public void SetupFullFit()
    {
        Setup();
        var junk = new nint[16_384];
        _busy = new nint[16_384];
        for (int i = 0; i < _busy.Length; i++)
        {
            _busy[i] = _m.Vmalloc(Page);
            junk[i] = _m.Vmalloc(Page);
        }
        foreach (nint p in junk)
        {
            _m.Vfree(p);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (nint p in _busy)
        {
            _m.Vfree(p);
        }
        _m.Dispose();
    }

    [Benchmark(Baseline = true)]
    public void FixSize() => _m.Vfree(_m.Vmalloc(Page));

    [Benchmark]
    public void RandomSize() => _m.Vfree(_m.Vmalloc((nuint)_rng.Next(1, 101) * Page));

    [Benchmark]
    public void LongBusyList()
    {
        nint p1 = _m.Vmalloc(100 * Page);
        nint p2 = _m.Vmalloc(Page);
        _m.Vfree(p1);
        _m.Vfree(p2);
    }

    [Benchmark]
    public void FullFit() => _m.Vfree(_m.Vmalloc(Page));
}

[MemoryDiagnoser]
public class KmapBenchmarks
{
    private const int Pages = 4096;
    private Machine _m = null!;
    private Page[] _pages = null!;
    private Page _held;
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        _m = Machine.Boot(new MachineOptions { Preset = Preset.X86Pae, Memory = "2G", Cpus = 1 });
        _pages = new Page[Pages];
        for (int i = 0; i < Pages; i++)
        {
            _pages[i] = _m.AllocPages(Gfp.HighUser, 0);
        }
        _held = _pages[0];
        _m.Kmap(_held);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _m.Kunmap(_held);
        _m.Dispose();
    }

    /// <summary>The page is mapped already: kmap finds its slot and raises the count.</summary>
    [Benchmark(Baseline = true)]
    public void KmapMapped()
    {
        _m.Kmap(_held);
        _m.Kunmap(_held);
    }

    /// <summary>A page not mapped yet: a free slot, an mmap of the frame into it (and, on wrap, a flush).</summary>
    [Benchmark]
    public void KmapNew()
    {
        var page = _pages[1 + (_next++ % (Pages - 1))];
        _m.Kmap(page);
        _m.Kunmap(page);
    }

    /// <summary>kmap_local of a highmem page: the next slot of this thread's stack, mapped and unmapped.</summary>
    [Benchmark]
    public void KmapLocal()
    {
        var page = _pages[1 + (_next++ % (Pages - 1))];
        _m.KunmapLocal(_m.KmapLocalPage(page));
    }
}
