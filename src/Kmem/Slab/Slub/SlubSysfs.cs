// What SLUB's sysfs attributes (mm/slub.c show_slab_objects, slabs_cpu_partial_show,
// sysfs_slab_add, 6.1) need from a cache's live state, taken in one pass: per node the
// slab and object counts and the partial list's figures, per CPU its cpu slab and its
// cpu partial slabs. The text itself is the report layer's (Proc/SysSlab.cs).
// Locking: each CPU's figures are read under that CPU's lock and each node's partial
// list under its list_lock with every slab's lock (the order of Slub.cs), one at a time,
// so a snapshot is consistent per CPU and per node, as the kernel's reads are.
// The debugfs track files (alloc_traces, free_traces) read the tracks of every object in
// use, slab by slab, without the list locks (Kmem keeps no full-slab list): like the
// kernel's, they are meant for a quiet cache; a slab freed meanwhile is skipped.
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

internal sealed unsafe partial class Slub
{
    /// <summary>The alloc (or free) tracks of every object of a SLAB_STORE_USER cache now in use, slab by slab in
    /// frame order, objects in address order (validate_slab_cache's walk with process_slab).</summary>
    public List<SlubTrackSample> TrackSamples(KmemCache s, bool free)
    {
        var samples = new List<SlubTrackSample>();
        if ((s.Flags & SlabFlags.StoreUser) == 0)
        {
            return samples;
        }
        ulong now = _tracks.Jiffies;
        for (uint pfn = 0; pfn < _mem.LowmemPfns; pfn++)
        {
            ref PageFrame f = ref _mem.Frame(pfn);
            if ((f.Flags & (PageFlags.Slab | PageFlags.Tail)) != PageFlags.Slab || CacheOfSlab(pfn) != s || AllocBits(pfn) is not { } bits)
            {
                continue;
            }
            int node = NodeOf(pfn);
            for (int i = 0; i < bits.Length; i++)
            {
                if (Volatile.Read(ref bits[i]) != 1)
                {
                    continue;
                }
                nint t = SlubTracks.TrackAt(s, ObjectAt(s, pfn, (uint)i), free ? 1 : 0);
                uint caller = (uint)*(ulong*)t;
                uint handle = *(uint*)(t + 8);
                var (name, stack) = _tracks.Lookup(caller, handle);
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
                for (uint pfn = n.Partial.Head; pfn != PhysMem.NoPfn; pfn = _mem.Frame(pfn).Next)
                {
                    ref PageFrame f = ref _mem.Frame(pfn);
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
            int slabNode = slab != PhysMem.NoPfn ? NodeOf(slab) : -1;
            int partialNode = partial != PhysMem.NoPfn ? NodeOf(partial) : -1;
            c.Unlock();
            result[cpu] = new SlubCpuFigures(slabNode, partialNode, partial != PhysMem.NoPfn ? partialSlabs : 0);
        }
        return result;
    }

    /// <summary>cpu_partial_store after its checks: the new limit, then flush_all so that no CPU keeps more.</summary>
    public void SetCpuPartial(KmemCache s, uint objects)
    {
        s.SetCpuPartial(objects);
        FlushAllCpus(s);
    }

    /// <summary>sysfs_slab_add's choice: a cache that can never be merged has a directory under its own name;
    /// one that could be has one under its unique id, with its names as links (slab_unmergeable, and every
    /// cache when slub_debug=O drops metadata from some).</summary>
    public bool SysfsUnmergeable(KmemCache s) =>
        SlabUnmergeable(s) || (_slubDebug.DisableHigherOrderDebug && (_slubDebug.Global & SlubDebugOption.MetadataFlags) != 0);
}
