// The replayer's side of cache identity (TraceCaches) and of the per-cache counts
// (TraceCacheCounter): it hands them the live objects, the kernel's slab page the last
// allocation fell in, and the untracked frees. Part of TraceReplayer.
namespace Kmem;

public sealed partial class TraceReplayer
{
    private readonly TraceCacheCounter _counter = new();
    // The gfp_flags and frame of the kernel's slab page the last MatchHeld recognised (read right after it).
    private Gfp _slabPageGfp;
    private ulong _slabPagePfn;
    // The kernel's fallback steals for that slab page (aligned: corrected after Kmem's slab allocation for it).
    private KernelSteal[]? _slabPageSteals;

    // Free-running: the kernel's slabs from before the trace (null in aligned runs, whose new slabs follow the kernel's).
    private PreTraceSlabs? _preTrace;
    private readonly Dictionary<string, int> _slabOrders = new(StringComparer.Ordinal);

    // Before Kmem's allocation for a kernel slab object: whether the slab it is in predates the trace (a slab the
    // trace showed allocated, or took for this object, does not; before the direct map's base is known, only that).
    private void BeginPreTrace(ref TraceEvent e, string name, int order, bool kernelNewSlab)
    {
        if (_preTrace is { } pre)
        {
            bool predates = _held.Base is null || SlabAlignment.KernelSlabPredatesTrace(_slabPages, _held.Base, e.Ptr);
            pre.Begin(name, order, e.Ptr, kernelNewSlab, predates);
        }
    }

    // The slab order of Kmem's cache of that name (a kmalloc size class), 0 for one it lacks.
    private int KmallocOrder(string name)
    {
        if (!_slabOrders.TryGetValue(name, out int order))
        {
            order = _m.SlabCaches.FirstOrDefault(c => c.Name == name)?.Order ?? 0;
            _slabOrders[name] = order;
        }
        return order;
    }

    // The cache slot a kmem_cache_alloc allocates from, with the flags the event reveals (a cache lacking one is re-made).
    private TraceCaches.CacheSlot CacheSiteSlot(ref TraceEvent e, bool kernelNewSlab, out TraceCaches.Site site)
    {
        var slot = _caches.SiteSlot(ref e, kernelNewSlab ? _slabPageGfp : null, _objects, out site, ref _moved);
        _counter.SlabPage(kernelNewSlab, _slabPagePfn, slot.Index);
        return slot;
    }

    // A kmem_cache_free named the cache of one of the site's objects.
    private void NameSite(TraceCaches.Site site, string name)
    {
        if (!site.Named)
        {
            _moved += _caches.Rename(site, name, _objects);
            NotePeak();
        }
    }

    // A free of an object the trace never allocated.
    private void NoteUntrackedFree(ulong ptr, string? name)
    {
        _untrackedFrees++;
        if (name is not null)
        {
            _untrackedByCache[name] = _untrackedByCache.GetValueOrDefault(name) + 1;
            _counter.UntrackedFree(name, ptr, _held.Base, _slabPages);
        }
    }
}
