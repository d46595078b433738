// kmem_cache_free_bulk for SLUB's thread magazines (mm/slub.c, 6.1: build_detached_freelist and do_slab_free
// with a count): the objects a magazine gives back are grouped by slab, each slab's objects chained into a detached
// freelist that goes back in one step, onto the cpu freelist under the cpu lock when the slab is this CPU's, else
// through __slab_free with a count (one slab lock, and the node's list_lock only when the slab changes lists). A
// flush then costs one lock round per slab touched instead of one per object. Grouping is one pass over the
// objects with a small open-addressing table keyed by the slab's head frame, so a flush costs the same per object
// whether its objects share a few slabs or lie scattered over many (build_detached_freelist looks ahead in the
// array for the same slab; a table finds them wherever they lie, and no sort of the addresses is needed). Each
// slab's chain is built in the magazine's order from its last object back, so the slab's chain ends with the first
// object the magazine held of it.
// Invariant: the entries are magazine objects, held by the caller alone (their owner with Busy set, a stealer that
// saw Busy clear, or the reaper of an exited thread), each allocated to the magazine; their allocation bytes are
// cleared before the chain is published by a lock release, so a thread that takes an object from the freelist
// (under that lock) sees its byte clear. Debugging caches keep no magazines; should one reach here, its objects
// take the checked one-object path.
using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>Gives a magazine's objects back to their slabs, one detached freelist per slab.</summary>
internal sealed unsafe class SlubFreeBulk(Slub slub, PhysMem mem, CpuTopology cpus)
{
    /// <summary>Objects (and twice as many table slots) kept on the stack; a larger flush (a grown magazine) rents arrays.</summary>
    private const int StackObjects = 256;

    /// <summary>One slab's detached freelist while it is built.</summary>
    private struct Run
    {
        public uint Pfn;
        public int Count;
        public nint Head, Tail;
        /// <summary>The slab's first object and allocation map.</summary>
        public nint Start;
        public byte* Map;
    }

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
        // At least twice as many slots as objects (each object may be alone in its slab): probes stay short. A slot
        // holds its run's index plus one (0: free), so only the slots are cleared, not the runs.
        int n = entries.Length;
        int slots = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(n * 2, 16));
        int[]? rentedSlots = null;
        Run[]? rentedRuns = null;
        Span<int> table = n <= StackObjects ? stackalloc int[slots] : (rentedSlots = ArrayPool<int>.Shared.Rent(slots)).AsSpan(0, slots);
        Span<Run> runs = n <= StackObjects ? stackalloc Run[n] : (rentedRuns = ArrayPool<Run>.Shared.Rent(n)).AsSpan(0, n);
        table.Clear();
        int groups = Group(s, entries, table, runs);
        var c = s.CpuSlab[cpus.Current];
        foreach (ref Run r in runs[..groups])
        {
            Publish(s, c, r.Pfn, r.Head, r.Tail, r.Count);
        }
        if (rentedSlots is not null)
        {
            ArrayPool<int>.Shared.Return(rentedSlots);
            ArrayPool<Run>.Shared.Return(rentedRuns!);
        }
        entries.Clear();
    }

    /// <summary>Chains each object onto its slab's run (its allocation byte cleared); the runs fill
    /// <paramref name="runs"/> in the order their slabs are met.</summary>
    /// <returns>The number of runs.</returns>
    private int Group(KmemCache s, Span<Magazine.Entry> entries, Span<int> table, Span<Run> runs)
    {
        bool init = s.WantInitOnFree;
        int mask = table.Length - 1, groups = 0;
        for (int i = entries.Length - 1; i >= 0; i--)
        {
            nint obj = entries[i].Obj;
            uint pfn = slub.HeadPfn(mem.VirtToPfn(obj));
            int slot = (int)((pfn * 0x9E3779B1u) >> 16) & mask;
            int g;
            while ((g = table[slot] - 1) >= 0 && runs[g].Pfn != pfn)
            {
                slot = (slot + 1) & mask;
            }
            if (g < 0)
            {
                g = groups++;
                table[slot] = g + 1;
                runs[g] = new Run { Pfn = pfn, Start = mem.PageAddress(pfn), Map = slub.AllocByte(pfn, 0), Tail = obj };
            }
            ref Run r = ref runs[g];
            r.Map[s.IndexOf((nuint)(obj - r.Start))] = 0;
            if (init)
            {
                SlubLayout.InitObjectOnFree(s, obj);
            }
            if (r.Count != 0)
            {
                Slub.SetFreepointer(s, obj, r.Head);
            }
            r.Head = obj;
            r.Count++;
        }
        return groups;
    }

    /// <summary>One slab's chain from <paramref name="head"/> to <paramref name="tail"/>: onto the cpu freelist when
    /// the slab is this CPU's, else through __slab_free with a count.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Publish(KmemCache s, KmemCacheCpu c, uint pfn, nint head, nint tail, int count)
    {
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
        slub.SlabFreeChain(s, pfn, head, tail, count);
    }
}
