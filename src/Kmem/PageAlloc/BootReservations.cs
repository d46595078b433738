// What boot reserved (mm/memblock.c's memblock.reserved, holes excluded): the frames that never
// reach the buddy lists. A boot user the machine sets up after the page allocator (the per-CPU
// allocator's first chunk, pcpu_embed_first_chunk) takes its memory from here, as the kernel's
// takes it from memblock before memblock_free_all, so its frames count in neither managed pages
// nor MemTotal, and free_reserved_page (FreeReserved) passes them by. Invariant: the ranges are
// disjoint, sorted by start, and only shrink; a claimed span is in none of them. Locking: the
// range list is its own lock (claims are rare and short); the claimed spans are an immutable
// array swapped under it and read without it.
using Kmem.Physical;

namespace Kmem.PageAlloc;

/// <summary>The boot reservations no boot user has claimed yet.</summary>
internal sealed class BootReservations(List<(uint Start, uint End)> ranges, uint limitPfn)
{
    private readonly List<(uint Start, uint End)> _ranges = ranges;
    private (uint Start, uint End)[] _claimed = [];

    /// <summary>Whether a boot user holds <paramref name="pfn"/> (free_reserved_page must never release it).</summary>
    public bool IsClaimed(uint pfn)
    {
        foreach (var (s, e) in Volatile.Read(ref _claimed))
        {
            if (pfn >= s && pfn < e)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>free_reserved_page's frame leaves the reservations: no boot user may claim it after.</summary>
    public void Release(uint pfn)
    {
        lock (_ranges)
        {
            for (int i = 0; i < _ranges.Count; i++)
            {
                var (s, e) = _ranges[i];
                if (pfn < s || pfn >= e)
                {
                    continue;
                }
                _ranges.RemoveAt(i);
                if (pfn + 1 < e)
                {
                    _ranges.Insert(i, (pfn + 1, e));
                }
                if (s < pfn)
                {
                    _ranges.Insert(i, (s, pfn));
                }
                return;
            }
        }
    }

    /// <summary>
    /// memblock_alloc_from: <paramref name="pages"/> frames aligned to <paramref name="alignPages"/>, placed
    /// top-down at or above <paramref name="goalPfn"/> (then anywhere, as memblock retries without its goal)
    /// and below memblock's limit (lowmem on 32-bit), inside what boot reserved. The frames stay reserved.
    /// </summary>
    /// <returns>The span's first pfn, or <see cref="PhysMem.NoPfn"/> when no reservation holds it.</returns>
    public uint Claim(uint pages, uint alignPages, uint goalPfn)
    {
        lock (_ranges)
        {
            foreach (uint goal in (uint[])[goalPfn, 0])
            {
                for (int i = _ranges.Count - 1; i >= 0; i--)
                {
                    var (s, e) = _ranges[i];
                    uint top = Math.Min(e, limitPfn);
                    if (top < pages || top <= s)
                    {
                        continue;
                    }
                    uint start = (top - pages) / alignPages * alignPages;
                    if (start < s || start < goal)
                    {
                        continue;
                    }
                    _ranges.RemoveAt(i);
                    if (start + pages < e)
                    {
                        _ranges.Insert(i, (start + pages, e));
                    }
                    if (s < start)
                    {
                        _ranges.Insert(i, (s, start));
                    }
                    Volatile.Write(ref _claimed, [.. _claimed, (start, start + pages)]);
                    return start;
                }
            }
        }
        return PhysMem.NoPfn;
    }
}
