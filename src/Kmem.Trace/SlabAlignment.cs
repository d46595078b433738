// Aligned slab decisions (TraceReplayOptions.Aligned): a kernel slab allocation that took a
// new slab says that, right after it, the cache's cpu slab on that CPU held that slab with
// one object taken and no partial slab (cpu or node) had a free object: ___slab_alloc
// reaches new_slab only when c->freelist, c->partial and get_partial all came up empty.
// When Kmem served the same allocation from a free object, its cache held free objects the
// kernel's did not; the replayer takes them as placeholders, held, until Kmem's own cache
// takes a new slab: Kmem's cache is then where the kernel's is. The next new_slab decisions
// are Kmem's own from there. A placeholder is given back when the trace frees, for that
// cache, an object the replay never saw allocated (the kernel's free objects came back
// too). Corrected only after the event (its own decision is recorded before); kmalloc
// placeholders are never given back (kfree names no cache). slab_freed is not corrected: a free
// into a kernel slab the trace never showed allocated is left uncompared in both runs (its
// occupancy is unknown), which KernelSlabPredatesTrace tells from the frames seen so far.
// A free-running replay uses the same placeholders for its stand-ins of the kernel's slabs
// from before tracing (PreTraceSlabs), and for those only.
// Used by TraceReplayer, on the replaying thread only.
namespace Kmem;

/// <summary>The replay's slab placeholders (aligned new_slab) and what the trace has revealed of a kernel slab.</summary>
internal sealed class SlabAlignment(Machine m, bool aligned)
{
    // Bound on the placeholders one alignment takes (a cache whose free objects would need more is left as it is).
    private const int MaxPlaceholders = 4096;

    private readonly Dictionary<string, Stack<(nint Ptr, KmemCache? Cache)>> _placeholders = new(StringComparer.Ordinal);

    /// <summary>Placeholders taken so far.</summary>
    public long Placeholders { get; private set; }

    /// <summary>After a slab allocation (cache, or kmalloc of bytes when cache is null) the kernel served from a new
    /// slab: Kmem's cache put in the same state, when it was not (Kmem's own decision, in kmem, took no new slab).</summary>
    public void AlignNewSlab(DecisionRecorder? kmem, bool kernelNewSlab, KmemCache? cache, string name, ulong bytes, Gfp gfp, int node)
    {
        if (!kernelNewSlab || !aligned || kmem is not { NewSlabs: 0 } k)
        {
            return;
        }
        if (!_placeholders.TryGetValue(name, out var held))
        {
            _placeholders[name] = held = new Stack<(nint, KmemCache?)>();
        }
        for (int i = 0; i < MaxPlaceholders; i++)
        {
            k.Reset();
            nint p = cache is not null ? m.KmemCacheAllocNode(cache, ReplayGfp.Of(gfp), node) : m.KmallocNode((nuint)bytes, ReplayGfp.Of(gfp), node);
            if (p == 0)
            {
                break;
            }
            held.Push((p, cache));
            Placeholders++;
            if (k.NewSlabs > 0)
            {
                break;
            }
        }
        k.Reset();
    }

    /// <summary>A kmem_cache_free of an object allocated before tracing began: a placeholder of that cache goes back instead.</summary>
    public void FreePlaceholder(string? name)
    {
        if (!aligned || name is null || !_placeholders.TryGetValue(name, out var held) || held.Count == 0)
        {
            return;
        }
        var (ptr, cache) = held.Pop();
        if (cache is { IsDestroyed: false })
        {
            m.KmemCacheFree(cache, ptr);
        }
    }

    /// <summary>Whether the kernel's slab holding the trace object at <paramref name="ptr"/> is no frame the trace showed
    /// allocated (<paramref name="slabPages"/>: head frame to order): it existed before tracing began, so it may hold
    /// objects allocated before then. False while the direct-map base is not known (null: the frame cannot be told).</summary>
    public static bool KernelSlabPredatesTrace(Dictionary<ulong, int> slabPages, ulong? directMapBase, ulong ptr)
    {
        if (directMapBase is not ulong b)
        {
            return false;
        }
        ulong pfn = (ptr - b) >> 12;
        for (int k = 0; k < Machine.MaxOrder; k++)
        {
            if (slabPages.TryGetValue(pfn & ~((1UL << k) - 1), out int order) && order >= k)
            {
                return false;
            }
        }
        return true;
    }
}
