// The free-list access compaction's fast searches need (mm/compaction.c
// fast_isolate_freepages, fast_find_migrateblock): the two ends of one order's
// list of one migrate type, walked through PageFrame.Next/Prev, and
// move_freelist_head / move_freelist_tail, which rotate the list so that a later
// search starts past the entries this one looked at. A rotation keeps the list's
// entries and count; only their order changes.
// Locking: the caller holds zone->lock (Zone.Lock) across the walk and the
// rotation.
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed partial class Zone
{
    /// <summary>The first and last free block of <paramref name="order"/> on <paramref name="mt"/>'s list (NoPfn when empty).
    /// Under zone->lock.</summary>
    public (uint Head, uint Tail) FreeListEnds(int order, MigrateType mt)
    {
        VmBug.LockdepAssertHeld(Lock);
        ref PfnList list = ref _freeList[order * MigrateTypes + (int)mt];
        return (list.Head, list.Tail);
    }

    /// <summary>move_freelist_head: the entries before <paramref name="pfn"/> go to the tail, so the list starts at it.
    /// Under zone->lock.</summary>
    public void MoveFreelistHead(int order, MigrateType mt, uint pfn)
    {
        VmBug.LockdepAssertHeld(Lock);
        ref PfnList list = ref _freeList[order * MigrateTypes + (int)mt];
        if (list.Head == pfn)
        {
            return;
        }
        ref PageFrame f = ref _mem.Frame(pfn);
        uint oldHead = list.Head, oldTail = list.Tail, newTail = f.Prev;
        _mem.Frame(oldTail).Next = oldHead;
        _mem.Frame(oldHead).Prev = oldTail;
        _mem.Frame(newTail).Next = PhysMem.NoPfn;
        f.Prev = PhysMem.NoPfn;
        list.Head = pfn;
        list.Tail = newTail;
    }

    /// <summary>move_freelist_tail: the entries up to and including <paramref name="pfn"/> go to the tail, so the list
    /// ends at it (the same rotation as starting the list at the entry after it). Under zone->lock.</summary>
    public void MoveFreelistTail(int order, MigrateType mt, uint pfn)
    {
        uint next = _mem.Frame(pfn).Next;
        if (next != PhysMem.NoPfn)
        {
            MoveFreelistHead(order, mt, next);
        }
    }
}
