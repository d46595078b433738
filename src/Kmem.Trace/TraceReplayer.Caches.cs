// Which cache a traced kmem_cache_alloc came from. Linux 6.1 prints no cache name on
// kmem_cache_alloc, so a cache is first known by (call_site, bytes_alloc): each new pair
// gets a provisional Kmem cache of the same geometry, named "function/size". The first
// kmem_cache_free of one of its objects names the kernel's cache: from then on the pair
// allocates from the named cache (shared by every pair the same name reaches, or one of
// Kmem's own caches such as kmalloc-64), its objects still in the provisional cache move
// there (a new object, the old one freed, the pointer map updated), and the emptied
// provisional cache is destroyed. A flag an allocation reveals (SLAB_ACCOUNT,
// SLAB_RECLAIM_ACCOUNT: TraceCaches.FlagsOf) that its cache lacks re-makes the cache with it
// and moves its live objects the same way (at most twice per cache: flags only grow).
// One pass, no look-ahead. TraceCaches keeps the sites and caches; here the replayer moves
// the objects. Part of TraceReplayer.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kmem;

public sealed partial class TraceReplayer
{
    // The gfp_flags of the kernel's slab page the last MatchPending recognised (read right after it).
    private Gfp _slabPageGfp;
    private long _cachesRemade;

    // The site of a kmem_cache_alloc and the cache it allocates from, with the flags the event reveals.
    private TraceCaches.CacheSlot CacheSiteSlot(ref TraceEvent e, bool kernelNewSlab, out TraceCaches.Site site)
    {
        var seen = TraceCaches.FlagsOf(e, kernelNewSlab ? _slabPageGfp : null);
        site = _caches.SiteOf(ref e, seen);
        if ((seen & ~site.Flags) != 0)
        {
            site.Flags |= seen;
            Remake(site.Target, site.Flags);
        }
        return site.Target;
    }

    // A kmem_cache_free named the cache of one of the site's objects.
    private void NameSite(TraceCaches.Site site, string name)
    {
        if (site.Named)
        {
            return;
        }
        site.Named = true;
        var old = site.Target;
        var target = _caches.NamedSlot(name, site);
        Remake(target, site.Flags);
        if (ReferenceEquals(target, old))
        {
            return;
        }
        site.Target = target;
        target.CallSites++;
        var ptrs = old.Provisional!;
        old.Provisional = null;
        old.Retired = true;
        foreach (ulong tracePtr in ptrs)
        {
            ref var obj = ref CollectionsMarshal.GetValueRefOrNullRef(_objects, tracePtr);
            if (Unsafe.IsNullRef(ref obj) || obj.Slot != old.Index || obj.Ptr == 0)
            {
                continue;
            }
            nint p = _m.KmemCacheAlloc(target.Cache!, Gfp.Kernel | Gfp.NoWarn);
            if (p == 0)
            {
                continue; // stays in the provisional cache; it is destroyed when its last object goes
            }
            _m.KmemCacheFree(old.Cache!, obj.Ptr);
            old.Live--;
            target.Live++;
            obj = new LiveObject(p, target.Index, obj.Site);
            _moved++;
        }
        NotePeak();
        if (old.Live == 0)
        {
            _caches.DestroyRetired(old);
        }
    }

    // Re-makes the slot's cache when it lacks one of flags: a new cache of the same name and geometry,
    // every live object moved into it, the old cache destroyed. Kmem's own caches (kmalloc) are left alone.
    private void Remake(TraceCaches.CacheSlot slot, SlabFlags flags)
    {
        flags &= TraceCaches.TraceFlags;
        if (!slot.Owned || slot.Cache is not { } old || (flags & ~slot.Flags) == 0)
        {
            return;
        }
        var fresh = _caches.CreateCache(slot.Name, slot.BytesReq, slot.ObjectSize, slot.Flags | flags);
        slot.Cache = fresh;
        _cachesRemade++;
        if (slot.Live > 0)
        {
            foreach (ulong tracePtr in _objects.Keys.ToList())
            {
                ref var obj = ref CollectionsMarshal.GetValueRefOrNullRef(_objects, tracePtr);
                if (obj.Slot != slot.Index || obj.Ptr == 0)
                {
                    continue;
                }
                nint p = _m.KmemCacheAlloc(fresh, Gfp.Kernel | Gfp.NoWarn);
                if (p == 0)
                {
                    // Out of memory: the object is dropped from the replay (its free will count as untracked).
                    _m.KmemCacheFree(old, obj.Ptr);
                    slot.Live--;
                    _objects.Remove(tracePtr);
                    continue;
                }
                _m.KmemCacheFree(old, obj.Ptr);
                obj = new LiveObject(p, slot.Index, obj.Site);
                _moved++;
            }
            NotePeak();
        }
        _m.KmemCacheDestroy(old);
    }
}
