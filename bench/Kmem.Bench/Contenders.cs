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
    public static IReadOnlyList<NativeLibrarySpec> Known => NativeLibraries.Known;

    private static readonly Dictionary<string, (NativeContender? Contender, string? Note)> s_loaded = [];

    /// <summary>Loads the contender named <paramref name="name"/> once; null, with a note saying why,
    /// when its library or its aligned entry point is missing.</summary>
    public static NativeContender? TryLoad(string name, out string? note)
    {
        lock (s_loaded)
        {
            if (!s_loaded.TryGetValue(name, out var entry))
            {
                var spec = Known.Single(s => s.Name == name);
                entry = NativeLibraries.TryResolve(spec, spec.AlignedSymbol, spec.FreeSymbol, out nint alloc, out nint free, out string? why)
                    ? (new NativeContender(spec.Name, alloc, free, spec.AlignmentFirst), null)
                    : (null, why);
                s_loaded[name] = entry;
            }
            note = entry.Note;
            return entry.Contender;
        }
    }
}
