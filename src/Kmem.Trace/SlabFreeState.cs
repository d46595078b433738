// What the replay's own state says at a slab free, kept beside the slab_freed decision so a
// disagreement can be counted by cause (docs/fidelity.md): for a free after which Kmem kept
// its slab, that slab's state in Kmem's SLUB right after the free (objects in use, frozen: a
// cpu or cpu-partial slab, its node's nr_partial against the cache's min_partial), the
// three things 6.1's __slab_free decides a discard by; for a free after which Kmem gave its
// slab back, how many objects the trace showed allocated and not yet freed still sit in the
// kernel's slab of the object (the kernel's slab frame, known from the trace). Read only,
// never corrects anything. SLUB only (the other backends report no state). Used by
// TraceReplayer on its replaying thread.
using Kmem.Physical;
using Kmem.Slab;

namespace Kmem;

/// <summary>The state read at one slab free: Kmem's slab (InUse, Frozen, NrPartial, MinPartial; InUse -1 when not
/// read) and the kernel's slab's traced objects still live (KernelLive; -1 when not read).</summary>
internal readonly record struct SlabFreeState(int InUse = -1, bool Frozen = false, int NrPartial = 0, int MinPartial = 0, int KernelLive = -1)
{
    /// <summary>Kmem's SLUB slab holding <paramref name="ptr"/> after its free; the default (nothing read) when the
    /// machine's backend is not SLUB or the frame is no longer a slab's.</summary>
    public static SlabFreeState OfKmemSlab(Machine m, nint ptr)
    {
        if (m.SlabLayer is not Slub slub || ptr == 0)
        {
            return default;
        }
        var mem = m.PageAllocator.Mem;
        uint pfn = mem.VirtToPfn(ptr);
        ref var f = ref mem.Frame(pfn);
        uint head = (f.Flags & PageFlags.Tail) != 0 ? (uint)f.Private : pfn;
        ref var h = ref mem.Frame(head);
        if ((h.Flags & PageFlags.Slab) == 0 || slub.CacheById(SlabPage.CacheId(h.Private)) is not { } s || s.Nodes.Length == 0)
        {
            return default;
        }
        var n = s.Nodes[m.PageAllocator.ZoneOf(head).Node.Id];
        return new SlabFreeState(h.Aux, SlabPage.Frozen(h.Private), Volatile.Read(ref n.NrPartial), s.MinPartial);
    }

    /// <summary>The objects the trace showed allocated and not yet freed (<paramref name="live"/>: counted per page of
    /// their trace addresses) in the kernel's slab holding <paramref name="ptr"/> (its frame from
    /// <paramref name="slabPages"/>, head frame to order, through the direct-map base); -1 when the frame is not known.</summary>
    public static int KernelSlabLive(LiveObjectPages live, Dictionary<ulong, int> slabPages, ulong directMapBase, ulong ptr)
    {
        ulong pfn = (ptr - directMapBase) >> 12;
        for (int k = 0; k < Machine.MaxOrder; k++)
        {
            ulong head = pfn & ~((1UL << k) - 1);
            if (slabPages.TryGetValue(head, out int order) && order >= k)
            {
                return live.Count(directMapBase + (head << 12), 1 << order);
            }
        }
        return -1;
    }

    /// <summary>The mismatch detail: the state's cause in words.</summary>
    public override string ToString() =>
        KernelLive > 0 ? $"kernel's slab still holds {KernelLive} traced objects"
        : KernelLive == 0 ? "kernel's slab holds no traced object"
        : InUse > 0 ? $"Kmem's slab holds {InUse} objects"
        : InUse < 0 ? ""
        : Frozen ? "Kmem's slab empty, frozen"
        : NrPartial < MinPartial ? $"Kmem's slab empty, node nr_partial {NrPartial} < min_partial {MinPartial}"
        : "Kmem's slab empty, unfrozen, at min_partial or above";
}
