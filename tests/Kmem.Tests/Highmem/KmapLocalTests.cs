// kmap_local_page and kmap_atomic: per-thread slots that must be released in LIFO
// order; an out-of-order or foreign unmap is reported and changes nothing; more
// than KM_MAX_IDX nested mappings is the kernel's BUG; each thread has its own
// stack; kmap_atomic pins the thread's CPU until kunmap_atomic.
using static Kmem.Tests.Highmem.HighmemFixtures;

namespace Kmem.Tests.Highmem;

public class KmapLocalTests
{
    [Fact]
    public void NestedMappingsAreReleasedInLifoOrder()
    {
        using var m = Boot();
        var pages = HighPages(m, 3);
        var a = m.KmapLocalPage(pages[0]);
        var b = m.KmapLocalPage(pages[1]);
        var c = m.KmapLocalPage(pages[2]);
        Assert.Equal(3, m.Highmem.LocalSlots.Depth);
        Assert.Equal(3, new[] { a, b, c }.Distinct().Count());
        Fill(a, 1);
        Fill(b, 2);
        Fill(c, 3);
        m.KunmapLocal(c + 100); // any address inside the page will do
        m.KunmapLocal(b);
        Assert.True(Holds(a, 1));
        m.KunmapLocal(a);
        Assert.Equal(0, m.Highmem.LocalSlots.Depth);

        nint again = m.KmapLocalPage(pages[1]);
        Assert.True(Holds(again, 2));
        m.KunmapLocal(again);
    }

    [Fact]
    public void KunmapLocalTakesTheHostMappingAway()
    {
        using var m = Boot();
        var page = HighPage(m);
        nint a = m.KmapLocalPage(page);
        var mapped = HostMapping(a);
        Assert.Equal("rw-s", mapped.Perms);
        Assert.Equal((long)page.Pfn * Machine.PageSize, mapped.Offset);
        m.KunmapLocal(a);
        Assert.Equal("---p", HostMapping(a).Perms);
    }

    [Fact]
    public void AnOutOfOrderUnmapIsReportedAndChangesNothing()
    {
        using var m = Boot();
        var pages = HighPages(m, 2);
        var a = m.KmapLocalPage(pages[0]);
        var b = m.KmapLocalPage(pages[1]);
        Fill(a, 5);
        var bug = Assert.ThrowsAny<KernelBugException>(() => m.KunmapLocal(a));
        Assert.Contains("kunmap_local", bug.Report);
        Assert.Contains("LIFO", bug.Report);
        Assert.Equal(2, m.Highmem.LocalSlots.Depth);
        Assert.True(Holds(a, 5)); // still mapped
        m.KunmapLocal(b);
        m.KunmapLocal(a);
        Assert.Equal(0, m.Highmem.LocalSlots.Depth);
    }

    [Fact]
    public void AnOutOfOrderUnmapIsLoggedWithOnBugReport()
    {
        using var m = Boot(onBug: OnBug.Report);
        var pages = HighPages(m, 2);
        var a = m.KmapLocalPage(pages[0]);
        var b = m.KmapLocalPage(pages[1]);
        m.KunmapLocal(a);
        Assert.True(m.Log.Contains("at mm/highmem.c kunmap_local_indexed"));
        Assert.Equal(2, m.Highmem.LocalSlots.Depth);
        m.KunmapLocal(b);
        m.KunmapLocal(a);
        Assert.Equal(0, m.Highmem.LocalSlots.Depth);
    }

    [Fact]
    public void UnmappingAnAddressNeverMappedIsReported()
    {
        using var m = Boot();
        var page = HighPage(m);
        Assert.ThrowsAny<KernelBugException>(() => m.KunmapLocal(12345));
        nint a = m.KmapLocalPage(page);
        m.KunmapLocal(a);
        // The slot is free now: unmapping it again is not LIFO any more.
        var bug = Assert.ThrowsAny<KernelBugException>(() => m.KunmapLocal(a));
        Assert.Contains("not mapped", bug.Report);
        // A pkmap address is not a kmap_local one.
        nint k = m.Kmap(page);
        Assert.ThrowsAny<KernelBugException>(() => m.KunmapLocal(k));
        m.Kunmap(page);
    }

    [Fact]
    public void MoreThanKmMaxIdxNestedMappingsIsABug()
    {
        using var m = Boot();
        Assert.Equal(16, Machine.KmMaxIdx);
        var pages = HighPages(m, Machine.KmMaxIdx + 1);
        var mapped = pages.Take(Machine.KmMaxIdx).Select(m.KmapLocalPage).ToArray();
        var bug = Assert.ThrowsAny<KernelBugException>(() => m.KmapLocalPage(pages[^1]));
        Assert.Contains("KM_MAX_IDX", bug.Report);
        Assert.Equal(Machine.KmMaxIdx, m.Highmem.LocalSlots.Depth);
        foreach (var address in mapped.Reverse())
        {
            m.KunmapLocal(address);
        }
        Assert.Equal(0, m.Highmem.LocalSlots.Depth);
    }

    [Fact]
    public void OverflowWithOnBugReportReturnsZero()
    {
        using var m = Boot(onBug: OnBug.Report);
        var pages = HighPages(m, Machine.KmMaxIdx + 1);
        var mapped = pages.Take(Machine.KmMaxIdx).Select(m.KmapLocalPage).ToArray();
        Assert.Equal(0, m.KmapLocalPage(pages[^1]));
        Assert.True(m.Log.Contains("kmap_local_idx_push"));
        foreach (var address in mapped.Reverse())
        {
            m.KunmapLocal(address);
        }
    }

    [Fact]
    public void LowmemPagesTakeNoSlot()
    {
        using var m = Boot();
        var low = m.AllocPage(Gfp.Kernel);
        nint a = m.KmapLocalPage(low);
        Assert.Equal(m.PageAddress(low), a);
        Assert.Equal(0, m.Highmem.LocalSlots.Depth);
        m.KunmapLocal(a);
    }

    [Fact]
    public void EachThreadHasItsOwnStack()
    {
        using var m = Boot();
        var pages = HighPages(m, 2);
        nint mine = m.KmapLocalPage(pages[0]);
        Fill(mine, 10);
        // A thread of its own: the check must run elsewhere than this thread, and come back here.
        (nint Address, bool Same, bool Refused) theirs = default;
        var other = new Thread(() =>
        {
            int depth = m.Highmem.LocalSlots.Depth;
            nint address = m.KmapLocalPage(pages[0]);
            bool same = Holds(address, 10);
            bool refused = false;
            try
            {
                m.KunmapLocal(mine); // another thread's mapping cannot be unmapped from here
            }
            catch (KernelBugException)
            {
                refused = true;
            }
            m.KunmapLocal(address);
            theirs = (address, same && depth == 0, refused);
        });
        other.Start();
        Assert.True(other.Join(TimeSpan.FromSeconds(10)));
        Assert.NotEqual(0, theirs.Address);
        Assert.NotEqual(mine, theirs.Address);
        Assert.True(theirs.Same);
        Assert.True(theirs.Refused);
        Assert.Equal(1, m.Highmem.LocalSlots.Depth);
        Assert.Equal(2, m.Highmem.LocalSlots.Windows);
        m.KunmapLocal(mine);
    }

    [Fact]
    public void AnExitedThreadsWindowIsPassedOn()
    {
        using var m = Boot();
        var page = HighPage(m);
        m.MemcpyToPage(page, 0, [42]);
        for (int i = 0; i < 20; i++)
        {
            int depth = -1;
            byte seen = 0;
            var thread = new Thread(() =>
            {
                depth = m.Highmem.LocalSlots.Depth;
                nint a = m.KmapLocalPage(page);
                unsafe
                {
                    seen = *(byte*)a;
                }
                // Exits still holding the mapping: the next owner of the window starts empty.
            });
            thread.Start();
            Assert.True(thread.Join(TimeSpan.FromSeconds(10)));
            Assert.Equal(0, depth);
            Assert.Equal(42, seen);
        }
        // This thread's own (MemcpyToPage took one) and one handed from each exited thread to the next.
        Assert.Equal(2, m.Highmem.LocalSlots.Windows);
    }

    [Fact]
    public void KmapAtomicPinsTheCpuUntilKunmapAtomic()
    {
        using var m = Boot(cpus: 4);
        var pages = HighPages(m, 2);
        Assert.False(m.Cpus.IsPinned);
        nint a = m.KmapAtomic(pages[0]);
        Assert.NotEqual(0, a);
        Assert.True(m.Cpus.IsPinned);
        int cpu = m.CurrentCpu;
        Fill(a, 77);
        nint b = m.KmapAtomic(pages[1]);
        Assert.Equal(cpu, m.CurrentCpu);
        Assert.Equal(2, m.Highmem.LocalSlots.Depth);

        // Out of order: reported, both stay mapped and pinned.
        Assert.ThrowsAny<KernelBugException>(() => m.KunmapAtomic(a));
        Assert.Equal(2, m.Highmem.LocalSlots.Depth);
        m.KunmapAtomic(b);
        Assert.True(m.Cpus.IsPinned);
        Assert.True(Holds(a, 77));
        m.KunmapAtomic(a);
        Assert.False(m.Cpus.IsPinned);
        Assert.Equal(0, m.Highmem.LocalSlots.Depth);
        Assert.ThrowsAny<KernelBugException>(() => m.KunmapAtomic(a));
    }

    [Fact]
    public void KmapAtomicBeyondKmMaxIdxLeavesNoPin()
    {
        using var m = Boot();
        var pages = HighPages(m, Machine.KmMaxIdx + 1);
        var mapped = pages.Take(Machine.KmMaxIdx).Select(m.KmapLocalPage).ToArray();
        Assert.ThrowsAny<KernelBugException>(() => m.KmapAtomic(pages[^1]));
        Assert.False(m.Cpus.IsPinned);
        foreach (var address in mapped.Reverse())
        {
            m.KunmapLocal(address);
        }
    }

    [Fact]
    public void KmapAtomicKeepsAnOuterPin()
    {
        using var m = Boot(cpus: 4);
        var page = HighPage(m);
        using (m.OnCpu(3))
        {
            nint a = m.KmapAtomic(page);
            Assert.Equal(3, m.CurrentCpu);
            m.KunmapAtomic(a);
            Assert.Equal(3, m.CurrentCpu);
        }
        Assert.False(m.Cpus.IsPinned);
    }

    [Fact]
    public void KmapAtomicOfALowmemPageIsItsAddress()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 1 });
        var page = m.AllocPage(Gfp.Kernel);
        nint a = m.KmapAtomic(page);
        Assert.Equal(m.PageAddress(page), a);
        Assert.True(m.Cpus.IsPinned);
        m.KunmapAtomic(a);
        Assert.False(m.Cpus.IsPinned);
    }
}
