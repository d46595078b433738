// Vmalloc/Vfree of 64 KiB and 1 MiB against Kmalloc/Kfree of the same size (large kmalloc: compound
// pages from the page allocator) and glibc's NativeMemory.Alloc/Free; and Kmap/Kunmap on a 32-bit PAE
// machine: of a page that is already mapped (the pkmap count goes up and down, no host call), of a
// new page each time (a real mmap into a pkmap slot), and KmapLocalPage/KunmapLocal of a highmem page.
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
