// The owners of the reclaim layer each hold their own lock (Reclaim/LockOrder.cs):
// tasks faulting and swapping, the page cache, compaction, drop_caches and a
// background kswapd and kcompactd all at once must neither deadlock nor lose a
// byte, and leave every list and counter consistent.
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

[Collection("reclaim-files")]
public class LockOrderTests
{
    [Fact]
    public void FaultsPageCacheCompactionAndBackgroundKswapdTogetherNeitherDeadlockNorLoseBytes()
    {
        // No seed: kswapd and kcompactd run on their own threads, beside the workers.
        using var m = Machine.Boot(new MachineOptions { Memory = "64M", Cpus = 2 });
        Assert.True(m.Mm.KswapdThreaded);
        using var swap = Swap(m, 48);
        using var path = Temp("lock-order");
        using var file = m.OpenFile(path.Path);
        const int bytes = 20 << 20;
        var tasks = Enumerable.Range(0, 2).Select(i => m.CreateTask($"worker{i}")!).ToArray();
        var bases = tasks.Select(t => t.Mmap(bytes)).ToArray();
        var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        void Guard(Action work)
        {
            try
            {
                work();
            }
            catch (Exception e)
            {
                errors.Enqueue(e);
            }
        }
        var threads = new List<Thread>();
        for (int i = 0; i < tasks.Length; i++)
        {
            int n = i;
            threads.Add(new Thread(() => Guard(() =>
            {
                for (int round = 0; round < 2; round++)
                {
                    Fill(tasks[n], bases[n], bytes, (byte)(n + round));
                    Check(tasks[n], bases[n], bytes, (byte)(n + round));
                }
            })));
        }
        threads.Add(new Thread(() => Guard(() =>
        {
            var page = new byte[Machine.PageSize];
            var back = new byte[Machine.PageSize];
            for (int i = 0; i < 1500; i++)
            {
                long at = (long)(i % 500) * Machine.PageSize;
                page.AsSpan().Fill((byte)(i % 251));
                file.Write(at, page);
                file.Read(at, back);
                Assert.True(page.AsSpan().SequenceEqual(back), $"page-cache page {i % 500} read back differs");
                if (i % 300 == 0)
                {
                    m.DropCaches(3);
                    m.CompactMemory();
                }
            }
        })));
        threads.ForEach(t => t.Start());
        foreach (var t in threads)
        {
            Assert.True(t.Join(TimeSpan.FromSeconds(90)), "a worker is stuck: a lock taken out of order?");
        }
        Assert.Empty(errors);
        m.Mm.Validate();
    }
}
