// SLAB's periodic reaping on Machine: the kernel runs cache_reap from a deferrable work item on
// every CPU every 2 seconds (REAPTIMEOUT_AC). Kmem has no clock of its own, so the caller drives
// it: each call is one such round on every CPU, which keeps runs deterministic. The tunables can
// be changed as by a write to /proc/slabinfo (SlabinfoWrite).
namespace Kmem;

public sealed partial class Machine
{
    /// <summary>cache_reap, once on every CPU: the round the kernel runs every 2 seconds with SLAB. Each CPU's
    /// array cache that was not allocated from since the last round gives back (limit + 4) / 5 of its oldest
    /// objects (a used one is only marked unused); on every second round (REAPTIMEOUT_NODE, 4 s) each node's
    /// shared array is drained the same way and, unless a free slab was taken since the last such round,
    /// (free_limit + 5 × num − 1) / (5 × num) free slabs go back to the page allocator.</summary>
    /// <returns>The pages given back to the page allocator; always 0 with SLUB and SLOB, which reap nothing
    /// (SLUB keeps at most min_partial empty slabs per node and frees the rest as they empty).</returns>
    /// <remarks>Call it periodically to model a running kernel. A round that finds a cache being created or
    /// destroyed is skipped, as the kernel's mutex_trylock skips it.</remarks>
    public long CacheReap() { using var _ = _life.Enter(); return SlabOrThrow.CacheReap(); }

    /// <summary>slabinfo_write: what writing "name limit batchcount shared" to /proc/slabinfo does with SLAB. The
    /// cache's per-CPU arrays are replaced by arrays of <c>limit</c> entries moving <c>batchcount</c> objects at a
    /// time (the old arrays' objects go back to their slabs), and each node's shared array by one of shared ×
    /// batchcount entries (none for 0); free_limit follows the new batchcount.</summary>
    /// <param name="line">For example "kmalloc-64 32 16 0".</param>
    /// <exception cref="ArgumentException">The line is malformed or longer than 127 characters, no cache has that
    /// name, or limit &lt; 1, batchcount is not 1..limit, or shared &lt; 0 (the kernel's -EINVAL); nothing changes.</exception>
    /// <exception cref="InvalidOperationException">The machine runs SLUB or SLOB, which have no tunables.</exception>
    public void SlabinfoWrite(string line) { using var _ = _life.Enter(); SlabOrThrow.SlabinfoWrite(line); }
}
