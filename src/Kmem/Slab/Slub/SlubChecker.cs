// A whole-cache checker for SLUB (validate_slab_cache without red zones; every slab found by its PG_slab
// frame in one pass over the memmap), for quiet caches: per slab,
// allocated (allocation map) + slab freelist + cpu freelist = objects and inuse = objects − slab freelist;
// partial slabs are unfrozen with free objects, cpu and cpu-partial slabs frozen; per node, nr_partial,
// nr_slabs and total_objects match; the objects in thread magazines are exactly those marked as held, each
// once. It reads SLUB's structures and changes nothing; each cpu slab is read under its cpu lock, each node
// under its list_lock, each slab under its slab lock.
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>The consistency checks of one machine's SLUB caches.</summary>
/// <param name="slub">The SLUB allocator whose caches are checked.</param>
/// <param name="mem">The machine's physical memory.</param>
internal sealed unsafe class SlubChecker(Slub slub, PhysMem mem)
{
    /// <summary>validate_slab_cache for every cache: each slab found by its PG_slab frame in one pass over the
    /// memmap and checked with its cache. No cache may be in use by other threads meanwhile.</summary>
    public List<string> ValidateAll()
    {
        var byCache = new Dictionary<KmemCache, List<uint>>();
        for (uint pfn = 0; pfn < mem.LowmemPfns; pfn++)
        {
            if ((mem.Frame(pfn).Flags & PageFlags.Slab) != 0 && slub.CacheOfSlab(pfn) is { } owner)
            {
                if (!byCache.TryGetValue(owner, out var list))
                {
                    byCache[owner] = list = [];
                }
                list.Add(pfn);
            }
        }
        var errors = new List<string>();
        foreach (var s in slub.Caches)
        {
            errors.AddRange(Validate(s, byCache.GetValueOrDefault(s) ?? []));
        }
        return errors;
    }

    /// <summary>Checks every invariant of <paramref name="s"/>, whose slabs are <paramref name="slabPfns"/>;
    /// returns the violations (none when sound).</summary>
    public List<string> Validate(KmemCache s, List<uint> slabPfns)
    {
        var errors = new List<string>();
        var held = MagazineObjectsBySlab(s, errors);
        var cpuFree = new Dictionary<uint, int>();
        var role = new Dictionary<uint, string>();
        for (int cpu = 0; cpu < s.CpuSlab.Length; cpu++)
        {
            var c = s.CpuSlab[cpu];
            c.Lock();
            try
            {
                if (c.Slab != PhysMem.NoPfn)
                {
                    role[c.Slab] = $"cpu{cpu} slab";
                    int count = 0;
                    for (nint p = c.Freelist; p != 0; p = Slub.GetFreepointer(s, p))
                    {
                        if (!CheckObject(s, c.Slab, p, $"cpu{cpu} freelist", errors))
                        {
                            break;
                        }
                        if (++count > s.ObjectsPerSlab)
                        {
                            errors.Add($"cpu{cpu} freelist of {s.Name} loops");
                            break;
                        }
                    }
                    cpuFree[c.Slab] = count;
                }
                else if (c.Freelist != 0)
                {
                    errors.Add($"cpu{cpu} of {s.Name} has a freelist but no slab");
                }
                int partial = 0;
                for (uint pfn = c.Partial.Head; pfn != PhysMem.NoPfn; pfn = mem.Frame(pfn).Next)
                {
                    role[pfn] = $"cpu{cpu} partial";
                    partial++;
                }
                if (partial != c.PartialSlabs)
                {
                    errors.Add($"cpu{cpu} of {s.Name}: {partial} cpu partial slabs, counted {c.PartialSlabs}");
                }
            }
            finally
            {
                c.Unlock();
            }
        }
        for (int nid = 0; nid < s.Nodes.Length; nid++)
        {
            var n = s.Nodes[nid];
            lock (n.ListLock)
            {
                int count = 0;
                for (uint pfn = n.Partial.Head; pfn != PhysMem.NoPfn; pfn = mem.Frame(pfn).Next)
                {
                    role[pfn] = $"node{nid} partial";
                    count++;
                }
                if (count != n.NrPartial)
                {
                    errors.Add($"node{nid} of {s.Name}: {count} partial slabs, nr_partial {n.NrPartial}");
                }
            }
        }
        var slabs = new long[s.Nodes.Length];
        var objects = new long[s.Nodes.Length];
        foreach (uint pfn in slabPfns)
        {
            ref PageFrame f = ref mem.Frame(pfn);
            int nid = slub.NodeOf(pfn);
            int total = SlabPage.Objects(f.Private);
            slabs[nid]++;
            objects[nid] += total;
            ValidateSlab(s, pfn, total, cpuFree.GetValueOrDefault(pfn), role.GetValueOrDefault(pfn), held.GetValueOrDefault(pfn), errors);
        }
        for (int nid = 0; nid < s.Nodes.Length; nid++)
        {
            if (slabs[nid] != Volatile.Read(ref s.Nodes[nid].NrSlabs) || objects[nid] != Volatile.Read(ref s.Nodes[nid].TotalObjects))
            {
                errors.Add($"node{nid} of {s.Name}: {slabs[nid]} slabs with {objects[nid]} objects, counted {s.Nodes[nid].NrSlabs} and {s.Nodes[nid].TotalObjects}");
            }
        }
        return errors;
    }

    private void ValidateSlab(KmemCache s, uint pfn, int total, int onCpuFreelist, string? role, int inMagazines, List<string> errors)
    {
        ref PageFrame f = ref mem.Frame(pfn);
        SlabPage.Lock(ref f);
        try
        {
            ulong p = f.Private;
            int onSlab = 0;
            for (uint idx = SlabPage.FreeIdx(p); idx != SlabPage.NoObject;)
            {
                nint obj = slub.ObjectAt(s, pfn, idx);
                if (!CheckObject(s, pfn, obj, "slab freelist", errors))
                {
                    return;
                }
                if (++onSlab > total)
                {
                    errors.Add($"slab 0x{pfn:x} of {s.Name}: freelist loops");
                    return;
                }
                nint next = Slub.GetFreepointer(s, obj);
                if (next != 0 && !CheckObject(s, pfn, next, "slab freelist", errors))
                {
                    return;
                }
                idx = next == 0 ? SlabPage.NoObject : (uint)((nuint)(next - mem.PageAddress(pfn)) / s.Size);
            }
            var bits = slub.AllocBits(pfn);
            int allocated = 0, markedHeld = 0;
            if (bits is null)
            {
                errors.Add($"slab 0x{pfn:x} of {s.Name} has no allocation map");
            }
            else
            {
                for (int i = 0; i < bits.Length; i++)
                {
                    allocated += bits[i] == 0 ? 0 : 1;
                    markedHeld += slub.InMagazine(s, slub.ObjectAt(s, pfn, (uint)i), bits[i]) ? 1 : 0;
                }
            }
            if (markedHeld != inMagazines)
            {
                errors.Add($"slab 0x{pfn:x} of {s.Name}: {markedHeld} objects marked as held by magazines, {inMagazines} in them");
            }
            string where = role ?? "no list";
            if (allocated + onSlab + onCpuFreelist != total)
            {
                errors.Add($"slab 0x{pfn:x} of {s.Name} ({where}): {allocated} allocated + {onSlab} free + {onCpuFreelist} on the cpu freelist != {total} objects");
            }
            if (f.Aux != total - onSlab)
            {
                errors.Add($"slab 0x{pfn:x} of {s.Name} ({where}): inuse {f.Aux}, expected {total - onSlab}");
            }
            bool frozen = SlabPage.Frozen(p);
            bool shouldFreeze = role is not null && role.StartsWith("cpu", StringComparison.Ordinal);
            if (frozen != shouldFreeze)
            {
                errors.Add($"slab 0x{pfn:x} of {s.Name} ({where}): frozen={frozen}");
            }
            if (role is null && onSlab != 0)
            {
                errors.Add($"slab 0x{pfn:x} of {s.Name} has {onSlab} free objects but is on no list");
            }
            if (role is not null && role.EndsWith("partial", StringComparison.Ordinal) && onSlab == 0)
            {
                errors.Add($"slab 0x{pfn:x} of {s.Name} ({where}) has no free object");
            }
        }
        finally
        {
            SlabPage.Unlock(ref f);
        }
    }

    /// <summary>Whether <paramref name="obj"/> is a free object of the slab; a pointer outside it is never
    /// followed.</summary>
    private bool CheckObject(KmemCache s, uint pfn, nint obj, string list, List<string> errors)
    {
        nuint off = (nuint)(obj - mem.PageAddress(pfn));
        uint idx = (uint)(off / s.Size);
        if (off % s.Size != s.RedLeftPad || idx >= (uint)SlabPage.Objects(mem.Frame(pfn).Private))
        {
            errors.Add($"{list} of {s.Name}: 0x{slub.KernelAddress(obj):x} is not an object of slab 0x{pfn:x}");
            return false;
        }
        var bits = slub.AllocBits(pfn);
        if (bits is not null && bits[idx] != 0)
        {
            errors.Add($"{list} of {s.Name}: 0x{slub.KernelAddress(obj):x} is free and allocated");
        }
        return true;
    }

    /// <summary>How many objects of each slab sit in thread magazines; an object there twice, or not marked
    /// as held, is an error.</summary>
    private Dictionary<uint, int> MagazineObjectsBySlab(KmemCache s, List<string> errors)
    {
        var bySlab = new Dictionary<uint, int>();
        var seen = new HashSet<nint>();
        foreach (var tc in slub.ThreadCaches)
        {
            if ((uint)s.Id >= (uint)tc.ByCacheId.Length || tc.ByCacheId[s.Id] is not { } mag || !ReferenceEquals(mag.Cache, s))
            {
                continue;
            }
            for (int i = 0; i < mag.Count; i++)
            {
                ref var e = ref mag.Entries[i];
                if (!seen.Add(e.Obj))
                {
                    errors.Add($"magazine of {s.Name}: 0x{slub.KernelAddress(e.Obj):x} is in magazines twice");
                }
                uint pfn = slub.HeadPfn(mem.VirtToPfn(e.Obj));
                if (e.Allocated != slub.AllocByte(pfn, s.IndexOf((nuint)(e.Obj - mem.PageAddress(pfn)))))
                {
                    errors.Add($"magazine of {s.Name}: 0x{slub.KernelAddress(e.Obj):x} points at another object's allocation byte");
                }
                else if (!slub.InMagazine(s, e.Obj, *e.Allocated))
                {
                    errors.Add($"magazine of {s.Name}: 0x{slub.KernelAddress(e.Obj):x} is not marked as held");
                }
                bySlab[pfn] = bySlab.GetValueOrDefault(pfn) + 1;
            }
        }
        return bySlab;
    }
}
