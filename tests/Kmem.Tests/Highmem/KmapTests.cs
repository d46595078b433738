// kmap/kunmap over the pkmap window: a highmem frame has no direct-map address and
// gets a real host mapping; the same page shares its slot; the window fills, a
// further kmap times out or waits for a kunmap; a scan that wraps flushes unused
// slots; kunmap without kmap is the kernel's BUG; X64 has no highmem at all; and
// disposing a machine gives its window back.
using static Kmem.Tests.Highmem.HighmemFixtures;

namespace Kmem.Tests.Highmem;

public class KmapTests
{
    [Fact]
    public void AHighmemPageHasNoDirectMapAddressUntilKmapped()
    {
        using var m = Boot();
        var page = HighPage(m);
        Assert.Equal(0, m.PageAddress(page));
        nint address = m.Kmap(page);
        Assert.NotEqual(0, address);
        m.Kunmap(page);
    }

    [Fact]
    public void BytesWrittenThroughKmapAreReadThroughAnotherMapping()
    {
        using var m = Boot();
        var page = HighPage(m);
        nint address = m.Kmap(page);
        Fill(address, 42);
        m.Kunmap(page);
        m.KmapFlushUnused();
        Assert.Equal(-1, m.Highmem.PkmapWindow.CountOf((uint)page.Pfn));

        nint local = m.KmapLocalPage(page);
        Assert.NotEqual(address, local);
        Assert.True(Holds(local, 42));
        m.KunmapLocal(local);

        // A later kmap, after the flush, maps the same frame afresh.
        nint again = m.Kmap(page);
        Assert.True(Holds(again, 42));
        m.Kunmap(page);
    }

    [Fact]
    public void AKmapIsAHostMappingOfTheFramesBytesUntilTheFlush()
    {
        using var m = Boot();
        var page = HighPage(m);
        nint address = m.Kmap(page);
        var mapped = HostMapping(address);
        Assert.Equal("rw-s", mapped.Perms);
        Assert.Equal((long)page.Pfn * Machine.PageSize, mapped.Offset);
        Assert.Contains("kmem-physmem", mapped.Path);

        m.Kunmap(page);
        Assert.Equal("rw-s", HostMapping(address).Perms); // cached: pkmap_count 1 keeps the mapping
        m.KmapFlushUnused();
        Assert.Equal("---p", HostMapping(address).Perms);
    }

    [Fact]
    public void KmappingTheSamePageTwiceSharesItsSlot()
    {
        using var m = Boot();
        var page = HighPage(m);
        nint first = m.Kmap(page);
        nint second = m.Kmap(page);
        Assert.Equal(first, second);
        Assert.Equal(3, m.Highmem.PkmapWindow.CountOf((uint)page.Pfn)); // mapped, held twice
        m.Kunmap(page);
        m.Kunmap(page);
        Assert.Equal(1, m.Highmem.PkmapWindow.CountOf((uint)page.Pfn)); // cached until the next flush
        Assert.Equal(first, m.Kmap(page)); // an unused mapping is reused as it is
        m.Kunmap(page);
    }

    [Fact]
    public void LowmemPagesAreTheirDirectMapAddress()
    {
        using var m = Boot();
        var page = m.AllocPage(Gfp.Kernel);
        Assert.False(m.PageHighMem(page));
        Assert.Equal(m.PageAddress(page), m.Kmap(page));
        m.Kunmap(page);
        m.Kunmap(page); // nothing is counted for lowmem: no BUG either
    }

    [Theory]
    [InlineData(Preset.X86Pae, 512)]
    [InlineData(Preset.X86, 1024)]
    public void AFullWindowMakesKmapTimeOut(Preset preset, int slots)
    {
        using var m = Boot(preset);
        Assert.Equal(slots, m.LastPkmap);
        var pages = HighPages(m, slots + 1);
        var addresses = new HashSet<nint>();
        for (int i = 0; i < slots; i++)
        {
            addresses.Add(m.Kmap(pages[i]));
        }
        Assert.Equal(slots, addresses.Count);
        Assert.DoesNotContain(0, addresses);

        Assert.Equal(0, m.Kmap(pages[slots], TimeSpan.FromMilliseconds(50)));
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.Equal(0, m.Kmap(pages[slots], cancelled.Token));
        // A page that is already mapped needs no slot, so it never waits.
        Assert.Equal(m.Kmap(pages[3]), m.Kmap(pages[3], TimeSpan.Zero));
    }

    [Fact]
    public async Task ABlockedKmapResumesWhenAnotherThreadKunmaps()
    {
        using var m = Boot();
        var pages = HighPages(m, 513);
        for (int i = 0; i < 512; i++)
        {
            Fill(m.Kmap(pages[i]), (byte)i);
        }
        var waiter = Task.Run(() => m.Kmap(pages[512], TimeSpan.FromSeconds(30)));
        Assert.True(SpinWait.SpinUntil(() => m.Highmem.PkmapWindow.Waiters == 1, TimeSpan.FromSeconds(10)), "the kmap never went to sleep");
        Assert.False(waiter.IsCompleted);

        m.Kunmap(pages[7]);
        nint address = await waiter.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.NotEqual(0, address);
        // It took the slot pages[7] gave up (the only one with no holder), now mapping the new frame.
        Assert.Equal(-1, m.Highmem.PkmapWindow.CountOf((uint)pages[7].Pfn));
        Fill(address, 99);
        nint local = m.KmapLocalPage(pages[512]);
        Assert.True(Holds(local, 99));
        m.KunmapLocal(local);
        Assert.True(Holds(m.Kmap(pages[8]), 8));
    }

    [Fact]
    public async Task ACancelledWaitReturnsZero()
    {
        using var m = Boot();
        var pages = HighPages(m, 513);
        foreach (var p in pages.AsSpan(0, 512))
        {
            m.Kmap(p);
        }
        using var cts = new CancellationTokenSource();
        var waiter = Task.Run(() => m.Kmap(pages[512], cts.Token));
        Assert.True(SpinWait.SpinUntil(() => m.Highmem.PkmapWindow.Waiters == 1, TimeSpan.FromSeconds(10)));
        cts.Cancel();
        Assert.Equal(0, await waiter.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(0, m.Highmem.PkmapWindow.Waiters);
    }

    [Fact]
    public void AScanThatWrapsFlushesUnusedSlotsAndReusesThem()
    {
        using var m = Boot();
        var pages = HighPages(m, 514);
        var first = new nint[512];
        for (int i = 0; i < 512; i++)
        {
            first[i] = m.Kmap(pages[i]);
            Fill(first[i], (byte)i);
            m.Kunmap(pages[i]);
        }
        // Slots 1..511 were taken in order, then the scan wrapped to slot 0 and flushed the rest.
        Assert.Equal(first[0] + (510 * Machine.PageSize), first[510]);
        Assert.Equal(first[0] - Machine.PageSize, first[511]);
        Assert.Equal(-1, m.Highmem.PkmapWindow.CountOf((uint)pages[0].Pfn));
        Assert.Equal(1, m.Highmem.PkmapWindow.CountOf((uint)pages[511].Pfn));
        m.Highmem.PkmapWindow.Validate();

        // The next new page gets slot 1 again, which the flush freed.
        nint reused = m.Kmap(pages[512]);
        Assert.Equal(first[0], reused);
        Fill(reused, 200);
        // And the first page, mapped again elsewhere, still holds its bytes.
        nint back = m.Kmap(pages[0]);
        Assert.NotEqual(reused, back);
        Assert.True(Holds(back, 0));
        Assert.True(Holds(m.Kmap(pages[511]), 255));
        m.Highmem.PkmapWindow.Validate();
    }

    [Fact]
    public void KunmapOfAPageNotKmappedIsABug()
    {
        using var m = Boot();
        var page = HighPage(m);
        var bug = Assert.ThrowsAny<KernelBugException>(() => m.Kunmap(page));
        Assert.Contains("kunmap_high", bug.Report);
        Assert.Contains($"pfn:0x{page.Pfn:x}", bug.Report);

        // Mapped once, unmapped twice: the second one would take pkmap_count to 0.
        nint address = m.Kmap(page);
        m.Kunmap(page);
        bug = Assert.ThrowsAny<KernelBugException>(() => m.Kunmap(page));
        Assert.Contains("would drop to 0", bug.Report);
        Assert.Contains("0xff", bug.Report); // the slot named by its PKMAP_ADDR
        Assert.Equal(1, m.Highmem.PkmapWindow.CountOf((uint)page.Pfn));
        m.Highmem.PkmapWindow.Validate();
        Assert.Equal(address, m.Kmap(page));
    }

    [Fact]
    public void KunmapOfAPageNotKmappedIsReportedWithOnBugReport()
    {
        using var m = Boot(onBug: OnBug.Report);
        var page = HighPage(m);
        m.Kunmap(page);
        Assert.True(m.Log.Contains("kernel BUG at mm/highmem.c: kunmap_high"));
        Assert.Equal(-1, m.Highmem.PkmapWindow.CountOf((uint)page.Pfn));
        nint address = m.Kmap(page);
        Assert.NotEqual(0, address);
        Assert.Equal(2, m.Highmem.PkmapWindow.CountOf((uint)page.Pfn));
    }

    [Fact]
    public void OnX64KmapIsPageAddress()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 1, Seed = 1 });
        var page = m.AllocPage(Gfp.HighUserMovable);
        Assert.False(m.PageHighMem(page));
        Assert.Equal(m.PageAddress(page), m.Kmap(page));
        Assert.Equal(m.PageAddress(page), m.Kmap(page, TimeSpan.Zero));
        Assert.Equal(m.PageAddress(page), m.KmapLocalPage(page));
        m.KunmapLocal(m.PageAddress(page));
        m.Kunmap(page);
        Assert.Equal(0, m.LastPkmap);
        Assert.Equal(0UL, m.PkmapBase);
    }

    [Fact]
    public void ThePkmapWindowSitsAboveTheVmallocArea()
    {
        using var m = Boot();
        // VMALLOC_END of the 6.1 PAE kernel is 0xfeffe000; two guard pages separate it from pkmap.
        Assert.Equal(0xff000000UL, m.PkmapBase);
        Assert.Equal(0xfeffe000UL + (2 * Machine.PageSize), m.PkmapBase);
    }

    [Fact]
    public void KmapToPageFindsThePageBehindEachKindOfMapping()
    {
        using var m = Boot();
        var high = HighPage(m);
        var low = m.AllocPage(Gfp.Kernel);
        nint k = m.Kmap(high);
        Assert.Equal(high, m.KmapToPage(k + 123));
        nint local = m.KmapLocalPage(high);
        Assert.Equal(high, m.KmapToPage(local));
        m.KunmapLocal(local);
        Assert.Equal(Page.Null, m.KmapToPage(local));
        Assert.Equal(low, m.KmapToPage(m.PageAddress(low) + 5));
        m.Kunmap(high);
        m.KmapFlushUnused();
        Assert.Equal(Page.Null, m.KmapToPage(k));
        Assert.Equal(Page.Null, m.KmapToPage(12345));
    }

    [Fact]
    public async Task DisposingTheMachineWakesASleepingKmap()
    {
        var m = Boot();
        var pages = HighPages(m, 513);
        foreach (var p in pages.AsSpan(0, 512))
        {
            m.Kmap(p);
        }
        var waiter = Task.Run(() => m.Kmap(pages[512], TimeSpan.FromSeconds(30)));
        Assert.True(SpinWait.SpinUntil(() => m.Highmem.PkmapWindow.Waiters == 1, TimeSpan.FromSeconds(10)));
        m.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiter.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void ThreadsSharingTheWindowEachSeeTheirOwnPagesBytes()
    {
        // Four threads with 200 pages each. First each holds 140 at once (560 > 512 slots, so some
        // caller must sleep), then all map and unmap at random: scans wrap, slots are flushed and
        // reused under contention. Every page must still show the last value its owner wrote.
        using var m = Boot(cpus: 4);
        const int Threads = 4, PagesEach = 200, Fill = 140, Ops = 3000;
        var pages = HighPages(m, Threads * PagesEach);
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var filled = new Barrier(Threads);
        var workers = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            var rng = new Random(t);
            var mine = pages.AsSpan(t * PagesEach, PagesEach).ToArray();
            var last = new byte[PagesEach];
            var held = new List<int>();
            bool Touch(int i, int timeoutMs)
            {
                nint address = m.Kmap(mine[i], TimeSpan.FromMilliseconds(timeoutMs));
                if (address == 0)
                {
                    return false;
                }
                unsafe
                {
                    byte* b = (byte*)address;
                    if (b[0] != last[i] || b[Machine.PageSize - 1] != last[i])
                    {
                        failures.Enqueue($"thread {t} page {i}: read {b[0]}/{b[Machine.PageSize - 1]}, expected {last[i]}");
                    }
                    last[i] = (byte)rng.Next(1, 256);
                    b[0] = last[i];
                    b[Machine.PageSize - 1] = last[i];
                }
                held.Add(i);
                return true;
            }
            for (int i = 0; i < Fill && Touch(i, 20); i++)
            {
            }
            if (!filled.SignalAndWait(TimeSpan.FromSeconds(30)))
            {
                failures.Enqueue($"thread {t}: the others never filled their share");
            }
            for (int op = 0; op < Ops; op++)
            {
                if (held.Count > 0 && (held.Count >= 150 || rng.Next(3) == 0))
                {
                    int at = rng.Next(held.Count);
                    m.Kunmap(mine[held[at]]);
                    held.RemoveAt(at);
                }
                else if (!Touch(rng.Next(PagesEach), 200))
                {
                    // Every slot is held, some by this thread: let go, as a careful caller would.
                    held.ForEach(h => m.Kunmap(mine[h]));
                    held.Clear();
                }
            }
            held.ForEach(h => m.Kunmap(mine[h]));
        })).ToList();
        workers.ForEach(w => w.Start());
        Assert.All(workers, w => Assert.True(w.Join(TimeSpan.FromSeconds(60))));
        Assert.Empty(failures);
        m.Highmem.PkmapWindow.Validate();
        Assert.True(m.Highmem.PkmapWindow.Sleeps > 0, "no caller ever had to wait for a slot");
        Assert.Equal(0, m.Highmem.PkmapWindow.Waiters);
    }

    [Fact]
    public void DisposingMachinesGivesTheirWindowsBack()
    {
        // Each machine maps 64 slots and 8 kmap_local slots; undisposed, 200 of them would pin
        // tens of thousands of host mappings, near the per-process limit every test shares.
        for (int i = 0; i < 200; i++)
        {
            using var m = Machine.Boot(new MachineOptions { Memory = "1G", Cpus = 1, Preset = Preset.X86Pae, Seed = 1 });
            var pages = HighPages(m, 64);
            foreach (var p in pages)
            {
                Fill(m.Kmap(p), 1);
            }
            var local = pages.Take(8).Select(m.KmapLocalPage).ToArray();
            Assert.DoesNotContain(0, local);
            nint kmapped = m.Kmap(pages[10]);
            bool look = i % 50 == 0; // reading the host's map list is slow: now and then is enough
            var before = look ? (HostMapping(kmapped), HostMapping(local[7])) : default;
            m.Dispose();
            // The frames' mappings are gone (the range is unmapped, or now something else's).
            Assert.True(!look || before != (HostMapping(kmapped), HostMapping(local[7])));
            Assert.Throws<ObjectDisposedException>(() => m.Kmap(pages[0]));
        }
    }
}
