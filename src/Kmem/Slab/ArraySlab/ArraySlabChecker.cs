// SLAB's whole-cache checker (Kmem's, in the spirit of mm/slab.c's check_slabp and DEBUG checks): for a quiet
// cache it verifies per slab that the freelist indices from position active on are distinct objects, free in
// the allocation map and in no array; that held (map) + in arrays = active; that the slab is on the list its
// active count names; per node that the list lengths and counters agree and every arrayed object belongs to a
// slab of that node. It reads SLAB's structures (ArraySlab, named after mm/slab.c's array caches) and changes
// nothing; each CPU's array is read under its lock, each node under its list_lock.
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>The consistency checks of one machine's SLAB caches.</summary>
/// <param name="slab">The SLAB allocator whose caches are checked.</param>
/// <param name="mem">The machine's physical memory.</param>
/// <param name="cpus">The machine's CPUs (the node of each CPU's array).</param>
internal sealed unsafe class ArraySlabChecker(ArraySlab slab, PhysMem mem, CpuTopology cpus)
{
    /// <summary>Checks one cache whose slabs are <paramref name="slabs"/>, adding what is wrong to
    /// <paramref name="errors"/>. Takes every lock of the cache, one at a time.</summary>
    public void Validate(KmemCache s, List<uint> slabs, List<string> errors)
    {
        var st = ArraySlab.State(s);
        var g = st.Geometry;
        // Objects parked in arrays, by slab; every one must be a distinct object of this cache.
        var arrayed = new Dictionary<uint, int>();
        var seen = new HashSet<nint>();
        void Park(ArrayCache ac, int nid, string where)
        {
            if (ac.Avail < 0 || ac.Avail > ac.Limit)
            {
                errors.Add($"{where} of {s.Name}: avail {ac.Avail} outside 0..{ac.Limit}");
                return;
            }
            for (int i = 0; i < ac.Avail; i++)
            {
                nint obj = ac.Entry[i];
                uint pfn = mem.VirtToPfn(obj);
                uint head = pfn == PhysMem.NoPfn ? pfn : slab.HeadPfn(pfn);
                if (head == PhysMem.NoPfn || (mem.Frame(head).Flags & PageFlags.Slab) == 0
                    || !ReferenceEquals(slab.CacheById(SlabPage.CacheId(mem.Frame(head).Private)), s))
                {
                    errors.Add($"{where} of {s.Name}: 0x{slab.KernelAddress(obj):x} is not an object of the cache");
                    continue;
                }
                if (!seen.Add(obj))
                {
                    errors.Add($"{where} of {s.Name}: 0x{slab.KernelAddress(obj):x} is in an array twice");
                }
                if (slab.NodeOf(head) != nid)
                {
                    errors.Add($"{where} of {s.Name}: 0x{slab.KernelAddress(obj):x} belongs to node {slab.NodeOf(head)}");
                }
                if (slab.AllocMap(head) is { } map && map[slab.ObjIndex(s, head, obj)] != 0)
                {
                    errors.Add($"{where} of {s.Name}: 0x{slab.KernelAddress(obj):x} is free and allocated");
                }
                arrayed[head] = arrayed.GetValueOrDefault(head) + 1;
            }
        }
        for (int cpu = 0; cpu < st.Cpu.Length; cpu++)
        {
            var ac = ArraySlab.LockCpuCache(st, cpu);
            try
            {
                Park(ac, cpus.NodeOf[cpu], $"cpu{cpu} array");
            }
            finally
            {
                ac.Unlock();
            }
        }
        var onList = new Dictionary<uint, (int Nid, string List)>();
        for (int nid = 0; nid < st.Nodes.Length; nid++)
        {
            var n = st.Nodes[nid];
            lock (n.ListLock)
            {
                if (n.Shared is { } sh)
                {
                    Park(sh, nid, $"node{nid} shared array");
                }
                int full = Walk(n.Full, nid, "full", onList), partial = Walk(n.Partial, nid, "partial", onList), free = Walk(n.Free, nid, "free", onList);
                if (full + partial + free != n.TotalSlabs || free != n.FreeSlabs)
                {
                    errors.Add($"node{nid} of {s.Name}: {full} full + {partial} partial + {free} free slabs, counted total {n.TotalSlabs} free {n.FreeSlabs}");
                }
            }
        }
        var freeObjects = new long[st.Nodes.Length];
        var totals = new long[st.Nodes.Length];
        foreach (uint pfn in slabs)
        {
            ref PageFrame f = ref mem.Frame(pfn);
            int active = f.Aux;
            int nid = slab.NodeOf(pfn);
            totals[nid]++;
            freeObjects[nid] += g.Num - active;
            string expected = active == 0 ? "free" : active == g.Num ? "full" : "partial";
            if (!onList.TryGetValue(pfn, out var where))
            {
                errors.Add($"slab 0x{pfn:x} of {s.Name} is on no list");
            }
            else if (where.List != expected || where.Nid != nid)
            {
                errors.Add($"slab 0x{pfn:x} of {s.Name} with {active}/{g.Num} in use is on node{where.Nid} {where.List}");
            }
            var map = slab.AllocMap(pfn);
            if (map is null)
            {
                errors.Add($"slab 0x{pfn:x} of {s.Name} has no allocation map");
                continue;
            }
            int held = 0;
            foreach (byte b in map)
            {
                held += b;
            }
            if (held + arrayed.GetValueOrDefault(pfn) != active)
            {
                errors.Add($"slab 0x{pfn:x} of {s.Name}: {held} held + {arrayed.GetValueOrDefault(pfn)} in arrays != active {active}");
            }
            nint freelist = slab.Freelist(st, pfn, f.Private);
            if (active < g.Num && freelist == 0)
            {
                errors.Add($"slab 0x{pfn:x} of {s.Name} has free objects but no freelist");
                continue;
            }
            var free = new HashSet<int>();
            for (int i = active; i < g.Num; i++)
            {
                int idx = ((byte*)freelist)[i];
                nint obj = slab.SMem(pfn, f.Private) + (nint)((long)idx * s.Size);
                if (idx >= g.Num || !free.Add(idx))
                {
                    errors.Add($"slab 0x{pfn:x} of {s.Name}: freelist entry {i} is {idx}, not a distinct object");
                }
                else if (map[idx] != 0 || seen.Contains(obj))
                {
                    errors.Add($"slab 0x{pfn:x} of {s.Name}: free object {idx} (0x{slab.KernelAddress(obj):x}) is also held or in an array");
                }
            }
            if (g.Mode == SlabFreelistMode.ObjFreelist && active < g.Num && ((byte*)freelist)[g.Num - 1] != ArraySlab.Holder(f.Private))
            {
                errors.Add($"slab 0x{pfn:x} of {s.Name}: the object holding the freelist is not the last to be handed out");
            }
        }
        for (int nid = 0; nid < st.Nodes.Length; nid++)
        {
            var n = st.Nodes[nid];
            if (totals[nid] != n.TotalSlabs || freeObjects[nid] != n.FreeObjects)
            {
                errors.Add($"node{nid} of {s.Name}: {totals[nid]} slabs with {freeObjects[nid]} free objects, counted {n.TotalSlabs} and {n.FreeObjects}");
            }
        }
    }

    /// <summary>Walks one list (list_lock held), recording each slab's node and list; returns its length.</summary>
    private int Walk(PfnList list, int nid, string name, Dictionary<uint, (int Nid, string List)> onList)
    {
        int count = 0;
        for (uint pfn = list.Head; pfn != PhysMem.NoPfn && count <= int.MaxValue - 1; pfn = mem.Frame(pfn).Next)
        {
            if (!onList.TryAdd(pfn, (nid, name)))
            {
                // A slab on two lists, or a loop: stop rather than spin.
                onList[pfn] = (nid, "several");
                break;
            }
            count++;
        }
        return count;
    }
}
