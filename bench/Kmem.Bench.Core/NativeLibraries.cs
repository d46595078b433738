// The native allocators loaded at run time by soname with NativeLibrary, so they
// sit beside glibc in one process without replacing malloc (dlopen without
// RTLD_GLOBAL): mimalloc, jemalloc and tcmalloc from Debian's packages, and glibc's
// own libc for calling malloc/free through a function pointer. A library that is
// missing, or lacks an entry point, gives a note instead of a contender. Loads
// are cached for the life of the process (pointers they handed out may outlive a
// run); the cache is locked.
using System.Runtime.InteropServices;

namespace Kmem.Bench;

/// <summary>Where a native allocator comes from and which of its entry points are called.</summary>
/// <param name="Name">The name shown in tables.</param>
/// <param name="Library">The shared object's soname.</param>
/// <param name="DebianPackage">The Debian package that installs it.</param>
/// <param name="MallocSymbol">malloc(size).</param>
/// <param name="FreeSymbol">The matching free(pointer).</param>
/// <param name="AlignedSymbol">The aligned allocation entry point.</param>
/// <param name="AlignmentFirst">Whether the aligned allocation takes (alignment, size) rather than (size, alignment).</param>
internal sealed record NativeLibrarySpec(string Name, string Library, string DebianPackage, string MallocSymbol,
    string FreeSymbol, string AlignedSymbol, bool AlignmentFirst);

internal static class NativeLibraries
{
    /// <summary>glibc's libc, always there on Linux.</summary>
    public static NativeLibrarySpec Glibc { get; } =
        new("glibc malloc", "libc.so.6", "libc6", "malloc", "free", "aligned_alloc", AlignmentFirst: true);

    /// <summary>The allocators installed by bench/setup.sh, whether or not they are installed here.</summary>
    public static IReadOnlyList<NativeLibrarySpec> Known { get; } =
    [
        new("mimalloc", "libmimalloc.so.2", "libmimalloc2.0", "mi_malloc", "mi_free", "mi_malloc_aligned", AlignmentFirst: false),
        new("jemalloc", "libjemalloc.so.2", "libjemalloc2", "malloc", "free", "aligned_alloc", AlignmentFirst: true),
        new("tcmalloc", "libtcmalloc_minimal.so.4", "libtcmalloc-minimal4", "tc_malloc", "tc_free", "tc_memalign", AlignmentFirst: true),
    ];

    private static readonly Dictionary<string, (nint Handle, string? Note)> s_loaded = [];

    /// <summary>The library's handle, or 0 with a note saying why it cannot be used.</summary>
    public static nint TryLoad(NativeLibrarySpec spec, out string? note)
    {
        lock (s_loaded)
        {
            if (!s_loaded.TryGetValue(spec.Library, out var entry))
            {
                entry = Load(spec);
                s_loaded[spec.Library] = entry;
            }
            note = entry.Note;
            return entry.Handle;
        }
    }

    /// <summary>The two entry points <paramref name="allocSymbol"/> and <paramref name="freeSymbol"/> of the library,
    /// or false with a note when the library or one of them is missing.</summary>
    public static bool TryResolve(NativeLibrarySpec spec, string allocSymbol, string freeSymbol,
        out nint alloc, out nint free, out string? note)
    {
        alloc = free = 0;
        nint handle = TryLoad(spec, out note);
        if (handle == 0)
        {
            return false;
        }
        if (!NativeLibrary.TryGetExport(handle, allocSymbol, out alloc) || !NativeLibrary.TryGetExport(handle, freeSymbol, out free))
        {
            note = $"{spec.Name} skipped: {spec.Library} does not export {allocSymbol} and {freeSymbol}";
            return false;
        }
        return true;
    }

    private static (nint, string?) Load(NativeLibrarySpec spec)
    {
        try
        {
            return (NativeLibrary.Load(spec.Library), null);
        }
        catch (DllNotFoundException e)
        {
            string why = e.Message.Contains("static TLS", StringComparison.Ordinal)
                ? $"{spec.Library} needs static TLS room reserved at process start ({StaticTls.Tunable})"
                : $"{spec.Library} not found (Debian package {spec.DebianPackage}; bench/setup.sh installs it)";
            return (0, $"{spec.Name} skipped: {why}");
        }
    }
}
