// RCU against its readers: a grace period ends when every reader that was inside a read-side critical
// section when it began has left. Checked on real bytes: a kfree_rcu'd block keeps its content and is not
// handed out again while such a reader is inside, a SLAB_TYPESAFE_BY_RCU cache's slab pages stay slab
// memory, and both are freed when the last reader leaves, with no SynchronizeRcu. Also: callbacks run in
// rcu_do_batch's batches, kfree_rcu's bound holds under a flood (the caller waits for a grace period),
// misuse of the read side throws, and an allocation under pressure succeeds because the OOM path waits for
// the frees RCU holds back.
namespace Kmem.Tests.Rcu;

public class RcuTests
{
    public static TheoryData<SlabAllocator> All => new() { SlabAllocator.Slub, SlabAllocator.Slab, SlabAllocator.Slob };

    private static Machine Boot(SlabAllocator kind, string memory = "256M") =>
        Machine.Boot(new MachineOptions { Memory = memory, Slab = kind, Seed = 5 });

    private static unsafe Span<byte> Bytes(nint p, int n) => new((void*)p, n);

    private static void Fill(nint p, int n, byte seed)
    {
        var span = Bytes(p, n);
        for (int i = 0; i < span.Length; i++)
        {
            span[i] = (byte)(seed + i);
        }
    }

    private static bool Holds(nint p, int n, byte seed)
    {
        var span = Bytes(p, n);
        for (int i = 0; i < span.Length; i++)
        {
            if (span[i] != (byte)(seed + i))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>A reader on its own thread: enters when asked, stays inside until told to leave.</summary>
    private sealed class Reader : IDisposable
    {
        private readonly ManualResetEventSlim _inside = new(), _leave = new();
        private readonly Thread _thread;

        public Reader(Machine m)
        {
            _thread = new Thread(() =>
            {
                using (m.RcuReadLock())
                {
                    _inside.Set();
                    _leave.Wait();
                }
            }) { IsBackground = true };
            _thread.Start();
            Assert.True(_inside.Wait(TimeSpan.FromSeconds(30)));
        }

        /// <summary>Leaves the section and waits for the thread (its rcu_read_unlock runs what became ready).</summary>
        public void Leave()
        {
            _leave.Set();
            Assert.True(_thread.Join(TimeSpan.FromSeconds(30)));
        }

        public void Dispose()
        {
            _leave.Set();
            _thread.Join();
            _inside.Dispose();
            _leave.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(All))]
    public void AReaderInsideKeepsAKfreeRcuBlockIntactUntilItLeaves(SlabAllocator kind)
    {
        using var m = Boot(kind);
        nint p = m.Kmalloc(96, Gfp.Kernel);
        Fill(p, 96, 7);
        using var reader = new Reader(m);
        m.KfreeRcu(p);
        Assert.Equal(1, m.SlabLayer!.RcuPending);
        // Not freed and not reused: the block keeps its bytes, and new blocks of its size are others.
        var others = new List<nint>();
        for (int i = 0; i < 200; i++)
        {
            nint q = m.Kmalloc(96, Gfp.Kernel);
            Assert.NotEqual(p, q);
            Fill(q, 96, 99);
            others.Add(q);
        }
        Assert.True(Holds(p, 96, 7));
        // More kfree_rcu calls are processing points, but the reader still holds the grace period back.
        m.KfreeRcu(others[^1]);
        others.RemoveAt(others.Count - 1);
        Assert.True(Holds(p, 96, 7));
        Assert.Equal(2, m.SlabLayer.RcuPending);

        reader.Leave();
        // Its rcu_read_unlock ended the grace period and ran the batch: p is free now (a second kfree is a
        // double free), with no SynchronizeRcu.
        Assert.Equal(0, m.SlabLayer.RcuPending);
        Assert.ThrowsAny<KernelBugException>(() => m.Kfree(p));
        foreach (nint q in others)
        {
            m.Kfree(q);
        }
        Assert.Empty(m.SlabLayer.ValidateAll());
    }

    [Theory]
    [MemberData(nameof(All))]
    public void AReaderInsideItsOwnSectionHoldsBackWhatItKfreeRcus(SlabAllocator kind)
    {
        using var m = Boot(kind);
        nint p = m.Kmalloc(40, Gfp.Kernel);
        Fill(p, 40, 3);
        using (m.RcuReadLock())
        {
            Assert.True(m.RcuReadLockHeld);
            using (m.RcuReadLock())
            {
                m.KfreeRcu(p);
            }
            // Leaving a nested section ends nothing.
            Assert.Equal(1, m.SlabLayer!.RcuPending);
            Assert.True(Holds(p, 40, 3));
        }
        Assert.False(m.RcuReadLockHeld);
        Assert.Equal(0, m.SlabLayer!.RcuPending);
        Assert.ThrowsAny<KernelBugException>(() => m.Kfree(p));
    }

    [Fact]
    public void AReaderThatEntersAfterTheFreeDoesNotHoldItBack()
    {
        using var m = Boot(SlabAllocator.Slub);
        nint p = m.Kmalloc(64, Gfp.Kernel);
        using var early = new Reader(m);
        m.KfreeRcu(p);
        // Only readers inside when the grace period began count: the late one does not hold p back.
        using var late = new Reader(m);
        Assert.Equal(1, m.SlabLayer!.RcuPending);
        early.Leave();
        Assert.Equal(0, m.SlabLayer.RcuPending);
        Assert.ThrowsAny<KernelBugException>(() => m.Kfree(p));
        late.Leave();
    }

    [Theory]
    [MemberData(nameof(All))]
    public void ATypesafeByRcuCachesSlabPagesLiveWhileAReaderIsInsideAndGoWhenItLeaves(SlabAllocator kind)
    {
        using var m = Boot(kind);
        var s = m.KmemCacheCreate("rcu_typesafe", 200, 0, SlabFlags.TypesafeByRcu, null)!;
        nint other = m.Kmalloc(32, Gfp.Kernel), neighbour = m.Kmalloc(32, Gfp.Kernel);
        m.DrainAllPages();
        long slabBefore = SlabPages(m);
        var objs = new nint[120];
        using (m.OnCpu(0))
        {
            for (int i = 0; i < objs.Length; i++)
            {
                objs[i] = m.KmemCacheAlloc(s, Gfp.Kernel);
                Fill(objs[i], 200, (byte)i);
            }
        }
        using var reader = new Reader(m);
        using (m.OnCpu(0))
        {
            foreach (nint p in objs)
            {
                m.KmemCacheFree(s, p);
            }
        }
        m.KmemCacheShrink(s);
        Assert.True(SlabPages(m) > slabBefore);
        // A processing point while the reader is inside frees nothing of it.
        m.KfreeRcu(other);
        Assert.True(m.SlabLayer!.RcuPending > 0);
        Assert.True(SlabPages(m) > slabBefore);
        for (int i = 0; i < objs.Length; i++)
        {
            Assert.True(Holds(objs[i], 200, (byte)i), $"object {i} changed while a reader was inside");
        }

        reader.Leave();
        Assert.Equal(0, m.SlabLayer.RcuPending);
        Assert.Equal(slabBefore, SlabPages(m));
        Assert.Empty(m.SlabLayer.ValidateAll());
        m.Kfree(neighbour);
    }

    private static long SlabPages(Machine m) => m.PageAllocator.Nodes.Sum(n => n.NrSlabReclaimable + n.NrSlabUnreclaimable);

    [Fact]
    public void CallbacksRunInBatchesOfBlimitAfterTheirGracePeriod()
    {
        using var m = Boot(SlabAllocator.Slub);
        var rcu = m.SlabLayer!.Rcu;
        int ran = 0;
        using (var reader = new Reader(m))
        {
            for (int i = 0; i < 100; i++)
            {
                m.CallRcu(() => ran++);
            }
            Assert.Equal(0, rcu.Process());
            Assert.Equal(0, ran);
            long batches = rcu.Batches;
            reader.Leave();
            Assert.Equal(100, ran);
            // rcu_do_batch: max(blimit = 10, qlen >> 7) callbacks a batch, so ten batches for a hundred.
            Assert.Equal(10, rcu.Batches - batches);
        }
        Assert.Equal(0, rcu.Pending);
    }

    [Fact]
    public void KfreeRcuBatchesWhileAReaderHoldsTheGracePeriodAndTheBoundHoldsUnderAFlood()
    {
        using var m = Boot(SlabAllocator.Slub);
        var rcu = m.SlabLayer!.Rcu;
        m.RcuQhimark = 300;
        var s = m.KmemCacheCreate("rcu_flood", 128, 0, SlabFlags.None, null)!;
        const int N = 2000;
        var objs = new nint[N];
        for (int i = 0; i < N; i++)
        {
            objs[i] = m.KmemCacheAlloc(s, Gfp.Kernel);
        }
        long offloaded = rcu.Kfree.Offloaded;
        long active = m.SlabLayer.Stats(s).ActiveObjs;
        var reader = new Reader(m);
        int done = 0;
        long maxPending = 0;
        var flood = new Thread(() =>
        {
            foreach (nint p in objs)
            {
                m.KfreeRcu(p);
                Interlocked.Increment(ref done);
                maxPending = Math.Max(maxPending, rcu.Pending);
            }
        });
        flood.Start();
        // The flooder fills the bound, then waits for a grace period the reader holds back.
        var until = DateTime.UtcNow.AddSeconds(30);
        while (Volatile.Read(ref done) < 300 && DateTime.UtcNow < until)
        {
            Thread.Sleep(5);
        }
        Thread.Sleep(100);
        Assert.True(flood.IsAlive);
        Assert.Equal(300, Volatile.Read(ref done));
        Assert.Equal(300, rcu.Pending);
        // Two batches went to RCU at once (KFREE_N_BATCHES); the rest gathered into the open batch.
        Assert.Equal(2, rcu.Kfree.Offloaded - offloaded);
        Assert.Equal(298, rcu.Kfree.OpenCount);
        Assert.Equal(active, m.SlabLayer.Stats(s).ActiveObjs);

        reader.Leave();
        Assert.True(flood.Join(TimeSpan.FromSeconds(30)));
        reader.Dispose();
        Assert.True(maxPending <= 300, $"{maxPending} objects waited");
        Assert.Equal(0, rcu.Pending);
        Assert.ThrowsAny<KernelBugException>(() => m.KmemCacheFree(s, objs[0]));
        Assert.ThrowsAny<KernelBugException>(() => m.KmemCacheFree(s, objs[N - 1]));
        Assert.True(rcu.Waits > 0);
        Assert.Empty(m.SlabLayer.ValidateAll());
    }

    private static InvalidOperationException Caught(Kmem.Rcu.RcuReadScope scope)
    {
        try
        {
            scope.Dispose();
        }
        catch (InvalidOperationException e)
        {
            return e;
        }
        throw new Xunit.Sdk.XunitException("rcu_read_unlock did not throw");
    }

    [Fact]
    public void MisusedReadSectionsThrowAndLeaveTheMachineUsable()
    {
        using var m = Boot(SlabAllocator.Slub);
        var outer = m.RcuReadLock();
        var inner = m.RcuReadLock();
        var ex = Caught(outer);
        Assert.Contains("out of order", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<InvalidOperationException>(() => m.SynchronizeRcu());
        Assert.Contains("Illegal synchronize_rcu() in RCU read-side critical section", ex.Message, StringComparison.Ordinal);
        inner.Dispose();
        ex = Caught(inner);
        Assert.Contains("already left", ex.Message, StringComparison.Ordinal);
        outer.Dispose();
        Assert.False(m.RcuReadLockHeld);
        Assert.Throws<InvalidOperationException>(() => default(Kmem.Rcu.RcuReadScope).Dispose());

        // Over the bound inside a section, kfree_rcu would have to wait for itself.
        m.RcuQhimark = 2;
        var blocks = Enumerable.Range(0, 3).Select(_ => m.Kmalloc(32, Gfp.Kernel)).ToArray();
        using (m.RcuReadLock())
        {
            m.KfreeRcu(blocks[0]);
            m.KfreeRcu(blocks[1]);
            ex = Assert.Throws<InvalidOperationException>(() => m.KfreeRcu(blocks[2]));
            Assert.Contains("sleeping function called from invalid context", ex.Message, StringComparison.Ordinal);
        }
        Assert.Equal(0, m.SlabLayer!.RcuPending);
        m.KfreeRcu(blocks[2]);
        Assert.Equal(0, m.SlabLayer.RcuPending);
        Assert.Empty(m.SlabLayer.ValidateAll());
    }

    [Fact]
    public void ADoubleKfreeRcuIsReportedWhenTheBatchFreesItAndTheBatchGoesOn()
    {
        using var m = Boot(SlabAllocator.Slub);
        nint p = m.Kmalloc(64, Gfp.Kernel);
        nint q = m.Kmalloc(64, Gfp.Kernel);
        using (m.RcuReadLock())
        {
            m.KfreeRcu(p);
            m.KfreeRcu(p);
            m.KfreeRcu(q);
        }
        Assert.Contains(m.Log.Lines, l => l.Contains("already free", StringComparison.OrdinalIgnoreCase));
        Assert.ThrowsAny<KernelBugException>(() => m.Kfree(q));
        Assert.Empty(m.SlabLayer!.ValidateAll());
    }

    [Fact]
    public void KfreeRcuFreesAVmallocAreaToo()
    {
        using var m = Boot(SlabAllocator.Slub);
        nint v = m.Vmalloc(3 * 4096);
        Fill(v, 3 * 4096, 1);
        int areas = VmallocAreas(m);
        using (var reader = new Reader(m))
        {
            m.KfreeRcu(v);
            Assert.True(m.IsVmallocAddr(v));
            Assert.True(Holds(v, 3 * 4096, 1));
            reader.Leave();
        }
        Assert.Equal(areas - 1, VmallocAreas(m));
        Assert.Equal(0, m.SlabLayer!.RcuPending);
    }

    private static int VmallocAreas(Machine m) =>
        m.Proc.Read("vmallocinfo").Split('\n').Count(l => l.Contains("pages=3 vmalloc", StringComparison.Ordinal));

    [Theory]
    [MemberData(nameof(All))]
    public void AnAllocationUnderPressureSucceedsBecauseTheOomPathWaitsForRcu(SlabAllocator kind)
    {
        using var m = Boot(kind, "64M");
        var blocks = new List<nint>();
        var reader = new Reader(m);
        // Order-3 blocks until memory is gone, then every one handed to kfree_rcu while the reader is inside.
        while (true)
        {
            nint p = m.Kmalloc(32 << 10, Gfp.Kernel | Gfp.NoWarn | Gfp.NoRetry);
            if (p == 0)
            {
                break;
            }
            blocks.Add(p);
        }
        Assert.True(blocks.Count > 100);
        foreach (nint p in blocks)
        {
            m.KfreeRcu(p);
        }
        Assert.Equal(blocks.Count, m.SlabLayer!.RcuPending);
        // The reader leaves a little later; the allocation waits for it in the OOM path instead of failing.
        var leave = new Thread(() =>
        {
            Thread.Sleep(200);
            reader.Leave();
        });
        leave.Start();
        nint got = m.Kmalloc(32 << 10, Gfp.Kernel);
        Assert.NotEqual(0, got);
        leave.Join();
        reader.Dispose();
        Assert.Equal(0, m.SlabLayer.RcuPending);
        Assert.DoesNotContain(m.Log.Lines, l => l.Contains("invoked oom-killer", StringComparison.Ordinal));
        m.Kfree(got);
    }

    [Theory]
    [MemberData(nameof(All))]
    public void DirectReclaimFreesTypesafeSlabsWhoseGracePeriodEnded(SlabAllocator kind)
    {
        using var m = Boot(kind, "64M");
        var s = m.KmemCacheCreate("rcu_fill", 1024, 0, SlabFlags.TypesafeByRcu, null)!;
        var objs = new List<nint>();
        while (true)
        {
            nint p = m.KmemCacheAlloc(s, Gfp.Kernel | Gfp.NoWarn | Gfp.NoRetry);
            if (p == 0)
            {
                break;
            }
            objs.Add(p);
        }
        foreach (nint p in objs)
        {
            m.KmemCacheFree(s, p);
        }
        m.KmemCacheShrink(s);
        // Nothing ran the callbacks: the slab pages wait, and memory is still short.
        Assert.True(m.SlabLayer!.RcuPending > 0);
        Assert.Equal(0, m.Kmalloc(32 << 10, Gfp.NoWarn));
        nint got = m.Kmalloc(32 << 10, Gfp.Kernel);
        Assert.NotEqual(0, got);
        Assert.Equal(0, m.SlabLayer.RcuPending);
        m.Kfree(got);
    }
}
