// The SLAB backend (SlabAllocator.Slab) against Linux 6.1's mm/slab.c: geometry recomputed here
// from the kernel's rules (cache_estimate, calculate_slab_order, the OBJFREELIST / OFF_SLAB / on-slab
// choice, colours), the kmalloc classes (32 … 8k plus 96 and 192, larger to the page allocator),
// enable_cpucache's tunables in /proc/slabinfo, the array caches' refill, flush and reaping, shrink
// and destroy giving every page back, and misuse reported with the state unchanged.
namespace Kmem.Tests.Slab;

public class ArraySlabTests
{
    internal static Machine Boot(int cpus = 2, OnBug onBug = OnBug.Throw, string memory = "256M", int nodes = 1) =>
        Machine.Boot(new MachineOptions { Memory = memory, Cpus = cpus, Nodes = nodes, Seed = 1, OnBug = onBug, Slab = SlabAllocator.Slab });

    // ───────────────────────────── the kernel's geometry, recomputed ─────────────────────────────

    private enum Mode { OnSlab, ObjFreelist, OffSlab }

    private readonly record struct Geo(uint Size, int Order, int Num, Mode Mode, int Colour);

    private static uint Up(uint x, uint a) => (x + a - 1) / a * a;

    /// <summary>calculate_alignment of slab_common.c.</summary>
    private static uint CalcAlign(bool hwcache, uint align, uint size)
    {
        if (hwcache)
        {
            uint ralign = 64;
            while (size <= ralign / 2)
            {
                ralign /= 2;
            }
            align = Math.Max(align, ralign);
        }
        return Up(Math.Max(align, 8), 8);
    }

    /// <summary>The stride and the alignment a kmalloc cache of <paramref name="size"/> gets (HWCACHE_ALIGN,
    /// power-of-two sizes naturally aligned).</summary>
    private static uint KmallocAlign(uint size) => CalcAlign(true, (size & (size - 1)) == 0 ? Math.Max(8, size) : 8, size);

    private static uint KmallocSizeFor(uint bytes) =>
        bytes <= 32 ? 32 : bytes <= 64 ? 64 : bytes <= 96 ? 96 : bytes <= 128 ? 128 : bytes <= 192 ? 192 : System.Numerics.BitOperations.RoundUpToPowerOf2(bytes);

    /// <summary>__kmem_cache_create's geometry, written from the kernel's rules (slab_max_order 1).</summary>
    private static Geo? Expected(uint objectSize, uint align, bool reclaim, bool ctor)
    {
        uint size = Up(Up(objectSize, 8), align);
        if (size < 16)
        {
            size = Up(16, align);
        }
        uint colourOff = Math.Max(64, align);
        (int Order, int Num, long Left)? Order(Mode mode)
        {
            (int, int, long)? found = null;
            for (int order = 0; order <= 10; order++)
            {
                long slab = 4096L << order;
                long per = mode == Mode.OnSlab ? size + 1 : size;
                int num = (int)(slab / per);
                long left = slab % per;
                if (num == 0)
                {
                    continue;
                }
                if (num > 255)
                {
                    break;
                }
                if (mode == Mode.OffSlab)
                {
                    // The index array is kmalloc'd: never from an off-slab cache, and cheaper than half an object.
                    long fsize;
                    if (num > 8192)
                    {
                        fsize = 4096L << Machine.GetOrder((nuint)num);
                    }
                    else
                    {
                        uint k = KmallocSizeFor((uint)num);
                        var kg = Expected(k, KmallocAlign(k), false, false)!.Value;
                        if (kg.Mode == Mode.OffSlab)
                        {
                            continue;
                        }
                        fsize = kg.Size;
                    }
                    if (fsize > size / 2)
                    {
                        continue;
                    }
                }
                found = (order, num, left);
                if (reclaim || order >= 1 || left * 8 <= slab)
                {
                    break;
                }
            }
            return found;
        }
        if (!ctor && Order(Mode.ObjFreelist) is { } o && o.Num <= objectSize)
        {
            return new Geo(size, o.Order, o.Num, Mode.ObjFreelist, (int)(o.Left / colourOff));
        }
        if (Order(Mode.OffSlab) is { } f && f.Left < f.Num)
        {
            return new Geo(size, f.Order, f.Num, Mode.OffSlab, (int)(f.Left / colourOff));
        }
        if (Order(Mode.OnSlab) is { } n)
        {
            return new Geo(size, n.Order, n.Num, Mode.OnSlab, (int)(n.Left / colourOff));
        }
        return null;
    }

    [Theory]
    [InlineData(8u, 0u, SlabFlags.None, false)]
    [InlineData(20u, 0u, SlabFlags.None, false)]
    [InlineData(24u, 0u, SlabFlags.HwcacheAlign, false)]
    [InlineData(100u, 0u, SlabFlags.HwcacheAlign, false)]
    [InlineData(200u, 0u, SlabFlags.None, true)]
    [InlineData(256u, 0u, SlabFlags.None, false)]
    [InlineData(700u, 0u, SlabFlags.ReclaimAccount, false)]
    [InlineData(1024u, 0u, SlabFlags.None, true)]
    [InlineData(1500u, 0u, SlabFlags.None, false)]
    [InlineData(3000u, 0u, SlabFlags.None, true)]
    [InlineData(5000u, 0u, SlabFlags.None, false)]
    [InlineData(70000u, 0u, SlabFlags.None, false)]
    [InlineData(40u, 32u, SlabFlags.None, false)]
    [InlineData(4u << 20, 0u, SlabFlags.None, false)]
    public void GeometryIsTheKernelsCalculateSlabOrder(uint objectSize, uint align, SlabFlags flags, bool ctor)
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("geo", objectSize, align, flags, ctor ? _ => { } : null)!;
        uint a = CalcAlign((flags & SlabFlags.HwcacheAlign) != 0, align, objectSize);
        var g = Expected(objectSize, a, (flags & SlabFlags.ReclaimAccount) != 0, ctor)!.Value;
        Assert.Equal(g.Size, s.Size);
        Assert.Equal(a, s.Align);
        Assert.Equal(g.Order, s.Order);
        Assert.Equal(g.Num, s.ObjectsPerSlab);
        Assert.True(g.Num <= 255 && (long)g.Num * g.Size <= 4096L << g.Order);
    }

    [Fact]
    public void TheThreeFreelistPlacementsAllOccurAsTheKernelChoosesThem()
    {
        // Worked by hand from mm/slab.c: 64 B objects keep the index array in an object (64 ≤ 64); a
        // 1024 B object with a constructor goes off-slab (4 indices in kmalloc-32, cheaper than half an object);
        // a 200 B one with a constructor keeps its 20 indices at the slab's end, leaving 76 bytes: one colour.
        Assert.Equal(new Geo(64, 0, 64, Mode.ObjFreelist, 0), Expected(64, 8, false, false));
        Assert.Equal(new Geo(1024, 0, 4, Mode.OffSlab, 0), Expected(1024, 8, false, true));
        Assert.Equal(new Geo(200, 0, 20, Mode.OnSlab, 1), Expected(200, 8, false, true));
        Assert.Equal(new Geo(32, 0, 124, Mode.OnSlab, 0), Expected(32, 32, false, false));
    }

    [Fact]
    public void OffSlabIndexArraysAreKmallocedAndGoBackWithTheirSlab()
    {
        using var m = Boot(cpus: 1);
        var k32 = m.SlabCaches.First(c => c.Name == "kmalloc-32");
        var s = m.KmemCacheCreate("offslab", 1024, 0, SlabFlags.None, _ => { })!;
        Assert.Equal(4, s.ObjectsPerSlab);
        var objs = Enumerable.Range(0, 40).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToArray();
        // Refills take batches, so there are more slabs than the 10 the objects need; each has its index
        // array in kmalloc-32. Shrinking kmalloc-32 empties its array caches: what stays active is held.
        long slabs = Row(m, "offslab")[9];
        Assert.True(slabs >= 10);
        Assert.Equal(1, m.KmemCacheShrink(k32));
        Assert.Equal(slabs, Active(m, "kmalloc-32"));
        SlabPropertyTests.Validate(m);
        foreach (nint p in objs)
        {
            m.KmemCacheFree(s, p);
        }
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
        Assert.Equal(0, m.KmemCacheShrink(k32));
        Assert.Equal(0, Active(m, "kmalloc-32"));
        SlabPropertyTests.Validate(m);
    }

    [Theory]
    [InlineData("kmalloc-32", 32, 124, 1, 120, 60, 8)]
    [InlineData("kmalloc-64", 64, 64, 1, 120, 60, 8)]
    [InlineData("kmalloc-96", 128, 32, 1, 120, 60, 8)]
    [InlineData("kmalloc-128", 128, 32, 1, 120, 60, 8)]
    [InlineData("kmalloc-192", 192, 21, 1, 120, 60, 8)]
    [InlineData("kmalloc-256", 256, 16, 1, 120, 60, 8)]
    [InlineData("kmalloc-512", 512, 8, 1, 54, 27, 8)]
    [InlineData("kmalloc-1k", 1024, 4, 1, 54, 27, 8)]
    [InlineData("kmalloc-2k", 2048, 2, 1, 24, 12, 8)]
    [InlineData("kmalloc-4k", 4096, 1, 1, 24, 12, 8)]
    [InlineData("kmalloc-8k", 8192, 1, 2, 8, 4, 0)]
    [InlineData("kmalloc-rcl-96", 128, 32, 1, 120, 60, 8)]
    [InlineData("kmalloc-cg-2k", 2048, 2, 1, 24, 12, 8)]
    [InlineData("dma-kmalloc-8k", 8192, 1, 2, 8, 4, 0)]
    public void KmallocCachesHaveSlabsGeometryAndTunablesInSlabinfo(string name, long objsize, long perSlab, long pages, long limit, long batch, long shared)
    {
        using var m = Boot();
        long[] row = Row(m, name);
        Assert.Equal([objsize, perSlab, pages, limit, batch, shared], row[2..8]);
    }

    [Fact]
    public void TunablesFollowEnableCpucache()
    {
        using var one = Boot(cpus: 1);
        Assert.Equal(0, Row(one, "kmalloc-64")[7]);
        using var m = Boot();
        var big = m.KmemCacheCreate("big", 200 << 10, 0, SlabFlags.None, null)!;
        Assert.Equal([1L, 1L, 0L], Row(m, "big")[5..8]);
        var mid = m.KmemCacheCreate("mid", 300, 0, SlabFlags.None, null)!;
        Assert.Equal([54L, 27L, 8L], Row(m, "mid")[5..8]);
        var page = m.KmemCacheCreate("page", 4097, 0, SlabFlags.None, null)!;
        Assert.Equal([8L, 4L, 0L], Row(m, "page")[5..8]);
        m.KmemCacheDestroy(big);
        m.KmemCacheDestroy(mid);
        m.KmemCacheDestroy(page);
    }

    [Fact]
    public void SlabinfoListsNoSlubOnlyCaches()
    {
        using var m = Boot();
        string info = m.Proc.Slabinfo();
        Assert.DoesNotContain("kmalloc-8 ", info, StringComparison.Ordinal);
        Assert.DoesNotContain("kmalloc-16 ", info, StringComparison.Ordinal);
        Assert.DoesNotContain("kmalloc-16k", info, StringComparison.Ordinal);
        Assert.Contains("kmalloc-32 ", info, StringComparison.Ordinal);
        // kmalloc-128 is the first cache made (struct kmem_cache_node's), so it is listed last.
        Assert.StartsWith("kmalloc-128 ", info.TrimEnd('\n').Split('\n')[^1], StringComparison.Ordinal);
    }

    // ───────────────────────────── kmalloc ─────────────────────────────

    [Theory]
    [InlineData(1u, "kmalloc-32", 32u)]
    [InlineData(8u, "kmalloc-32", 32u)]
    [InlineData(24u, "kmalloc-32", 32u)]
    [InlineData(33u, "kmalloc-64", 64u)]
    [InlineData(65u, "kmalloc-96", 96u)]
    [InlineData(96u, "kmalloc-96", 96u)]
    [InlineData(97u, "kmalloc-128", 128u)]
    [InlineData(129u, "kmalloc-192", 192u)]
    [InlineData(193u, "kmalloc-256", 256u)]
    [InlineData(1025u, "kmalloc-2k", 2048u)]
    [InlineData(4096u, "kmalloc-4k", 4096u)]
    [InlineData(8192u, "kmalloc-8k", 8192u)]
    public void EachSizeGoesToTheKernelsCacheAndKsizeIsItsObjectSize(uint size, string cache, uint ksize)
    {
        using var m = Boot();
        long before = Row(m, cache)[0];
        nint p = m.Kmalloc(size, Gfp.Kernel);
        Assert.NotEqual(0, p);
        Assert.True(m.PageSlab(m.VirtToPage(p)));
        Assert.Equal((nuint)ksize, m.Ksize(p));
        // The whole refill batch leaves the slabs at once: the cache shows them active.
        Assert.True(Row(m, cache)[0] > before);
        uint stride = (uint)Row(m, cache)[2];
        Assert.Equal(0, p % Math.Min(stride & (~stride + 1), 4096u));
        m.Kfree(p);
    }

    [Theory]
    [InlineData(8193u, 2)]
    [InlineData(16384u, 2)]
    [InlineData(65536u, 4)]
    [InlineData(4u << 20, 10)]
    public void AboveEightKiBKmallocGoesToThePageAllocatorUpToFourMiB(uint size, int order)
    {
        using var m = Boot();
        m.DrainAllPages();
        string before = m.Proc.Buddyinfo();
        nint p = m.Kmalloc(size, Gfp.Kernel);
        Assert.NotEqual(0, p);
        Assert.Equal((nuint)4096 << order, m.Ksize(p));
        Assert.False(m.PageSlab(m.VirtToPage(p)));
        Assert.Equal((1L << order).ToString(System.Globalization.CultureInfo.InvariantCulture), KmemCacheTests.SlabUnreclaimable(m));
        m.PageSpan(m.VirtToPage(p), order).Fill(0x5A);
        m.Kfree(p);
        Assert.Equal("0", KmemCacheTests.SlabUnreclaimable(m));
        m.DrainAllPages();
        Assert.Equal(before, m.Proc.Buddyinfo());
        Assert.Equal(0, m.Kmalloc((4u << 20) + 1, Gfp.Kernel | Gfp.NoWarn));
    }

    [Theory]
    [InlineData(Gfp.Kernel, "kmalloc-64")]
    [InlineData(Gfp.Kernel | Gfp.Reclaimable, "kmalloc-rcl-64")]
    [InlineData(Gfp.KernelAccount, "kmalloc-cg-64")]
    [InlineData(Gfp.Kernel | Gfp.Dma | Gfp.Reclaimable, "dma-kmalloc-64")]
    public void TheGfpChoosesTheCacheTypeAsWithSlub(Gfp gfp, string cache)
    {
        using var m = Boot();
        nint p = m.Kmalloc(64, gfp);
        Assert.Equal(1, Row(m, cache)[9]);
        if (cache.StartsWith("dma", StringComparison.Ordinal))
        {
            Assert.Equal(ZoneType.Dma, m.PageZone(m.VirtToPage(p)));
        }
        if (cache.Contains("rcl", StringComparison.Ordinal))
        {
            Assert.Contains("SReclaimable:          4 kB", m.Proc.Meminfo(), StringComparison.Ordinal);
        }
        m.Kfree(p);
    }

    // ───────────────────────────── array caches, reaping, shrink ─────────────────────────────

    [Fact]
    public void AllocRefillsABatchAndFreeFillsTheArrayUpToItsLimit()
    {
        using var m = Boot();
        using var pin = m.OnCpu(0);
        var s = m.KmemCacheCreate("batch", 256, 0, SlabFlags.None, null)!;
        // limit 120, batchcount 60; an untouched array refills BATCHREFILL_LIMIT (16) objects: one slab of 16.
        nint first = m.KmemCacheAlloc(s, Gfp.Kernel);
        Assert.Equal([16L, 16L, 16L, 1L, 1L], Counts(m, "batch"));
        // Touched now: the next refill takes a whole batch of 60 (four new slabs would be needed; each
        // refill that finds the node empty grows one slab and takes what it has).
        var objs = new List<nint> { first };
        for (int i = 0; i < 100; i++)
        {
            objs.Add(m.KmemCacheAlloc(s, Gfp.Kernel));
        }
        Assert.Equal(101, objs.Distinct().Count());
        long slabs = Row(m, "batch")[9];
        Assert.Equal(7, slabs);
        // Frees fill the array (limit 120); nothing goes back to the slabs yet.
        foreach (nint p in objs)
        {
            m.KmemCacheFree(s, p);
        }
        Assert.Equal(slabs * 16, Row(m, "batch")[0]);
        // One more pair over the limit flushes a batch of 60 into the shared array (limit 8 × 60).
        for (int i = 0; i < 30; i++)
        {
            objs.Add(m.KmemCacheAlloc(s, Gfp.Kernel));
        }
        SlabPropertyTests.Validate(m);
        foreach (nint p in objs.Skip(101))
        {
            m.KmemCacheFree(s, p);
        }
        SlabPropertyTests.Validate(m);
        Assert.Equal(0, m.KmemCacheShrink(s));
        Assert.Equal([0L, 0L, 16L, 0L, 0L], Counts(m, "batch"));
        m.KmemCacheDestroy(s);
    }

    [Fact]
    public void CacheReapDrainsIdleArraysAndFreesSurplusSlabsUntilNothingIsLeft()
    {
        using var m = Boot();
        m.DrainAllPages();
        string before = m.Proc.Buddyinfo();
        var s = m.KmemCacheCreate("reap", 512, 0, SlabFlags.None, null)!;
        var objs = new List<nint>();
        using (m.OnCpu(0))
        {
            for (int i = 0; i < 400; i++)
            {
                objs.Add(m.KmemCacheAlloc(s, Gfp.Kernel));
            }
        }
        using (m.OnCpu(1))
        {
            // Freed on the other CPU: its array (limit 54) fills, then each free that finds it full first
            // flushes its 27 oldest: 8 batches fill the shared array (8 × 27), 5 more go back to the slabs;
            // 49 stay in the array (13 flushes: at the 55th free and every 27th after).
            foreach (nint p in objs)
            {
                m.KmemCacheFree(s, p);
            }
        }
        SlabPropertyTests.Validate(m);
        long[] row = Row(m, "reap");
        Assert.Equal(49 + 216, row[0]);
        Assert.Equal(216, row[10]);
        // Some slabs emptied by the 5 batches freed above went back at once, beyond free_limit ((1 + 2) × 27 + 8).
        long slabsLeft = row[9];
        Assert.True(slabsLeft < 50);
        long pages = 0;
        long[] prev = row;
        int rounds = 0;
        // The first round only clears the arrays' touched marks; later rounds drain (54 + 4) / 5 = 11 a round
        // from the CPU array and every second round the shared array and the free slabs above free_limit.
        while (Row(m, "reap")[9] > 0 && rounds < 100)
        {
            pages += m.CacheReap();
            rounds++;
            long[] now = Row(m, "reap");
            Assert.True(now[0] <= prev[0] && now[9] <= prev[9]);
            prev = now;
            SlabPropertyTests.Validate(m);
        }
        Assert.Equal(0, Row(m, "reap")[9]);
        Assert.True(rounds > 2, $"{rounds} rounds");
        Assert.Equal(slabsLeft, pages);
        m.KmemCacheDestroy(s);
        m.DrainAllPages();
        Assert.Equal(before, m.Proc.Buddyinfo());
    }

    [Fact]
    public void ShrinkAndDestroyGiveEveryPageBackExactly()
    {
        using var m = Boot(cpus: 3);
        m.DrainAllPages();
        string before = m.Proc.Buddyinfo();
        string vmBefore = KmemCacheTests.SlabUnreclaimable(m);
        var caches = new[]
        {
            m.KmemCacheCreate("a", 40, 0, SlabFlags.None, null)!,
            m.KmemCacheCreate("b", 1024, 0, SlabFlags.None, _ => { })!,
            m.KmemCacheCreate("c", 3000, 0, SlabFlags.ReclaimAccount, null)!,
        };
        var held = new List<(KmemCache, nint)>();
        for (int i = 0; i < 3000; i++)
        {
            using var pin = m.OnCpu(i % 3);
            var s = caches[i % 3];
            held.Add((s, m.KmemCacheAlloc(s, Gfp.Kernel)));
        }
        Assert.Equal(1, m.KmemCacheShrink(caches[0]));
        for (int i = 0; i < held.Count; i++)
        {
            using var pin = m.OnCpu((i * 7) % 3);
            m.KmemCacheFree(held[i].Item1, held[i].Item2);
        }
        foreach (var s in caches)
        {
            Assert.Equal(0, m.KmemCacheShrink(s));
            m.KmemCacheDestroy(s);
            Assert.True(s.IsDestroyed);
        }
        foreach (var k in m.SlabCaches)
        {
            m.KmemCacheShrink(k);
        }
        SlabPropertyTests.Validate(m);
        Assert.Contains("\nnr_slab_reclaimable 0\n", m.Proc.Vmstat(), StringComparison.Ordinal);
        Assert.Equal(vmBefore, KmemCacheTests.SlabUnreclaimable(m));
        m.DrainAllPages();
        Assert.Equal(before, m.Proc.Buddyinfo());
    }

    [Fact]
    public void DestroyingABusyCacheWarnsAsSlabDoesAndKeepsIt()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("busy", 64, 0, SlabFlags.None, null)!;
        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
        m.KmemCacheDestroy(s);
        Assert.False(s.IsDestroyed);
        Assert.True(m.Log.Contains("kmem_cache_destroy busy: Slab cache still has objects when called from "
            + nameof(DestroyingABusyCacheWarnsAsSlabDoesAndKeepsIt)));
        // SLAB has no list_slab_objects: no "Objects remaining" lines.
        Assert.DoesNotContain(m.Log.Lines, l => l.Contains("Objects remaining", StringComparison.Ordinal));
        m.KmemCacheFree(s, p);
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
    }

    [Fact]
    public void ObjectsOfAnotherNodeGoBackToTheirNode()
    {
        using var m = Boot(cpus: 2, memory: "512M", nodes: 2);
        var s = m.KmemCacheCreate("numa", 128, 0, SlabFlags.None, null)!;
        nint p = m.KmemCacheAllocNode(s, Gfp.Kernel, 1);
        Assert.Equal(1, m.PageToNid(m.VirtToPage(p)));
        nint q;
        using (m.OnCpu(0))
        {
            q = m.KmemCacheAllocNode(s, Gfp.Kernel, 0);
            m.KmemCacheFree(s, p);
        }
        Assert.Equal(0, m.PageToNid(m.VirtToPage(q)));
        SlabPropertyTests.Validate(m);
        m.KmemCacheFree(s, q);
        Assert.Equal(0, m.KmemCacheShrink(s));
        m.KmemCacheDestroy(s);
    }

    [Theory]
    [InlineData(Preset.X86)]
    [InlineData(Preset.X86Pae)]
    public void ThirtyTwoBitPresetsKeepSlabsInLowmem(Preset preset)
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "1G", Cpus = 1, Preset = preset, Seed = 1, Slab = SlabAllocator.Slab });
        var s = m.KmemCacheCreate("lowmem", 300, 0, SlabFlags.None, null)!;
        var objs = Enumerable.Range(0, 500).Select(_ => m.KmemCacheAlloc(s, Gfp.Kernel)).ToList();
        objs.Add(m.Kmalloc(100, Gfp.Kernel));
        objs.Add(m.Kmalloc(20000, Gfp.Kernel));
        foreach (nint p in objs)
        {
            Assert.NotEqual(ZoneType.HighMem, m.PageZone(m.VirtToPage(p)));
        }
        // One CPU: no shared arrays.
        Assert.Equal(0, Row(m, "lowmem")[7]);
        SlabPropertyTests.Validate(m);
        for (int i = 0; i < 500; i++)
        {
            m.KmemCacheFree(s, objs[i]);
        }
        m.Kfree(objs[500]);
        m.Kfree(objs[501]);
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
        SlabPropertyTests.Validate(m);
    }

    [Fact]
    public void SlabinfoWriteRetunesACacheAndItsOldArraysGiveTheirObjectsBack()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("tune", 128, 0, SlabFlags.None, null)!;
        var objs = new List<nint>();
        using (m.OnCpu(0))
        {
            for (int i = 0; i < 300; i++)
            {
                objs.Add(m.KmemCacheAlloc(s, Gfp.Kernel));
            }
        }
        using (m.OnCpu(1))
        {
            foreach (nint p in objs)
            {
                m.KmemCacheFree(s, p);
            }
        }
        long[] before = Row(m, "tune");
        Assert.Equal([120L, 60L, 8L], before[5..8]);
        Assert.True(before[0] > 0 && before[10] > 0);
        m.SlabinfoWrite("tune 32 16 0");
        long[] after = Row(m, "tune");
        Assert.Equal([32L, 16L, 0L], after[5..8]);
        // Every arrayed object went back to its slab; free slabs above the new free_limit ((1 + 2) × 16 + 32) went too.
        Assert.Equal(0, after[0]);
        Assert.Equal(0, after[10]);
        Assert.True(after[9] * 32 <= 80 + 32);
        SlabPropertyTests.Validate(m);
        objs.Clear();
        using (m.OnCpu(1))
        {
            for (int i = 0; i < 100; i++)
            {
                objs.Add(m.KmemCacheAlloc(s, Gfp.Kernel));
            }
            Assert.Equal(100, objs.Distinct().Count());
            foreach (nint p in objs)
            {
                m.KmemCacheFree(s, p);
            }
        }
        // The new array holds at most its limit of 32; with no shared array the rest went back to the slabs.
        Assert.True(Row(m, "tune")[0] <= 32);
        SlabPropertyTests.Validate(m);
        foreach (string bad in new[] { "tune 0 1 0", "tune 10 11 0", "tune 10 5 -1", "nosuch 10 5 0", "tune 10 5", "tune a b c", "tune 1 1 0 " + new string('x', 130) })
        {
            string rowBefore = string.Join(' ', Row(m, "tune"));
            var e = Assert.Throws<ArgumentException>(() => m.SlabinfoWrite(bad));
            Assert.Contains("-EINVAL", e.Message, StringComparison.Ordinal);
            Assert.Equal(rowBefore, string.Join(' ', Row(m, "tune")));
        }
        Assert.Equal(0, m.KmemCacheShrink(s));
        m.KmemCacheDestroy(s);
        using var slub = Machine.Boot(new MachineOptions { Memory = "256M", Seed = 1 });
        Assert.Throws<InvalidOperationException>(() => slub.SlabinfoWrite("kmalloc-64 1 1 0"));
        Assert.Equal(0, slub.CacheReap());
    }

    [Fact]
    public void RetuningWhileTwoThreadsAllocateAndFreeLosesNothing()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("retune", 64, 0, SlabFlags.None, null)!;
        using var stop = new CancellationTokenSource();
        var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        var threads = Enumerable.Range(0, 2).Select(t => new Thread(() =>
        {
            try
            {
                using var pin = m.OnCpu(t);
                var mine = new Queue<nint>();
                var rnd = new Random(t);
                while (!stop.IsCancellationRequested)
                {
                    if (mine.Count < 200 && rnd.Next(2) == 0)
                    {
                        nint p = m.KmemCacheAlloc(s, Gfp.Kernel);
                        Machine.ObjectSpan(s, p).Fill((byte)(t + 1));
                        mine.Enqueue(p);
                    }
                    else if (mine.TryDequeue(out nint p))
                    {
                        Assert.Equal(-1, Machine.ObjectSpan(s, p).IndexOfAnyExcept((byte)(t + 1)));
                        m.KmemCacheFree(s, p);
                    }
                }
                while (mine.TryDequeue(out nint p))
                {
                    m.KmemCacheFree(s, p);
                }
            }
            catch (Exception e)
            {
                errors.Enqueue(e);
            }
        })).ToArray();
        foreach (var t in threads)
        {
            t.Start();
        }
        for (int i = 0; i < 40; i++)
        {
            m.SlabinfoWrite(i % 2 == 0 ? "retune 8 4 2" : "retune 120 60 8");
            m.CacheReap();
        }
        stop.Cancel();
        foreach (var t in threads)
        {
            t.Join();
        }
        Assert.Empty(errors);
        SlabPropertyTests.Validate(m);
        Assert.Equal(0, m.KmemCacheShrink(s));
        m.KmemCacheDestroy(s);
        Assert.True(s.IsDestroyed);
    }

    // ───────────────────────────── misuse ─────────────────────────────

    [Fact]
    public void WrongCacheMidObjectAndForeignPointersAreReportedWithTheReportPolicy()
    {
        using var m = Boot(onBug: OnBug.Report);
        var a = m.KmemCacheCreate("cache_a", 64, 0, SlabFlags.None, null)!;
        var b = m.KmemCacheCreate("cache_b", 64, 0, SlabFlags.None, null)!;
        nint p = m.KmemCacheAlloc(a, Gfp.Kernel);
        string before = m.Proc.Slabinfo();
        m.KmemCacheFree(b, p);
        Assert.True(m.Log.Contains("kmem_cache_free: Wrong slab cache. cache_b but object is from cache_a"));
        m.KmemCacheFree(a, p + 8);
        Assert.Contains(m.Log.Lines, l => l.Contains("Invalid object pointer", StringComparison.Ordinal));
        nint page = m.GetFreePage(Gfp.Kernel);
        m.Kfree(page);
        Assert.Contains(m.Log.Lines, l => l.StartsWith("kfree: Freeing invalid pointer", StringComparison.Ordinal));
        m.FreePage(page);
        m.Kfree(p);
        m.Kfree(p);
        Assert.True(m.Log.Contains("BUG cache_a (Not tainted): Object already free"));
        SlabPropertyTests.Validate(m);
        Assert.Equal(0, m.KmemCacheShrink(a));
    }

    // ───────────────────────────── helpers ─────────────────────────────

    /// <summary>A slabinfo row's numbers: active_objs, num_objs, objsize, objperslab, pagesperslab, limit,
    /// batchcount, sharedfactor, active_slabs, num_slabs, sharedavail (indices 0 … 10).</summary>
    internal static long[] Row(Machine m, string name)
    {
        string line = m.Proc.Slabinfo().Split('\n').First(l => l.Length > 17 && l[..17].Trim() == name);
        return [.. line[17..].Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(t => t != ":" && t != "tunables" && t != "slabdata")
            .Select(t => long.Parse(t, System.Globalization.CultureInfo.InvariantCulture))];
    }

    private static long Active(Machine m, string name) => Row(m, name)[0];

    /// <summary>active_objs, num_objs, objperslab, active_slabs, num_slabs.</summary>
    private static long[] Counts(Machine m, string name)
    {
        long[] r = Row(m, name);
        return [r[0], r[1], r[3], r[8], r[9]];
    }
}
