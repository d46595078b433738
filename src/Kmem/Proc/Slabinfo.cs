// /proc/slabinfo (mm/slab_common.c slab_show, 6.1), version 2.1: one row per cache,
// newest first, from the backend's figures (SLUB: get_slabinfo, no tunables; SLAB:
// get_slabinfo with limit/batchcount/shared and sharedavail). SLOB has no slabinfo.
using System.Text;
using Kmem.Slab;

namespace Kmem.Proc;

internal static class Slabinfo
{
    public const string Header = "slabinfo - version: 2.1\n"
        + "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n";

    public static string Show(SlabBackend slab)
    {
        var sb = new StringBuilder(Header);
        var caches = slab.Caches;
        for (int i = caches.Length - 1; i >= 0; i--)
        {
            var s = caches[i];
            var st = slab.Stats(s);
            sb.Left(s.Name, 17).Append(' ').Num(st.ActiveObjs, 6).Append(' ').Num(st.NumObjs, 6).Append(' ').Num(s.Size, 6)
                .Append(' ').Num(s.ObjectsPerSlab, 4).Append(' ').Num(1L << s.Order, 4)
                .Append(" : tunables ").Num(st.Limit, 4).Append(' ').Num(st.BatchCount, 4).Append(' ').Num(st.SharedFactor, 4)
                .Append(" : slabdata ").Num(st.ActiveSlabs, 6).Append(' ').Num(st.NumSlabs, 6).Append(' ').Num(st.SharedAvail, 6).Append('\n');
        }
        return sb.ToString();
    }
}
