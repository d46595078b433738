// free_reserved_area in a replay: a frame the traced kernel held reserved at boot goes to the
// page allocator at its first free (TraceReplayOptions.ReservedFrames); Kmem then releases one
// of its own reserved pages of the frame's zone (FreeReserved.FreeReservedPage), each frame
// once. Owned by TraceReplayer; used on its replaying thread only.
namespace Kmem;

/// <summary>The kernel's boot-reserved frames a replay has seen released, and Kmem's release of its own.</summary>
internal sealed class ReservedRelease(Machine m, IReadOnlySet<ulong>? frames)
{
    private readonly HashSet<ulong> _released = [];
    private uint[]? _cursor;

    /// <summary>Whether the frame is one the kernel held reserved and has not released yet.</summary>
    public bool Unreleased(ulong pfn) => frames is not null && frames.Contains(pfn) && !_released.Contains(pfn);

    /// <summary>The kernel's free of [pfn, pfn + 2^order): its reserved frames released for the first time each
    /// release one of Kmem's reserved pages of the same zone; returns whether any did.</summary>
    public bool Release(ulong pfn, int order)
    {
        if (frames is null)
        {
            return false;
        }
        bool any = false;
        for (ulong p = pfn; p < pfn + (1UL << order); p++)
        {
            if (!frames.Contains(p) || !_released.Add(p))
            {
                continue;
            }
            var zone = TraceZones.ZoneOf(m.PageAllocator, p);
            _cursor ??= new uint[m.PageAllocator.Zones.Length];
            any |= Kmem.PageAlloc.FreeReserved.FreeReservedPage(m.PageAllocator, zone, ref _cursor[zone.Index]);
        }
        return any;
    }
}
