// SLAB_TYPESAFE_BY_RCU on every backend, as Linux 6.1 has it: the memory of a freed object stays slab memory of
// its cache, with the object's last content, until a grace period (SynchronizeRcu) passes. SLUB and SLAB reuse
// the object at once and defer only the slab's pages; SLOB defers each object (kmem_rcu_free). Objects are never
// poisoned or wiped on free (padding still is poisoned), a constructor runs when SLUB and SLAB build a slab and
// on every SLOB allocation, and after destroying or shrinking and a grace period every page is back.
namespace Kmem.Tests.Slab;

public class TypesafeByRcuTests
{
    public static TheoryData<SlabAllocator> All => new() { SlabAllocator.Slub, SlabAllocator.Slab, SlabAllocator.Slob };

    private static Machine Boot(SlabAllocator kind, string? slubDebug = null, bool initOnFree = false) =>
        Machine.Boot(new MachineOptions { Memory = "256M", Slab = kind, Seed = 9, SlubDebug = slubDebug, InitOnFree = initOnFree });

    private static long SlabPages(Machine m) => m.PageAllocator.Nodes.Sum(n => n.NrSlabReclaimable + n.NrSlabUnreclaimable);

    private static unsafe Span<byte> Bytes(nint p, int n) => new((void*)p, n);

    private static void Fill(nint p, int n, int seed)
    {
        var span = Bytes(p, n);
        for (int i = 0; i < span.Length; i++)
        {
            span[i] = (byte)(seed * 31 + i);
        }
    }

    private static bool Holds(nint p, int n, int seed)
    {
        var span = Bytes(p, n);
        for (int i = 0; i < span.Length; i++)
        {
            if (span[i] != (byte)(seed * 31 + i))
            {
                return false;
            }
        }
        return true;
    }

    [Theory]
    [MemberData(nameof(All))]
    public void FreedMemoryStaysTheCachesWithItsContentUntilAGracePeriod(SlabAllocator kind)
    {
        using var m = Boot(kind);
        var s = m.KmemCacheCreate("rcu_pages", 200, 0, SlabFlags.TypesafeByRcu, null)!;
        Assert.True(s.Flags.HasFlag(SlabFlags.TypesafeByRcu));
        m.DrainAllPages();
        long freeBefore = m.PageAllocator.NrFreePages;
        long slabBefore = SlabPages(m);
        var objs = new nint[150];
        using (m.OnCpu(0))
        {
            for (int i = 0; i < objs.Length; i++)
            {
                objs[i] = m.KmemCacheAlloc(s, Gfp.Kernel);
                Fill(objs[i], 200, i);
            }
            foreach (nint p in objs)
            {
                m.KmemCacheFree(s, p);
            }
        }
        Assert.Equal(0, m.KmemCacheShrink(s));
        Assert.Equal(0, m.SlabLayer!.Stats(s).ActiveObjs);
        m.DrainAllPages();
        // Every slab (SLUB, SLAB) or object (SLOB) waits for the grace period: its pages are still slab memory,
        // not free, and a reader that looked an object up before the free still sees that object.
        long held = freeBefore - m.PageAllocator.NrFreePages;
        Assert.True(held >= 150 * 200 / 4096, $"{held} pages held");
        Assert.Equal(held, SlabPages(m) - slabBefore);
        Assert.True(m.SlabLayer.RcuPending > 0);
        for (int i = 0; i < objs.Length; i++)
        {
            Assert.True(Holds(objs[i], 200, i), $"object {i} changed before the grace period");
        }
        Assert.Empty(m.SlabLayer.ValidateAll());

        Assert.True(m.SynchronizeRcu() > 0);
        Assert.Equal(0, m.SlabLayer.RcuPending);
        m.DrainAllPages();
        Assert.Equal(freeBefore, m.PageAllocator.NrFreePages);
        Assert.Equal(slabBefore, SlabPages(m));
        Assert.Empty(m.SlabLayer.ValidateAll());
    }

    [Theory]
    [MemberData(nameof(All))]
    public void SlubAndSlabReuseAnObjectAtOnceWhileSlobWaitsForTheGracePeriod(SlabAllocator kind)
    {
        using var m = Boot(kind);
        var s = m.KmemCacheCreate("rcu_reuse", 64, 0, SlabFlags.TypesafeByRcu, null)!;
        using (m.OnCpu(0))
        {
            nint keep = m.KmemCacheAlloc(s, Gfp.Kernel);
            nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
            m.KmemCacheFree(s, p);
            // A second free before the grace period is still a double free.
            var bug = Assert.Throws<SlabBugException>(() => m.KmemCacheFree(s, p));
            Assert.Contains("Object already free", bug.Report, StringComparison.Ordinal);
            nint q = m.KmemCacheAlloc(s, Gfp.Kernel);
            if (kind == SlabAllocator.Slob)
            {
                // kmem_cache_free of an RCU cache under SLOB hands the block to call_rcu.
                Assert.NotEqual(p, q);
                m.SynchronizeRcu();
                nint r = m.KmemCacheAlloc(s, Gfp.Kernel);
                Assert.Equal(p, r);
                m.KmemCacheFree(s, r);
            }
            else
            {
                // Type-safe, not deferred: the object is the same cache's again at once.
                Assert.Equal(p, q);
            }
            m.KmemCacheFree(s, q);
            m.KmemCacheFree(s, keep);
        }
        m.KmemCacheShrink(s);
        m.SynchronizeRcu();
        Assert.Empty(m.SlabLayer!.ValidateAll());
    }

    [Fact]
    public void SlubNeverPoisonsAnRcuObjectButPoisonsItsPadding()
    {
        using var m = Boot(SlabAllocator.Slub, slubDebug: "P");
        var rcu = m.KmemCacheCreate("rcu_poison", 100, 0, SlabFlags.TypesafeByRcu, null)!;
        var plain = m.KmemCacheCreate("plain_poison", 100, 0, SlabFlags.None, null)!;
        Assert.Equal("1\n", m.SysSlab.Read("rcu_poison", "poison"));
        // The free pointer lives after the object (offset = inuse), so nothing of the object is touched on free.
        Assert.Equal(104u, rcu.Inuse);
        Assert.Equal(104u, rcu.Offset);
        using (m.OnCpu(0))
        {
            nint p = m.KmemCacheAlloc(rcu, Gfp.Kernel);
            nint q = m.KmemCacheAlloc(plain, Gfp.Kernel);
            Fill(p, 100, 1);
            Fill(q, 100, 1);
            m.KmemCacheFree(rcu, p);
            m.KmemCacheFree(plain, q);
            Assert.True(Holds(p, 100, 1));
            // The plain cache's free object is POISON_FREE ending in POISON_END.
            Assert.True(Bytes(q, 99).IndexOfAnyExcept((byte)0x6b) < 0);
            Assert.Equal(0xa5, Bytes(q, 100)[99]);
            // Alignment padding (object_size .. inuse) is POISON_INUSE in both.
            Assert.True(Bytes(p + 100, 4).IndexOfAnyExcept((byte)0x5a) < 0);
            Assert.True(Bytes(q + 100, 4).IndexOfAnyExcept((byte)0x5a) < 0);
            nint again = m.KmemCacheAlloc(rcu, Gfp.Kernel);
            Assert.Equal(p, again);
            Assert.True(Holds(again, 100, 1));
            Assert.Empty(m.SlabLayer!.ValidateAll());
            m.KmemCacheFree(rcu, again);
        }
        Assert.Empty(m.SlabLayer!.ValidateAll());
    }

    [Fact]
    public void InitOnFreeLeavesRcuObjectsAlone()
    {
        using var m = Boot(SlabAllocator.Slub, initOnFree: true);
        var rcu = m.KmemCacheCreate("rcu_iof", 128, 0, SlabFlags.TypesafeByRcu, null)!;
        var plain = m.KmemCacheCreate("plain_iof", 128, 0, SlabFlags.NoMerge, null)!;
        using (m.OnCpu(0))
        {
            nint p = m.KmemCacheAlloc(rcu, Gfp.Kernel);
            nint q = m.KmemCacheAlloc(plain, Gfp.Kernel);
            Fill(p, 128, 2);
            Fill(q, 128, 2);
            m.KmemCacheFree(rcu, p);
            m.KmemCacheFree(plain, q);
            Assert.True(Holds(p, 128, 2));
            // init_on_free wipes the plain object but for its free pointer.
            int fp = (int)plain.Offset;
            Assert.True(Bytes(q, fp).IndexOfAnyExcept((byte)0) < 0);
            Assert.True(Bytes(q + fp + 8, 128 - fp - 8).IndexOfAnyExcept((byte)0) < 0);
        }
    }

    [Theory]
    [MemberData(nameof(All))]
    public void TheConstructorRunsWhereTheKernelRunsIt(SlabAllocator kind)
    {
        using var m = Boot(kind);
        int calls = 0;
        var s = m.KmemCacheCreate("rcu_ctor", 96, 0, SlabFlags.TypesafeByRcu, p =>
        {
            Interlocked.Increment(ref calls);
            Bytes(p, 8).Fill(0x42);
        })!;
        using (m.OnCpu(0))
        {
            nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
            Assert.True(Bytes(p, 8).IndexOfAnyExcept((byte)0x42) < 0);
            // SLUB and SLAB construct a whole slab at once; SLOB constructs on each allocation.
            int perSlab = kind == SlabAllocator.Slob ? 1 : s.ObjectsPerSlab;
            Assert.Equal(perSlab, calls);
            // The user leaves the object in a state of its own; freed and taken again it is not reconstructed
            // by SLUB and SLAB (readers may still hold it), while SLOB constructs what it hands out.
            Bytes(p, 8).Fill(0x17);
            m.KmemCacheFree(s, p);
            Assert.True(Bytes(p, 8).IndexOfAnyExcept((byte)0x17) < 0);
            nint q = m.KmemCacheAlloc(s, Gfp.Kernel);
            if (kind == SlabAllocator.Slob)
            {
                Assert.Equal(2, calls);
                Assert.True(Bytes(q, 8).IndexOfAnyExcept((byte)0x42) < 0);
            }
            else
            {
                Assert.Equal(p, q);
                Assert.Equal(perSlab, calls);
                Assert.True(Bytes(q, 8).IndexOfAnyExcept((byte)0x17) < 0);
            }
            m.KmemCacheFree(s, q);
            // A slab built after the old one went back through a grace period is constructed afresh.
            m.KmemCacheShrink(s);
            m.SynchronizeRcu();
            int before = calls;
            nint r = m.KmemCacheAlloc(s, Gfp.Kernel);
            Assert.Equal(before + perSlab, calls);
            Assert.True(Bytes(r, 8).IndexOfAnyExcept((byte)0x42) < 0);
            m.KmemCacheFree(s, r);
        }
    }

    [Theory]
    [MemberData(nameof(All))]
    public void DestroyingAnEmptyRcuCacheGivesEveryPageBackAfterAGracePeriod(SlabAllocator kind)
    {
        using var m = Boot(kind);
        m.DrainAllPages();
        long freeBefore = m.PageAllocator.NrFreePages;
        long slabBefore = SlabPages(m);
        var s = m.KmemCacheCreate("rcu_destroy", 700, 0, SlabFlags.TypesafeByRcu, null)!;
        var objs = new nint[60];
        for (int i = 0; i < objs.Length; i++)
        {
            objs[i] = m.KmemCacheAlloc(s, Gfp.Kernel);
        }
        foreach (nint p in objs.Reverse())
        {
            m.KmemCacheFree(s, p);
        }
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
        Assert.DoesNotContain(m.Log.Lines, l => l.Contains("still has objects", StringComparison.Ordinal));
        m.DrainAllPages();
        Assert.True(m.PageAllocator.NrFreePages < freeBefore);
        m.SynchronizeRcu();
        m.DrainAllPages();
        Assert.Equal(freeBefore, m.PageAllocator.NrFreePages);
        Assert.Equal(slabBefore, SlabPages(m));
        Assert.Empty(m.SlabLayer!.ValidateAll());
    }
}
