// A page frame handle: the C# face of struct page *. It wraps a pfn and nothing
// else, so it is as cheap as a pointer; default(Page) is Page.Null, which is
// what an allocation that fails returns.
namespace Kmem;

/// <summary>
/// A page frame, named by its page frame number (pfn). <see cref="Null"/> (the default value)
/// stands for the kernel's NULL struct page pointer.
/// </summary>
/// <remarks>The per-frame metadata (struct page) lives in the machine's memmap, indexed by pfn.</remarks>
public readonly struct Page : IEquatable<Page>
{
    private readonly uint _pfnPlusOne;

    internal Page(uint pfn) => _pfnPlusOne = pfn + 1;

    /// <summary>No page: what a failed allocation returns.</summary>
    public static Page Null => default;

    /// <summary>True for <see cref="Null"/>.</summary>
    public bool IsNull => _pfnPlusOne == 0;

    /// <summary>The page frame number; throws for <see cref="Null"/>.</summary>
    public ulong Pfn => IsNull ? throw new InvalidOperationException("Page.Null has no pfn") : _pfnPlusOne - 1u;

    internal uint RawPfn => _pfnPlusOne - 1;

    /// <summary>The page <paramref name="n"/> frames further on (page + n in C).</summary>
    public Page Add(int n) => new((uint)(RawPfn + n));

    /// <inheritdoc/>
    public bool Equals(Page other) => _pfnPlusOne == other._pfnPlusOne;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Page p && Equals(p);

    /// <inheritdoc/>
    public override int GetHashCode() => (int)_pfnPlusOne;

    /// <summary>Same frame.</summary>
    public static bool operator ==(Page a, Page b) => a.Equals(b);

    /// <summary>Different frames.</summary>
    public static bool operator !=(Page a, Page b) => !a.Equals(b);

    /// <summary>"pfn:0x1234" or "(null)".</summary>
    public override string ToString() => IsNull ? "(null)" : $"pfn:0x{RawPfn:x}";
}
