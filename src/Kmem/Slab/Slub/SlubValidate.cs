// SLUB's whole-heap check (validate_slab_cache's walk): every slab is found by its PG_slab frame in one pass
// over the memmap and handed, cache by cache, to SlubChecker, which checks its invariants. For quiet caches;
// takes every lock, one at a time.
using Kmem.Physical;

namespace Kmem.Slab;

internal sealed unsafe partial class Slub
{
    /// <summary>Checks every cache (one pass over the memmap for all of them); returns the violations.
    /// No cache may be in use by other threads meanwhile.</summary>
    public override List<string> ValidateAll()
    {
        var byCache = new Dictionary<KmemCache, List<uint>>();
        for (uint pfn = 0; pfn < _mem.LowmemPfns; pfn++)
        {
            if ((_mem.Frame(pfn).Flags & PageFlags.Slab) != 0 && CacheOfSlab(pfn) is { } owner)
            {
                if (!byCache.TryGetValue(owner, out var list))
                {
                    byCache[owner] = list = [];
                }
                list.Add(pfn);
            }
        }
        var errors = new List<string>();
        var checker = new SlubChecker(this, _mem);
        foreach (var s in Caches)
        {
            errors.AddRange(checker.Validate(s, byCache.GetValueOrDefault(s) ?? []));
        }
        return errors;
    }
}
