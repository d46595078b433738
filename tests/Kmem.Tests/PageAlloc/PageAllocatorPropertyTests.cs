// Property tests of the page allocator against a simple model: random
// sequences of allocations (orders 0..10, mixed GFP masks, pinned CPUs) and
// frees (__free_pages, put_page on a compound tail, split_page then page by
// page) on small X64 and X86 PAE machines. After every step: no frame is held
// twice, every block sits in a zone its GFP allows, __GFP_ZERO blocks read as
// zeros, free + per-CPU + held pages = managed pages, and every zone's free
// lists validate. After freeing everything and draining, the buddy lists are
// those of a freshly booted machine (the HighAtomic reserve, which the kernel
// keeps, may only have kept pageblocks from merging). Two threads on two CPUs,
// or on one, run the same workload concurrently.
// Each machine is booted with a fixed seed, so a failure replays from the
// seed CsCheck prints (set CsCheck_Seed to it).
using CsCheck;
using Kmem.PageAlloc;
using static Kmem.Tests.PageAlloc.PageAllocCheck;

namespace Kmem.Tests.PageAlloc;

public class PageAllocatorPropertyTests
{
    /// <summary>What a step does.</summary>
    public enum Kind
    {
        /// <summary>Allocate one block.</summary>
        Alloc,
        /// <summary>Free one held block.</summary>
        Free,
        /// <summary>Allocate blocks of order 7..10 until the allocator says no: memory pressure.</summary>
        Hog,
    }

    /// <summary>One step: allocate (order, gfp), free the victim-th held block, or hog; on a pinned CPU.</summary>
    public readonly record struct Op(Kind Kind, int Order, int GfpIndex, int Cpu, int Victim, int FreeHow)
    {
        public override string ToString() => Kind switch
        {
            Kind.Alloc => $"cpu{Cpu} alloc o{Order} {GfpFlags.Format(s_gfps[GfpIndex])}",
            Kind.Hog => $"cpu{Cpu} hog o{HogOrder} {GfpFlags.Format(s_gfps[GfpIndex])}",
            _ => $"cpu{Cpu} free #{Victim} how{FreeHow}",
        };

        public int HogOrder => 7 + (Order % 4);
    }

    private static readonly Gfp[] s_gfps =
    [
        Gfp.Kernel,
        Gfp.Atomic,
        Gfp.Dma | Gfp.Kernel,
        Gfp.Dma32 | Gfp.Kernel,
        Gfp.HighUserMovable,
        Gfp.Kernel | Gfp.Reclaimable,
        Gfp.Kernel | Gfp.Comp,
        Gfp.NoWait | Gfp.NoWarn,
        Gfp.HighUser,
        Gfp.Atomic | Gfp.Comp,
        Gfp.Kernel | Gfp.Zero,
        Gfp.HighUserMovable | Gfp.Comp | Gfp.Zero,
        Gfp.Kernel | Gfp.Reclaimable | Gfp.NoWarn,
    ];

    /// <summary>The machines the properties run on.</summary>
    public enum Config
    {
        X64At256M,
        X64At256MWithMovableCore,
        X86PaeAt1G,
    }

    private static MachineOptions Options(Config c, int cpus) => c switch
    {
        Config.X64At256M => new MachineOptions { Memory = "256M", Cpus = cpus, Seed = 7 },
        Config.X64At256MWithMovableCore => new MachineOptions { Memory = "256M", Cpus = cpus, MovableCore = "25%", Seed = 7 },
        _ => new MachineOptions { Preset = Preset.X86Pae, Memory = "1G", Cpus = cpus, Seed = 7 },
    };

    /// <summary>The model's GFP_ZONE_TABLE: the highest zone each mask may use on each preset.</summary>
    private static ZoneType Highest(Preset preset, Gfp gfp)
    {
        bool x64 = preset == Preset.X64;
        return (gfp & (Gfp.Dma | Gfp.Dma32 | Gfp.HighMem | Gfp.Movable)) switch
        {
            Gfp.Dma => ZoneType.Dma,
            Gfp.Dma32 => x64 ? ZoneType.Dma32 : ZoneType.Normal,
            Gfp.HighMem => x64 ? ZoneType.Normal : ZoneType.HighMem,
            Gfp.HighMem | Gfp.Movable => ZoneType.Movable,
            _ => ZoneType.Normal,
        };
    }

    private static readonly Gen<int> s_order = Gen.Frequency((6, Gen.Int[0, 3]), (3, Gen.Int[4, 8]), (1, Gen.Int[9, 10]));

    private static Gen<Op> OpGen(int cpus) => Gen.Select(
        Gen.Int[0, 99], s_order, Gen.Int[0, s_gfps.Length - 1], Gen.Int[0, cpus - 1], Gen.Int[0, 1 << 20], Gen.Int[0, 2],
        (kind, order, gfp, cpu, victim, how) => new Op(kind < 4 ? Kind.Hog : kind < 60 ? Kind.Alloc : Kind.Free, order, gfp, cpu, victim, how));

    /// <summary>A held block.</summary>
    private sealed record Held(Page Page, int Order, Gfp Gfp)
    {
        public bool Compound => Order > 0 && (Gfp & Gfp.Comp) != 0;
    }

    /// <summary>The model: who holds which frame, with one owner slot per frame.</summary>
    private sealed class Model(Machine m)
    {
        private readonly int[] _owner = new int[m.MaxPfn];

        public long HeldPages;

        /// <summary>Claims every frame of a new block for <paramref name="owner"/>; a frame already held fails.</summary>
        public void Claim(Held h, int owner)
        {
            for (ulong pfn = h.Page.Pfn; pfn < h.Page.Pfn + (1UL << h.Order); pfn++)
            {
                int was = Interlocked.CompareExchange(ref _owner[pfn], owner, 0);
                Assert.True(was == 0, $"pfn 0x{pfn:x} of a new order-{h.Order} block is already held by owner {was}");
            }
            Interlocked.Add(ref HeldPages, 1L << h.Order);
        }

        /// <summary>Gives back every frame of a block about to be freed.</summary>
        public void Release(Held h, int owner)
        {
            for (ulong pfn = h.Page.Pfn; pfn < h.Page.Pfn + (1UL << h.Order); pfn++)
            {
                Assert.Equal(owner, _owner[pfn]);
                _owner[pfn] = 0;
            }
            Interlocked.Add(ref HeldPages, -(1L << h.Order));
        }
    }

    /// <summary>Runs one step on the calling thread; checks what can be checked about the block alone.</summary>
    private static void Step(Machine m, Model model, List<Held> held, Op op, int owner, ref bool harderHighOrder, bool alone)
    {
        using var cpu = m.OnCpu(op.Cpu);
        if (op.Kind == Kind.Hog)
        {
            // Without __GFP_ZERO and without touching the bytes: pressure should be cheap.
            var gfp = s_gfps[op.GfpIndex] & ~Gfp.Zero;
            for (int n = 0; n < 1000 && TryAlloc(m, model, held, gfp, op.HogOrder, owner, ref harderHighOrder, touch: false, alone); n++)
            {
            }
            return;
        }
        if (op.Kind == Kind.Alloc)
        {
            TryAlloc(m, model, held, s_gfps[op.GfpIndex], op.Order, owner, ref harderHighOrder, touch: true, alone);
            return;
        }
        if (held.Count == 0)
        {
            return;
        }
        int i = op.Victim % held.Count;
        var victim = held[i];
        held[i] = held[^1];
        held.RemoveAt(held.Count - 1);
        Free(m, model, victim, op.FreeHow, op.Victim, owner);
    }

    private static bool TryAlloc(Machine m, Model model, List<Held> held, Gfp gfp, int order, int owner, ref bool harderHighOrder, bool touch, bool alone)
    {
        var page = m.AllocPages(gfp, order);
        if (page.IsNull)
        {
            if (order == 0 && alone)
            {
                // An order-0 request only fails once every zone it may use is down to its watermark (counting
                // the HighAtomic reserve as used, as __zone_watermark_unusable_free does for all but atomic requests).
                var highest = Highest(m.Preset, gfp);
                bool atomic = (gfp & Gfp.AtomicBit) != 0;
                foreach (var z in m.PageAllocator.Zones.Where(z => z.IsPopulated && z.Type <= highest))
                {
                    long usable = z.FreePages - (atomic ? 0 : z.NrReservedHighatomic);
                    long mark = z.Watermark[Zone.WmarkLow] + z.WatermarkBoost + z.LowmemReserve[(int)highest];
                    Assert.True(usable <= mark, $"{GfpFlags.Format(gfp)} order 0 failed with {usable} usable free pages in {z.Name} (low + reserve {mark})");
                }
            }
            return false;
        }
        var h = new Held(page, order, gfp);
        CheckNewBlock(m, h, touch);
        model.Claim(h, owner);
        held.Add(h);
        if (order > 0 && (gfp & Gfp.AtomicBit) != 0)
        {
            harderHighOrder = true;
        }
        return true;
    }

    private static void CheckNewBlock(Machine m, Held h, bool touch)
    {
        ulong pfn = h.Page.Pfn;
        int pages = 1 << h.Order;
        Assert.True(pfn % (ulong)pages == 0, $"order-{h.Order} block at pfn 0x{pfn:x} is not aligned");
        Assert.True(pfn + (ulong)pages <= m.MaxPfn);
        var zone = m.PageZone(h.Page);
        Assert.Equal(zone, m.PageZone(h.Page.Add(pages - 1)));
        var highest = Highest(m.Preset, h.Gfp);
        Assert.True(zone <= highest, $"{GfpFlags.Format(h.Gfp)} got a page in {zone}, highest allowed {highest}");
        Assert.Equal(1, m.PageRefCount(h.Page));
        for (int t = 1; t < pages && h.Compound; t++)
        {
            Assert.Equal(0, m.PageRefCount(h.Page.Add(t)));
        }
        if (m.PageHighMem(h.Page))
        {
            Assert.Equal(0, m.PageAddress(h.Page));
            return;
        }
        if (!touch)
        {
            return;
        }
        var span = m.PageSpan(h.Page, h.Order);
        if ((h.Gfp & Gfp.Zero) != 0)
        {
            int dirty = span.IndexOfAnyExcept((byte)0);
            Assert.True(dirty < 0, $"__GFP_ZERO block at pfn 0x{pfn:x} has a non-zero byte at offset {dirty}");
        }
        // Dirty the head and tail of every page, so that a later __GFP_ZERO that forgets to clear is caught.
        for (int p = 0; p < pages; p++)
        {
            span.Slice(p * Machine.PageSize, 64).Fill(0xa5);
            span.Slice(((p + 1) * Machine.PageSize) - 64, 64).Fill(0x5a);
        }
    }

    private static void Free(Machine m, Model model, Held h, int how, int salt, int owner)
    {
        model.Release(h, owner);
        if (h.Compound && how != 0)
        {
            // put_page on some tail drops the head's only reference.
            m.PutPage(h.Page.Add(1 + (salt % ((1 << h.Order) - 1))));
        }
        else if (!h.Compound && h.Order > 0 && how == 2)
        {
            m.SplitPage(h.Page, h.Order);
            int pages = 1 << h.Order;
            int step = (2 * (salt % pages)) + 1;   // odd: visits every page once
            for (int k = 0, j = salt % pages; k < pages; k++, j = (j + step) % pages)
            {
                m.FreePage(h.Page.Add(j));
            }
        }
        else if (h.Order == 0 && how == 1)
        {
            m.PutPage(h.Page);
        }
        else
        {
            m.FreePages(h.Page, h.Order);
        }
    }

    /// <summary>The invariants that hold whenever no thread is inside the allocator.</summary>
    private static void CheckQuiescent(Machine m, Model model)
    {
        ValidateAll(m);
        AssertAccounted(m, model.HeldPages);
        int pageblock = 1 << m.Mem.PageblockOrder;
        foreach (var z in m.PageAllocator.Zones)
        {
            Assert.True(z.FreePages >= 0 && z.PcpPages() >= 0);
            Assert.All(z.Pcp, p => Assert.InRange(p.Count, 0, p.High + (2 * pageblock)));
            Assert.Equal(0, z.NrReservedHighatomic % pageblock);
            Assert.InRange(z.NrReservedHighatomic, 0, (z.ManagedPages / 100) + (2 * pageblock));
        }
    }

    /// <summary>Frees what is left, drains, and compares the buddy lists with the fresh machine's.</summary>
    private static void CheckAllFreedMatchesBoot(Machine m, Model model, List<Held> held, long[][] fresh, bool harderHighOrder, int owner)
    {
        using (m.OnCpu(0))
        {
            foreach (var h in held)
            {
                Free(m, model, h, 0, 0, owner);
            }
        }
        held.Clear();
        m.DrainAllPages();
        ValidateAll(m);
        Assert.Equal(0, model.HeldPages);
        Assert.Equal(0, PcpPages(m));
        Assert.All(m.PageAllocator.Zones, z => Assert.Equal(z.ManagedPages, z.FreePages));

        var now = Buddyinfo(m);
        var zones = m.PageAllocator.Zones;
        bool highAtomic = zones.Any(z => z.NrReservedHighatomic > 0
            || Enumerable.Range(0, Machine.MaxOrder).Any(o => z.NrFree(o, MigrateType.HighAtomic) > 0)
            || Enumerable.Range(0, (int)(z.SpannedPages >> m.Mem.PageblockOrder))
                .Any(b => m.Mem.PageblockMigratetype(z.StartPfn + ((uint)b << m.Mem.PageblockOrder)) == MigrateType.HighAtomic));
        // Only a high-order allocation with ALLOC_HARDER reserves HighAtomic pageblocks.
        Assert.True(harderHighOrder || !highAtomic, "a HighAtomic pageblock appeared without a high-order atomic allocation");
        for (int zi = 0; zi < zones.Length; zi++)
        {
            if (!highAtomic)
            {
                Assert.True(fresh[zi].SequenceEqual(now[zi]),
                    $"zone {zones[zi].Name}: buddyinfo {string.Join(' ', now[zi])}, at boot {string.Join(' ', fresh[zi])}");
            }
            else
            {
                // A reserved pageblock does not merge with its neighbour: only orders at or above
                // pageblock_order may differ.
                int below = m.Mem.PageblockOrder;
                Assert.True(fresh[zi].Take(below).SequenceEqual(now[zi].Take(below)),
                    $"zone {zones[zi].Name}: buddyinfo {string.Join(' ', now[zi])}, at boot {string.Join(' ', fresh[zi])}");
            }
        }
    }

    private static void RunSequential(Config config, Op[] ops)
    {
        using var m = Machine.Boot(Options(config, 2));
        var fresh = Buddyinfo(m);
        var model = new Model(m);
        var held = new List<Held>();
        bool harder = false;
        foreach (var op in ops)
        {
            Step(m, model, held, op, owner: 1, ref harder, alone: true);
            CheckQuiescent(m, model);
        }
        CheckAllFreedMatchesBoot(m, model, held, fresh, harder, owner: 1);
    }

    [Theory]
    [InlineData(Config.X64At256M, 50)]
    [InlineData(Config.X64At256MWithMovableCore, 30)]
    [InlineData(Config.X86PaeAt1G, 25)]
    public void RandomAllocFreeSequencesKeepTheAllocatorsInvariants(Config config, int iterations)
    {
        OpGen(2).Array[20, 120].Sample(ops => RunSequential(config, ops), iter: iterations, threads: 2,
            print: ops => string.Join("; ", ops));
    }

    [Theory]
    [InlineData(Config.X64At256M, false, 10)]
    [InlineData(Config.X64At256M, true, 10)]
    [InlineData(Config.X86PaeAt1G, false, 6)]
    [InlineData(Config.X86PaeAt1G, true, 6)]
    public void ConcurrentAllocFreeOnTwoThreadsKeepsTheAllocatorsInvariants(Config config, bool sameCpu, int iterations)
    {
        var gen = Gen.Select(OpGen(1).Array[150, 400], OpGen(1).Array[150, 400]);
        gen.Sample((a, b) => RunConcurrent(config, sameCpu, a, b), iter: iterations, threads: 1,
            print: t => $"A: {string.Join("; ", t.Item1)}\nB: {string.Join("; ", t.Item2)}");
    }

    private static void RunConcurrent(Config config, bool sameCpu, Op[] a, Op[] b)
    {
        using var m = Machine.Boot(Options(config, 2));
        var fresh = Buddyinfo(m);
        var model = new Model(m);
        var helds = new[] { new List<Held>(), new List<Held>() };
        var harder = new bool[2];
        var errors = new Exception?[2];
        using var start = new Barrier(2);
        var threads = new[] { a, b }.Select((ops, t) => new Thread(() =>
        {
            try
            {
                start.SignalAndWait();
                int cpu = sameCpu ? 0 : t;
                foreach (var op in ops)
                {
                    Step(m, model, helds[t], op with { Cpu = cpu }, owner: t + 1, ref harder[t], alone: false);
                }
            }
            catch (Exception e)
            {
                errors[t] = e;
            }
        })).ToArray();
        foreach (var t in threads)
        {
            t.Start();
        }
        foreach (var t in threads)
        {
            t.Join();
        }
        foreach (var e in errors)
        {
            if (e is not null)
            {
                throw new Xunit.Sdk.XunitException($"a worker thread failed: {e}");
            }
        }
        CheckQuiescent(m, model);
        var all = helds[0].Select(h => (h, 1)).Concat(helds[1].Select(h => (h, 2))).ToList();
        using (m.OnCpu(1))
        {
            foreach (var (h, owner) in all)
            {
                Free(m, model, h, 0, 0, owner);
            }
        }
        CheckAllFreedMatchesBoot(m, model, [], fresh, harder[0] || harder[1], owner: 1);
    }
}
