// /proc/slabinfo figures and the whole-cache check for SLAB (mm/slab.c; ArraySlab is named after its array
// caches, since "Slab" is already the layer). Figures as get_slabinfo counts them: num_objs = total_slabs × num,
// active_objs = num_objs − free_objects (objects in array caches count as active), active_slabs = total_slabs −
// free_slabs, sharedavail = objects in the shared arrays. ValidateAll groups the slabs by cache in one pass over
// the memmap and hands each cache to ArraySlabChecker (for quiet caches; it takes every lock).
using Kmem.Physical;

namespace Kmem.Slab;

internal sealed unsafe partial class ArraySlab
{
    /// <summary>get_slabinfo, each node read under its list_lock.</summary>
    public override SlabCacheStats Stats(KmemCache s)
    {
        var st = State(s);
        long total = 0, freeSlabs = 0, freeObjs = 0, sharedAvail = 0;
        foreach (var n in st.Nodes)
        {
            lock (n.ListLock)
            {
                total += n.TotalSlabs;
                freeSlabs += n.FreeSlabs;
                freeObjs += n.FreeObjects;
                sharedAvail += n.Shared?.Avail ?? 0;
            }
        }
        long numObjs = total * st.Geometry.Num;
        return new SlabCacheStats(numObjs - freeObjs, numObjs, total - freeSlabs, total, st.Limit, st.BatchCount, st.SharedFactor, sharedAvail);
    }

    /// <summary>Checks every cache (one pass over the memmap for all of them); returns the violations.
    /// No cache may be in use by other threads meanwhile.</summary>
    public override List<string> ValidateAll()
    {
        var byCache = new Dictionary<KmemCache, List<uint>>();
        for (uint pfn = 0; pfn < _mem.LowmemPfns; pfn++)
        {
            ref PageFrame f = ref _mem.Frame(pfn);
            if ((f.Flags & PageFlags.Slab) != 0 && (f.Flags & PageFlags.Tail) == 0 && CacheById(SlabPage.CacheId(f.Private)) is { } owner)
            {
                if (!byCache.TryGetValue(owner, out var list))
                {
                    byCache[owner] = list = [];
                }
                list.Add(pfn);
            }
        }
        var errors = new List<string>();
        var checker = new ArraySlabChecker(this, _mem, _cpus);
        foreach (var s in Caches)
        {
            checker.Validate(s, byCache.GetValueOrDefault(s) ?? [], errors);
        }
        return errors;
    }
}
