// /sys/kernel/debug/percpu_stats (mm/percpu-stats.c of 6.1): the allocation info of the first
// chunk's setup, the allocator's global counters and, per chunk, its allocations and free
// fragments between its start and its last allocation (sorted, as the kernel sorts them: free
// fragments first, largest first, then allocations smallest first). Taken from one snapshot made
// under the allocator's lock.
using System.Text;
using Kmem.Percpu;

namespace Kmem.Proc;

internal static class PercpuStats
{
    public static string Show(PercpuAllocator a)
    {
        var (stats, emptyPopPages, chunks) = a.Snapshot();
        var sb = new StringBuilder();
        void P(string name, long value) => sb.Append("  ").Left(name, 20).Append(": ").Num(value, 12).Append('\n');

        sb.Append("Percpu Memory Statistics\nAllocation Info:\n").Append('-', 40).Append('\n');
        P("unit_size", a.UnitSize);
        P("static_size", a.StaticSize);
        P("reserved_size", a.ReservedSize);
        P("dyn_size", a.DynSize);
        P("atom_size", a.AtomSize);
        P("alloc_size", a.AllocSize);
        sb.Append('\n');

        sb.Append("Global Stats:\n").Append('-', 40).Append('\n');
        P("nr_alloc", stats.NrAlloc);
        P("nr_dealloc", stats.NrDealloc);
        P("nr_cur_alloc", stats.NrCurAlloc);
        P("nr_max_alloc", stats.NrMaxAlloc);
        P("nr_chunks", stats.NrChunks);
        P("nr_max_chunks", stats.NrMaxChunks);
        P("min_alloc_size", stats.MinAllocSize);
        P("max_alloc_size", stats.MaxAllocSize);
        P("empty_pop_pages", emptyPopPages);
        sb.Append('\n');

        sb.Append("Per Chunk Stats:\n").Append('-', 40).Append('\n');
        foreach (var c in chunks)
        {
            // Free fragments as negative sizes, allocations as positive, sorted: the kernel's cmpint order.
            var sizes = c.Areas.Select(x => x.Allocated ? x.Bytes : -x.Bytes).Order().ToArray();
            int sumFrag = 0, maxFrag = 0, i = 0;
            for (; i < sizes.Length && sizes[i] < 0; i++)
            {
                sumFrag -= sizes[i];
                maxFrag = Math.Max(maxFrag, -sizes[i]);
            }
            int curMin = 0, curMed = 0, curMax = 0;
            if (sizes.Length > 0)
            {
                // With no allocation left these read past the fragments, as the kernel's do: 0 then.
                curMin = i < sizes.Length ? sizes[i] : 0;
                curMed = sizes[(i + sizes.Length - 1) / 2];
                curMax = sizes[^1];
            }
            sb.Append(c.Title).Append('\n');
            P("nr_alloc", c.NrAlloc);
            P("max_alloc_size", c.MaxAllocSize);
            P("empty_pop_pages", c.EmptyPopPages);
            P("first_bit", c.FirstBit);
            P("free_bytes", c.FreeBytes);
            P("contig_bytes", c.ContigBytes);
            P("sum_frag", sumFrag);
            P("max_frag", maxFrag);
            P("cur_min_alloc", curMin);
            P("cur_med_alloc", curMed);
            P("cur_max_alloc", curMax);
            sb.Append('\n');
        }
        return sb.ToString();
    }
}
