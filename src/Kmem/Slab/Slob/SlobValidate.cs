// SLOB's figures and its whole-heap checker. Stats gives a cache's live objects and the pages they
// touch; Summary is what Kmem's own slobinfo file shows (Linux has no report for SLOB). ValidateAll walks
// the three lists, every PG_slab page's chain in its bytes and the side table, and checks: each page's
// free blocks and live blocks (RCU-held ones too) tile its 2048 units, free blocks are in address order and never touch,
// units = the free units, a page is on the list its bits name iff it has free units, kmalloc headers
// hold the size asked, objects are aligned, and every counter (owners, pages, the nodes' slab pages)
// equals what the walk finds. Everything runs under slob_lock; ValidateAll wants a quiet heap.
using Kmem.Physical;
using static Kmem.Slab.SlobPage;

namespace Kmem.Slab;

/// <summary>The free lists and owners of a SLOB heap at one moment (Kmem's slobinfo).</summary>
/// <param name="Lists">Per list (small, medium, large): its pages and their free units.</param>
/// <param name="SlobPages">Pages marked PG_slab (on a list or full).</param>
/// <param name="PageBlocks">Blocks of a page or more, straight from the page allocator.</param>
/// <param name="PageBlockPages">The pages of those blocks.</param>
/// <param name="Owners">kmalloc first, then every cache oldest first: live blocks, bytes asked, bytes held.</param>
internal readonly record struct SlobSummary(
    (long Pages, long FreeUnits)[] Lists, long SlobPages, long PageBlocks, long PageBlockPages,
    (string Name, long Blocks, long Requested, long Held)[] Owners);

internal sealed unsafe partial class Slob
{
    /// <summary>A cache's live objects, and the pages holding them as its "slabs".</summary>
    public override SlabCacheStats Stats(KmemCache s)
    {
        lock (_slobLock)
        {
            long objects = State(s).Objects;
            var pages = new HashSet<uint>();
            long blockPages = 0;
            if (objects != 0)
            {
                foreach (var (p, blk) in _live)
                {
                    if (blk.Owner != s.Id)
                    {
                        continue;
                    }
                    if (blk.InPage)
                    {
                        pages.Add(_mem.VirtToPfn(p));
                    }
                    else
                    {
                        blockPages += 1L << blk.Order;
                    }
                }
            }
            long slabs = pages.Count + blockPages;
            return new SlabCacheStats(objects, objects, slabs, slabs);
        }
    }

    /// <summary>The lists, pages and owners now.</summary>
    public SlobSummary Summary()
    {
        var caches = Caches;
        lock (_slobLock)
        {
            var lists = new (long, long)[3];
            for (int i = 0; i < 3; i++)
            {
                long pages = 0, free = 0;
                for (uint pfn = _lists[i].Head; pfn != PhysMem.NoPfn; pfn = _mem.Frame(pfn).Next)
                {
                    pages++;
                    free += _mem.Frame(pfn).Aux;
                }
                lists[i] = (pages, free);
            }
            var owners = new List<(string, long, long, long)> { ("kmalloc", _kmallocBlocks, _kmallocRequested, _kmallocHeld) };
            foreach (var s in caches)
            {
                var st = State(s);
                owners.Add((s.Name, st.Objects, st.Objects * s.ObjectSize, st.Held));
            }
            return new SlobSummary(lists, _slobPages, _pageBlocks, _pageBlockPages, [.. owners]);
        }
    }

    /// <summary>Checks the whole heap; the violations, none when sound. No thread may use it meanwhile.</summary>
    public override List<string> ValidateAll()
    {
        var caches = Caches;
        var errors = new List<string>();
        lock (_slobLock)
        {
            var onList = new Dictionary<uint, int>();
            for (int i = 0; i < 3; i++)
            {
                int n = 0;
                for (uint pfn = _lists[i].Head; pfn != PhysMem.NoPfn; pfn = _mem.Frame(pfn).Next)
                {
                    ref PageFrame f = ref _mem.Frame(pfn);
                    if (!onList.TryAdd(pfn, i) || ++n > _slobPages)
                    {
                        errors.Add($"{ListNames[i]} loops or shares page 0x{pfn:x}");
                        break;
                    }
                    if ((f.Flags & (PageFlags.Slab | PageFlags.Private)) != (PageFlags.Slab | PageFlags.Private) || ListOf(ref f) != i || f.Aux == 0)
                    {
                        errors.Add($"page 0x{pfn:x} on {ListNames[i]}: flags {f.Flags}, list bits {ListOf(ref f)}, units {f.Aux}");
                    }
                }
            }

            // The live blocks of each slob page, as unit intervals.
            var blocksOf = new Dictionary<uint, List<(int Start, int Units, string Who)>>();
            var perOwner = new Dictionary<int, (long Blocks, long Requested, long Held)>();
            long pageBlocks = 0, pageBlockPages = 0;
            var nodePages = new long[_pa.Nodes.Length];
            // Blocks waiting for an RCU grace period still tile their pages and hold their pages, but belong to
            // no owner's figures any more.
            foreach (var (p, blk, rcuHeld) in _live.Select(e => (e.Key, e.Value, false)).Concat(_rcuHeld.Select(e => (e.Key, e.Value, true))))
            {
                if (!rcuHeld)
                {
                    var o = perOwner.GetValueOrDefault(blk.Owner);
                    perOwner[blk.Owner] = (o.Blocks + 1, o.Requested + (long)blk.Requested, o.Held + blk.Held);
                }
                var cache = blk.Owner == KmallocOwner ? null : CacheById(blk.Owner);
                string who = (rcuHeld ? "RCU-freed " : "") + (cache?.Name ?? (blk.Owner == KmallocOwner ? "kmalloc" : $"cache id {blk.Owner}"));
                uint pfn = _mem.VirtToPfn(p);
                if (pfn == PhysMem.NoPfn)
                {
                    errors.Add($"{who} block 0x{KernelAddress(p):x} is outside the direct map");
                    continue;
                }
                ref PageFrame f = ref _mem.Frame(pfn);
                if (!blk.InPage)
                {
                    if (!rcuHeld)
                    {
                        pageBlocks++;
                        pageBlockPages += 1L << blk.Order;
                    }
                    nodePages[NodeOf(pfn)] += 1L << blk.Order;
                    bool compound = blk.Owner == KmallocOwner && blk.Order > 0;
                    if ((p & (PhysMem.PageSize - 1)) != 0 || (f.Flags & PageFlags.Slab) != 0 || f.RefCount < 1
                        || compound != ((f.Flags & PageFlags.Head) != 0) || (compound && f.Order != blk.Order))
                    {
                        errors.Add($"{who} block of order {blk.Order} at 0x{KernelAddress(p):x}: flags {f.Flags}, refcount {f.RefCount}, order {f.Order}");
                    }
                    continue;
                }
                int header = blk.Owner == KmallocOwner ? MinAlign : 0;
                nint start = p - header;
                if ((f.Flags & PageFlags.Slab) == 0 || _mem.VirtToPfn(start) != pfn || (start & 1) != 0)
                {
                    errors.Add($"{who} block 0x{KernelAddress(p):x} is not in a slob page");
                    continue;
                }
                if (header != 0 && *(uint*)start != (uint)blk.Requested)
                {
                    errors.Add($"kmalloc block 0x{KernelAddress(p):x}: header {*(uint*)start}, allocated {blk.Requested}");
                }
                long align = header != 0
                    ? (System.Numerics.BitOperations.IsPow2(blk.Requested) ? Math.Max(MinAlign, (long)blk.Requested) : MinAlign)
                    : cache?.Align ?? 1;
                if (p % align != 0)
                {
                    errors.Add($"{who} block 0x{KernelAddress(p):x} is not aligned to {align}");
                }
                if (!blocksOf.TryGetValue(pfn, out var list))
                {
                    blocksOf[pfn] = list = [];
                }
                list.Add(((int)((start & (PhysMem.PageSize - 1)) / SlobUnit), blk.Units, who));
            }

            long slobPages = 0;
            for (uint pfn = 0; pfn < _mem.LowmemPfns; pfn++)
            {
                ref PageFrame f = ref _mem.Frame(pfn);
                if ((f.Flags & PageFlags.Slab) == 0)
                {
                    continue;
                }
                slobPages++;
                nodePages[NodeOf(pfn)]++;
                bool listed = onList.ContainsKey(pfn);
                if (listed != ((f.Flags & PageFlags.Private) != 0) || listed != (f.Aux != 0))
                {
                    errors.Add($"page 0x{pfn:x}: units {f.Aux}, on a list {listed}, PG_private {(f.Flags & PageFlags.Private) != 0}");
                }
                var spans = blocksOf.GetValueOrDefault(pfn) ?? [];
                if (spans.Count == 0)
                {
                    errors.Add($"page 0x{pfn:x} holds no live block but was not given back");
                }
                if (f.Aux != 0)
                {
                    ValidateChain(pfn, ref f, spans, errors);
                }
                spans.Sort((a, b) => a.Start.CompareTo(b.Start));
                int at = 0;
                foreach (var (start, units, who) in spans)
                {
                    if (start < at)
                    {
                        errors.Add($"page 0x{pfn:x}: {who} block at unit {start} overlaps what ends at unit {at}");
                    }
                    else if (start > at)
                    {
                        errors.Add($"page 0x{pfn:x}: units {at}..{start} are neither free nor allocated");
                    }
                    at = Math.Max(at, start + units);
                }
                if (at != UnitsPerPage)
                {
                    errors.Add($"page 0x{pfn:x}: blocks end at unit {at}, not {UnitsPerPage}");
                }
            }

            if (slobPages != _slobPages || pageBlocks != _pageBlocks || pageBlockPages != _pageBlockPages)
            {
                errors.Add($"pages: {slobPages} slob pages, {pageBlocks} page blocks of {pageBlockPages} pages; counted {_slobPages}, {_pageBlocks}, {_pageBlockPages}");
            }
            var k = perOwner.GetValueOrDefault(KmallocOwner);
            if (k != (_kmallocBlocks, _kmallocRequested, _kmallocHeld))
            {
                errors.Add($"kmalloc: {k} in the side table, counted ({_kmallocBlocks}, {_kmallocRequested}, {_kmallocHeld})");
            }
            foreach (var s in caches)
            {
                var o = perOwner.GetValueOrDefault(s.Id);
                var st = State(s);
                if (o.Blocks != st.Objects || o.Held != st.Held)
                {
                    errors.Add($"{s.Name}: {o.Blocks} objects holding {o.Held} bytes in the side table, counted {st.Objects} and {st.Held}");
                }
            }
            for (int nid = 0; nid < nodePages.Length; nid++)
            {
                var node = _pa.Nodes[nid];
                long unrec = Volatile.Read(ref node.NrSlabUnreclaimable), rec = Volatile.Read(ref node.NrSlabReclaimable);
                if (unrec != nodePages[nid] || rec != 0)
                {
                    errors.Add($"node {nid}: {nodePages[nid]} SLOB pages, nr_slab_unreclaimable {unrec}, nr_slab_reclaimable {rec}");
                }
            }
        }
        return errors;
    }

    /// <summary>Walks a listed page's chain of free blocks in its bytes, adding each to <paramref name="spans"/>.</summary>
    private void ValidateChain(uint pfn, ref PageFrame f, List<(int Start, int Units, string Who)> spans, List<string> errors)
    {
        short* pageBase = (short*)_mem.PageAddress(pfn);
        int off = FreeOffset(ref f);
        int free = 0, blocks = 0, prevEnd = -1;
        while (true)
        {
            if (off < 0 || off >= UnitsPerPage || ++blocks > UnitsPerPage)
            {
                errors.Add($"page 0x{pfn:x}: free chain leaves the page (offset {off})");
                return;
            }
            short* cur = pageBase + off;
            int units = Units(cur);
            int next = (int)(Next(cur) - pageBase);
            if (off + units > UnitsPerPage || next <= off || (next < UnitsPerPage && next < off + units))
            {
                errors.Add($"page 0x{pfn:x}: free block at unit {off} of {units} units, next at {next}");
                return;
            }
            if (off == prevEnd)
            {
                errors.Add($"page 0x{pfn:x}: free blocks touch at unit {off} (not coalesced)");
            }
            spans.Add((off, units, "free"));
            free += units;
            prevEnd = off + units;
            if (next == UnitsPerPage)
            {
                break;
            }
            off = next;
        }
        if (free != f.Aux)
        {
            errors.Add($"page 0x{pfn:x}: {free} free units in the chain, units {f.Aux}");
        }
    }
}
