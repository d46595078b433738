// The depot behind SLUB's thread magazines (SlubMagazines.cs): the table of threads that keep magazines
// for one machine, each cache's machine-wide room of magazine capacity, reaping the magazines of threads
// that exited, and flush_all's emptying of live threads' magazines (the steal handshake, whose reasoning
// is in SlubMagazines.cs). Invariant: for every cache, MagazineRoom plus the capacity of every magazine
// not reaped equals MagazineLimit times the CPU count. Locking: _magazineLock serialises new magazines,
// reaping and stealing; the thread table is copy-on-write under it and read without it; the room changes
// atomically; a magazine's entries change only under its owner's Busy (the owner thread's InCall marker)
// or, once Steal is set and Busy seen clear, under the stealer; a dead owner's under the reaper alone.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Kmem.Physical;

namespace Kmem.Slab;

/// <summary>The threads' magazines of one SLUB instance, their bound, and reaping and stealing them.</summary>
internal sealed class SlubMagazineDepot(Slub slub, CpuTopology cpus, PhysMem mem)
{
    /// <summary>Magazine objects back to their slabs, a detached freelist per slab.</summary>
    private readonly SlubFreeBulk _freeBulk = new(slub, mem, cpus);

    /// <summary>Gives magazine objects back to their slabs and clears <paramref name="entries"/>.</summary>
    public void FreeBulk(KmemCache s, Span<Magazine.Entry> entries) => _freeBulk.Free(s, entries);

    /// <summary>The threads' magazines not yet reaped; replaced whole under <see cref="_magazineLock"/>.</summary>
    private SlubThreadCache[] _threadCaches = [];

    /// <summary>The threads' magazines not yet reaped (for the checker and the tests).</summary>
    public IReadOnlyList<SlubThreadCache> ThreadCaches => Volatile.Read(ref _threadCaches);
    private readonly Lock _magazineLock = new();
    /// <summary>Set by <see cref="ShutDownFastPaths"/>: every magazine keeps Steal set from then on.</summary>
    private bool _dead;

    /// <summary>How many of its slow paths a starved thread (capacity 0, no room) takes between two searches for room.</summary>
    private const int StarvedProbeEvery = 256;

    /// <summary>The calling thread's magazine of <paramref name="s"/>, made (and the thread registered) when it
    /// has none; its capacity comes from the cache's room, 0 when none is left. Null when the thread is pinned
    /// or the cache destroyed.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public Magazine? NewMagazine(KmemCache s)
    {
        if (cpus.IsPinned || s.IsDestroyed)
        {
            return null;
        }
        var me = Thread.CurrentThread;
        lock (_magazineLock)
        {
            var tc = SlabThreadMarker.Of(_threadCaches, me);
            if (tc is null)
            {
                // A new thread: the ones that exited give their magazines back first.
                ReapDeadThreadsLocked();
                tc = new SlubThreadCache(me);
                Volatile.Write(ref _threadCaches, [.. _threadCaches, tc]);
            }
            cpus.SetThreadCache(tc);
            if (s.Id >= tc.ByCacheId.Length)
            {
                var grown = new Magazine?[Math.Max(tc.ByCacheId.Length * 2, s.Id + 1)];
                tc.ByCacheId.CopyTo(grown, 0);
                tc.ByCacheId = grown;
            }
            // A magazine of a destroyed cache whose id was reused was emptied by its destroy.
            if (tc.ByCacheId[s.Id] is not { } mag || !ReferenceEquals(mag.Cache, s))
            {
                int capacity = TakeRoom(s, s.MagazineLimit);
                if (capacity < s.MagazineLimit && ReapDeadThreadsLocked())
                {
                    capacity += TakeRoom(s, s.MagazineLimit - capacity);
                }
                if (capacity < s.MagazineLimit)
                {
                    RequestTrim(s);
                }
                tc.ByCacheId[s.Id] = mag = new Magazine(s, tc, capacity);
                Interlocked.Add(ref tc.CapacityBytes, (long)capacity * s.Size);
            }
            return mag;
        }
    }

    /// <summary>Takes up to <paramref name="want"/> objects of capacity from the cache's machine-wide room.</summary>
    /// <returns>The capacity taken, 0 when the room is used up.</returns>
    private static int TakeRoom(KmemCache s, int want)
    {
        int room = Volatile.Read(ref s.MagazineRoom);
        while (room > 0 && want > 0)
        {
            int take = Math.Min(room, want);
            int seen = Interlocked.CompareExchange(ref s.MagazineRoom, room - take, room);
            if (seen == room)
            {
                return take;
            }
            room = seen;
        }
        return 0;
    }

    /// <summary>The magazines of threads that have exited go back to the slabs and their capacity to the
    /// caches' rooms; no handshake is needed, as no owner is left to race. Returns whether any thread was reaped.</summary>
    private bool ReapDeadThreadsLocked()
    {
        SlubThreadCache[] all = _threadCaches;
        List<SlubThreadCache>? alive = null;
        for (int i = 0; i < all.Length; i++)
        {
            var tc = all[i];
            if (tc.Thread.IsAlive)
            {
                alive?.Add(tc);
                continue;
            }
            alive ??= [.. all.AsSpan(0, i)];
            foreach (var mag in tc.ByCacheId)
            {
                if (mag is null)
                {
                    continue;
                }
                if (!mag.Cache.IsDestroyed)
                {
                    slub.Drain(mag.Cache, mag.Entries.AsSpan(0, mag.Count));
                }
                mag.Count = 0;
                Interlocked.Add(ref mag.Cache.MagazineRoom, mag.Capacity);
                mag.Entries = [];
            }
        }
        if (alive is null)
        {
            return false;
        }
        Volatile.Write(ref _threadCaches, [.. alive]);
        return true;
    }

    /// <summary>Reaps the threads that have exited (see <see cref="ReapDeadThreadsLocked"/>).</summary>
    public bool ReapDeadThreads()
    {
        lock (_magazineLock)
        {
            return ReapDeadThreadsLocked();
        }
    }

    /// <summary>A starved thread's search for room (<paramref name="starved"/> has capacity 0, its owner holds Busy):
    /// threads that exited are reaped, and magazines of <paramref name="s"/> whose owners stayed idle are emptied.
    /// Only if the magazine lock is free at once: a stealer holds the lock while it waits for Busy to clear, so
    /// waiting here would deadlock.</summary>
    private void TryReclaimRoom(KmemCache s, Magazine starved)
    {
        if (!_magazineLock.TryEnter())
        {
            return;
        }
        try
        {
            ReapDeadThreadsLocked();
            if (Volatile.Read(ref s.MagazineRoom) == 0)
            {
                ReclaimIdleLocked(s, starved);
            }
        }
        finally
        {
            _magazineLock.Exit();
        }
    }

    /// <summary>How long a magazine's owner must stay away from its slow path, after a starved thread marked the
    /// magazine, before the magazine counts as idle and is emptied.</summary>
    private static readonly long IdleAfter = Stopwatch.Frequency / 1000;

    /// <summary>Room for a starved thread from magazines whose owners are idle: the kernel bounds its per-CPU
    /// caches per CPU, and a thread that holds a share but does not run (the one that set the machine up, a
    /// worker that moved on to other caches) must not keep a running thread on the locked cpu slab. Two steps,
    /// a while apart: the magazines holding capacity are marked with Trim, which their owners clear at their next
    /// operation (the fast path reads Trim with Steal, so a mark costs an active owner one slow path and nothing
    /// else); those still marked at the next probe, at least <see cref="IdleAfter"/> later, are idle, and are
    /// emptied (flush_all's steal handshake) and give all their capacity back to the room. An owner that comes
    /// back finds a capacity-0 magazine and takes room again like any thread.</summary>
    private void ReclaimIdleLocked(KmemCache s, Magazine starved)
    {
        long now = Stopwatch.GetTimestamp();
        long markedAt = s.IdleProbeAt;
        if (markedAt != 0 && now - markedAt < IdleAfter)
        {
            return;
        }
        List<Magazine>? idle = null;
        bool marked = false;
        foreach (var tc in _threadCaches)
        {
            if ((uint)s.Id >= (uint)tc.ByCacheId.Length || tc.ByCacheId[s.Id] is not { } mag || !ReferenceEquals(mag.Cache, s)
                || ReferenceEquals(mag, starved) || mag.Capacity == 0)
            {
                continue;
            }
            if (markedAt != 0 && Volatile.Read(ref mag.Trim) != 0)
            {
                (idle ??= []).Add(mag);
            }
            else
            {
                Volatile.Write(ref mag.Trim, 1);
                marked = true;
            }
        }
        s.IdleProbeAt = marked ? now : 0;
        if (idle is not null)
        {
            StealLocked(s, idle, giveCapacityBack: true);
        }
    }

    /// <summary>Grows the calling owner's magazine (Busy set): doubles it, or starts a capacity-0 one at the cache's
    /// limit, as far as the thread budget and the cache's machine-wide room allow. A capacity-0 magazine looks for
    /// threads that exited every 256th time it finds no room.</summary>
    /// <returns>Whether the magazine grew.</returns>
    public bool TryGrow(Magazine mag, KmemCache s)
    {
        int cap = mag.Capacity;
        int want = cap == 0 ? s.MagazineLimit : Math.Min(cap, Slub.MaxMagazine - cap);
        if (want <= 0 || (mag.Trimmed && cap + want > s.MagazineLimit)
            || Volatile.Read(ref mag.Owner.CapacityBytes) + (long)want * s.Size > slub.ThreadBudgetBytes)
        {
            return false;
        }
        int got = TakeRoom(s, want);
        if (got == 0 && cap == 0 && (++mag.Owner.StarvedSlowPaths & StarvedProbeEvery - 1) == 0)
        {
            TryReclaimRoom(s, mag);
            got = TakeRoom(s, want);
        }
        if (got == 0)
        {
            if (cap == 0)
            {
                RequestTrim(s);
            }
            return false;
        }
        Array.Resize(ref mag.Entries, cap + got + Magazine.EntriesPad);
        Interlocked.Add(ref mag.Owner.CapacityBytes, (long)got * s.Size);
        return true;
    }

    /// <summary>Fills up to half the magazine and returns one more object; entered with Busy set, leaves it clear. The
    /// objects come a slab at a time: the cpu freelist taken under one cpu lock, and when it runs dry, the next slab
    /// ___slab_alloc installs, so a refill costs a lock round per slab rather than per object and makes no more slabs
    /// than one allocation would.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public unsafe nint Refill(Magazine mag, KmemCache s, Gfp gfp)
    {
        if (Volatile.Read(ref mag.Steal) != 0)
        {
            Volatile.Write(ref mag.Busy, 0);
            return slub.CpuAlloc(s, gfp, -1);
        }
        if (Volatile.Read(ref mag.Trim) != 0)
        {
            TrimMagazine(mag, s);
        }
        if (mag.Capacity == 0 && !TryGrow(mag, s))
        {
            Volatile.Write(ref mag.Busy, 0);
            return slub.CpuAlloc(s, gfp, -1);
        }
        int want = (mag.Capacity + 1) / 2;
        TakeCpuFreelist(mag, s, want);
        if (mag.Count >= want)
        {
            nint first = Slub.PopFromMagazine(mag, s);
            Volatile.Write(ref mag.Busy, 0);
            return first;
        }
        // The cpu slab ran dry: ___slab_alloc installs the next one (cpu partial, node partial, a new slab) and hands
        // its first object, and the same refill takes the rest of that slab's freelist. ___slab_alloc may reach the
        // page allocator and its drain of the magazines (flush_all), so Busy is clear meanwhile.
        Volatile.Write(ref mag.Busy, 0);
        nint obj = slub.CpuAlloc(s, mag.Count > 0 ? gfp | Gfp.NoWarn : gfp, -1);
        Volatile.Write(ref mag.Busy, 1);
        if (!mag.Attention)
        {
            if (obj != 0)
            {
                TakeCpuFreelist(mag, s, want);
            }
            else if (mag.Count > 0)
            {
                // No slab to be had: the magazine's objects serve.
                obj = Slub.PopFromMagazine(mag, s);
            }
        }
        // With Steal or Trim set meanwhile the magazine is left alone; the object goes to the caller all the same.
        Volatile.Write(ref mag.Busy, 0);
        return obj;
    }

    /// <summary>Moves objects of the cpu freelist into the magazine until it holds <paramref name="want"/>, under one
    /// cpu lock (the owner holds Busy).</summary>
    private unsafe void TakeCpuFreelist(Magazine mag, KmemCache s, int want)
    {
        var c = s.CpuSlab[cpus.Current];
        c.Lock();
        try
        {
            uint slab = c.Slab;
            nint obj = c.Freelist;
            if (obj == 0)
            {
                return;
            }
            nint start = mem.PageAddress(slab);
            var bits = slub.AllocBits(slab)!;
            byte* map = slub.AllocByte(slab, 0);
            nuint end = (nuint)bits.Length * s.Size;
            var entries = mag.Entries;
            int count = mag.Count;
            // Never past the entries the magazine has now: a stealer that came while Busy was clear (the refill's
            // ___slab_alloc) and went again may have emptied it and given its capacity back since want was set.
            want = Math.Min(want, entries.Length - Magazine.EntriesPad);
            while (count < want && obj != 0)
            {
                nuint off = (nuint)(obj - start);
                if (off >= end)
                {
                    // A corrupt free pointer: left on the cpu freelist, where CpuAlloc reports it.
                    break;
                }
                byte* allocated = map + s.IndexOf(off);
                *allocated = Slub.HeldByMagazine;
                entries[count++] = new Magazine.Entry { Obj = obj, Allocated = allocated };
                nint next = Slub.GetFreepointer(s, obj);
                *Slub.TagWord(s, obj) = slub.MagazineTag(obj);
                obj = next;
            }
            mag.Count = count;
            c.Freelist = obj;
        }
        finally
        {
            // A corrupt freelist throws from here: the cpu lock may not outlive it.
            c.Unlock();
        }
    }

    /// <summary>The owner's free slow path (Busy set): a magazine being stolen or with no capacity frees to the slab,
    /// one with Trim set trims first, a full one grows or gives its older half back; Busy is clear on return.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public unsafe bool FreeSlow(Magazine mag, KmemCache s, uint pfn, nint obj, byte* allocated)
    {
        if (Volatile.Read(ref mag.Steal) != 0)
        {
            Volatile.Write(ref mag.Busy, 0);
            return slub.DoSlabFree(s, pfn, obj, ref *allocated);
        }
        if (Volatile.Read(ref mag.Trim) != 0)
        {
            TrimMagazine(mag, s);
        }
        if ((uint)mag.Count < (uint)mag.Capacity)
        {
            // A stealer emptied the magazine between the fast path's read of Steal and this one, or a trim left room.
            Volatile.Write(ref mag.Busy, 0);
            return slub.MagazineFree(mag, s, pfn, obj, allocated);
        }
        int cap = mag.Capacity;
        if (TryGrow(mag, s))
        {
            // Overflowing with room left: the thread's working set of this size is larger, keep it.
            Volatile.Write(ref mag.Busy, 0);
            return slub.MagazineFree(mag, s, pfn, obj, allocated);
        }
        if (cap == 0)
        {
            Volatile.Write(ref mag.Busy, 0);
            return slub.DoSlabFree(s, pfn, obj, ref *allocated);
        }
        // Full: the older half goes back to the slabs; the newest objects stay hot in the magazine.
        int half = cap / 2;
        try
        {
            slub.Drain(s, mag.Entries.AsSpan(0, half));
        }
        catch
        {
            // A bug reported while draining (OnBug.Throw): the older half is given up rather than risk
            // returning an object twice, and Busy is cleared so that stealers do not wait forever.
            mag.Entries.AsSpan(half, mag.Count - half).CopyTo(mag.Entries);
            mag.Count -= half;
            Volatile.Write(ref mag.Busy, 0);
            throw;
        }
        mag.Entries.AsSpan(half, mag.Count - half).CopyTo(mag.Entries);
        mag.Count -= half;
        Volatile.Write(ref mag.Busy, 0);
        return slub.MagazineFree(mag, s, pfn, obj, allocated);
    }

    /// <summary>A thread found no room in <paramref name="s"/>: every magazine of it holding more than one CPU's
    /// share is asked to give the excess back (its owner does it at its next slow path, TrimMagazine).</summary>
    private void RequestTrim(KmemCache s)
    {
        foreach (var tc in Volatile.Read(ref _threadCaches))
        {
            if ((uint)s.Id < (uint)tc.ByCacheId.Length && tc.ByCacheId[s.Id] is { } mag && ReferenceEquals(mag.Cache, s)
                && mag.Capacity > s.MagazineLimit && Volatile.Read(ref mag.Trim) == 0)
            {
                Volatile.Write(ref mag.Trim, 1);
            }
        }
    }

    /// <summary>The owner's side of <see cref="RequestTrim"/> (Busy set, Steal seen clear): the magazine shrinks to
    /// one CPU's share, its oldest objects beyond that going back to the slabs and the capacity to the room; it
    /// grows no more beyond that share.</summary>
    public void TrimMagazine(Magazine mag, KmemCache s)
    {
        int cap = mag.Capacity, keep = Math.Min(cap, s.MagazineLimit);
        mag.Trimmed = true;
        Volatile.Write(ref mag.Trim, 0);
        if (cap == keep)
        {
            return;
        }
        int excess = Math.Max(0, mag.Count - keep);
        slub.Drain(s, mag.Entries.AsSpan(0, excess));
        var kept = Magazine.NewEntries(keep);
        mag.Entries.AsSpan(excess, mag.Count - excess).CopyTo(kept);
        mag.Count -= excess;
        mag.Entries = kept;
        Interlocked.Add(ref mag.Owner.CapacityBytes, -(long)(cap - keep) * s.Size);
        Interlocked.Add(ref s.MagazineRoom, cap - keep);
    }

    /// <summary>flush_all's part for magazines: every thread's magazine of <paramref name="s"/> is emptied into
    /// the slabs, waiting for owners that are in the middle of an operation.</summary>
    public void StealMagazines(KmemCache s)
    {
        lock (_magazineLock)
        {
            ReapDeadThreadsLocked();
            var mags = new List<Magazine>();
            foreach (var tc in _threadCaches)
            {
                if ((uint)s.Id < (uint)tc.ByCacheId.Length && tc.ByCacheId[s.Id] is { } mag && ReferenceEquals(mag.Cache, s))
                {
                    mags.Add(mag);
                }
            }
            StealLocked(s, mags, giveCapacityBack: false);
        }
    }

    /// <summary>The steal handshake (under the magazine lock): <paramref name="mags"/> are emptied into the slabs,
    /// waiting for owners in the middle of an operation; with <paramref name="giveCapacityBack"/> their capacity
    /// goes back to the cache's room too (and their Trim marks are cleared).</summary>
    private void StealLocked(KmemCache s, List<Magazine> mags, bool giveCapacityBack)
    {
        if (mags.Count == 0)
        {
            return;
        }
        foreach (var mag in mags)
        {
            Volatile.Write(ref mag.Steal, 1);
        }
        // Owners store Busy = 1 and then read Steal without a fence of their own: this barrier makes any
        // such store visible before Busy is read below, so an owner either is seen busy or sees Steal.
        Interlocked.MemoryBarrierProcessWide();
        try
        {
            foreach (var mag in mags)
            {
                var spin = new SpinWait();
                while (Volatile.Read(ref mag.Busy) != 0)
                {
                    spin.SpinOnce();
                }
                int count = mag.Count;
                mag.Count = 0;
                slub.Drain(s, mag.Entries.AsSpan(0, count));
                if (giveCapacityBack)
                {
                    int cap = mag.Capacity;
                    mag.Entries = [];
                    Interlocked.Add(ref mag.Owner.CapacityBytes, -(long)cap * s.Size);
                    Interlocked.Add(ref s.MagazineRoom, cap);
                    Volatile.Write(ref mag.Trim, 0);
                }
            }
        }
        finally
        {
            // A bug reported while draining (OnBug.Throw) leaves no owner locked out of its magazine.
            foreach (var mag in mags)
            {
                if (!_dead)
                {
                    Volatile.Write(ref mag.Steal, 0);
                }
            }
        }
    }

    /// <summary>Shutdown's part for the fast paths (SlubFastPath.cs), after the disposed flag, the process-wide barrier
    /// and the wait for every scoped call: every magazine gets Steal for good (the alloc fast path's marker store
    /// and its read of Steal are the marker and the check) and every thread cache Dead (the free fast path reads it
    /// after its marker); after a second barrier, threads in the middle of an operation (InCall, every magazine's
    /// Busy) are waited for.
    /// Thread caches and magazines are made only inside scoped calls, which Shutdown has waited for already, so the
    /// table read here is complete.</summary>
    public void ShutDownFastPaths()
    {
        SlubThreadCache[] all;
        lock (_magazineLock)
        {
            _dead = true;
            all = _threadCaches;
            foreach (var tc in all)
            {
                Volatile.Write(ref tc.Dead, 1);
                foreach (var mag in tc.ByCacheId)
                {
                    if (mag is not null)
                    {
                        Volatile.Write(ref mag.Steal, 1);
                    }
                }
            }
        }
        SlabThreadMarker.WaitForFastPaths(all);
    }

    /// <summary>Objects of <paramref name="s"/> held in thread magazines (a racy sum, for reports).</summary>
    public long MagazineObjects(KmemCache s)
    {
        long n = 0;
        foreach (var tc in ThreadCaches)
        {
            var byId = tc.ByCacheId;
            if ((uint)s.Id < (uint)byId.Length && byId[s.Id] is { } mag && ReferenceEquals(mag.Cache, s))
            {
                n += Volatile.Read(ref mag.Count);
            }
        }
        return n;
    }

    /// <summary>The caches whose magazines hold objects, or held them in threads reaped now (the pressure drain
    /// shrinks them).</summary>
    public List<KmemCache> CachesHeld()
    {
        var caches = new List<KmemCache>();
        lock (_magazineLock)
        {
            foreach (var tc in _threadCaches)
            {
                bool dead = !tc.Thread.IsAlive;
                foreach (var mag in tc.ByCacheId)
                {
                    if (mag is not null && (Volatile.Read(ref mag.Count) > 0 || dead) && !mag.Cache.IsDestroyed && !caches.Contains(mag.Cache))
                    {
                        caches.Add(mag.Cache);
                    }
                }
            }
            ReapDeadThreadsLocked();
        }
        return caches;
    }
}
