// The replayer's live traced objects counted per 4 KiB page of their trace address, kept beside
// its address map (TraceReplayer._objects: every key added or removed there is added or removed
// here), so the objects the trace still holds in one of the kernel's slabs (SlabFreeState) are a
// sum over the slab's pages instead of a scan of every live object. Trace addresses, not Kmem's:
// the kernel's direct map is page aligned, so a slab's range is whole pages of it. Used on the
// replaying thread only.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kmem;

/// <summary>Live traced objects per page of their trace address.</summary>
internal sealed class LiveObjectPages
{
    private const int PageShift = 12;

    private readonly Dictionary<ulong, int> _perPage = new(1 << 14);

    /// <summary>An object at <paramref name="ptr"/> became live.</summary>
    public void Add(ulong ptr) => CollectionsMarshal.GetValueRefOrAddDefault(_perPage, ptr >> PageShift, out _)++;

    /// <summary>The object at <paramref name="ptr"/> left the live set (the page's entry goes with its last object).</summary>
    public void Remove(ulong ptr)
    {
        ulong page = ptr >> PageShift;
        ref int n = ref CollectionsMarshal.GetValueRefOrNullRef(_perPage, page);
        if (Unsafe.IsNullRef(ref n))
        {
            return;
        }
        if (--n == 0)
        {
            _perPage.Remove(page);
        }
    }

    /// <summary>The live objects in the <paramref name="pages"/> pages from page-aligned <paramref name="start"/>.</summary>
    public int Count(ulong start, int pages)
    {
        int count = 0;
        ulong first = start >> PageShift;
        for (int i = 0; i < pages; i++)
        {
            count += _perPage.GetValueOrDefault(first + (ulong)i);
        }
        return count;
    }
}
