// The notes of --compare-proc: what a difference between the kernel's /proc file and Kmem's
// comes from, told only from counts: the replay's own (TraceCacheCounts: objects freed but
// never allocated in the trace, in slab pages the trace allocated or not; live objects; the
// kernel's slab pages allocated in the trace; page frees of frames never allocated) and the
// snapshot's (slabs, pages per slab). What no count supports is marked "unexplained".
// Stateless.
using System.Globalization;

namespace Kmem;

internal static class ProcNotes
{
    /// <summary>The note of one cache the kernel has.</summary>
    /// <param name="real">The kernel's line.</param>
    /// <param name="kmem">Kmem's line, or null.</param>
    /// <param name="c">The replay's counts for the name, or null without a replay.</param>
    /// <param name="provisionalOfSize">A provisional cache of the same object size exists on Kmem.</param>
    public static string Slab(SlabinfoLine real, SlabinfoLine? kmem, TraceCacheCounts? c, bool provisionalOfSize)
    {
        var notes = new List<string>();
        long kmemActive = kmem?.ActiveObjs ?? 0;
        long d = real.ActiveObjs - kmemActive;
        if (c is not TraceCacheCounts n)
        {
            if (d != 0)
            {
                notes.Add($"{Signed(-d)} objects on Kmem: unexplained (no replay counts)");
            }
        }
        else if (d > 0)
        {
            notes.Add(Deficit(real, d, n, provisionalOfSize));
        }
        else if (d < 0)
        {
            notes.Add(Surplus(real, kmemActive, n));
        }
        if (kmem is SlabinfoLine k && (real.ObjSize != k.ObjSize || real.ObjPerSlab != k.ObjPerSlab || real.PagesPerSlab != k.PagesPerSlab))
        {
            notes.Add($"geometry differs: {real.ObjSize}/{real.ObjPerSlab}/{real.PagesPerSlab} vs {k.ObjSize}/{k.ObjPerSlab}/{k.PagesPerSlab} (objsize/objperslab/pagesperslab)");
        }
        return string.Join("; ", notes);
    }

    // The kernel has d more active objects.
    private static string Deficit(SlabinfoLine real, long d, TraceCacheCounts n, bool provisionalOfSize)
    {
        var why = new List<string>();
        long pages = KernelSlabPages(real);
        long notSeen = pages - n.TraceSlabPages;
        long before = n.UntrackedFrees - n.UntrackedInTraceSlab;
        if (notSeen > 0)
        {
            why.Add($"{notSeen} of its {pages} slab pages not seen allocated in the trace (before tracing began, or not recognised as slab pages)");
        }
        if (before > 0)
        {
            why.Add($"the trace freed {before} objects of it that it never allocated");
        }
        if (n.UntrackedInTraceSlab > 0)
        {
            why.Add($"{n.UntrackedInTraceSlab} freed objects lay in slab pages the trace allocated yet were never allocated in it: allocations the 6.1 trace cannot show (kmem_cache_alloc_bulk)");
        }
        if (n.Allocs == 0 && provisionalOfSize)
        {
            why.Add("or allocated by a call site no free named (a provisional cache of this size)");
        }
        string head = n.Allocs == 0 ? $"{d} objects, none allocated in the trace under this name" : $"{d} more objects in the kernel";
        return why.Count == 0 ? head + ": unexplained" : head + ": " + string.Join("; ", why);
    }

    // Kmem has more active objects.
    private static string Surplus(SlabinfoLine real, long kmemActive, TraceCacheCounts n)
    {
        long surplus = kmemActive - real.ActiveObjs;
        var why = new List<string>();
        long freeCounted = kmemActive - n.Live;
        long liveOver = n.Live - real.ActiveObjs;
        if (liveOver > 0)
        {
            why.Add($"the replay holds {n.Live} objects the trace allocated and never freed, {liveOver} more than the kernel's active count: frees the 6.1 trace does not show"
                + (n.MissedFrees > 0 ? $" (it allocated {n.MissedFrees} addresses again without a free between)" : ""));
        }
        if (freeCounted > 0)
        {
            why.Add($"{freeCounted} of Kmem's active objects are free objects in per-CPU slabs (the kernel counts its own alike, but holds other slabs there)");
        }
        return $"{surplus} more counted active on Kmem: " + (why.Count == 0 ? "unexplained" : string.Join("; ", why));
    }

    /// <summary>The kernel's slab pages of a cache: num_objs / objperslab slabs of pagesperslab pages.</summary>
    public static long KernelSlabPages(SlabinfoLine real) =>
        real.ObjPerSlab == 0 ? 0 : (real.NumObjs + real.ObjPerSlab - 1) / real.ObjPerSlab * real.PagesPerSlab;

    /// <summary>The note of a zone's free lists, order by order.</summary>
    public static string Buddy(long[]? real, long[]? kmem, long? untrackedPageFrees)
    {
        if (real is null || kmem is null)
        {
            return real is null ? "zone only on Kmem" : "zone only in the kernel";
        }
        var orders = new List<string>();
        long pages = 0;
        for (int o = 0; o < Math.Max(real.Length, kmem.Length); o++)
        {
            long delta = (o < kmem.Length ? kmem[o] : 0) - (o < real.Length ? real[o] : 0);
            pages += delta << o;
            if (delta != 0)
            {
                orders.Add($"o{o} {Signed(delta)}");
            }
        }
        if (orders.Count == 0)
        {
            return "";
        }
        string per = "kmem − kernel blocks: " + string.Join(", ", orders);
        if (pages > 0)
        {
            return $"{per}; {pages} more free pages on Kmem: held by the kernel without an allocation event in the trace (from before tracing began, or alloc_pages_bulk beyond its refills)"
                + (untrackedPageFrees > 0 ? $"; the trace freed {untrackedPageFrees} pages it never allocated" : "");
        }
        return pages < 0 ? $"{per}; {-pages} more free pages in the kernel: unexplained" : $"{per}; as many free pages, split differently: unexplained";
    }

    /// <summary>The note of a meminfo slab line: <paramref name="notSeenKb"/> is the kernel's slab memory of the
    /// line's kind that the trace did not see allocated.</summary>
    public static string Meminfo(long r, long k, long? notSeenKb)
    {
        if (r == k)
        {
            return "";
        }
        if (r < k)
        {
            return $"{k - r} kB more on Kmem: unexplained by the counts (see the caches above)";
        }
        if (notSeenKb is not long seen || seen <= 0)
        {
            return $"{r - k} kB more in the kernel: unexplained";
        }
        return $"{r - k} kB more in the kernel; {seen} kB of its slab pages not seen allocated in the trace"
            + (seen < r - k ? $", the other {r - k - seen} kB unexplained" : "");
    }

    private static string Signed(long v) => v > 0 ? "+" + v.ToString(CultureInfo.InvariantCulture) : v.ToString(CultureInfo.InvariantCulture);
}
