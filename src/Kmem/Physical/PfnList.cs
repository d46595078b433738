// An intrusive circular doubly-linked list of frames, threaded through
// PageFrame.Next/Prev: the kernel's list_head, with pfns for pointers. A list is
// named by its head pfn (PhysMem.NoPfn when empty); the head's Prev is the tail.
// Used by the buddy free lists and the per-CPU page lists; callers hold the lock
// that guards the list.
using System.Runtime.CompilerServices;

namespace Kmem.Physical;

internal static class PfnList
{
    /// <summary>list_add: <paramref name="pfn"/> becomes the first entry.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void AddHead(PhysMem mem, ref uint head, uint pfn)
    {
        InsertBeforeHead(mem, head, pfn);
        head = pfn;
    }

    /// <summary>list_add_tail: <paramref name="pfn"/> becomes the last entry.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void AddTail(PhysMem mem, ref uint head, uint pfn)
    {
        if (head == PhysMem.NoPfn)
        {
            InsertBeforeHead(mem, head, pfn);
            head = pfn;
            return;
        }
        InsertBeforeHead(mem, head, pfn);
    }

    /// <summary>list_del.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Remove(PhysMem mem, ref uint head, uint pfn)
    {
        ref PageFrame f = ref mem.Frame(pfn);
        if (f.Next == pfn)
        {
            head = PhysMem.NoPfn;
        }
        else
        {
            mem.Frame(f.Prev).Next = f.Next;
            mem.Frame(f.Next).Prev = f.Prev;
            if (head == pfn)
            {
                head = f.Next;
            }
        }
        f.Next = f.Prev = PhysMem.NoPfn;
    }

    /// <summary>The last entry (list_last_entry), or NoPfn.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Tail(PhysMem mem, uint head) => head == PhysMem.NoPfn ? PhysMem.NoPfn : mem.Frame(head).Prev;

    private static void InsertBeforeHead(PhysMem mem, uint head, uint pfn)
    {
        ref PageFrame f = ref mem.Frame(pfn);
        if (head == PhysMem.NoPfn)
        {
            f.Next = f.Prev = pfn;
            return;
        }
        ref PageFrame h = ref mem.Frame(head);
        uint tail = h.Prev;
        f.Next = head;
        f.Prev = tail;
        mem.Frame(tail).Next = pfn;
        h.Prev = pfn;
    }
}
