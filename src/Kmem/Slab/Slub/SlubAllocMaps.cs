// The spare allocation maps of SLUB's slabs (Slub.cs: a pinned byte per object, by head pfn). A map is
// pinned because thread magazines keep pointers to the bytes of the objects they hold; a pinned array lives
// in the pinned object heap, whose allocations take the runtime's slow path and whose garbage waits for a
// full collection. A slab made for every one given back (a batch larger than the per-CPU caches churns its
// slabs through the page allocator, as the kernel's do) would pay both each time, so the maps of discarded
// slabs are kept here, by length, for the next slabs. Invariants: a spare map is all zeros (a discarded slab
// has no object allocated, and Return clears it anyway) and is referenced by no slab; at most
// MaxSparePerLength maps of each length are kept. Locking: _lock guards the lists (a slab's creation and
// discard take zone locks already; this is a short one beside them).
namespace Kmem.Slab;

/// <summary>Pinned allocation maps of discarded slabs, reused by new slabs of the same object count.</summary>
internal sealed class SlubAllocMaps
{
    /// <summary>Spares kept per length: enough for a cache's working set of slabs to come and go without
    /// allocating, small beside the slabs themselves (a map is one byte per object).</summary>
    internal const int MaxSparePerLength = 512;

    private readonly Lock _lock = new();
    private readonly Dictionary<int, Stack<byte[]>> _spare = [];

    /// <summary>Zero bytes after a map's last object byte: the maps of two slabs lie side by side in the pinned
    /// heap, and the allocation bytes of objects that two threads work on must not share a cache line.</summary>
    internal const int TailPad = 64;

    /// <summary>A zeroed, pinned map of <paramref name="objects"/> bytes and <see cref="TailPad"/> more (zero bytes
    /// read as free objects, so whole-map scans count the same).</summary>
    public byte[] Rent(int objects)
    {
        int length = objects + TailPad;
        lock (_lock)
        {
            if (_spare.TryGetValue(length, out var stack) && stack.TryPop(out var map))
            {
                return map;
            }
        }
        return GC.AllocateArray<byte>(length, pinned: true);
    }

    /// <summary>Keeps the map of a slab just discarded (its slab no longer refers to it).</summary>
    public void Return(byte[] map)
    {
        Array.Clear(map);
        lock (_lock)
        {
            if (!_spare.TryGetValue(map.Length, out var stack))
            {
                _spare[map.Length] = stack = new Stack<byte[]>();
            }
            if (stack.Count < MaxSparePerLength)
            {
                stack.Push(map);
            }
        }
    }
}
