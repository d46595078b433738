// The replay's own counts per cache that --compare-proc attributes differences with
// (TraceProcComparison): objects freed in the trace that it never allocated, split by whether
// the object lay in a slab page the trace allocated (then only an allocation the 6.1 trace
// cannot show made it, such as kmem_cache_alloc_bulk) or not (held from before tracing, as far
// as the trace can tell); allocations at an address the trace still had live (a free it did
// not show, such as kmem_cache_free_bulk); and the kernel's slab pages allocated in the trace
// and still held at its end, by the cache whose allocation first fell in them. Used on the
// replaying thread only.
using System.Runtime.InteropServices;

namespace Kmem;

/// <summary>Counts per cache for the comparison notes.</summary>
internal sealed class TraceCacheCounter
{
    // The kernel's slab pages allocated in the trace, by the cache slot whose allocation first fell in them.
    private readonly Dictionary<ulong, int> _slabPageSlot = [];
    private readonly Dictionary<string, long> _untrackedInTraceSlab = new(StringComparer.Ordinal);

    /// <summary>A slab allocation: when the kernel allocated a new slab page (frame <paramref name="pfn"/>) for it,
    /// the page is the slot's.</summary>
    public void SlabPage(bool kernelNewSlab, ulong pfn, int slot)
    {
        if (kernelNewSlab)
        {
            _slabPageSlot[pfn] = slot;
        }
    }

    /// <summary>A kmem_cache_free of <paramref name="name"/> for an object the trace never allocated, at trace
    /// address <paramref name="ptr"/>; <paramref name="slabPages"/> are the kernel's slab pages the trace allocated
    /// and still holds (head frame → order).</summary>
    public void UntrackedFree(string name, ulong ptr, ulong? directMapBase, Dictionary<ulong, int> slabPages)
    {
        if (directMapBase is not ulong b || ptr < b)
        {
            return;
        }
        ulong pfn = (ptr - b) >> 12;
        for (int k = 0; k < Machine.MaxOrder; k++)
        {
            if (slabPages.TryGetValue(pfn & ~((1UL << k) - 1), out int order) && order >= k)
            {
                ref long n = ref CollectionsMarshal.GetValueRefOrAddDefault(_untrackedInTraceSlab, name, out _);
                n++;
                return;
            }
        }
    }

    /// <summary>The counts by cache name (slots of one name added up).</summary>
    public Dictionary<string, TraceCacheCounts> Build(List<TraceCaches.CacheSlot> slots, Dictionary<ulong, int> slabPages,
        IReadOnlyDictionary<string, long> untrackedByCache)
    {
        var pagesBySlot = new Dictionary<int, long>();
        foreach (var (pfn, order) in slabPages)
        {
            if (_slabPageSlot.TryGetValue(pfn, out int slot))
            {
                ref long n = ref CollectionsMarshal.GetValueRefOrAddDefault(pagesBySlot, slot, out _);
                n += 1L << order;
            }
        }
        var counts = new Dictionary<string, TraceCacheCounts>(StringComparer.Ordinal);
        foreach (var slot in slots.Skip(1))
        {
            var owner = slot;
            while (owner.RenamedTo is { } named)
            {
                owner = named;
            }
            var c = counts.GetValueOrDefault(owner.Name);
            counts[owner.Name] = c with
            {
                Allocs = c.Allocs + slot.Allocs,
                Live = c.Live + slot.Live,
                MissedFrees = c.MissedFrees + slot.MissedFrees,
                TraceSlabPages = c.TraceSlabPages + pagesBySlot.GetValueOrDefault(slot.Index),
            };
        }
        foreach (var (name, n) in untrackedByCache)
        {
            var c = counts.GetValueOrDefault(name);
            counts[name] = c with { UntrackedFrees = n, UntrackedInTraceSlab = _untrackedInTraceSlab.GetValueOrDefault(name) };
        }
        return counts;
    }
}

/// <summary>What the replay counted for one cache name.</summary>
/// <param name="Allocs">Allocations replayed.</param>
/// <param name="Live">Objects the trace allocated and had not freed at its end.</param>
/// <param name="UntrackedFrees">kmem_cache_free events naming the cache for objects the trace never allocated.</param>
/// <param name="UntrackedInTraceSlab">Those of them in a slab page the trace allocated (made by an allocation the
/// trace does not show).</param>
/// <param name="MissedFrees">Allocations at an address the trace still had live (a free it does not show).</param>
/// <param name="TraceSlabPages">The kernel's slab pages of the cache allocated in the trace and held at its end.</param>
internal readonly record struct TraceCacheCounts(long Allocs, long Live, long UntrackedFrees, long UntrackedInTraceSlab, long MissedFrees, long TraceSlabPages);
