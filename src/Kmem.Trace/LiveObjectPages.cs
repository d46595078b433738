// The replayer's live traced objects counted per 4 KiB page of their trace address, kept
// beside its address map (TraceReplayer._objects: its keys are added and removed through Add
// and Remove here, and TraceCaches reports the one a move drops), so the objects the trace
// still holds in one of the kernel's slabs (SlabFreeState) are a sum over the slab's pages
// instead of a scan of every live object. Trace addresses, not Kmem's: the kernel's direct map
// is page aligned, so a slab's range is whole pages of it. Used on the replaying thread only.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kmem;

/// <summary>Live traced objects per page of their trace address.</summary>
internal sealed class LiveObjectPages
{
    private const int PageShift = 12;

    private readonly Dictionary<ulong, int> _perPage = new(1 << 14);

    /// <summary>The entry of <paramref name="ptr"/> in <paramref name="map"/>, added (and counted) when
    /// <paramref name="exists"/> is false: one hash lookup in the map, as CollectionsMarshal.GetValueRefOrAddDefault.</summary>
    public ref TValue Add<TValue>(Dictionary<ulong, TValue> map, ulong ptr, out bool exists)
        where TValue : struct
    {
        ref var entry = ref CollectionsMarshal.GetValueRefOrAddDefault(map, ptr, out exists);
        if (!exists)
        {
            CollectionsMarshal.GetValueRefOrAddDefault(_perPage, ptr >> PageShift, out _)++;
        }
        return ref entry;
    }

    /// <summary>Removes <paramref name="ptr"/> from <paramref name="map"/> and, when it was there, from the count.</summary>
    public bool Remove<TValue>(Dictionary<ulong, TValue> map, ulong ptr, out TValue value)
        where TValue : struct
    {
        if (!map.Remove(ptr, out value))
        {
            return false;
        }
        Remove(ptr);
        return true;
    }

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
