// What SLUB's sysfs attributes (mm/slub.c show_slab_objects, slabs_cpu_partial_show,
// sysfs_slab_add, 6.1) need from a cache's live state, taken in one pass: per node the
// slab and object counts and the partial list's figures, per CPU its cpu slab and its
// cpu partial slabs; and slabinfo's get_slabinfo (count_partial). The text itself is the report
// layer's (Proc/SysSlab.cs, Proc/Slabinfo.cs); Slub holds one SlubSysfs and hands these figures on.
// Locking: each CPU's figures are read under that CPU's lock and each node's partial
// list under its list_lock with every slab's lock (the order of Slub.cs), one at a time,
// so a snapshot is consistent per CPU and per node, as the kernel's reads are.
// The debugfs track files (alloc_traces, free_traces) read the tracks of every object in
// use, slab by slab, without the list locks (Kmem keeps no full-slab list): like the
// kernel's, they are meant for a quiet cache; a slab freed meanwhile is skipped. The two
// sysfs decisions that are SLUB's own live here too: a cpu_partial write (a new limit, then
// flush_all) and whether a cache's directory takes its name or its unique id.
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>One node's figures of a cache (kmem_cache_node and its partial list).</summary>
/// <param name="NrSlabs">n->nr_slabs.</param>
/// <param name="TotalObjects">n->total_objects.</param>
/// <param name="NrPartial">n->nr_partial.</param>
/// <param name="PartialTotal">count_partial(n, count_total): objects in the partial slabs.</param>
/// <param name="PartialInuse">count_partial(n, count_inuse): objects in use in the partial slabs.</param>
internal readonly record struct SlubNodeFigures(long NrSlabs, long TotalObjects, long NrPartial, long PartialTotal, long PartialInuse)
{
    /// <summary>count_partial(n, count_free).</summary>
    public long PartialFree => PartialTotal - PartialInuse;
}

/// <summary>One CPU's slabs of a cache (kmem_cache_cpu).</summary>
/// <param name="SlabNode">The node of the cpu slab, or -1 when the CPU has none.</param>
/// <param name="PartialNode">The node of the first cpu partial slab (where the kernel counts them all), or -1.</param>
/// <param name="PartialSlabs">Slabs on the cpu partial list (slab->slabs of the first).</param>
internal readonly record struct SlubCpuFigures(int SlabNode, int PartialNode, int PartialSlabs);

/// <summary>One in-use object's alloc or free track (struct track), as process_slab hands it to add_location.</summary>
/// <param name="Caller">The caller's id in the track depot (0: the track was never set).</param>
/// <param name="Handle">The stack depot handle (0: no stack).</param>
/// <param name="CallerName">The caller's method name ("" when never set).</param>
/// <param name="Stack">The stack from the API entry point outwards (empty without one).</param>
/// <param name="Age">jiffies − when (when is 0 for a track never set).</param>
/// <param name="When">when: 0 for a track never set.</param>
/// <param name="Cpu">The CPU that set the track.</param>
/// <param name="Pid">The thread that set it (its managed id stands for the pid).</param>
/// <param name="Node">The node of the object's slab.</param>
internal readonly record struct SlubTrackSample(uint Caller, uint Handle, string CallerName, string[] Stack, long Age, ulong When, int Cpu, int Pid, int Node);

/// <summary>The figures of one machine's SLUB caches that sysfs, debugfs and slabinfo read.</summary>
/// <param name="slub">The SLUB allocator whose caches are read.</param>
/// <param name="mem">The machine's physical memory.</param>
/// <param name="tracks">The tracks' caller names and stack depot.</param>
/// <param name="slubDebug">The slub_debug boot option (its O flag changes how directories are named).</param>
/// <param name="debug">The checks validate runs.</param>
internal sealed unsafe class SlubSysfs(Slub slub, PhysMem mem, SlubTracks tracks, SlubDebugOption slubDebug, SlubDebug debug)
{
    /// <summary>validate_store: validate_slab_cache; returns the errors found (SlubDebug.Validate.cs).</summary>
    public int ValidateSlabCache(KmemCache s) => debug.ValidateSlabCache(s);

    /// <summary>sysfs_slab_add's choice: a cache that can never be merged has a directory under its own name;
    /// one that could be has one under its unique id, with its names as links (slab_unmergeable, and every
    /// cache when slub_debug=O drops metadata from some).</summary>
    public bool SysfsUnmergeable(KmemCache s) =>
        slub.SlabUnmergeable(s) || (slubDebug.DisableHigherOrderDebug && (slubDebug.Global & SlubDebugOption.MetadataFlags) != 0);


    /// <summary>cpu_partial_store after its checks: the new limit, then flush_all so that no CPU keeps more.</summary>
    public void SetCpuPartial(KmemCache s, uint objects)
    {
        s.SetCpuPartial(objects);
        slub.FlushAllCpus(s);
    }

    /// <summary>get_slabinfo: every object not free on a node partial list counts as active (objects free
    /// in cpu slabs and cpu partial slabs too); each node's partial list is read under its list_lock.</summary>
    public SlabCacheStats Stats(KmemCache s)
    {
        long slabs = 0, objs = 0, free = 0;
        foreach (var n in s.Nodes)
        {
            slabs += Volatile.Read(ref n.NrSlabs);
            objs += Volatile.Read(ref n.TotalObjects);
            free += CountPartialFree(mem, n);
        }
        return new SlabCacheStats(objs - free, objs, slabs, slabs);
    }

    /// <summary>Free objects on a node's partial lists (count_partial with count_free).</summary>
    public static long CountPartialFree(PhysMem mem, KmemCacheNode n)
    {
        long free = 0;
        lock (n.ListLock)
        {
            for (uint pfn = n.Partial.Head; pfn != PhysMem.NoPfn; pfn = mem.Frame(pfn).Next)
            {
                ref PageFrame f = ref mem.Frame(pfn);
                free += SlabPage.Objects(f.Private) - f.Aux;
            }
        }
        return free;
    }


    /// <summary>The alloc (or free) tracks of every object of a SLAB_STORE_USER cache now in use, slab by slab in
    /// frame order, objects in address order (validate_slab_cache's walk with process_slab).</summary>
    public List<SlubTrackSample> TrackSamples(KmemCache s, bool free)
    {
        var samples = new List<SlubTrackSample>();
        if ((s.Flags & SlabFlags.StoreUser) == 0)
        {
            return samples;
        }
        ulong now = tracks.Jiffies;
        for (uint pfn = 0; pfn < mem.LowmemPfns; pfn++)
        {
            ref PageFrame f = ref mem.Frame(pfn);
            if ((f.Flags & (PageFlags.Slab | PageFlags.Tail)) != PageFlags.Slab || slub.CacheOfSlab(pfn) != s || slub.AllocBits(pfn) is not { } bits)
            {
                continue;
            }
            int node = slub.NodeOf(pfn);
            for (int i = 0; i < bits.Length; i++)
            {
                if (Volatile.Read(ref bits[i]) != 1)
                {
                    continue;
                }
                nint t = SlubTracks.TrackAt(s, slub.ObjectAt(s, pfn, (uint)i), free ? 1 : 0);
                uint caller = (uint)*(ulong*)t;
                uint handle = *(uint*)(t + 8);
                var (name, stack) = tracks.Lookup(caller, handle);
                ulong when = *(ulong*)(t + 24);
                samples.Add(new SlubTrackSample(caller, handle, name, stack, (long)(now - when), when,
                    *(int*)(t + 12), *(int*)(t + 16), node));
            }
        }
        return samples;
    }

    /// <summary>The node figures of a cache, one entry per node.</summary>
    public SlubNodeFigures[] NodeFigures(KmemCache s)
    {
        var result = new SlubNodeFigures[s.Nodes.Length];
        for (int nid = 0; nid < s.Nodes.Length; nid++)
        {
            var n = s.Nodes[nid];
            long total = 0, inuse = 0, nrPartial;
            lock (n.ListLock)
            {
                nrPartial = n.NrPartial;
                for (uint pfn = n.Partial.Head; pfn != PhysMem.NoPfn; pfn = mem.Frame(pfn).Next)
                {
                    ref PageFrame f = ref mem.Frame(pfn);
                    SlabPage.Lock(ref f);
                    total += SlabPage.Objects(f.Private);
                    inuse += f.Aux;
                    SlabPage.Unlock(ref f);
                }
            }
            result[nid] = new SlubNodeFigures(Volatile.Read(ref n.NrSlabs), Volatile.Read(ref n.TotalObjects), nrPartial, total, inuse);
        }
        return result;
    }

    /// <summary>The per-CPU figures of a cache, one entry per possible CPU.</summary>
    public SlubCpuFigures[] CpuFigures(KmemCache s)
    {
        var result = new SlubCpuFigures[s.CpuSlab.Length];
        for (int cpu = 0; cpu < s.CpuSlab.Length; cpu++)
        {
            var c = s.CpuSlab[cpu];
            c.Lock();
            uint slab = c.Slab;
            uint partial = c.Partial.Head;
            int partialSlabs = c.PartialSlabs;
            int slabNode = slab != PhysMem.NoPfn ? slub.NodeOf(slab) : -1;
            int partialNode = partial != PhysMem.NoPfn ? slub.NodeOf(partial) : -1;
            c.Unlock();
            result[cpu] = new SlubCpuFigures(slabNode, partialNode, partial != PhysMem.NoPfn ? partialSlabs : 0);
        }
        return result;
    }
}
