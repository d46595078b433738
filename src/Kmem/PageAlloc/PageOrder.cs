// get_order (include/asm-generic/getorder.h): the smallest buddy order whose block
// holds a size in bytes. Pure arithmetic: no state, no lock.
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal static class PageOrder
{
    /// <summary>get_order: the smallest order whose block holds <paramref name="size"/> bytes.</summary>
    /// <remarks>Exact for every size, the largest included (no rounding that could wrap): a size past what any
    /// zone can hold gives an order above MAX_ORDER, which the allocators then refuse.</remarks>
    public static int GetOrder(nuint size)
    {
        nuint pages = size / PhysMem.PageSize + (size % PhysMem.PageSize != 0 ? 1u : 0u);
        return pages <= 1 ? 0 : 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)pages - 1);
    }
}
