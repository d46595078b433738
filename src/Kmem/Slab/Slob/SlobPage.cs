// One SLOB page (mm/slob.c, 6.1): the free blocks inside a page as an address-ordered chain stored in the
// page's own bytes, in slob units (slob_t, 2 bytes): a free block of n > 1 units holds n in its first unit
// and the offset of the next free block in its second, a 1-unit block the negated offset, the last block
// points at offset 2048 (the next page). The page's frame keeps the offset of its first free block, the
// list it is on and its free units (sp->units); slob_page_alloc carves an aligned block out of the chain.
// Invariant: free blocks + live blocks tile the page's 2048 units and no two free blocks touch.
// Called with slob_lock held (Slob.cs); nothing here takes a lock. The page lists are Slob.Heap.cs's.
using System.Runtime.CompilerServices;
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>The blocks inside one SLOB page: the chain of free blocks in its bytes and first-fit allocation
/// from it (the page lists and the side table are <see cref="Slob"/>'s).</summary>
internal static unsafe class SlobPage
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int SlobUnits(int size) => (size + Slob.SlobUnit - 1) / Slob.SlobUnit;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static short* PageBase(short* s) => (short*)((nint)s & ~(nint)(PhysMem.PageSize - 1));

    /// <summary>set_slob: encodes a free block's size and next block into its first units.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void SetSlob(short* s, int units, short* next)
    {
        int offset = (int)(next - PageBase(s));
        if (units > 1)
        {
            s[0] = (short)units;
            s[1] = (short)offset;
        }
        else
        {
            s[0] = (short)-offset;
        }
    }

    /// <summary>slob_units: a free block's size in units.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int Units(short* s) => s[0] > 0 ? s[0] : 1;

    /// <summary>slob_next: the free block after this one (the next page's start after the last).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static short* Next(short* s) => PageBase(s) + (s[0] < 0 ? -s[0] : s[1]);

    /// <summary>slob_last: whether this is the page's last free block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool IsLast(short* s) => ((nint)Next(s) & (PhysMem.PageSize - 1)) == 0;

    /// <summary>The list a request of <paramref name="size"/> bytes uses.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int ListIndex(int size) => size < Slob.SlobBreak1 ? 0 : size < Slob.SlobBreak2 ? 1 : 2;

    // A slob page's struct slab fields live in its frame: Aux = units (free units), Private bits 0-15 =
    // the first free block's offset in units, bits 16-17 = the list it is on; PG_private (PG_slob_free)
    // says it is on a list, PG_slab that it is a slob page.

    internal static int FreeOffset(ref PageFrame f) => (int)(f.Private & 0xFFFF);

    internal static void SetFreeOffset(ref PageFrame f, long offset) => f.Private = (f.Private & ~0xFFFFUL) | (ulong)offset;

    internal static int ListOf(ref PageFrame f) => (int)((f.Private >> 16) & 3);

    internal static bool SlobPageFree(ref PageFrame f) => (f.Flags & PageFlags.Private) != 0;

    /// <summary>slob_page_alloc's block search: first fit in the chain of the page at <paramref name="pageBase"/>
    /// (frame <paramref name="f"/>) for <paramref name="size"/> bytes such that the block plus
    /// <paramref name="alignOffset"/> is aligned to <paramref name="align"/>; an aligned block splits a free head
    /// fragment off first. The page's free units drop by the block's. Null when no block fits.</summary>
    internal static short* Alloc(ref PageFrame f, short* pageBase, int size, int align, int alignOffset)
    {
        int units = SlobUnits(size);
        short* prev = null;
        short* cur = pageBase + FreeOffset(ref f);
        while (true)
        {
            int avail = Units(cur);
            short* aligned = cur;
            int delta = 0;
            if (align != 0)
            {
                aligned = (short*)((((nint)cur + alignOffset + align - 1) & ~(nint)(align - 1)) - alignOffset);
                delta = (int)(aligned - cur);
            }
            if (avail >= units + delta)
            {
                short* next;
                if (delta != 0)
                {
                    // Split the head off as its own free block so that the allocation starts aligned.
                    next = Next(cur);
                    SetSlob(aligned, avail - delta, next);
                    SetSlob(cur, delta, aligned);
                    prev = cur;
                    cur = aligned;
                    avail = Units(cur);
                }
                next = Next(cur);
                if (avail == units)
                {
                    if (prev != null)
                    {
                        SetSlob(prev, Units(prev), next);
                    }
                    else
                    {
                        SetFreeOffset(ref f, next - pageBase);
                    }
                }
                else
                {
                    if (prev != null)
                    {
                        SetSlob(prev, Units(prev), cur + units);
                    }
                    else
                    {
                        SetFreeOffset(ref f, cur + units - pageBase);
                    }
                    SetSlob(cur + units, avail - units, next);
                }
                f.Aux -= (ushort)units;
                return cur;
            }
            if (IsLast(cur))
            {
                return null;
            }
            prev = cur;
            cur = Next(cur);
        }
    }
}
