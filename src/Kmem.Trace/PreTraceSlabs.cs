// The kernel's slabs that predate the trace, as a free-running replay meets them. A trace that
// starts after the slab caches came up (even one from boot: kmem_cache_init and the early
// kmallocs run before tracing can begin) finds caches holding slabs no event showed allocated,
// and the kernel serves objects from them without taking a page. Kmem's caches start empty, so
// its slab layer would take pages for those objects off the per-CPU lists, where the kernel
// took none during the trace, and each page is one more the per-CPU counts stand apart.
//   - Tokens: a slab the trace shows an object allocated in for the first time, when it is not
//     one the trace showed the kernel allocate, is one more slab the kernel had before tracing,
//     and gives its cache a token. While a cache holds tokens, a slab page Kmem's own slab layer
//     decides to take for it (the decision stays Kmem's) comes straight off the buddy lists
//     (PageAllocator.BuddyOnly), as the kernel's left them before the first event, uses a token
//     and is a stand-in.
//   - Exhaustion: how many objects the kernel's slab still had free is not in the trace, and a
//     stand-in starts with all of them free. When the kernel takes a new slab for an allocation
//     that Kmem served from a stand-in, the kernel's slabs from before tracing had no free object
//     left, so the stand-in's free objects are objects the kernel allocated before tracing: the
//     replay takes them as placeholders until Kmem's cache takes a new slab too (SlabAlignment,
//     after Kmem's decision is recorded), and gives one back at each free of an object of that
//     cache the trace never showed allocated. A free-running correction of the state before the
//     trace, never of Kmem's own slabs: it runs only for an allocation served from a stand-in.
//   - The kernel's free of such a slab (a page free of a frame no event showed allocated): while
//     its cache still holds a token, Kmem never stood in for it, and the token goes; otherwise
//     Kmem's stand-in is its counterpart, whose page goes back when Kmem's slab layer decides, so
//     the replay frees no page in its place (KernelFreedSlab).
// A slab is keyed by its address in the kernel's direct map shifted by its order (slabs are
// naturally aligned, and the direct map's base is aligned wider), so no base is needed.
// Owned by TraceReplayer; replaying thread only.
using Kmem.Physical;

namespace Kmem;

/// <summary>Kmem's stand-ins for the kernel's slabs allocated before tracing began (free-running replays).</summary>
internal sealed class PreTraceSlabs
{
    private readonly Machine _m;
    // Slabs met so far (the kernel's direct-map address >> (PAGE_SHIFT + order)), traced or not.
    private readonly HashSet<ulong> _met = [];
    private readonly Dictionary<string, int> _tokens = new(StringComparer.Ordinal);
    // The slabs that gave a token (key as in _met), with their cache, until the kernel frees them.
    private readonly Dictionary<ulong, string> _granted = [];
    // Kmem's stand-in slabs (head frames), until Kmem frees them.
    private readonly HashSet<uint> _standIns = [];
    private readonly SlabAlignment _exhaust;
    private Kmem.PageAlloc.BuddyOnlyGate.Scope? _scope;
    private string? _open;

    /// <summary>Slabs from before tracing the trace met (tokens given); Kmem's slabs taken in their place.</summary>
    public long Met, StoodIn;

    /// <summary>Placeholders taken for objects the kernel allocated before tracing (exhausted stand-ins).</summary>
    public long Placeholders => _exhaust.Placeholders;

    public PreTraceSlabs(Machine m, DecisionRecorder kmem)
    {
        _m = m;
        _exhaust = new SlabAlignment(m, aligned: true);
        kmem.OnNewSlab = pfn =>
        {
            if (_scope is not null)
            {
                _standIns.Add(pfn);
            }
        };
        kmem.OnSlabFreed = pfn => _standIns.Remove(pfn);
    }

    /// <summary>Before Kmem's allocation for the kernel's object at <paramref name="ptr"/> in cache
    /// <paramref name="name"/> (slabs of 2^<paramref name="order"/> pages; the kernel took it from a new slab, or from
    /// one that <paramref name="predates"/> the trace): counts a slab from before tracing, and while the cache holds a
    /// token opens the buddy-only scope, which <see cref="End"/> closes.</summary>
    public void Begin(string name, int order, ulong ptr, bool kernelNewSlab, bool predates)
    {
        ulong slab = ptr >> (12 + order);
        if (_met.Add(slab) && !kernelNewSlab && predates)
        {
            _granted[slab] = name;
            Met++;
            _tokens[name] = _tokens.GetValueOrDefault(name) + 1;
        }
        if (_tokens.GetValueOrDefault(name) > 0)
        {
            _scope = _m.PageAllocator.BuddyOnly.Open();
            _open = name;
        }
    }

    /// <summary>After Kmem's allocation (<paramref name="newSlabs"/> it took): a new slab in the scope is a
    /// stand-in and uses the cache's token.</summary>
    public void End(int newSlabs)
    {
        if (_scope is not { } scope)
        {
            return;
        }
        scope.Dispose();
        _scope = null;
        if (newSlabs > 0)
        {
            _tokens[_open!]--;
            StoodIn++;
        }
    }

    /// <summary>After Kmem's decision for an allocation the kernel served from a new slab and Kmem (object
    /// <paramref name="ptr"/>) did not: when Kmem's object came from a stand-in, the stand-ins' free objects are taken
    /// as placeholders until the cache takes a new slab (cache, or kmalloc of <paramref name="bytes"/>).</summary>
    public void Exhaust(DecisionRecorder kmem, nint ptr, KmemCache? cache, string name, ulong bytes, Gfp gfp, int node)
    {
        if (InStandIn(ptr))
        {
            _exhaust.AlignNewSlab(kmem, kernelNewSlab: true, cache, name, bytes, gfp, node);
        }
    }

    /// <summary>The kernel freed a frame no event showed allocated, at <paramref name="address"/> in its direct map,
    /// of 2^<paramref name="order"/> pages: whether it is a slab from before tracing that Kmem stood in for, whose
    /// page Kmem's own slab layer gives back, so no page is freed in its place.</summary>
    public bool KernelFreedSlab(ulong address, int order)
    {
        if (!_granted.Remove(address >> (12 + order), out string? name))
        {
            return false;
        }
        if (_tokens.GetValueOrDefault(name) > 0)
        {
            _tokens[name]--; // never stood in for: it is gone before Kmem needed it
            return false;
        }
        return true;
    }

    /// <summary>The kernel freed an object of cache <paramref name="name"/> the trace never showed allocated: one of
    /// the objects a placeholder stands for.</summary>
    public void UntrackedFree(string? name) => _exhaust.FreePlaceholder(name);

    private bool InStandIn(nint ptr)
    {
        if (_standIns.Count == 0 || ptr == 0)
        {
            return false;
        }
        var mem = _m.PageAllocator.Mem;
        uint pfn = mem.VirtToPfn(ptr);
        ref var f = ref mem.Frame(pfn);
        return _standIns.Contains((f.Flags & PageFlags.Tail) != 0 ? (uint)f.Private : pfn);
    }
}
