// /proc/slabinfo (mm/slab_common.c slab_show, mm/slub.c get_slabinfo; 6.1),
// version 2.1: one row per cache, newest first. SLUB has no tunables (0) and
// counts as active every object not free on a node partial list, so objects
// free in cpu slabs and cpu partial slabs show as active. Each node's partial
// list is read under its list_lock; slab counts are read without locks.
using System.Text;
using Kmem.Slab;

namespace Kmem.Proc;

internal static class Slabinfo
{
    public const string Header = "slabinfo - version: 2.1\n"
        + "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n";

    public static string Show(Slub slub)
    {
        var sb = new StringBuilder(Header);
        var caches = slub.Caches;
        for (int i = caches.Length - 1; i >= 0; i--)
        {
            var s = caches[i];
            long slabs = 0, objs = 0, free = 0;
            foreach (var n in s.Nodes)
            {
                slabs += Volatile.Read(ref n.NrSlabs);
                objs += Volatile.Read(ref n.TotalObjects);
                free += slub.CountPartialFree(s, n);
            }
            sb.Left(s.Name, 17).Append(' ').Num(objs - free, 6).Append(' ').Num(objs, 6).Append(' ').Num(s.Size, 6)
                .Append(' ').Num(s.ObjectsPerSlab, 4).Append(' ').Num(1L << s.Order, 4)
                .Append(" : tunables ").Num(0, 4).Append(' ').Num(0, 4).Append(' ').Num(0, 4)
                .Append(" : slabdata ").Num(slabs, 6).Append(' ').Num(slabs, 6).Append(' ').Num(0, 6).Append('\n');
        }
        return sb.ToString();
    }
}
