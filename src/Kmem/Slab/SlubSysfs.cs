// What SLUB's sysfs attributes (mm/slub.c show_slab_objects, slabs_cpu_partial_show,
// sysfs_slab_add, 6.1) need from a cache's live state, taken in one pass: per node the
// slab and object counts and the partial list's figures, per CPU its cpu slab and its
// cpu partial slabs. The text itself is the report layer's (Proc/SysSlab.cs).
// Locking: each CPU's figures are read under that CPU's lock and each node's partial
// list under its list_lock with every slab's lock (the order of Slub.cs), one at a time,
// so a snapshot is consistent per CPU and per node, as the kernel's reads are.
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

internal sealed unsafe partial class Slub
{
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

    /// <summary>sysfs_slab_add's choice: a cache that can never be merged has a directory under its own name;
    /// one that could be has one under its unique id, with its names as links (slab_unmergeable, and every
    /// cache when slub_debug=O drops metadata from some).</summary>
    public bool SysfsUnmergeable(KmemCache s) =>
        SlabUnmergeable(s) || (_slubDebug.DisableHigherOrderDebug && (_slubDebug.Global & SlubDebugOption.MetadataFlags) != 0);
}
