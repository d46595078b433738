// pg_data_t: one NUMA node with its zones (every zone type the preset compiles
// in, populated or not) and its zonelists. Immutable after boot.
namespace Kmem.PageAlloc;

internal sealed class Node
{
    public Node(PageAllocator allocator, int id, uint startPfn, uint endPfn)
    {
        Allocator = allocator;
        Id = id;
        StartPfn = startPfn;
        EndPfn = endPfn;
    }

    public PageAllocator Allocator { get; }
    public int Id { get; }
    public uint StartPfn { get; }
    public uint EndPfn { get; }

    /// <summary>node_zones[], in the preset's zone order.</summary>
    public Zone[] Zones { get; set; } = [];

    /// <summary>ZONELIST_FALLBACK: populated zones of every node, nearest node first, highest zone first.</summary>
    public Zone[] ZonelistFallback { get; set; } = [];

    /// <summary>ZONELIST_NOFALLBACK (__GFP_THISNODE): this node's populated zones, highest first.</summary>
    public Zone[] ZonelistNoFallback { get; set; } = [];

    /// <summary>The CPUs local to this node.</summary>
    public int[] Cpus { get; set; } = [];

    /// <summary>NR_SLAB_RECLAIMABLE_B in pages: slab pages of SLAB_RECLAIM_ACCOUNT caches on this node,
    /// kept here (node_stat) by the slab layer with Interlocked; every report reads it.</summary>
    public long NrSlabReclaimable;

    /// <summary>NR_SLAB_UNRECLAIMABLE_B in pages: other slab pages and large kmalloc pages on this node.</summary>
    public long NrSlabUnreclaimable;

    public Zone? ZoneOf(ZoneType t)
    {
        foreach (var z in Zones)
        {
            if (z.Type == t)
            {
                return z;
            }
        }
        return null;
    }
}
