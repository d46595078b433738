// What the reports read that the machine creates lazily, above the Proc layer: the
// vmalloc space and the per-CPU allocator exist only once something uses them. The
// machine implements this interface and hands itself to ProcFs, so Proc reaches up
// only through it. A report that shows a source (vmallocinfo, percpu_stats) sets it
// up, as the kernel's exists from boot; the page counts of meminfo never do.
using Kmem.Percpu;
using Kmem.Vmalloc;

namespace Kmem.Proc;

/// <summary>The report sources a machine creates on first use.</summary>
internal interface IProcSources
{
    /// <summary>The vmalloc space, set up if it was not yet.</summary>
    VmapSpace VmallocSpace { get; }

    /// <summary>Frames backing vmalloc areas (nr_vmalloc_pages), 0 before the first use; creates nothing.</summary>
    long VmallocPages { get; }

    /// <summary>The per-CPU allocator, set up if it was not yet.</summary>
    PercpuAllocator PercpuAllocator { get; }

    /// <summary>pcpu_nr_pages, 0 before the first use; creates nothing.</summary>
    long PercpuPages { get; }
}
