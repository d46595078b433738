// Which cache a traced kmem_cache_alloc came from. Linux 6.1 prints no cache name on
// kmem_cache_alloc, so a cache is first known by (call_site, bytes_alloc): each new pair
// gets a provisional Kmem cache of the same geometry, named "function/size". The first
// kmem_cache_free of one of its objects names the kernel's cache: from then on the pair
// allocates from the named cache (shared by every pair the same name reaches, or one of
// Kmem's own caches such as kmalloc-64), its objects still in the provisional cache move
// there (a new object, the old one freed, the pointer map updated), and the emptied
// provisional cache is destroyed. One pass, no look-ahead. Here: the sites, the cache slots
// (with their statistics) and the caches' creation; TraceReplayer moves the objects. Used on
// the replaying thread only.
using System.Runtime.CompilerServices;

namespace Kmem;

/// <summary>The replay's slab caches: which Kmem cache each traced call site allocates from.</summary>
internal sealed class TraceCaches
{
    // Caches known by SLAB_RECLAIM_ACCOUNT in 6.1 (their slab pages count as SReclaimable).
    private static readonly string[] s_reclaimable = ["dentry", "radix_tree_node", "buffer_head", "inode_cache", "mbcache", "ext4_groupinfo_4k"];

    private readonly Machine _m;
    private readonly List<CacheSlot> _slots = [];
    private readonly List<Site> _sites = [null!]; // index 0: no site (kmalloc objects)
    private readonly Dictionary<SiteKey, Site> _siteByKey = new(new SiteKeyComparer());
    private Site?[] _siteById = new Site?[1024];
    private readonly Dictionary<string, CacheSlot> _named = new(StringComparer.Ordinal);
    private readonly Dictionary<ulong, CacheSlot> _kmallocSlots = [];
    private readonly HashSet<string> _provisionalNames = new(StringComparer.Ordinal);

    public TraceCaches(Machine machine)
    {
        _m = machine;
        _slots.Add(null!); // slot 0: no cache (a failed allocation's placeholder)
    }

    /// <summary>Every slot by index; slot 0 is the placeholder of failed allocations.</summary>
    public List<CacheSlot> Slots => _slots;

    /// <summary>Every site by index; site 0 stands for kmalloc objects.</summary>
    public List<Site> Sites => _sites;

    public Site SiteOf(ref TraceEvent e)
    {
        // The last site of each call site, by the reader's id for it: no hashing of the text when the
        // call site allocates the same size as last time (almost always). Bounded by the reader's
        // intern table (SpanIntern.MaxEntries).
        int id = e.CallSiteId;
        if ((uint)id < (uint)_siteById.Length && _siteById[id] is { } hit
            && hit.Key.BytesAlloc == e.BytesAlloc && ReferenceEquals(hit.Key.CallSite, e.CallSite))
        {
            return hit;
        }
        var key = new SiteKey(e.CallSite ?? "?", e.BytesAlloc);
        if (!_siteByKey.TryGetValue(key, out var site))
        {
            site = NewSite(key, e.BytesReq);
        }
        if (id > 0)
        {
            if (id >= _siteById.Length)
            {
                Array.Resize(ref _siteById, Math.Max(id + 1, _siteById.Length * 2));
            }
            _siteById[id] = site;
        }
        return site;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private Site NewSite(SiteKey key, ulong bytesReq)
    {
        string function = key.CallSite;
        int plus = function.IndexOf('+', StringComparison.Ordinal);
        if (plus > 0)
        {
            function = function[..plus];
        }
        // function/size, numbered when another offset in the same function allocates the same size.
        string name = $"{function}/{key.BytesAlloc}";
        for (int n = 2; !_provisionalNames.Add(name); n++)
        {
            name = $"{function}/{key.BytesAlloc}#{n}";
        }
        var cache = CreateCache(name, bytesReq, key.BytesAlloc);
        var slot = AddSlot(cache, name, key.BytesAlloc);
        slot.Provisional = [];
        slot.CallSites = 1;
        var site = new Site(_sites.Count, key, bytesReq, slot);
        _sites.Add(site);
        _siteByKey.Add(key, site);
        return site;
    }

    public CacheSlot NamedSlot(string name, Site site)
    {
        if (_named.TryGetValue(name, out var slot) && slot.ObjectSize == site.Key.BytesAlloc)
        {
            return slot;
        }
        if (slot is null)
        {
            // One of Kmem's own caches (the kmalloc caches) when the geometry agrees.
            foreach (var c in _m.SlabCaches)
            {
                if (c.Name == name && !c.IsDestroyed && c.Size == site.Key.BytesAlloc)
                {
                    slot = AddSlot(c, name, site.Key.BytesAlloc);
                    _named[name] = slot;
                    return slot;
                }
            }
        }
        // A new cache under the kernel's name (with the size added when the name is taken by another size).
        string unique = slot is null && !_m.SlabCaches.Any(c => c.Name == name) ? name : $"{name}/{site.Key.BytesAlloc}";
        var cache = CreateCache(unique, site.BytesReq, site.Key.BytesAlloc, Array.IndexOf(s_reclaimable, name) >= 0 || name.EndsWith("inode_cache", StringComparison.Ordinal));
        var created = AddSlot(cache, unique, site.Key.BytesAlloc);
        _named.TryAdd(name, created);
        return created;
    }

    // A cache whose object size (s->size) is the trace's bytes_alloc for objects of bytes_req (object_size):
    // the alignment is the smallest that rounds one to the other, as SLAB_HWCACHE_ALIGN or an explicit align did.
    private KmemCache CreateCache(string name, ulong bytesReq, ulong bytesAlloc, bool reclaimable = false)
    {
        uint req = (uint)Math.Clamp(bytesReq, 1UL, int.MaxValue);
        uint alloc = (uint)Math.Clamp(bytesAlloc, 1UL, int.MaxValue);
        var flags = reclaimable ? SlabFlags.ReclaimAccount : SlabFlags.None;
        uint align = 0;
        uint words = AlignUp(req, 8);
        if (words != alloc)
        {
            align = 16;
            while (align <= Machine.PageSize && AlignUp(words, align) != alloc)
            {
                align <<= 1;
            }
            if (align > Machine.PageSize)
            {
                // Not a rounding of bytes_req (a free pointer after the object, debug metadata): take bytes_alloc as the object.
                (req, align) = (alloc, 0);
            }
        }
        return _m.KmemCacheCreate(name, req, align, flags, null)
            ?? throw new InvalidOperationException($"kmem_cache_create(\"{name}\", {req}, {align}) failed (see the machine's log)");
    }

    private static uint AlignUp(uint x, uint a) => (x + a - 1) & ~(a - 1);

    private CacheSlot AddSlot(KmemCache? cache, string name, ulong objectSize)
    {
        var slot = new CacheSlot(_slots.Count, cache, name, objectSize);
        _slots.Add(slot);
        return slot;
    }

    public void DestroyRetired(CacheSlot slot)
    {
        if (slot.Cache is { IsDestroyed: false } cache && slot.Retired)
        {
            _m.KmemCacheDestroy(cache);
        }
    }

    // The statistics slot of a kmalloc size class, named as /proc/slabinfo names the kernel's cache.
    public CacheSlot KmallocSlot(Gfp gfp, ulong ksize)
    {
        int type = (gfp & Gfp.Dma) != 0 ? 3 : (gfp & Gfp.Reclaimable) != 0 ? 2 : (gfp & Gfp.Account) != 0 ? 1 : 0;
        bool large = ksize > Machine.KmallocMaxCacheSize;
        ulong key = ((ulong)type << 48) | (large ? 0 : ksize);
        if (_kmallocSlots.TryGetValue(key, out var slot))
        {
            return slot;
        }
        string prefix = type switch { 3 => "dma-kmalloc-", 2 => "kmalloc-rcl-", 1 => "kmalloc-cg-", _ => "kmalloc-" };
        string name = large ? $"{prefix}large (pages)" : prefix + SizeLabel(ksize);
        slot = AddSlot(null, name, large ? 0 : ksize);
        slot.CallSites = 0;
        _kmallocSlots.Add(key, slot);
        return slot;
    }

    private static string SizeLabel(ulong size) =>
        size >= 1024 && size % 1024 == 0 ? $"{size / 1024}k" : size.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>A call site and object size: how 6.1's kmem_cache_alloc events tell caches apart.</summary>
    public readonly record struct SiteKey(string CallSite, ulong BytesAlloc);

    // Call sites are interned by the reader: compare them by reference, hash them by identity.
    private sealed class SiteKeyComparer : IEqualityComparer<SiteKey>
    {
        public bool Equals(SiteKey x, SiteKey y) =>
            x.BytesAlloc == y.BytesAlloc && (ReferenceEquals(x.CallSite, y.CallSite) || string.Equals(x.CallSite, y.CallSite, StringComparison.Ordinal));

        public int GetHashCode(SiteKey k) => HashCode.Combine(string.GetHashCode(k.CallSite, StringComparison.Ordinal), k.BytesAlloc);
    }

    public sealed class Site(int index, SiteKey key, ulong bytesReq, CacheSlot target)
    {
        public int Index { get; } = index;
        public SiteKey Key { get; } = key;
        public ulong BytesReq { get; } = bytesReq;
        public CacheSlot Target { get; set; } = target;
        public bool Named { get; set; }
    }

    public sealed class CacheSlot(int index, KmemCache? cache, string name, ulong objectSize)
    {
        public int Index { get; } = index;
        /// <summary>The Kmem cache, or null for a kmalloc size class (freed with kfree).</summary>
        public KmemCache? Cache { get; } = cache;
        public string Name { get; } = name;
        public ulong ObjectSize { get; } = objectSize;
        /// <summary>The trace pointers of a provisional cache's live objects (to move them once named); null otherwise.</summary>
        public HashSet<ulong>? Provisional { get; set; }
        /// <summary>A provisional cache whose site was named: destroyed when its last object goes.</summary>
        public bool Retired { get; set; }
        public long Allocs;
        public long Frees;
        public long Live;
        public int CallSites;
    }
}
