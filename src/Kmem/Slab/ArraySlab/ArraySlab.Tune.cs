// SLAB's tunables and periodic reaping (mm/slab.c, 6.1; the class is named ArraySlab, after the array
// caches that set mm/slab.c apart, because "Slab" is already the layer and the word for a slab page):
// cache_reap's round over every CPU's array cache and every node's shared array and free slabs, and
// slabinfo_write / do_tune_cpucache, which replace a cache's arrays with ones of a new limit, batchcount
// and shared factor. Lock order as in ArraySlab.cs: slab_mutex → cpu array lock → node list_lock; a reap
// round that cannot take slab_mutex at once is skipped, as the kernel's mutex_trylock skips it.
namespace Kmem.Slab;

/// <summary>A line written to /proc/slabinfo, as slabinfo_write reads it: "name limit batchcount shared".</summary>
/// <param name="Name">The cache's name.</param>
/// <param name="Limit">The per-CPU array's new limit.</param>
/// <param name="BatchCount">Objects moved at a time.</param>
/// <param name="Shared">The shared array's factor (0: none).</param>
internal readonly record struct SlabinfoTunables(string Name, int Limit, int BatchCount, int Shared)
{
    /// <summary>MAX_SLABINFO_WRITE: the longest line /proc/slabinfo takes.</summary>
    private const int MaxSlabinfoWrite = 128;

    /// <summary>Reads the four fields of <paramref name="line"/> (their ranges are the caller's to check).</summary>
    /// <exception cref="ArgumentException">The line is too long or not four fields with three integers (-EINVAL).</exception>
    public static SlabinfoTunables Parse(string line)
    {
        ArgumentNullException.ThrowIfNull(line);
        if (line.Length >= MaxSlabinfoWrite)
        {
            throw new ArgumentException($"slabinfo: a line of {line.Length} characters; at most {MaxSlabinfoWrite - 1} are read (-EINVAL)", nameof(line));
        }
        string[] parts = line.Trim().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        if (parts.Length != 4 || !int.TryParse(parts[1], inv, out int limit) || !int.TryParse(parts[2], inv, out int batchcount)
            || !int.TryParse(parts[3], inv, out int shared))
        {
            throw new ArgumentException($"slabinfo: \"{line}\" is not \"<name> <limit> <batchcount> <shared>\" (-EINVAL)", nameof(line));
        }
        return new SlabinfoTunables(parts[0], limit, batchcount, shared);
    }
}

internal sealed unsafe partial class ArraySlab
{
    // ───────────────────────────── periodic reaping ─────────────────────────────

    /// <summary>cache_reap, once on every CPU: each CPU's untouched array gives back about a fifth of its
    /// limit (a touched one is only marked untouched); on every second call (REAPTIMEOUT_NODE = 2 ×
    /// REAPTIMEOUT_AC) each node's shared array is drained the same way and, unless a free slab was taken
    /// since, (free_limit + 5·num − 1) / (5·num) free slabs go back to the page allocator. Skipped, as the
    /// kernel's mutex_trylock does, while a cache is being created or destroyed. Returns the pages freed.</summary>
    public override long CacheReap()
    {
        if (!_slabMutex.TryEnter())
        {
            return 0;
        }
        long before = PagesFreed;
        try
        {
            long tick = ++_reapTicks;
            foreach (var s in Caches)
            {
                var st = State(s);
                for (int cpu = 0; cpu < st.Cpu.Length; cpu++)
                {
                    int nid = _cpus.NodeOf[cpu];
                    var n = st.Nodes[nid];
                    List<uint>? list = null;
                    var ac = LockCpuCache(st, cpu);
                    try
                    {
                        if (ac.Avail > 0)
                        {
                            if (ac.Touched)
                            {
                                ac.Touched = false;
                            }
                            else
                            {
                                lock (n.ListLock)
                                {
                                    DrainArrayLocked(s, st, ac, nid, freeAll: false, ref list);
                                }
                            }
                        }
                    }
                    finally
                    {
                        ac.Unlock();
                    }
                    SlabsDestroy(s, st, list);
                    if (n.NextReap > tick)
                    {
                        continue;
                    }
                    n.NextReap = tick + ReapNodeTicks;
                    list = null;
                    lock (n.ListLock)
                    {
                        if (n.Shared is { Avail: > 0 } sh)
                        {
                            if (sh.Touched)
                            {
                                sh.Touched = false;
                            }
                            else
                            {
                                DrainArrayLocked(s, st, sh, nid, freeAll: false, ref list);
                            }
                        }
                    }
                    SlabsDestroy(s, st, list);
                    if (n.FreeTouched)
                    {
                        n.FreeTouched = false;
                    }
                    else
                    {
                        int num = st.Geometry.Num;
                        DrainFreelist(s, st, n, (int)((n.FreeLimit + 5L * num - 1) / (5L * num)));
                    }
                }
            }
        }
        finally
        {
            _slabMutex.Exit();
        }
        return PagesFreed - before;
    }

    /// <summary>drain_array_locked (list_lock held): all of the array, or (limit + 4) / 5 of its oldest
    /// objects (half of what it holds when that is fewer), go back to the slabs.</summary>
    private void DrainArrayLocked(KmemCache s, ArraySlabCache st, ArrayCache ac, int nid, bool freeAll, ref List<uint>? list)
    {
        int tofree = freeAll ? ac.Avail : (ac.Limit + 4) / 5;
        if (tofree > ac.Avail)
        {
            tofree = (ac.Avail + 1) / 2;
        }
        FreeBlock(s, st, ac.Entry.AsSpan(0, tofree), nid, ref list);
        ac.Avail -= tofree;
        Array.Copy(ac.Entry, tofree, ac.Entry, 0, ac.Avail);
    }

    // ───────────────────────────── tuning (slabinfo_write) ─────────────────────────────

    /// <summary>slabinfo_write: "name limit batchcount shared" retunes that cache (do_tune_cpucache).</summary>
    /// <exception cref="ArgumentException">The line is malformed, names no cache, or the values are out of range
    /// (the kernel's -EINVAL); nothing changes.</exception>
    public override void SlabinfoWrite(string line)
    {
        var (name, limit, batchcount, shared) = SlabinfoTunables.Parse(line);
        lock (_slabMutex)
        {
            var s = Caches.FirstOrDefault(c => c.Name == name)
                ?? throw new ArgumentException($"slabinfo: no cache named \"{name}\" (-EINVAL)", nameof(line));
            if (limit < 1 || batchcount < 1 || batchcount > limit || shared < 0)
            {
                throw new ArgumentException($"slabinfo: {s.Name}: limit {limit}, batchcount {batchcount}, shared {shared}: "
                    + "need limit >= 1, 1 <= batchcount <= limit and shared >= 0 (-EINVAL)", nameof(line));
            }
            DoTuneCpucache(s, limit, batchcount, shared);
        }
    }

    /// <summary>do_tune_cpucache (slab_mutex held): new arrays for every CPU, the old ones emptied back into the
    /// slabs, then each node's free_limit recomputed and its shared array replaced (its objects freed).</summary>
    private void DoTuneCpucache(KmemCache s, int limit, int batchcount, int shared)
    {
        var st = State(s);
        var fresh = new ArrayCache[st.Cpu.Length];
        for (int cpu = 0; cpu < fresh.Length; cpu++)
        {
            fresh[cpu] = new ArrayCache(limit, batchcount);
        }
        var old = st.Cpu;
        Volatile.Write(ref st.Cpu, fresh);
        st.Limit = limit;
        st.BatchCount = batchcount;
        st.SharedFactor = shared;
        for (int cpu = 0; cpu < old.Length; cpu++)
        {
            var ac = old[cpu];
            List<uint>? list = null;
            ac.Lock();
            ac.Retired = true;
            try
            {
                FreeCpuArray(s, st, ac, cpu, ref list);
            }
            finally
            {
                ac.Unlock();
            }
            SlabsDestroy(s, st, list);
        }
        for (int nid = 0; nid < st.Nodes.Length; nid++)
        {
            var n = st.Nodes[nid];
            List<uint>? list = null;
            int cpusOfNode = _cpus.NodeOf.Count(x => x == nid);
            lock (n.ListLock)
            {
                // init_cache_node first: the old shared array's objects go back under the new free_limit.
                n.FreeLimit = (1L + cpusOfNode) * batchcount + st.Geometry.Num;
                if (n.Shared is { Avail: > 0 } sh)
                {
                    FreeBlock(s, st, sh.Entry.AsSpan(0, sh.Avail), nid, ref list);
                    sh.Avail = 0;
                }
                n.Shared = shared > 0 ? new ArrayCache(shared * batchcount, 0) : null;
            }
            SlabsDestroy(s, st, list);
        }
    }
}
