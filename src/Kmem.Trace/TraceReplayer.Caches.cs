// Which cache a traced kmem_cache_alloc came from. Linux 6.1 prints no cache name on
// kmem_cache_alloc, so a cache is first known by (call_site, bytes_alloc): each new pair
// gets a provisional Kmem cache of the same geometry, named "function/size". The first
// kmem_cache_free of one of its objects names the kernel's cache: from then on the pair
// allocates from the named cache (shared by every pair the same name reaches, or one of
// Kmem's own caches such as kmalloc-64), its objects still in the provisional cache move
// there (a new object, the old one freed, the pointer map updated), and the emptied
// provisional cache is destroyed. One pass, no look-ahead. TraceCaches keeps the sites and
// caches; here the replayer moves the objects. Part of TraceReplayer.
using System.Runtime.CompilerServices;

namespace Kmem;

public sealed partial class TraceReplayer
{
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
            ref var obj = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrNullRef(_objects, tracePtr);
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
}
