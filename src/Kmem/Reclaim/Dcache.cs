// The dentry and inode caches of the page cache's files (fs/dcache.c, fs/inode.c)
// and the superblock shrinker that reclaims them (fs/super.c super_cache_count,
// super_cache_scan): opening a file looks its path up in the dentry hash and
// takes a reference (d_alloc + iget on a miss: a "dentry" object and an
// "inode_cache" object, both SLAB_RECLAIM_ACCOUNT, so they count as
// SReclaimable); closing drops it, and an unused dentry stays cached on its
// node's LRU (dput/retain_dentry), holding its inode. The shrinker prunes the
// dentry LRU (prune_dcache_sb: a referenced dentry is rotated once, an unused
// one freed and its inode released onto the inode LRU) and then the inode LRU
// (prune_icache_sb), the scan split between them in proportion to their sizes,
// and only with __GFP_FS. It is registered with the first file opened (the
// filesystem's mount), so a machine without files has no shrinker at all.
// Invariants (Validate): an object is on its LRU only while unused or lazily
// (an LRU walk drops the in-use ones it meets), each LRU count equals the
// objects on it, and the hashes hold every live object.
// Locking: Lock (dcache_lock: the hashes, the LRUs, the counts) is taken alone
// by open and close and inside the reclaim locks by the shrinker; slab objects
// are allocated with it dropped (the allocation may reclaim), freed under it.
using Kmem.PageAlloc;
using Kmem.Physical;
using Kmem.Slab;

namespace Kmem.Reclaim;

/// <summary>The dentry and inode caches of one machine's files and their shrinker.</summary>
internal sealed class Dcache(PhysMem mem, PageAllocator pa, Func<SlabBackend?> slab, Shrinkers shrinkers)
{
    /// <summary>sizeof(struct dentry) on 64-bit 6.1.</summary>
    public const uint DentrySize = 192;
    /// <summary>sizeof(struct inode) on 64-bit 6.1.</summary>
    public const uint InodeSize = 600;
    /// <summary>The superblock shrinker's batch (alloc_super sets s_shrink.batch = 1024).</summary>
    public const long SuperBatch = 1024;

    private sealed class Inode(string key, nint obj, int nid)
    {
        public readonly string Key = key;
        public readonly nint Obj = obj;
        public readonly int Nid = nid;
        public int Count;
        public bool Referenced;
        public LinkedListNode<Inode>? Lru;
    }

    private sealed class Dentry(string key, nint obj, int nid, Inode inode)
    {
        public readonly string Key = key;
        public readonly nint Obj = obj;
        public readonly int Nid = nid;
        public readonly Inode Inode = inode;
        public int Count;
        public bool Referenced;
        public LinkedListNode<Dentry>? Lru;
    }

    private readonly Dictionary<string, Dentry> _dentries = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Inode> _inodes = new(StringComparer.Ordinal);
    private readonly LinkedList<Dentry>[] _dentryLru = [.. pa.Nodes.Select(_ => new LinkedList<Dentry>())];
    private readonly LinkedList<Inode>[] _inodeLru = [.. pa.Nodes.Select(_ => new LinkedList<Inode>())];
    private KmemCache? _dentryCache, _inodeCache;
    private Shrinker? _shrinker;

    /// <summary>dcache_lock (see the head of the file).</summary>
    public Lock Lock { get; } = new();

    /// <summary>vm.vfs_cache_pressure (default 100): the shrinker reports its objects × this / 100.</summary>
    public int VfsCachePressure { get; set; } = 100;

    /// <summary>nr_dentry, nr_unused (dentry-state), nr_inodes, nr_unused (inode-state).</summary>
    public (long Dentries, long UnusedDentries, long Inodes, long UnusedInodes) State
    {
        get
        {
            lock (Lock)
            {
                return (_dentries.Count, _dentryLru.Sum(l => (long)l.Count), _inodes.Count, _inodeLru.Sum(l => (long)l.Count));
            }
        }
    }

    /// <summary>The superblock shrinker, once the first file was opened.</summary>
    public Shrinker? Shrinker => _shrinker;

    /// <summary>d_lookup / d_alloc + iget: takes a reference on the dentry of <paramref name="key"/>, making it
    /// (and its inode) on a miss. False when no slab object could be had (the open fails with ENOMEM).</summary>
    public bool Dget(string key)
    {
        var backend = slab();
        if (backend is null)
        {
            return true; // no slab layer: no dentries to keep
        }
        lock (Lock)
        {
            if (_dentries.TryGetValue(key, out var hit))
            {
                hit.Count++;
                return true;
            }
        }
        EnsureCaches(backend);
        bool needInode;
        lock (Lock)
        {
            needInode = !_inodes.ContainsKey(key);
        }
        nint d = backend.Alloc(_dentryCache!, Gfp.Kernel, -1);
        nint i = needInode ? backend.Alloc(_inodeCache!, Gfp.Kernel, -1) : 0;
        lock (Lock)
        {
            if (d == 0 || needInode && i == 0)
            {
                FreeObj(backend, _dentryCache!, d);
                FreeObj(backend, _inodeCache!, i);
                return false;
            }
            if (_dentries.TryGetValue(key, out var raced))
            {
                // Another opener made it meanwhile (d_alloc_parallel's loser): ours go back.
                FreeObj(backend, _dentryCache!, d);
                FreeObj(backend, _inodeCache!, i);
                raced.Count++;
                return true;
            }
            if (!_inodes.TryGetValue(key, out var inode))
            {
                inode = new Inode(key, i, NidOf(i));
                _inodes.Add(key, inode);
            }
            else
            {
                FreeObj(backend, _inodeCache!, i);
            }
            inode.Count++; // the dentry's reference (d_instantiate); a cached unused inode leaves the LRU lazily
            var dentry = new Dentry(key, d, NidOf(d), inode) { Count = 1 };
            _dentries.Add(key, dentry);
            return true;
        }
    }

    /// <summary>dput: drops a reference; an unused dentry is kept on its node's LRU (retain_dentry), or marked
    /// referenced if it is there already.</summary>
    public void Dput(string key)
    {
        lock (Lock)
        {
            if (!_dentries.TryGetValue(key, out var d) || d.Count == 0)
            {
                return;
            }
            if (--d.Count > 0)
            {
                return;
            }
            if (d.Lru is null)
            {
                d.Lru = _dentryLru[d.Nid].AddLast(d);
            }
            else
            {
                d.Referenced = true;
            }
        }
    }

    private void EnsureCaches(SlabBackend backend)
    {
        lock (Lock)
        {
            if (_dentryCache is not null)
            {
                return;
            }
            _dentryCache = backend.CreateCache("dentry", DentrySize, 8, SlabFlags.ReclaimAccount | SlabFlags.Panic, null);
            _inodeCache = backend.CreateCache("inode_cache", InodeSize, 8, SlabFlags.ReclaimAccount | SlabFlags.Panic, null);
            // register_shrinker at mount: NUMA aware (list_lru per node), DEFAULT_SEEKS, batch 1024.
            _shrinker = new Shrinker("sb-kmemfs", SuperCacheCount, SuperCacheScan) { Batch = SuperBatch, NumaAware = true };
            shrinkers.Register(_shrinker);
        }
    }

    private int NidOf(nint obj)
    {
        uint pfn = mem.VirtToPfn(obj);
        return pfn == PhysMem.NoPfn ? 0 : pa.ZoneOf(pfn).Node.Id;
    }

    private static void FreeObj(SlabBackend backend, KmemCache cache, nint obj)
    {
        if (obj != 0)
        {
            backend.CacheFree(cache, obj);
        }
    }

    /// <summary>super_cache_count: the node's unused dentries and inodes, scaled by vfs_cache_pressure.</summary>
    private long SuperCacheCount(ShrinkControl sc)
    {
        lock (Lock)
        {
            long total = _dentryLru[sc.Nid].Count + _inodeLru[sc.Nid].Count;
            return total == 0 ? Shrinker.Empty : total * VfsCachePressure / 100;
        }
    }

    /// <summary>super_cache_scan: without __GFP_FS nothing (SHRINK_STOP); else the scan split between the
    /// dentry and inode LRUs by their sizes, dentries first.</summary>
    private long SuperCacheScan(ShrinkControl sc)
    {
        if ((sc.Gfp & Gfp.Fs) == 0)
        {
            return Shrinker.Stop;
        }
        var backend = slab()!;
        lock (Lock)
        {
            long inodes = _inodeLru[sc.Nid].Count;
            long dentries = _dentryLru[sc.Nid].Count;
            long total = dentries + inodes + 1;
            long dscan = sc.NrToScan * dentries / total;
            long iscan = sc.NrToScan * inodes / total;
            long freed = PruneDcacheSb(backend, sc.Nid, dscan + 1);
            freed += PruneIcacheSb(backend, sc.Nid, iscan + 1);
            return freed;
        }
    }

    /// <summary>prune_dcache_sb: walks up to <paramref name="nrToWalk"/> dentries from the LRU's cold end: in use,
    /// off the LRU; referenced, rotated with the mark cleared; else freed, releasing its inode (dentry_kill, iput).</summary>
    private long PruneDcacheSb(SlabBackend backend, int nid, long nrToWalk)
    {
        var lru = _dentryLru[nid];
        long freed = 0;
        for (var node = lru.First; node is not null && nrToWalk-- > 0;)
        {
            var next = node.Next;
            var d = node.Value;
            if (d.Count > 0)
            {
                lru.Remove(node);
                d.Lru = null;
            }
            else if (d.Referenced)
            {
                d.Referenced = false;
                lru.Remove(node);
                lru.AddLast(node);
            }
            else
            {
                lru.Remove(node);
                d.Lru = null;
                _dentries.Remove(d.Key);
                backend.CacheFree(_dentryCache!, d.Obj);
                Iput(d.Inode);
                freed++;
            }
            node = next;
        }
        return freed;
    }

    /// <summary>iput: the last reference of a cached inode puts it on its node's LRU (iput_final, inode_add_lru);
    /// if it is there already it is marked referenced.</summary>
    private void Iput(Inode inode)
    {
        if (--inode.Count > 0)
        {
            return;
        }
        if (inode.Lru is null)
        {
            inode.Lru = _inodeLru[inode.Nid].AddLast(inode);
        }
        else
        {
            inode.Referenced = true;
        }
    }

    /// <summary>prune_icache_sb: walks up to <paramref name="nrToWalk"/> inodes from the LRU's cold end: in use,
    /// off the LRU; referenced, rotated; else evicted and freed. (A closed file has no pages left, so none is
    /// invalidated here.)</summary>
    private long PruneIcacheSb(SlabBackend backend, int nid, long nrToWalk)
    {
        var lru = _inodeLru[nid];
        long freed = 0;
        for (var node = lru.First; node is not null && nrToWalk-- > 0;)
        {
            var next = node.Next;
            var inode = node.Value;
            if (inode.Count > 0)
            {
                lru.Remove(node);
                inode.Lru = null;
            }
            else if (inode.Referenced)
            {
                inode.Referenced = false;
                lru.Remove(node);
                lru.AddLast(node);
            }
            else
            {
                lru.Remove(node);
                inode.Lru = null;
                _inodes.Remove(inode.Key);
                backend.CacheFree(_inodeCache!, inode.Obj);
                freed++;
            }
            node = next;
        }
        return freed;
    }

    /// <summary>Checks the hashes against the LRUs; throws on the first mismatch.</summary>
    public void Validate()
    {
        lock (Lock)
        {
            foreach (var lru in _dentryLru)
            {
                foreach (var d in lru)
                {
                    if (!_dentries.TryGetValue(d.Key, out var h) || h != d || d.Lru is null)
                    {
                        throw new InvalidOperationException($"dentry {d.Key} on an LRU but not hashed");
                    }
                }
            }
            foreach (var d in _dentries.Values)
            {
                if (d.Count == 0 && d.Lru is null)
                {
                    throw new InvalidOperationException($"unused dentry {d.Key} is on no LRU");
                }
                if (!_inodes.TryGetValue(d.Key, out var i) || i != d.Inode || i.Count <= 0)
                {
                    throw new InvalidOperationException($"dentry {d.Key} holds no reference on its inode");
                }
            }
            foreach (var i in _inodes.Values)
            {
                if (i.Count == 0 && i.Lru is null)
                {
                    throw new InvalidOperationException($"unused inode {i.Key} is on no LRU");
                }
            }
        }
    }
}
