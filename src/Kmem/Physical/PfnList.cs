// An intrusive doubly-linked list of frames, threaded through PageFrame.Next
// and Prev: the kernel's list_head, with pfns for pointers. Unlike list_head it
// is not circular: the list head keeps both ends and the ends point to NoPfn, so
// pushing and popping at the head touches only the frame moved and its
// neighbour, never the far end. That matters because struct page is 32 bytes
// here, two frames to a cache line: with a circular list, two CPUs whose
// per-CPU lists met at a cache-line boundary would write the same line on every
// push and pop. Callers hold the lock that guards the list. In the DebugVm build
// every add and delete checks the links around it, as CONFIG_DEBUG_LIST does.
using System.Runtime.CompilerServices;

namespace Kmem.Physical;

/// <summary>The two ends of a pfn list; <see cref="Empty"/> when it holds nothing.</summary>
internal struct PfnList
{
    public uint Head;
    public uint Tail;

    /// <summary>The entries on the list, kept by the adds and deletes (a rotation keeps it), so a length is read
    /// without walking the frames.</summary>
    public int Count;

    public static PfnList Empty => new() { Head = PhysMem.NoPfn, Tail = PhysMem.NoPfn };

    public readonly bool IsEmpty => Head == PhysMem.NoPfn;

    /// <summary>list_add: <paramref name="pfn"/> becomes the first entry.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void AddHead(PhysMem mem, uint pfn)
    {
        VmBug.On(pfn == Head || pfn == Tail); // list_add double add
        ref PageFrame f = ref mem.Frame(pfn);
        f.Prev = PhysMem.NoPfn;
        f.Next = Head;
        if (Head == PhysMem.NoPfn)
        {
            Tail = pfn;
        }
        else
        {
            mem.Frame(Head).Prev = pfn;
        }
        Head = pfn;
        Count++;
    }

    /// <summary>list_add_tail: <paramref name="pfn"/> becomes the last entry.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void AddTail(PhysMem mem, uint pfn)
    {
        VmBug.On(pfn == Head || pfn == Tail); // list_add double add
        ref PageFrame f = ref mem.Frame(pfn);
        f.Next = PhysMem.NoPfn;
        f.Prev = Tail;
        if (Tail == PhysMem.NoPfn)
        {
            Head = pfn;
        }
        else
        {
            mem.Frame(Tail).Next = pfn;
        }
        Tail = pfn;
        Count++;
    }

    /// <summary>list_del.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Remove(PhysMem mem, uint pfn)
    {
        ref PageFrame f = ref mem.Frame(pfn);
        // __list_del_entry_valid: each neighbour (or the head, at an end) points back at the entry.
        VmBug.On(f.Prev == PhysMem.NoPfn ? Head != pfn : mem.Frame(f.Prev).Next != pfn);
        VmBug.On(f.Next == PhysMem.NoPfn ? Tail != pfn : mem.Frame(f.Next).Prev != pfn);
        if (f.Prev == PhysMem.NoPfn)
        {
            Head = f.Next;
        }
        else
        {
            mem.Frame(f.Prev).Next = f.Next;
        }
        if (f.Next == PhysMem.NoPfn)
        {
            Tail = f.Prev;
        }
        else
        {
            mem.Frame(f.Next).Prev = f.Prev;
        }
        f.Next = f.Prev = PhysMem.NoPfn;
        Count--;
    }
}
