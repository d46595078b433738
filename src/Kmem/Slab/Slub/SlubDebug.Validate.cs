// validate_slab_cache (mm/slub.c, 6.1; /sys/kernel/slab/<cache>/validate): flush_all, then every slab of
// each node's partial list, and with SLAB_STORE_USER the full ones, goes through validate_slab: check_slab
// (a slab page, sane counts, slab_pad_check), on_freelist (walks the free chain, cuts it at a corrupt
// pointer, puts objects and inuse right) and check_object on each object against the free map. Each check
// repairs what it reports, as the kernel's do. The result counts errors as slab_add_kunit_errors does
// (lib/slub_kunit.c reads it): one for each report (object_err, slab_err, check_bytes_and_report, a
// partial or slab count that does not match) and one for each fix (slab_fix, restore_bytes). The reports
// go to the kernel log, not through the bug policy: validation reports, it does not BUG.
// Lock order as in Slub.cs: node list_lock → slab lock. The full slabs are found by their PG_slab frames.
using System.Text;
using Kmem.Physical;
using static Kmem.Slab.Slub;

namespace Kmem.Slab;

internal sealed unsafe partial class SlubDebug
{
    /// <summary>validate_slab_cache: checks and repairs every slab of <paramref name="s"/>; returns the errors
    /// found, counted as the kernel's kunit hook counts them.</summary>
    public int ValidateSlabCache(KmemCache s)
    {
        _slub.FlushAllCpus(s);
        var sb = new StringBuilder();
        int countErrors = 0;
        for (int nid = 0; nid < s.Nodes.Length; nid++)
        {
            var n = s.Nodes[nid];
            lock (n.ListLock)
            {
                long count = 0;
                var onPartial = new HashSet<uint>();
                for (uint pfn = n.Partial.Head; pfn != PhysMem.NoPfn; pfn = _mem.Frame(pfn).Next)
                {
                    ValidateSlab(s, pfn, sb);
                    onPartial.Add(pfn);
                    count++;
                }
                if (count != n.NrPartial)
                {
                    sb.Append($"SLUB {s.Name}: {count} partial slabs counted but counter={n.NrPartial}\n");
                    countErrors++;
                }
                if ((s.Flags & SlabFlags.StoreUser) == 0)
                {
                    continue;
                }
                foreach (uint pfn in FullSlabs(s, nid, onPartial))
                {
                    ValidateSlab(s, pfn, sb);
                    count++;
                }
                long nrSlabs = Volatile.Read(ref n.NrSlabs);
                if (count != nrSlabs)
                {
                    sb.Append($"SLUB: {s.Name} {count} slabs counted but counter={nrSlabs}\n");
                    countErrors++;
                }
            }
        }
        if (sb.Length == 0)
        {
            return 0;
        }
        foreach (string line in sb.ToString().TrimEnd('\n').Split('\n'))
        {
            if (line.StartsWith("BUG ", StringComparison.Ordinal) || line.StartsWith("FIX ", StringComparison.Ordinal))
            {
                countErrors++;
            }
        }
        _log.Printk(sb.ToString().TrimEnd('\n'));
        return countErrors;
    }

    /// <summary>n->full of a SLAB_STORE_USER cache: its slabs on node <paramref name="nid"/> that are on no
    /// partial list (a debug cache has no cpu slabs), in frame order.</summary>
    private List<uint> FullSlabs(KmemCache s, int nid, HashSet<uint> onPartial)
    {
        var full = new List<uint>();
        for (uint pfn = 0; pfn < _mem.LowmemPfns; pfn++)
        {
            ref PageFrame f = ref _mem.Frame(pfn);
            if ((f.Flags & (PageFlags.Slab | PageFlags.Tail)) == PageFlags.Slab && _slub.CacheOfSlab(pfn) == s
                && _slub.NodeOf(pfn) == nid && !onPartial.Contains(pfn))
            {
                full.Add(pfn);
            }
        }
        return full;
    }

    /// <summary>validate_slab: check_slab and on_freelist, then check_object on every object, free ones
    /// (those on the free chain) against SLUB_RED_INACTIVE, the others against SLUB_RED_ACTIVE.</summary>
    private void ValidateSlab(KmemCache s, uint pfn, StringBuilder sb)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        SlabPage.Lock(ref f);
        try
        {
            if (!CheckSlab(s, pfn, sb) || !OnFreelist(s, pfn, sb, out var free))
            {
                return;
            }
            int objects = SlabPage.Objects(f.Private);
            for (uint i = 0; i < objects; i++)
            {
                nint p = ObjectAt(s, pfn, i);
                if (!CheckObject(s, pfn, p, free.Contains(p) ? RedInactive : RedActive, sb))
                {
                    break;
                }
            }
        }
        finally
        {
            SlabPage.Unlock(ref f);
        }
    }

    /// <summary>The most objects a slab of this order holds (order_objects).</summary>
    private int MaxObjects(KmemCache s, uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        int order = (f.Flags & PageFlags.Head) != 0 ? f.Order : 0;
        return (int)(((long)PhysMem.PageSize << order) / s.Size);
    }

    /// <summary>check_slab: the page is a slab, objects and inuse within bounds; then slab_pad_check.</summary>
    private bool CheckSlab(KmemCache s, uint pfn, StringBuilder sb)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        if ((f.Flags & PageFlags.Slab) == 0)
        {
            SlabErr(s, pfn, "Not a valid slab page", sb);
            return false;
        }
        int objects = SlabPage.Objects(f.Private);
        int max = MaxObjects(s, pfn);
        if (objects > max)
        {
            SlabErr(s, pfn, $"objects {objects} > max {max}", sb);
            return false;
        }
        if (f.Aux > objects)
        {
            SlabErr(s, pfn, $"inuse {f.Aux} > max {objects}", sb);
            return false;
        }
        SlabPadCheck(s, pfn, sb);
        return true;
    }

    /// <summary>on_freelist(s, slab, NULL): walks the free chain. A pointer that is no object of the slab ends
    /// it: after an object, that object's free pointer is cleared ("Freechain corrupt"); at the head, the
    /// freelist is emptied and every object counted in use. Then the object count and inuse are set right.
    /// <paramref name="free"/> is the chain as walked (__fill_map).</summary>
    private bool OnFreelist(KmemCache s, uint pfn, StringBuilder sb, out HashSet<nint> free)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        free = [];
        int objects = SlabPage.Objects(f.Private);
        int nr = 0;
        nint obj = 0;
        nint fp = SlabFreelistHead(s, pfn);
        while (fp != 0 && nr <= objects)
        {
            if (!CheckValidPointer(s, pfn, fp))
            {
                if (obj != 0)
                {
                    ObjectErr(s, pfn, obj, "Freechain corrupt", sb);
                    SetFreepointer(s, obj, 0);
                }
                else
                {
                    SlabErr(s, pfn, "Freepointer corrupt", sb);
                    f.Private = SlabPage.WithFreeIdx(f.Private, SlabPage.NoObject);
                    f.Aux = (ushort)objects;
                    SlabFix(s, "Freelist cleared", sb);
                    free.Clear();
                    return false;
                }
                break;
            }
            free.Add(fp);
            obj = fp;
            fp = GetFreepointer(s, obj);
            nr++;
        }
        int max = MaxObjects(s, pfn);
        if (objects != max)
        {
            SlabErr(s, pfn, $"Wrong number of objects. Found {objects} but should be {max}", sb);
            f.Private = SlabPage.Make(s.Id, max, SlabPage.FreeIdx(f.Private), SlabPage.Frozen(f.Private));
            objects = max;
            SlabFix(s, "Number of objects adjusted", sb);
        }
        if (f.Aux != objects - nr)
        {
            SlabErr(s, pfn, $"Wrong object count. Counter is {f.Aux} but counted were {objects - nr}", sb);
            f.Aux = (ushort)(objects - nr);
            SlabFix(s, "Object count adjusted", sb);
        }
        return true;
    }

    /// <summary>slab_fix: the FIX line.</summary>
    private static void SlabFix(KmemCache s, string what, StringBuilder sb) => sb.Append("FIX ").Append(s.Name).Append(": ").Append(what).Append('\n');
}
