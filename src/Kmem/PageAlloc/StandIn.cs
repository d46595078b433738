// A page taken off a zone's buddy lists for a trace replay, in place of a frame the recorded
// kernel freed but never showed allocated. No kernel counterpart; what it mirrors is how such a
// frame left the kernel's buddy lists: with no allocation event (compaction's free scanner takes
// its migration targets with __isolate_free_page, and pages allocated before tracing began were
// taken before the first event), so its free is the first the trace shows of it, and it goes to
// the freeing CPU's list. The replay takes an order-0 page of the type here (the smallest free
// block, split as __rmqueue_smallest splits it), which no counter or observer sees (it is not an
// allocation Kmem decided), and frees it through the normal path as the kernel freed its frame:
// the buddy lists lose one page and the per-CPU list gains one on both sides. The replay also
// takes here the frames of page tables of its own, which the kernel never had (a replayed task's
// table moved off a frame the kernel freed) through StandIns.Take, which walks the zonelist as
// the allocation of such a frame would, and gives them back with ReturnStandIn, so those never
// pass through a per-CPU list. Last, a replay's slab page standing in for a slab the kernel
// allocated before tracing began is allocated with the BuddyOnly gate open: the allocations
// of the thread that opened it skip the per-CPU lists (as PcpAllowedOrder's higher orders
// do), as that page left the kernel's buddy lists before the first event. The zone methods
// run under zone->lock (taken here); the BuddyOnly gate is one thread's, read by every
// allocation.
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed partial class Zone
{
    /// <summary>Takes an order-0 page of migrate type <paramref name="mt"/> off the buddy lists, as an allocated page
    /// with one reference; PhysMem.NoPfn when the type's lists hold no free block.</summary>
    public uint TakeStandIn(int mt)
    {
        lock (Lock)
        {
            uint pfn = TakeSmallest(0, mt);
            if (pfn == PhysMem.NoPfn)
            {
                return pfn;
            }
            TakeOffFreeLists(pfn, 1);
            return pfn;
        }
    }

    /// <summary>Puts back on the buddy lists an order-0 page <see cref="TakeStandIn"/> took, its last reference gone.</summary>
    public void ReturnStandIn(uint pfn)
    {
        lock (Lock)
        {
            ref PageFrame p = ref _mem.Frame(pfn);
            p.Flags = PageFlags.None;
            p.Private = 0;
            p.RefCount = 0;
            FreeOnePage(pfn, 0, (int)_mem.PageblockMigratetype(pfn), toTail: false);
        }
    }
}

/// <summary>The thread whose allocations skip the per-CPU lists (<see cref="PageAllocator.BuddyOnly"/>).</summary>
internal sealed class BuddyOnlyGate
{
    // The managed thread whose allocations skip the per-CPU lists, 0 for none.
    private int _thread;

    /// <summary>Whether the current thread opened the gate (one compare when none did).</summary>
    public bool Here => _thread != 0 && _thread == Environment.CurrentManagedThreadId;

    /// <summary>Until the scope is disposed, this thread's allocations come straight off the buddy lists, never
    /// through a per-CPU list (one thread at a time; scopes do not nest).</summary>
    public Scope Open()
    {
        if (Interlocked.CompareExchange(ref _thread, Environment.CurrentManagedThreadId, 0) != 0)
        {
            throw new InvalidOperationException("BuddyOnly: another scope is open");
        }
        return new Scope(this);
    }

    /// <summary>Closes the gate <see cref="Open"/> opened.</summary>
    public readonly struct Scope(BuddyOnlyGate gate) : IDisposable
    {
        public void Dispose() => Volatile.Write(ref gate._thread, 0);
    }
}

internal static class StandIns
{
    /// <summary>A stand-in page for an allocation of <paramref name="gfp"/> that no per-CPU list may see: the zones of
    /// the current CPU's node's zonelist that <paramref name="gfp"/> allows (gfp_zone), in its order, each giving a
    /// page of the gfp's migrate type, else a movable one (where __rmqueue would steal); PhysMem.NoPfn when none has a
    /// free page.</summary>
    public static uint Take(PageAllocator pa, Gfp gfp)
    {
        var arch = pa.Arch;
        var highest = GfpFlags.GfpZone(gfp, arch.HasZone(ZoneType.Dma), arch.HasZone(ZoneType.Dma32), arch.HasZone(ZoneType.HighMem));
        int mt = (int)GfpFlags.GfpMigratetype(gfp);
        foreach (var zone in pa.Nodes[pa.Cpus.NodeOf[pa.Cpus.Current]].ZonelistFallback)
        {
            if (zone.Type > highest)
            {
                continue;
            }
            uint pfn = zone.TakeStandIn(mt);
            if (pfn == PhysMem.NoPfn && mt != (int)MigrateType.Movable)
            {
                pfn = zone.TakeStandIn((int)MigrateType.Movable);
            }
            if (pfn != PhysMem.NoPfn)
            {
                return pfn;
            }
        }
        return PhysMem.NoPfn;
    }
}
