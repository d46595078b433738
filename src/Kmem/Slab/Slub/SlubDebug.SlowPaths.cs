// SLUB's debug slow paths (mm/slub.c under CONFIG_SLUB_DEBUG, 6.1): a debug cache has no cpu slab and no
// cpu partial list, so every allocation takes one object from the first node partial slab that passes the
// checks (alloc_single_from_partial) or from a new slab (alloc_single_from_new_slab), and every free goes
// through free_debug_processing, under the node's list_lock and the slab lock. A failing check leaves the
// object as it was and reports after both locks are dropped.
// Lock order as in Slub.cs: node list_lock → slab lock.
using System.Globalization;
using System.Text;
using Kmem.Physical;
using static Kmem.Slab.Slub;
using static Kmem.Slab.SlubLayout;

namespace Kmem.Slab;

internal sealed unsafe partial class SlubDebug
{
    // ───────────────────────────── the debug slow paths ─────────────────────────────

    /// <summary>___slab_alloc for a debug cache: one object from the first node partial slab that passes the
    /// checks (alloc_single_from_partial), else from a new slab (alloc_single_from_new_slab); 0 when no slab
    /// can be had.</summary>
    public nint Alloc(KmemCache s, Gfp gfp, int node)
    {
        StringBuilder? sb = null;
        nint obj = 0;
        int local = node >= 0 ? node : _cpus.NodeOf[_cpus.Current];
        for (int i = 0; i < s.Nodes.Length && obj == 0; i++)
        {
            int nid = i == 0 ? local : i <= local ? i - 1 : i;
            if (i > 0 && node >= 0)
            {
                break;
            }
            obj = AllocSingleFromPartial(s, s.Nodes[nid], ref sb);
        }
        while (obj == 0)
        {
            uint pfn = _slub.NewSlab(s, gfp, node, out nint head);
            if (pfn == PhysMem.NoPfn)
            {
                if ((gfp & Gfp.NoWarn) == 0)
                {
                    SlabOutOfMemory(s, gfp, node);
                }
                RaiseReport(s, 0, sb);
                return 0;
            }
            obj = AllocSingleFromNewSlab(s, pfn, head, ref sb);
        }
        if (sb is not null)
        {
            // The allocation succeeded from another slab; the caller still learns of the corruption. When the
            // bug policy throws, the object goes back first.
            _slub.MarkAllocated(s, obj);
            try
            {
                RaiseReport(s, obj, sb);
            }
            catch (KernelBugException)
            {
                _slub.FreeAfterFailedAlloc(s, obj);
                throw;
            }
        }
        return obj;
    }

    private nint AllocSingleFromPartial(KmemCache s, KmemCacheNode n, ref StringBuilder? sb)
    {
        if (Volatile.Read(ref n.NrPartial) == 0)
        {
            return 0;
        }
        lock (n.ListLock)
        {
            for (uint pfn = n.Partial.Head; pfn != PhysMem.NoPfn;)
            {
                uint next = _mem.Frame(pfn).Next;
                nint obj = PopDebugObject(s, pfn, ref sb, out bool full);
                if (full)
                {
                    _slub.RemovePartial(n, pfn);
                }
                if (obj != 0)
                {
                    return obj;
                }
                pfn = next;
            }
        }
        return 0;
    }

    private nint AllocSingleFromNewSlab(KmemCache s, uint pfn, nint head, ref StringBuilder? sb)
    {
        nint obj = PopDebugObject(s, pfn, ref sb, out bool full);
        if (obj == 0)
        {
            // A new slab that fails its checks is leaked with all objects counted in use, as in the kernel.
            return 0;
        }
        if (!full)
        {
            var n = s.Nodes[_slub.NodeOf(pfn)];
            lock (n.ListLock)
            {
                n.Partial.AddHead(_mem, pfn);
                n.NrPartial++;
            }
        }
        _ = head;
        return obj;
    }

    /// <summary>Takes the first object of an unfrozen debug slab and runs alloc_debug_processing; on a failed
    /// check the slab's remaining objects are marked used ("Marking all objects used") and 0 is returned.
    /// <paramref name="full"/> says the slab has no free object left.</summary>
    private nint PopDebugObject(KmemCache s, uint pfn, ref StringBuilder? sb, out bool full)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        SlabPage.Lock(ref f);
        try
        {
            ulong p = f.Private;
            uint idx = SlabPage.FreeIdx(p);
            if (idx == SlabPage.NoObject)
            {
                full = true;
                return 0;
            }
            nint obj = ObjectAt(s, pfn, idx);
            nint next = GetFreepointer(s, obj);
            if ((s.Flags & SlabFlags.ConsistencyChecks) != 0)
            {
                var local = new StringBuilder();
                SlabPadCheck(s, pfn, local);
                bool ok = CheckObject(s, pfn, obj, RedInactive, local);
                if (local.Length > 0)
                {
                    (sb ??= new StringBuilder()).Append(local);
                }
                if (!ok)
                {
                    sb!.Append(CultureInfo.InvariantCulture, $"FIX {s.Name}: Marking all objects used\n");
                    MarkAllUsed(s, pfn, ref f);
                    full = true;
                    return 0;
                }
            }
            if (!CheckValidPointer(s, pfn, next))
            {
                // Without consistency checks a corrupt chain ends the freelist here.
                next = 0;
            }
            f.Private = SlabPage.WithFreeIdx(p, next == 0 ? SlabPage.NoObject : s.IndexOf((nuint)(next - _mem.PageAddress(pfn))));
            f.Aux++;
            full = next == 0;
            Trace(s, pfn, obj, alloc: true);
            InitObject(s, obj, RedActive);
            if ((s.Flags & SlabFlags.StoreUser) != 0)
            {
                if ((s.Flags & SlabFlags.Kmalloc) != 0)
                {
                    // set_orig_size: the request size is not passed down here; the cache's object size is kept.
                    *(uint*)(obj + (nint)(InfoEnd(s) + 2 * KmemCache.TrackSize)) = s.ObjectSize;
                }
                SetTrack(s, obj, 0);
            }
            return obj;
        }
        finally
        {
            SlabPage.Unlock(ref f);
        }
    }

    /// <summary>The "bad:" path of alloc_debug_processing: no free object left, every object in use for good.</summary>
    private void MarkAllUsed(KmemCache s, uint pfn, ref PageFrame f)
    {
        int objects = SlabPage.Objects(f.Private);
        f.Private = SlabPage.WithFreeIdx(f.Private, SlabPage.NoObject);
        f.Aux = (ushort)objects;
        var bits = _slub.AllocBits(pfn)!;
        for (int i = 0; i < objects; i++)
        {
            Volatile.Write(ref bits[i], 1);
        }
    }

    /// <summary>__slab_free for a debug cache, whose allocation byte the caller has cleared: free_debug_processing
    /// (checks with F, the free track, TRACE, red zones inactive and poison), then the object joins its slab's
    /// freelist; a slab that was full joins the partial list, an empty one goes back above min_partial. A
    /// failed check leaves the object allocated ("Object at … not freed").</summary>
    public void SlabFree(KmemCache s, uint pfn, nint obj)
    {
        if (s.WantInitOnFree)
        {
            SlubLayout.InitObjectOnFree(s, obj);
        }
        StringBuilder? sb = null;
        bool ok = true, discard = false;
        var n = s.Nodes[_slub.NodeOf(pfn)];
        lock (n.ListLock)
        {
            ref PageFrame f = ref _mem.Frame(pfn);
            SlabPage.Lock(ref f);
            if ((s.Flags & SlabFlags.ConsistencyChecks) != 0)
            {
                sb = new StringBuilder();
                SlabPadCheck(s, pfn, sb);
                ok = CheckObject(s, pfn, obj, RedActive, sb);
            }
            if (ok)
            {
                if ((s.Flags & SlabFlags.StoreUser) != 0)
                {
                    SetTrack(s, obj, 1);
                }
                Trace(s, pfn, obj, alloc: false);
                InitObject(s, obj, RedInactive);
                bool wasFull = SlabPage.FreeIdx(f.Private) == SlabPage.NoObject;
                _slub.PushFree(s, ref f, pfn, obj, freeze: false);
                if (f.Aux == 0 && n.NrPartial >= s.MinPartial)
                {
                    if (!wasFull)
                    {
                        _slub.RemovePartial(n, pfn);
                    }
                    discard = true;
                }
                else if (wasFull)
                {
                    n.Partial.AddTail(_mem, pfn);
                    n.NrPartial++;
                }
            }
            SlabPage.Unlock(ref f);
        }
        if (!ok)
        {
            _slub.MarkAllocated(s, obj);
            sb!.Append(CultureInfo.InvariantCulture, $"FIX {s.Name}: Object at 0x{KernelAddress(obj):x} not freed\n");
        }
        if (discard)
        {
            _slub.DiscardSlab(s, pfn);
        }
        RaiseReport(s, obj, sb);
    }
}
