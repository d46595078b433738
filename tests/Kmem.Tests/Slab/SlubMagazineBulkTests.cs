// The magazines' slow paths move objects in bulk: a refill takes the cpu freelist a slab at a time (and the
// next slabs through ___slab_alloc), a flush groups the objects by slab and frees each slab's objects as one
// detached freelist (kmem_cache_free_bulk). These check that nothing is lost, duplicated or miscounted by that:
// every object comes back once, the slabs validate, the counts match, and misuse is still refused.
using Kmem.Slab;

namespace Kmem.Tests.Slab;

public class SlubMagazineBulkTests
{
    public static TheoryData<int, bool, bool> Sizes => new()
    {
        { 16, false, false },
        { 96, false, false },
        { 700, false, false },
        { 4000, false, false },
        { 64, true, true },
        { 2048, true, true },
    };

    [Theory]
    [MemberData(nameof(Sizes))]
    public void ARandomBatchThroughTheMagazineComesBackWholeAndValid(int size, bool hardened, bool random)
    {
        using var m = HardeningTests.Boot(hardened, random);
        var s = m.KmemCacheCreate("bulk", (uint)size, 0, SlabFlags.None, null)!;
        var rng = new Random(size);
        for (int round = 0; round < 3; round++)
        {
            // More objects than any magazine holds: refills cross slabs, flushes meet many slabs.
            var objects = Enumerable.Range(0, 3000).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToArray();
            Assert.DoesNotContain((nint)0, objects);
            Assert.Equal(objects.Length, objects.Distinct().Count());
            // Active counts the cpu slabs' free objects too (as slabinfo does), and the magazine's.
            Assert.InRange(m.SlabLayer!.Stats(s).ActiveObjs, objects.Length + ((Slub)m.SlabLayer).MagazineObjects(s), long.MaxValue);
            SlabPropertyTests.Validate(m);
            rng.Shuffle(objects);
            foreach (nint p in objects)
            {
                m.KmemCacheFree(s, p);
            }
            SlabPropertyTests.Validate(m);
            // The shrink empties the magazine (in bulk) and the cpu slabs: nothing may be left in use.
            Assert.Equal(0, m.KmemCacheShrink(s));
            Assert.Equal(0, ((Slub)m.SlabLayer).MagazineObjects(s));
            Assert.Equal(0, m.SlabLayer.Stats(s).ActiveObjs);
            Assert.Equal(0, m.SlabLayer.Stats(s).NumSlabs);
        }
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
        Assert.False(m.Log.Contains("still has objects"));
    }

    [Fact]
    public void AMagazineGrownPastAThousandObjectsFlushesWhole()
    {
        // 64 CPUs give a 16-byte cache room for thousands of magazine objects, so one thread's magazine grows until
        // a flush gives back more objects than the flush keeps on the stack.
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 64, Seed = 3 });
        var s = m.KmemCacheCreate("wide", 16, 0, SlabFlags.None, null)!;
        var slub = (Slub)m.SlabLayer!;
        var objects = Enumerable.Range(0, 40_000).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToArray();
        Assert.Equal(objects.Length, objects.Distinct().Count());
        new Random(8).Shuffle(objects);
        long most = 0;
        foreach (nint p in objects)
        {
            m.KmemCacheFree(s, p);
            most = Math.Max(most, slub.MagazineObjects(s));
        }
        Assert.True(most > 1_000, $"the magazine held at most {most} objects");
        SlabPropertyTests.Validate(m);
        Assert.Equal(0, m.KmemCacheShrink(s));
        Assert.Equal(0, slub.Stats(s).ActiveObjs);
        Assert.Equal(0, slub.Stats(s).NumSlabs);
        var again = Enumerable.Range(0, 40_000).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToArray();
        Assert.Equal(again.Length, again.Distinct().Count());
        SlabPropertyTests.Validate(m);
    }

    [Fact]
    public void ObjectsFlushedInBulkAreStillRefusedASecondFree()
    {
        using var m = KmemCacheTests.Boot(onBug: OnBug.Report);
        var objects = Enumerable.Range(0, 2000).Select(_ => m.Kmalloc(200, Gfp.Kernel)).ToArray();
        new Random(5).Shuffle(objects);
        foreach (nint p in objects)
        {
            m.Kfree(p);
        }
        // The magazine has overflowed many times: most objects went back to their slabs in bulk.
        // Counted as they are logged (the kernel log is a bounded ring): an object whose slab is still there is
        // "already free", one whose empty slab went back to the page allocator is no slab object at all.
        int reports = 0;
        m.Log.LineLogged += line => reports += line.Contains("Object already free", StringComparison.Ordinal)
            || line.StartsWith("kfree: Freeing invalid pointer", StringComparison.Ordinal) ? 1 : 0;
        foreach (nint p in objects)
        {
            m.Kfree(p);
        }
        Assert.Equal(objects.Length, reports);
        SlabPropertyTests.Validate(m);
        var again = Enumerable.Range(0, 2000).Select(_ => m.Kmalloc(200, Gfp.Kernel)).ToArray();
        Assert.Equal(again.Length, again.Distinct().Count());
        foreach (nint p in again)
        {
            m.Kfree(p);
        }
        SlabPropertyTests.Validate(m);
    }

    [Fact]
    public void FreesFromAnotherThreadGoBackInBulkAndTheOwnerGetsThemAgain()
    {
        using var m = KmemCacheTests.Boot();
        var s = m.KmemCacheCreate("bulk-remote", 128, 0, SlabFlags.None, null)!;
        var objects = Enumerable.Range(0, 5000).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToArray();
        var t = new Thread(() =>
        {
            foreach (nint p in objects.Reverse())
            {
                m.KmemCacheFree(s, p);
            }
        });
        t.Start();
        t.Join();
        // The freeing thread has exited: its magazine is reaped when the next one starts, or by the shrink.
        SlabPropertyTests.Validate(m);
        var again = Enumerable.Range(0, 5000).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToArray();
        Assert.Equal(again.Length, again.Distinct().Count());
        foreach (nint p in again)
        {
            m.KmemCacheFree(s, p);
        }
        m.KmemCacheShrink(s);
        Assert.Equal(0, m.SlabLayer!.Stats(s).ActiveObjs);
        Assert.Equal(0, m.SlabLayer.Stats(s).NumSlabs);
        SlabPropertyTests.Validate(m);
    }
}
