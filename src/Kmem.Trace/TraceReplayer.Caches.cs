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
