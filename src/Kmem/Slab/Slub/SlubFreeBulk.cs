// kmem_cache_free_bulk for SLUB's thread magazines (mm/slub.c, 6.1: build_detached_freelist and do_slab_free
// with a count): the objects a magazine gives back are grouped by slab, each slab's run chained into a detached
// freelist that goes back in one step, onto the cpu freelist under the cpu lock when the slab is this CPU's, else
// through __slab_free with a count (one slab lock, and the node's list_lock only when the slab changes lists). A
// flush then costs one lock round per slab touched instead of one per object. Grouping sorts the addresses when
// the objects are many beside the cache's slabs (at least one for every two slabs), where runs are long; with
// fewer (a large object size, objects scattered over many slabs) sorting costs more than it saves, and only
// neighbours in the magazine that share a slab are run together, as build_detached_freelist's look-ahead does.
// Invariant: the entries are magazine objects, held by the caller alone (their owner with Busy set, a stealer that
// saw Busy clear, or the reaper of an exited thread), each allocated to the magazine; their allocation bytes are
// cleared before the chain is published by a lock release, so a thread that takes an object from the freelist
// (under that lock) sees its byte clear. Debugging caches keep no magazines; should one reach here, its objects
// take the checked one-object path.
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>Gives a magazine's objects back to their slabs, one detached freelist per slab.</summary>
internal sealed unsafe class SlubFreeBulk(Slub slub, PhysMem mem, CpuTopology cpus)
{
    /// <summary>Objects whose addresses are sorted on the stack; a larger flush (a grown magazine) takes an array.</summary>
    private const int StackObjects = 512;

    /// <summary>The longest run of an unsorted flush.</summary>
    private const int RunMax = 64;

    /// <summary>Frees <paramref name="entries"/> (objects of <paramref name="s"/>) into their slabs and clears the span.</summary>
    public void Free(KmemCache s, Span<Magazine.Entry> entries)
    {
        if (entries.IsEmpty)
        {
            return;
        }
        if (s.IsDebug)
        {
            foreach (ref var e in entries)
            {
                *e.Allocated = 1;
                slub.DoSlabFree(s, slub.HeadPfn(mem.VirtToPfn(e.Obj)), e.Obj, ref *e.Allocated);
            }
            entries.Clear();
            return;
        }
        // Sorting pays when the objects are many beside the cache's slabs (runs of several objects per slab); with
        // fewer, each object goes alone, with its neighbours in the magazine when they share its slab.
        long slabs = 0;
        foreach (var n in s.Nodes)
        {
            slabs += Volatile.Read(ref n.NrSlabs);
        }
        if (entries.Length * 2 < slabs)
        {
            FreeUnsorted(s, s.CpuSlab[cpus.Current], entries);
            entries.Clear();
            return;
        }
        // The addresses alone are sorted (a primitive sort, no comparer calls); an object's allocation byte is found
        // again from its slab's map.
        Span<nint> objs = entries.Length <= StackObjects ? stackalloc nint[entries.Length] : new nint[entries.Length];
        for (int i = 0; i < objs.Length; i++)
        {
            objs[i] = entries[i].Obj;
        }
        objs.Sort();
        FreeRuns(s, s.CpuSlab[cpus.Current], objs);
        entries.Clear();
    }

    /// <summary>The sorted objects <paramref name="objs"/>, a run per slab.</summary>
    private void FreeRuns(KmemCache s, KmemCacheCpu c, Span<nint> objs)
    {
        for (int i = 0; i < objs.Length;)
        {
            uint pfn = slub.HeadPfn(mem.VirtToPfn(objs[i]));
            // The slab's objects lie in [start, start + objects × size): the sorted run up to that end is this slab's.
            nint end = mem.PageAddress(pfn) + (nint)((long)SlabPage.Objects(mem.Frame(pfn).Private) * s.Size);
            int j = i + 1;
            while (j < objs.Length && objs[j] < end)
            {
                j++;
            }
            FreeRun(s, c, pfn, objs[i..j]);
            i = j;
        }
    }

    /// <summary>The objects in the magazine's order, each alone unless the next ones lie in its slab (the magazine
    /// keeps objects freed together side by side).</summary>
    private void FreeUnsorted(KmemCache s, KmemCacheCpu c, Span<Magazine.Entry> entries)
    {
        Span<nint> run = stackalloc nint[RunMax];
        for (int i = 0; i < entries.Length;)
        {
            nint obj = entries[i].Obj;
            uint pfn = slub.HeadPfn(mem.VirtToPfn(obj));
            nint start = mem.PageAddress(pfn);
            nint end = start + (nint)((long)SlabPage.Objects(mem.Frame(pfn).Private) * s.Size);
            int len = 0;
            do
            {
                run[len++] = entries[i++].Obj;
            }
            while (i < entries.Length && len < RunMax && entries[i].Obj >= start && entries[i].Obj < end);
            FreeRun(s, c, pfn, run[..len]);
        }
    }

    /// <summary>One slab's run: chained in its order (address order when sorted), bytes cleared, then
    /// pushed onto the cpu freelist or through __slab_free with a count.</summary>
    private void FreeRun(KmemCache s, KmemCacheCpu c, uint pfn, Span<nint> run)
    {
        bool init = s.WantInitOnFree;
        nint start = mem.PageAddress(pfn);
        byte* map = slub.AllocByte(pfn, 0);
        for (int k = 0; k < run.Length; k++)
        {
            nint obj = run[k];
            map[s.IndexOf((nuint)(obj - start))] = 0;
            if (init)
            {
                SlubLayout.InitObjectOnFree(s, obj);
            }
            if (k + 1 < run.Length)
            {
                Slub.SetFreepointer(s, obj, run[k + 1]);
            }
        }
        nint head = run[0], tail = run[^1];
        if (Volatile.Read(ref c.Slab) == pfn)
        {
            c.Lock();
            if (c.Slab == pfn)
            {
                Slub.SetFreepointer(s, tail, c.Freelist);
                c.Freelist = head;
                c.Unlock();
                return;
            }
            c.Unlock();
        }
        slub.SlabFreeChain(s, pfn, head, tail, run.Length);
    }
}
