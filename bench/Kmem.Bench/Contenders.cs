// The page-pair contenders: Kmem's AllocPages+FreePages and, as baselines, an
// aligned allocation of the same 4096 << order bytes at 4096-byte alignment
// followed by its free, from glibc (NativeMemory), mimalloc, jemalloc and
// tcmalloc. Every contender runs the same loop shape, one pair at a time.
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kmem.Bench;

/// <summary>One allocator measured on alloc+free pairs of 2^order pages.</summary>
internal abstract class PageContender
{
    /// <summary>The page size every contender allocates in units of, and aligns to.</summary>
    public const int PageSize = Machine.PageSize;

    /// <summary>The name shown in tables.</summary>
    public abstract string Name { get; }

    /// <summary><paramref name="count"/> pairs of 2^<paramref name="order"/> pages, one after the other.</summary>
    public abstract void RunPairs(int order, int count);

    /// <summary>The same as <see cref="RunPairs"/>, by a thread that owns CPU <paramref name="cpu"/>
    /// (Kmem pins it; a host allocator has no CPU notion of its own).</summary>
    public virtual void RunPairsOnCpu(int cpu, int order, int count) => RunPairs(order, count);

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    protected void ThrowAllocationFailed(int order) =>
        throw new InvalidOperationException($"{Name}: allocation of order {order} failed during the benchmark");
}

/// <summary>Kmem: <see cref="Machine.AllocPages"/> then <see cref="Machine.FreePages(Page, int)"/>.</summary>
internal sealed class KmemContender(Machine machine) : PageContender
{
    public override string Name => "Kmem";

    public Machine Machine { get; } = machine;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Pair(int order)
    {
        Page page = Machine.AllocPages(Gfp.Kernel, order);
        if (page.IsNull)
        {
            ThrowAllocationFailed(order);
        }
        Machine.FreePages(page, order);
    }

    public override void RunPairs(int order, int count)
    {
        for (int i = 0; i < count; i++)
        {
            Pair(order);
        }
    }

    public override void RunPairsOnCpu(int cpu, int order, int count)
    {
        using (Machine.OnCpu(cpu))
        {
            RunPairs(order, count);
        }
    }
}

/// <summary>glibc through .NET: NativeMemory.AlignedAlloc and NativeMemory.AlignedFree.</summary>
internal sealed unsafe class GlibcContender : PageContender
{
    public override string Name => "glibc";

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Pair(nuint size)
    {
        // AlignedAlloc throws OutOfMemoryException rather than returning null.
        void* p = NativeMemory.AlignedAlloc(size, PageSize);
        NativeMemory.AlignedFree(p);
    }

    public override void RunPairs(int order, int count)
    {
        nuint size = (nuint)PageSize << order;
        for (int i = 0; i < count; i++)
        {
            Pair(size);
        }
    }
}

/// <summary>
/// A native allocator loaded at run time, called through function pointers: an aligned allocation
/// entry point taking (size, alignment) or (alignment, size), and the library's own free.
/// </summary>
internal sealed unsafe class NativeContender : PageContender
{
    private readonly delegate* unmanaged<nuint, nuint, void*> _alloc;
    private readonly delegate* unmanaged<void*, void> _free;
    private readonly bool _alignmentFirst;

    private NativeContender(string name, nint alloc, nint free, bool alignmentFirst)
    {
        Name = name;
        _alloc = (delegate* unmanaged<nuint, nuint, void*>)alloc;
        _free = (delegate* unmanaged<void*, void>)free;
        _alignmentFirst = alignmentFirst;
    }

    public override string Name { get; }

    /// <summary>The two arguments of the allocation call for 2^order pages, in the library's order.</summary>
    public (nuint First, nuint Second) Args(int order)
    {
        nuint size = (nuint)PageSize << order;
        return _alignmentFirst ? (PageSize, size) : (size, PageSize);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Pair(nuint first, nuint second, int order)
    {
        void* p = _alloc(first, second);
        if (p == null)
        {
            ThrowAllocationFailed(order);
        }
        _free(p);
    }

    public override void RunPairs(int order, int count)
    {
        (nuint first, nuint second) = Args(order);
        for (int i = 0; i < count; i++)
        {
            Pair(first, second, order);
        }
    }

    /// <summary>The contenders this program knows, whether or not they are installed.</summary>
    public static IReadOnlyList<NativeLibrarySpec> Known { get; } =
    [
        new("mimalloc", "libmimalloc.so.2", "libmimalloc2.0", "mi_malloc_aligned", "mi_free", AlignmentFirst: false),
        new("jemalloc", "libjemalloc.so.2", "libjemalloc2", "aligned_alloc", "free", AlignmentFirst: true),
        new("tcmalloc", "libtcmalloc_minimal.so.4", "libtcmalloc-minimal4", "tc_memalign", "tc_free", AlignmentFirst: true),
    ];

    private static readonly Dictionary<string, (NativeContender? Contender, string? Note)> s_loaded = [];

    /// <summary>Loads the contender named <paramref name="name"/> once; null, with a note saying why,
    /// when its library or one of its entry points is missing.</summary>
    public static NativeContender? TryLoad(string name, out string? note)
    {
        lock (s_loaded)
        {
            if (!s_loaded.TryGetValue(name, out var entry))
            {
                var spec = Known.Single(s => s.Name == name);
                entry = Load(spec);
                s_loaded[name] = entry;
            }
            note = entry.Note;
            return entry.Contender;
        }
    }

    private static (NativeContender?, string?) Load(NativeLibrarySpec spec)
    {
        nint handle;
        try
        {
            handle = NativeLibrary.Load(spec.Library);
        }
        catch (DllNotFoundException e)
        {
            string why = e.Message.Contains("static TLS", StringComparison.Ordinal)
                ? $"{spec.Library} needs static TLS room reserved at process start ({StaticTls.Tunable})"
                : $"{spec.Library} not found (Debian package {spec.DebianPackage})";
            return (null, $"{spec.Name} skipped: {why}");
        }
        if (!NativeLibrary.TryGetExport(handle, spec.AllocSymbol, out nint alloc)
            || !NativeLibrary.TryGetExport(handle, spec.FreeSymbol, out nint free))
        {
            return (null, $"{spec.Name} skipped: {spec.Library} does not export {spec.AllocSymbol} and {spec.FreeSymbol}");
        }
        // The library stays loaded for the life of the process: pointers it handed out may outlive any one run.
        return (new NativeContender(spec.Name, alloc, free, spec.AlignmentFirst), null);
    }
}

/// <summary>Where a native contender comes from and which of its entry points are called.</summary>
/// <param name="Name">The name shown in tables.</param>
/// <param name="Library">The shared object's soname.</param>
/// <param name="DebianPackage">The Debian package that installs it.</param>
/// <param name="AllocSymbol">The aligned allocation entry point.</param>
/// <param name="FreeSymbol">The matching free.</param>
/// <param name="AlignmentFirst">Whether the allocation takes (alignment, size) rather than (size, alignment).</param>
internal sealed record NativeLibrarySpec(string Name, string Library, string DebianPackage, string AllocSymbol,
    string FreeSymbol, bool AlignmentFirst);
