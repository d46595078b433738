// SLUB's object layout read back from a cache's geometry (mm/slub.c get_info_end, size_from_object,
// slab_ksize, and the metadata end print_trailer and check_pad_bytes use; 6.1). KmemCache's calculate_sizes
// fixes the layout of a slot: [left red zone] object [right red zone / alignment] [free pointer when
// outside] [alloc and free tracks] [orig_size] [padding]; these helpers only compute offsets and lengths
// from it. Pure functions of the cache, no state, no locking.

namespace Kmem.Slab;

/// <summary>Offsets and lengths inside a SLUB object slot, from the cache's layout.</summary>
internal static unsafe class SlubLayout
{
    /// <summary>get_info_end: where tracks start, after the free pointer when it lies outside the object.</summary>
    public static uint InfoEnd(KmemCache s) => s.Offset >= s.Inuse ? s.Inuse + 8 : s.Inuse;

    /// <summary>size_from_object: the slot's bytes from the object's start.</summary>
    public static uint SizeFromObject(KmemCache s) => (s.Flags & SlabFlags.RedZone) != 0 ? s.Size - s.RedLeftPad : s.Size;

    /// <summary>slab_ksize: the bytes a kmalloc user may touch (the object alone when red zones or poison
    /// guard what follows; up to inuse when tracks or an RCU free pointer follow; else the whole slot).</summary>
    public static uint SlabKsize(KmemCache s) =>
        (s.Flags & (SlabFlags.RedZone | SlabFlags.Poison)) != 0 ? s.ObjectSize
        : (s.Flags & (SlabFlags.TypesafeByRcu | SlabFlags.StoreUser)) != 0 ? s.Inuse
        : s.Size;

    /// <summary>The end of the metadata: the free pointer, tracks and orig_size.</summary>
    public static uint MetadataEnd(KmemCache s)
    {
        uint off = InfoEnd(s);
        if ((s.Flags & SlabFlags.StoreUser) != 0)
        {
            off += 2 * KmemCache.TrackSize;
            if ((s.Flags & SlabFlags.Kmalloc) != 0)
            {
                off += 4;
            }
        }
        return off;
    }

    /// <summary>The <paramref name="length"/> bytes at <paramref name="p"/> (inside a slab).</summary>
    public static Span<byte> Bytes(nint p, uint length) => new((void*)p, (int)length);

    /// <summary>maybe_wipe_obj_freeptr and slab_post_alloc_hook's zeroing: init_on_free leaves only the free
    /// pointer non-zero, init_on_alloc and __GFP_ZERO clear the object.</summary>
    public static void PostAllocHook(KmemCache s, nint obj, Gfp gfp)
    {
        if (s.WantInitOnFree)
        {
            *(nint*)(obj + (nint)s.Offset) = 0;
        }
        if (s.WantInitOnAlloc || (gfp & Gfp.Zero) != 0)
        {
            Bytes(obj, s.ObjectSize).Clear();
        }
    }

    /// <summary>slab_free_hook with init: the object and the metadata after inuse are zeroed (not the left red
    /// zone of the next slot).</summary>
    public static void InitObjectOnFree(KmemCache s, nint obj)
    {
        Bytes(obj, s.ObjectSize).Clear();
        uint rsize = (s.Flags & SlabFlags.RedZone) != 0 ? s.RedLeftPad : 0;
        Bytes(obj + (nint)s.Inuse, s.Size - s.Inuse - rsize).Clear();
    }
}
