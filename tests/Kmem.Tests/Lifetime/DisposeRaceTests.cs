// Calls racing with Dispose: each either completes or throws ObjectDisposedException, never
// anything else, and never touches unmapped memory (which would end the test process with
// a segmentation fault rather than fail a test). Dispose waits for the calls in flight,
// wakes the sleeping ones, and refuses to run from inside one of the machine's own calls;
// a fast-path marker no fast path holds (its thread exited, or it is the disposer's) does
// not hold it.
using System.Collections.Concurrent;

namespace Kmem.Tests.Lifetime;

public class DisposeRaceTests
{
    /// <summary>Workers on every layer's entry points while another thread disposes the machine mid-run.</summary>
    [Theory]
    [InlineData(SlabAllocator.Slub)]
    [InlineData(SlabAllocator.Slab)]
    [InlineData(SlabAllocator.Slob)]
    public void CallsRacingWithDisposeCompleteOrThrowObjectDisposedException(SlabAllocator slab) =>
        RaceWithDispose(rounds: 12, threads: 4, round => new MachineOptions { Memory = "128M", Cpus = 2, Seed = round, Slab = slab },
            m =>
            {
                var cache = m.KmemCacheCreate("race", 48, 0, SlabFlags.None, null)!;
                var proc = m.Proc;
                return w =>
                {
                    var held = new List<nint>();
                    return i =>
                    {
                        switch ((i + w) % 6)
                        {
                            case 0:
                                held.Add(m.Kmalloc(64, Gfp.Kernel));
                                break;
                            case 1:
                                held.Add(m.KmemCacheAlloc(cache, Gfp.Kernel));
                                m.KmemCacheFree(cache, held[^1]);
                                held.RemoveAt(held.Count - 1);
                                break;
                            case 2:
                                var page = m.AllocPages(Gfp.Kernel, i % 3);
                                if (!page.IsNull)
                                {
                                    // A span is the caller's to stop using before Dispose: only its length is read.
                                    Assert.Equal(4096 << (i % 3), m.PageSpan(page, i % 3).Length);
                                    m.FreePages(page, i % 3);
                                }
                                break;
                            case 3:
                                nint v = m.Vmalloc(3 * 4096);
                                m.Vfree(v);
                                break;
                            case 4:
                                _ = i % 32 == 4 ? proc.Buddyinfo() : null;
                                break;
                            default:
                                if (held.Count > 16)
                                {
                                    foreach (nint p in held)
                                    {
                                        m.Kfree(p);
                                    }
                                    held.Clear();
                                }
                                break;
                        }
                    };
                };
            },
            round => 5 + round % 4 * 5);

    [Fact]
    public async Task DisposeWaitsForACallInFlightNestedInsideAnotherMachinesCall()
    {
        using var b = Machine.Boot(new MachineOptions { Memory = "128M", Cpus = 1, Seed = 2 });
        var a = Machine.Boot(new MachineOptions { Memory = "128M", Cpus = 1, Seed = 1 });
        using var inside = new ManualResetEventSlim();
        using var gate = new ManualResetEventSlim();
        // A's mempool fills its reserve through B's mempool, whose allocator blocks: the thread is in a call on B
        // nested in a call on A, and A must not be unmapped under it.
        var creator = Task.Run(() => a.MempoolCreate(1, (gfp, _) =>
        {
            var inner = b.MempoolCreate(1, (g, _) =>
            {
                inside.Set();
                gate.Wait();
                return b.Kmalloc(32, g);
            }, (e, _) => b.Kfree(e), null);
            b.MempoolDestroy(inner);
            return 0x1000;
        }, (_, _) => { }, null));
        Assert.True(inside.Wait(TimeSpan.FromSeconds(30)));
        var disposer = Task.Run(a.Dispose);
        Assert.NotSame(disposer, await Task.WhenAny(disposer, Task.Delay(200)));
        Assert.False(disposer.IsCompleted, "Dispose returned while a call on the machine was in flight");
        gate.Set();
        await disposer.WaitAsync(TimeSpan.FromSeconds(30));
        // The call that was in flight completed; the machine is closed after it.
        Assert.NotNull(await creator);
        Assert.Throws<ObjectDisposedException>(() => a.Kmalloc(8, Gfp.Kernel));
        Assert.NotEqual(0, b.Kmalloc(8, Gfp.Kernel));
    }

    /// <summary>SLUB's magazine and SLAB's array-cache fast paths (kmalloc, kfree, kmem_cache_alloc/free, zeroing
    /// included) are guarded by their thread's marker instead of a lifetime scope: Dispose waits for a pair in
    /// flight, and every pair that starts later goes the guarded way and throws.</summary>
    [Theory]
    [InlineData(SlabAllocator.Slub)]
    [InlineData(SlabAllocator.Slab)]
    public void FastPathPairsRacingWithDisposeCompleteOrThrowObjectDisposedException(SlabAllocator slab) =>
        RaceWithDispose(rounds: 16, threads: 3, round => new MachineOptions { Memory = "64M", Cpus = 2, Seed = round, Slab = slab },
            m =>
            {
                var cache = m.KmemCacheCreate("fast-race", 64, 0, SlabFlags.None, null)!;
                return w =>
                {
                    // Magazines (SLUB) and the thread's marker (both) first, so that the pairs below take the fast paths.
                    m.Kfree(m.Kmalloc((nuint)(16 << w), Gfp.Kernel));
                    m.KmemCacheFree(cache, m.KmemCacheAlloc(cache, Gfp.Kernel));
                    return _ =>
                    {
                        m.Kfree(m.Kzalloc((nuint)(16 << w), Gfp.Kernel));
                        m.KmemCacheFree(cache, m.KmemCacheAlloc(cache, Gfp.Kernel | Gfp.Zero));
                    };
                };
            },
            round => 1 + round % 4 * 3);

    /// <summary>Rounds of: boot a machine, start workers that each prepare (before a common start) and then take
    /// steps until the machine refuses one, dispose the machine from this thread a few milliseconds in, join. Every
    /// step must complete or throw ObjectDisposedException, some must complete, and every worker must end refused.
    /// <paramref name="round"/> runs on this thread after each boot and returns the worker factory, which a worker
    /// calls on its own thread with its index and which returns the step (called with 0, 1, 2 …);
    /// <paramref name="pauseMs"/> gives the round's wait before Dispose.</summary>
    private static void RaceWithDispose(int rounds, int threads, Func<int, MachineOptions> options,
        Func<Machine, Func<int, Action<int>>> round, Func<int, int> pauseMs)
    {
        var unexpected = new ConcurrentQueue<Exception>();
        long completed = 0, refused = 0;
        for (int r = 0; r < rounds; r++)
        {
            var m = Machine.Boot(options(r));
            var worker = round(m);
            using var go = new Barrier(threads + 1);
            var workers = Enumerable.Range(0, threads).Select(w => new Thread(() =>
            {
                try
                {
                    var step = worker(w);
                    go.SignalAndWait();
                    for (int i = 0; ; i++)
                    {
                        step(i);
                        Interlocked.Increment(ref completed);
                    }
                }
                catch (ObjectDisposedException)
                {
                    Interlocked.Increment(ref refused);
                }
                catch (Exception e)
                {
                    unexpected.Enqueue(e);
                }
            })).ToList();
            workers.ForEach(t => t.Start());
            go.SignalAndWait();
            Thread.Sleep(pauseMs(r));
            m.Dispose();
            workers.ForEach(t => t.Join());
        }
        Assert.Empty(unexpected);
        Assert.True(completed > 0, "no call completed before Dispose");
        Assert.Equal(rounds * threads, refused);
    }

    [Fact]
    public void DisposeFromInsideTheMachinesOwnCallbackIsRefused()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "128M", Cpus = 1, Seed = 1 });
        var e = Assert.Throws<InvalidOperationException>(() => m.MempoolCreate(1, (_, _) =>
        {
            m.Dispose();
            return 0;
        }, (_, _) => { }, null));
        Assert.Contains("from inside one of its own calls", e.Message, StringComparison.Ordinal);
        // The refusal changed nothing: the machine still works.
        nint p = m.Kmalloc(64, Gfp.Kernel);
        Assert.NotEqual(0, p);
        m.Kfree(p);
    }

    [Fact]
    public async Task DisposeWakesASleepingMempoolAlloc()
    {
        var m = Machine.Boot(new MachineOptions { Memory = "128M", Cpus = 1, Seed = 1 });
        var pool = m.MempoolCreate(1, (_, _) => 0x1000, (_, _) => { }, null)!;
        Assert.Equal(0x1000, m.MempoolAlloc(pool, Gfp.Kernel));
        // The reserve is empty now; an allocator that fails makes the next GFP_KERNEL caller sleep.
        var failing = m.MempoolCreate(0, (_, _) => 0, (_, _) => { }, null)!;
        var sleeper = Task.Run(() => m.MempoolAlloc(failing, Gfp.Kernel));
        Assert.True(SpinWait.SpinUntil(() => failing.Waiters == 1, TimeSpan.FromSeconds(10)));
        m.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => sleeper.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    /// <summary>A fast-path marker left set by a thread that has exited (as a fast path that threw would leave it)
    /// or by the disposing thread itself cannot hold Dispose: neither can be in a fast path.</summary>
    [Theory]
    [InlineData(SlabAllocator.Slub)]
    [InlineData(SlabAllocator.Slab)]
    public void AMarkerLeftSetByAThreadNotInAFastPathDoesNotHoldDispose(SlabAllocator slab)
    {
        var m = Machine.Boot(new MachineOptions { Memory = "64M", Cpus = 2, Seed = 1, Slab = slab });
        Kmem.Slab.SlabThreadMarker? Mark()
        {
            m.Kfree(m.Kmalloc(64, Gfp.Kernel)); // the guarded path gives the thread its marker
            m.Kfree(m.Kmalloc(64, Gfp.Kernel));
            var marker = m.Cpus.FastThreadCache() as Kmem.Slab.SlabThreadMarker;
            if (marker is not null)
            {
                Volatile.Write(ref marker.InCall, 1);
            }
            return marker;
        }
        Kmem.Slab.SlabThreadMarker? exited = null, mine = null;
        var t = new Thread(() => exited = Mark());
        t.Start();
        t.Join();
        // The disposing thread marks itself first; a thread of the test's own joins it, so a hang fails the test.
        var disposer = new Thread(() =>
        {
            mine = Mark();
            m.Dispose();
        }) { IsBackground = true }; // left behind, not holding the test host, if Dispose hangs
        disposer.Start();
        Assert.True(disposer.Join(TimeSpan.FromSeconds(30)), "Dispose waited for a marker no fast path holds");
        Assert.NotNull(exited);
        Assert.NotNull(mine);
    }
}
