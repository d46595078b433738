// Which cache a traced kmem_cache_alloc came from. Linux 6.1 prints no cache name on
// kmem_cache_alloc, so a cache is first known by (call_site, bytes_alloc): each new pair
// gets a provisional Kmem cache of the same geometry, named "function/size". The first
// kmem_cache_free of one of its objects names the kernel's cache: from then on the pair
// allocates from the named cache (shared by every pair the same name reaches, or one of
// Kmem's own caches such as kmalloc-64), its objects still in the provisional cache move
// there (a new object, the old one freed, the pointer map updated), the object that free
// names included (the replayer renames before it frees, so the free is the named cache's), and the emptied
// provisional cache is destroyed. One pass, no look-ahead. Here: the sites, the cache slots
// (with their statistics), the caches' creation and the moves of the replayer's live objects
// between them. Used on the replaying thread only.
// Identity: a name in a 6.1 trace is always a root cache (kmem_cache_free prints s->name, and
// a merged kmem_cache_create returns its root's struct), so two names are two caches in the
// kernel, and a provisional cache is Kmem's stand-in, never one of the kernel's: every cache
// made here is SLAB_NO_MERGE, so neither kind is merged into the other (find_mergeable would
// otherwise alias a named cache onto a provisional one of the same size and its name would be
// lost with the provisional cache). Flags come from the trace, never from a name: SLAB_ACCOUNT
// from accounted=true on an allocation whose gfp_flags lack __GFP_ACCOUNT (6.1 prints
// accounted = __GFP_ACCOUNT || SLAB_ACCOUNT), SLAB_RECLAIM_ACCOUNT from a new slab page
// allocated with __GFP_RECLAIMABLE (the cache's allocflags); a flag seen after the cache was
// made re-makes it (Remake). With the names read from the trace beforehand (TraceCacheNames),
// a site that a free names anywhere in the trace allocates from the named cache from its first
// object on, and no provisional cache is made for it.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kmem;

/// <summary>The replay's slab caches: which Kmem cache each traced call site allocates from.</summary>
internal sealed class TraceCaches
{
    /// <summary>The flags the trace reveals: SLAB_ACCOUNT and SLAB_RECLAIM_ACCOUNT.</summary>
    public const SlabFlags TraceFlags = SlabFlags.Account | SlabFlags.ReclaimAccount;

    private readonly Machine _m;
    private readonly List<CacheSlot> _slots = [];

    /// <summary>The replayer's per-page count of its live objects, kept in step when a move drops one.</summary>
    public LiveObjectPages? LivePages { get; init; }

    /// <summary>The sites' cache names read from the trace beforehand: a site found here is named from the start.</summary>
    public TraceCacheNames? Names { get; init; }
    private readonly List<Site> _sites = [null!]; // index 0: no site (kmalloc objects)
    private readonly Dictionary<SiteKey, Site> _siteByKey = new(new SiteKeyComparer());
    private Site?[] _siteById = new Site?[1024];
    private readonly Dictionary<string, CacheSlot> _named = new(StringComparer.Ordinal);
    private readonly Dictionary<ulong, CacheSlot> _kmallocSlots = [];
    private readonly Dictionary<ulong, string> _kmallocNames = [];
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

    /// <summary>The flags one allocation reveals about its cache: SLAB_ACCOUNT when accounted=true without
    /// __GFP_ACCOUNT, SLAB_RECLAIM_ACCOUNT when it took a new slab page allocated with __GFP_RECLAIMABLE.</summary>
    public static SlabFlags FlagsOf(in TraceEvent e, Gfp? newSlabGfp)
    {
        SlabFlags seen = e.Accounted && (e.Gfp & Gfp.Account) == 0 ? SlabFlags.Account : SlabFlags.None;
        if (newSlabGfp is Gfp g && (g & Gfp.Reclaimable) != 0)
        {
            seen |= SlabFlags.ReclaimAccount;
        }
        return seen;
    }

    /// <summary>The site of a kmem_cache_alloc; a new one gets a provisional cache with the flags
    /// <paramref name="seen"/> the event revealed.</summary>
    public Site SiteOf(ref TraceEvent e, SlabFlags seen)
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
            site = NewSite(key, e.BytesReq, seen);
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

    /// <summary>The site of a kmem_cache_alloc and the slot it allocates from; a flag the event reveals
    /// (<see cref="FlagsOf"/>) that the site's cache lacks re-makes the cache (<see cref="Remake"/>).</summary>
    public CacheSlot SiteSlot(ref TraceEvent e, Gfp? newSlabGfp, Dictionary<ulong, TraceReplayer.LiveObject> objects,
        out Site site, ref long moved)
    {
        var seen = FlagsOf(e, newSlabGfp);
        site = SiteOf(ref e, seen);
        if ((seen & ~site.Flags) != 0)
        {
            site.Flags |= seen;
            moved += Remake(site.Target, site.Flags, objects);
        }
        return site.Target;
    }

    /// <summary>An allocation at a trace address still live in <paramref name="slot"/>: a free the trace did not show.</summary>
    public void NoteMissedFree(int slot)
    {
        if (slot != 0)
        {
            _slots[slot].MissedFrees++;
        }
    }

    /// <summary>A kmem_cache_free named the cache of one of the site's objects: the site allocates from the named
    /// cache from now on and its objects still in the provisional cache move there. Returns the objects moved.</summary>
    public long Rename(Site site, string name, Dictionary<ulong, TraceReplayer.LiveObject> objects)
    {
        site.Named = true;
        var old = site.Target;
        var target = NamedSlot(name, site);
        long moved = Remake(target, site.Flags, objects);
        if (ReferenceEquals(target, old))
        {
            return moved;
        }
        site.Target = target;
        target.CallSites++;
        var ptrs = old.Provisional!;
        old.Provisional = null;
        old.Retired = true;
        old.RenamedTo = target;
        foreach (ulong tracePtr in ptrs)
        {
            ref var obj = ref CollectionsMarshal.GetValueRefOrNullRef(objects, tracePtr);
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
            obj = obj with { Ptr = p, Slot = target.Index };
            moved++;
        }
        if (old.Live == 0)
        {
            DestroyRetired(old);
        }
        return moved;
    }

    /// <summary>Re-makes the slot's cache when it lacks one of <paramref name="flags"/>: a new cache of the same
    /// name and geometry, every live object moved into it, the old cache destroyed; flags only grow, so a cache is
    /// re-made at most twice. Kmem's own caches (kmalloc) are left alone. Returns the objects moved.</summary>
    public long Remake(CacheSlot slot, SlabFlags flags, Dictionary<ulong, TraceReplayer.LiveObject> objects)
    {
        flags &= TraceFlags;
        if (!slot.Owned || slot.Cache is not { } old || (flags & ~slot.Flags) == 0)
        {
            return 0;
        }
        var fresh = CreateCache(slot.Name, slot.BytesReq, slot.ObjectSize, slot.Flags | flags);
        slot.Cache = fresh;
        long moved = 0;
        if (slot.Live > 0)
        {
            // The map itself, not a copy of its keys: a removal during enumeration leaves the enumerator and the order of
            // the remaining entries as they were, and a copy of tens of thousands of keys per re-made cache was a large
            // object each time.
            foreach (ulong tracePtr in objects.Keys)
            {
                ref var obj = ref CollectionsMarshal.GetValueRefOrNullRef(objects, tracePtr);
                if (obj.Slot != slot.Index || obj.Ptr == 0)
                {
                    continue;
                }
                nint p = _m.KmemCacheAlloc(fresh, Gfp.Kernel | Gfp.NoWarn);
                _m.KmemCacheFree(old, obj.Ptr);
                if (p == 0)
                {
                    // Out of memory: the object leaves the replay (its free will count as untracked).
                    slot.Live--;
                    objects.Remove(tracePtr);
                    LivePages?.Remove(tracePtr);
                    continue;
                }
                obj = obj with { Ptr = p };
                moved++;
            }
        }
        _m.KmemCacheDestroy(old);
        return moved;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private Site NewSite(SiteKey key, ulong bytesReq, SlabFlags seen)
    {
        var site = new Site(_sites.Count, key, bytesReq, null!) { Flags = seen & TraceFlags };
        if (Names?.NameOf(key.CallSite, key.BytesAlloc) is { } known)
        {
            site.Named = true;
            site.Target = NamedSlot(known, site);
            site.Target.CallSites++;
        }
        else
        {
            site.Target = ProvisionalSlot(key, bytesReq, seen);
        }
        _sites.Add(site);
        _siteByKey.Add(key, site);
        return site;
    }

    // A provisional cache for a site no free has named yet, with the flags the site's first event revealed.
    private CacheSlot ProvisionalSlot(SiteKey key, ulong bytesReq, SlabFlags seen)
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
        var cache = CreateCache(name, bytesReq, key.BytesAlloc, seen);
        var slot = AddSlot(cache, name, key.BytesAlloc, bytesReq);
        slot.Provisional = [];
        slot.CallSites = 1;
        return slot;
    }

    public CacheSlot NamedSlot(string name, Site site)
    {
        if (_named.TryGetValue(name, out var slot) && slot.ObjectSize == site.Key.BytesAlloc)
        {
            return slot; // the caller re-makes it when the site revealed a flag it lacks
        }
        if (slot is null)
        {
            // One of Kmem's own caches (the kmalloc caches) when the geometry agrees.
            foreach (var c in _m.SlabCaches)
            {
                if (c.Name == name && !c.IsDestroyed && c.Size == site.Key.BytesAlloc)
                {
                    slot = AddSlot(c, name, site.Key.BytesAlloc, site.BytesReq);
                    slot.Owned = false;
                    _named[name] = slot;
                    return slot;
                }
            }
        }
        // A new cache under the kernel's name (with the size added when the name is taken by another size).
        string unique = slot is null && !_m.SlabCaches.Any(c => c.Name == name) ? name : $"{name}/{site.Key.BytesAlloc}";
        var cache = CreateCache(unique, site.BytesReq, site.Key.BytesAlloc, site.Flags);
        var created = AddSlot(cache, unique, site.Key.BytesAlloc, site.BytesReq);
        _named.TryAdd(name, created);
        return created;
    }

    // A cache whose object size (s->size) is the trace's bytes_alloc for objects of bytes_req (object_size):
    // the alignment is the smallest that rounds one to the other, as SLAB_HWCACHE_ALIGN or an explicit align did.
    // Never merged (see the top of the file).
    public KmemCache CreateCache(string name, ulong bytesReq, ulong bytesAlloc, SlabFlags traceFlags)
    {
        uint req = (uint)Math.Clamp(bytesReq, 1UL, int.MaxValue);
        uint alloc = (uint)Math.Clamp(bytesAlloc, 1UL, int.MaxValue);
        var flags = (traceFlags & TraceFlags) | SlabFlags.NoMerge;
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

    private CacheSlot AddSlot(KmemCache? cache, string name, ulong objectSize, ulong bytesReq = 0)
    {
        var slot = new CacheSlot(_slots.Count, cache, name, objectSize) { BytesReq = bytesReq };
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

    // "kmalloc-N" for a kmalloc's bytes_alloc (the decisions' detail), made once per size rather than per event.
    public string KmallocName(ulong bytesAlloc)
    {
        ref string? name = ref CollectionsMarshal.GetValueRefOrAddDefault(_kmallocNames, bytesAlloc, out _);
        return name ??= $"kmalloc-{bytesAlloc}";
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
        /// <summary>The flags the site's allocations revealed (<see cref="TraceFlags"/> bits).</summary>
        public SlabFlags Flags { get; set; }
    }

    public sealed class CacheSlot(int index, KmemCache? cache, string name, ulong objectSize)
    {
        public int Index { get; } = index;
        /// <summary>The Kmem cache, or null for a kmalloc size class (freed with kfree).</summary>
        public KmemCache? Cache { get; set; } = cache;
        public string Name { get; } = name;
        public ulong ObjectSize { get; } = objectSize;
        /// <summary>bytes_req of the allocation that made the cache (its object_size).</summary>
        public ulong BytesReq { get; init; }
        /// <summary>Whether the replay made the cache (so may re-make it); false for Kmem's own caches.</summary>
        public bool Owned { get; set; } = true;
        /// <summary>The trace's flags the cache has.</summary>
        public SlabFlags Flags => (Cache?.Flags ?? SlabFlags.None) & TraceFlags;
        /// <summary>The trace pointers of a provisional cache's live objects (to move them once named); null otherwise.</summary>
        public HashSet<ulong>? Provisional { get; set; }
        /// <summary>A provisional cache whose site was named: destroyed when its last object goes.</summary>
        public bool Retired { get; set; }
        /// <summary>The named slot a retired provisional one gave way to (its counts are that cache's).</summary>
        public CacheSlot? RenamedTo { get; set; }
        public long Allocs;
        public long Frees;
        public long Live;
        public long MissedFrees;
        public int CallSites;
    }
}
