// PageAllocator.BuddyOnly, the gate a free-running replay opens while Kmem's slab layer takes a
// slab page in place of one the recorded kernel allocated before tracing: the opening
// thread's allocations of order 0..3 skip the per-CPU lists (no refill, no list touched) and
// come off the buddy lists; other threads keep using their lists; one scope at a time.
using static Kmem.Tests.PageAlloc.PageAllocCheck;

namespace Kmem.Tests.PageAlloc;

public class BuddyOnlyTests
{
    [Fact]
    public void InsideTheScopeThisThreadsAllocationsSkipThePerCpuListsAndOutsideTheyUseThem()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        var zone = ZoneOf(m, ZoneType.Dma32);
        using (m.OnCpu(0))
        {
            var pcp = zone.Pcp[0];
            long refills = pcp.Stats.PcpRefill, free = zone.FreePages;
            int count = pcp.Count;
            Page inside;
            using (m.PageAllocator.BuddyOnly.Open())
            {
                inside = m.AllocPages(Gfp.Kernel, 0);
                Assert.Throws<InvalidOperationException>(() => m.PageAllocator.BuddyOnly.Open()); // one scope at a time
            }
            Assert.False(inside.IsNull);
            Assert.Equal(count, pcp.Count);
            Assert.Equal(refills, pcp.Stats.PcpRefill);
            Assert.Equal(free - 1, zone.FreePages);

            // Closed: the next allocation takes its page from the list (refilling it first when empty).
            var outside = m.AllocPages(Gfp.Kernel, 0);
            Assert.NotEqual(count, pcp.Count);
            m.FreePages(inside, 0);
            m.FreePages(outside, 0);
        }
        ValidateAll(m);
    }

    [Fact]
    public void AnotherThreadsAllocationsKeepUsingTheirListsWhileTheScopeIsOpen()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        var zone = ZoneOf(m, ZoneType.Dma32);
        using var scope = m.PageAllocator.BuddyOnly.Open();
        int before = -1, after = -1;
        var t = new Thread(() =>
        {
            using (m.OnCpu(1))
            {
                before = zone.Pcp[1].Count;
                var p = m.AllocPages(Gfp.Kernel, 0);
                after = zone.Pcp[1].Count;
                m.FreePages(p, 0);
            }
        });
        t.Start();
        t.Join();
        Assert.NotEqual(before, after); // served from CPU 1's list
    }
}
