// The per-CPU allocator against mm/percpu.c of 6.1 and the real captures' setup lines: per-CPU
// copies distinct, zeroed and a unit apart, this_cpu operations and percpu_counter exact under
// pinned threads, freed space reused, chunks created on demand and released when free, the
// reserved and static areas, misuse reported, and the meminfo and percpu_stats reports.
namespace Kmem.Tests.Percpu;

public class PercpuTests
{
    private static Machine Boot(int cpus = 2, Preset preset = Preset.X64) =>
        Machine.Boot(new MachineOptions { Memory = "256M", Cpus = cpus, Preset = preset, Seed = 1 });

    private static long MeminfoKb(Machine m, string field)
    {
        string line = m.Proc.Meminfo().Split('\n').Single(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public void TheFirstChunkIsLaidOutAsTheRealKernelsAre()
    {
        using var x64 = Boot(2);
        Assert.Equal(0, MeminfoKb(x64, "Percpu"));
        Assert.Equal(1 << 20, x64.PercpuUnitSize);
        // The x86-64 capture: "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u1048576".
        Assert.True(x64.Log.Contains("percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u1048576"));
        Assert.Equal(62 * 2 * 4, MeminfoKb(x64, "Percpu"));

        using var i386 = Boot(1, Preset.X86Pae);
        // The i386 capture: "percpu: Embedded 33 pages/cpu s104276 r0 d30892 u135168".
        Assert.Equal(135168, i386.PercpuUnitSize);
        Assert.True(i386.Log.Contains("percpu: Embedded 33 pages/cpu s104276 r0 d30892 u135168"));
        Assert.Equal(33 * 4, MeminfoKb(i386, "Percpu"));

        using var four = Boot(4);
        Assert.Equal(512 << 10, four.PercpuUnitSize); // four units share one 2 MiB atom
    }

    [Theory]
    [InlineData(Preset.X64, 2)]
    [InlineData(Preset.X86Pae, 1)]
    public void TheFirstChunkLiesInTheBootReservation(Preset preset, int cpus)
    {
        // 6.1's pcpu_embed_first_chunk takes the units from memblock: memory the buddy allocator never holds,
        // so setting the allocator up moves neither MemTotal nor MemFree nor any zone's managed pages.
        using var m = Boot(cpus, preset);
        long total = MeminfoKb(m, "MemTotal"), free = MeminfoKb(m, "MemFree");
        var managed = m.PageAllocator.Zones.Select(z => z.ManagedPages).ToArray();
        var p = m.AllocPercpu(64, 8);
        Assert.False(p.IsNull);
        Assert.True(m.Log.Contains("percpu: Embedded"));
        Assert.Equal(total, MeminfoKb(m, "MemTotal"));
        Assert.Equal(free, MeminfoKb(m, "MemFree"));
        Assert.Equal(managed, m.PageAllocator.Zones.Select(z => z.ManagedPages).ToArray());
        var mem = m.PageAllocator.Mem;
        foreach (int cpu in m.ForEachPossibleCpu())
        {
            uint pfn = mem.VirtToPfn(m.PerCpuPtr(p, cpu));
            Assert.True((mem.Frame(pfn).Flags & Kmem.Physical.PageFlags.Reserved) != 0);
            Assert.True(pfn >= (16u << 20) >> 12); // memblock's goal for it, __pa(MAX_DMA_ADDRESS)
            Assert.True(pfn < mem.LowmemPfns);
        }
        m.FreePercpu(p);
    }

    [Fact]
    public unsafe void EachCpusCopyIsDistinctZeroedAndAUnitApart()
    {
        using var m = Boot(4);
        foreach (nuint align in new nuint[] { 4, 8, 64, 256, 4096 })
        {
            var p = m.AllocPercpu(40, align);
            Assert.False(p.IsNull);
            var seen = new HashSet<nint>();
            foreach (int cpu in m.ForEachPossibleCpu())
            {
                nint a = m.PerCpuPtr(p, cpu);
                Assert.True(seen.Add(a));
                Assert.Equal(0, a % (nint)align);
                Assert.Equal(m.PerCpuPtr(p, 0) + cpu * m.PercpuUnitSize, a);
                Assert.True(new Span<byte>((void*)a, 40).IndexOfAnyExcept((byte)0) < 0);
                new Span<byte>((void*)a, 40).Fill((byte)(cpu + 1));
            }
            foreach (int cpu in m.ForEachPossibleCpu())
            {
                Assert.True(new Span<byte>((void*)m.PerCpuPtr(p, cpu), 40).IndexOfAnyExcept((byte)(cpu + 1)) < 0);
            }
            m.FreePercpu(p);
        }
        // Copies are a unit apart, so two CPUs' copies never share a cache line.
        Assert.True(m.PercpuUnitSize % 128 == 0);
        Assert.Equal([0, 1, 2, 3], m.ForEachPossibleCpu().Select(c => c));
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(0, 0)] // two threads holding the same CPU id: this_cpu operations must still be exact
    public void PinnedThreadsIncrementingSumExactly(int cpuA, int cpuB)
    {
        using var m = Boot(2);
        const int n = 200_000;
        var perCpu = m.AllocPercpu<long>();
        using var counter = m.PercpuCounterInit(0, Gfp.Kernel)!;
        void Work(int cpu)
        {
            using var pin = m.OnCpu(cpu);
            for (int i = 0; i < n; i++)
            {
                m.ThisCpuInc(perCpu);
                counter.Add(1);
            }
        }
        var a = new Thread(() => Work(cpuA));
        var b = new Thread(() => Work(cpuB));
        a.Start();
        b.Start();
        Assert.True(a.Join(TimeSpan.FromSeconds(60)) && b.Join(TimeSpan.FromSeconds(60)));

        long total = 0;
        foreach (int cpu in m.ForEachPossibleCpu())
        {
            total += m.PerCpu(perCpu, cpu);
        }
        Assert.Equal(2L * n, total);
        Assert.Equal(cpuA == cpuB ? 2L * n : n, m.PerCpu(perCpu, cpuA));
        Assert.Equal(2L * n, counter.Sum());
        // Read misses at most what the CPUs have not folded yet.
        Assert.InRange(2L * n - counter.Read(), 0, (long)counter.Batch * m.NrCpus);
        Assert.Equal(0, counter.Compare(2L * n));
        m.FreePercpu(perCpu);
    }

    [Fact]
    public void ThisCpuOperationsActOnTheCallingCpusCopyOnly()
    {
        using var m = Boot(2);
        var p = m.AllocPercpu<int>();
        var b = m.AllocPercpu<byte>();
        using (m.OnCpu(1))
        {
            m.ThisCpuWrite(p, 40);
            m.ThisCpuAdd(p, 5);
            m.ThisCpuSub(p, 2);
            m.ThisCpuDec(p);
            Assert.Equal(45, m.ThisCpuAddReturn(p, 3));
            Assert.Equal(45, m.ThisCpuRead(p));
            m.ThisCpuDec(b);
            Assert.Equal(m.PerCpuPtr(p, 1), m.ThisCpuPtr(p));
        }
        using (m.OnCpu(0))
        {
            Assert.Equal(0, m.ThisCpuRead(p));
            Assert.Equal(0, m.ThisCpuRead(b));
        }
        Assert.Equal(45, m.PerCpu(p, 1));
        Assert.Equal(255, m.PerCpu(b, 1)); // a byte wraps, as the kernel's does
        Assert.Throws<ArgumentOutOfRangeException>(() => m.PerCpuPtr(p, 2));
        Assert.Throws<ArgumentException>(() => m.ThisCpuRead(default(PercpuPtr<int>)));
    }

    [Fact]
    public void FreedSpaceIsReused()
    {
        using var m = Boot(2);
        var a = m.AllocPercpu(256, 8);
        var b = m.AllocPercpu(64, 8);
        m.FreePercpu(a);
        var c = m.AllocPercpu(200, 8);
        Assert.Equal(a, c); // the lowest fitting free run: where a was
        var d = m.AllocPercpu(48, 8);
        Assert.Equal(m.PerCpuPtr(c, 0) + 200, m.PerCpuPtr(d, 0)); // the 56 bytes left behind c
        m.FreePercpu(b);
        m.FreePercpu(c);
        m.FreePercpu(d);
        Assert.Null(m.PercpuAllocator.Validate());
    }

    [Fact]
    public void ChunksAreCreatedOnDemandAndReleasedWhenFree()
    {
        using var m = Boot(2);
        long firstOnly = 0;
        var held = new List<PercpuPtr>();
        var p0 = m.AllocPercpu(4, 4);
        firstOnly = MeminfoKb(m, "Percpu");
        m.DrainAllPages();
        long freeBefore = MeminfoKb(m, "MemFree");
        Assert.Equal(1, m.PercpuAllocator.NrChunks);
        // 16 KiB pieces: the first chunk's dynamic area (28 KiB) holds one, a 1 MiB chunk 64.
        while (m.PercpuAllocator.NrChunks < 3)
        {
            var p = m.AllocPercpu(16 << 10, 4096);
            Assert.False(p.IsNull);
            held.Add(p);
        }
        Assert.Equal(1 + 64 + 1, held.Count);
        long chunkKb = (m.PercpuUnitSize >> 10) * m.NrCpus;
        Assert.Equal(firstOnly + 2 * chunkKb, MeminfoKb(m, "Percpu"));
        m.DrainAllPages();
        Assert.True(freeBefore - MeminfoKb(m, "MemFree") >= 2 * chunkKb);
        Assert.Equal(2, m.Proc.Vmallocinfo().Split('\n').Count(l => l.Contains("pcpu_get_vm_areas")));

        foreach (var p in held)
        {
            m.FreePercpu(p);
        }
        // Both later chunks became free; the second free one is destroyed, one is kept as a spare.
        Assert.Equal(2, m.PercpuAllocator.NrChunks);
        Assert.Equal(firstOnly + chunkKb, MeminfoKb(m, "Percpu"));
        Assert.Equal(1, m.Proc.Vmallocinfo().Split('\n').Count(l => l.Contains("pcpu_get_vm_areas")));
        var stats = m.Proc.Read("percpu_stats");
        Assert.Contains("  nr_max_chunks       :            3\n", stats);
        Assert.Contains("  nr_chunks           :            2\n", stats);
        m.FreePercpu(p0);
        Assert.Null(m.PercpuAllocator.Validate());
    }

    [Fact]
    public void AnAtomicAllocationNeverCreatesAChunk()
    {
        using var m = Boot(2);
        var held = new List<PercpuPtr>();
        PercpuPtr p;
        while (!(p = m.AllocPercpuGfp(4 << 10, 4, Gfp.Atomic | Gfp.NoWarn)).IsNull)
        {
            held.Add(p);
        }
        Assert.Equal(1, m.PercpuAllocator.NrChunks);
        Assert.True(m.AllocPercpuGfp(4 << 10, 4, Gfp.Atomic).IsNull);
        Assert.True(m.Log.Contains("percpu: allocation failed, size=4096 align=4 atomic=1, atomic alloc failed, no space left"));
        Assert.False(m.AllocPercpuGfp(4 << 10, 4, Gfp.Kernel).IsNull);
        Assert.Equal(2, m.PercpuAllocator.NrChunks);
    }

    [Fact]
    public void ReservedAllocationsComeFromTheReservedArea()
    {
        using var m = Boot(2);
        var a = m.AllocReservedPercpu(4096, 8);
        var b = m.AllocReservedPercpu(4000, 8);
        Assert.False(a.IsNull);
        Assert.False(b.IsNull);
        // The reserved area (8 KiB) sits right after the static area.
        var v = m.DefinePerCpu<long>("reserved_probe");
        Assert.InRange(m.PerCpuPtr(a, 0) - m.PerCpuPtr(v.Address, 0), 0, 217088);
        Assert.True(m.AllocReservedPercpu(256, 8).IsNull);
        Assert.True(m.Log.Contains("alloc from reserved chunk failed"));
        m.FreePercpu(b);
        Assert.False(m.AllocReservedPercpu(256, 8).IsNull);
        Assert.Contains("Chunk: <- Reserved Chunk", m.Proc.Read("percpu_stats"));
    }

    [Fact]
    public void StaticVariablesLiveInTheStaticAreaAndCannotBeFreed()
    {
        using var m = Boot(2);
        var hits = m.DefinePerCpu<long>("hits");
        var flags = m.DefinePerCpu<int>("flags");
        Assert.Equal(m.PerCpuPtr(hits.Address, 0) + 8, m.PerCpuPtr(flags.Address, 0));
        using (m.OnCpu(1))
        {
            m.ThisCpuInc(hits);
            m.ThisCpuAdd(hits, 9);
        }
        Assert.Equal(10, m.PerCpu(hits, 1));
        Assert.Equal(0, m.PerCpu(hits, 0));
        Assert.Throws<KernelBugException>(() => m.FreePercpu(hits.Address));
        // 217088 bytes of static area hold 27136 longs, less the two above.
        var full = Assert.Throws<InvalidOperationException>(() =>
        {
            for (int i = 0; i < 30_000; i++)
            {
                m.DefinePerCpu<long>($"v{i}");
            }
        });
        Assert.Contains("static area (217088 bytes", full.Message);
    }

    [Fact]
    public void BadSizesAndBadFreesAreRefusedAndChangeNothing()
    {
        using var m = Boot(2);
        Assert.True(m.AllocPercpu(0, 4).IsNull);
        Assert.True(m.AllocPercpu((32 << 10) + 4, 4).IsNull);
        Assert.True(m.AllocPercpu(8, 12).IsNull);
        Assert.False(m.AllocPercpu(8, 2).IsNull); // below PCPU_MIN_ALLOC_SIZE: raised to 4, as the kernel does
        Assert.True(m.AllocPercpu(8, 8192).IsNull);
        Assert.Equal(4, m.Log.Lines.Count(l => l.Contains("illegal size")));
        Assert.False(m.AllocPercpu(32 << 10, 4096).IsNull); // the largest legal request makes a chunk

        var p = m.AllocPercpu(64, 8);
        m.FreePercpu(p);
        var twice = Assert.Throws<KernelBugException>(() => m.FreePercpu(p));
        Assert.Contains("not the start of a per-CPU allocation", twice.Message);
        var q = m.AllocPercpu(64, 8);
        Assert.Throws<KernelBugException>(() => m.FreePercpu(new PercpuPtr(m.PerCpuPtr(q, 0) + 8)));
        Assert.Throws<KernelBugException>(() => m.FreePercpu(new PercpuPtr(12345)));
        m.FreePercpu(PercpuPtr.Null);
        Assert.Null(m.PercpuAllocator.Validate());
        m.FreePercpu(q);
    }

    [Fact]
    public void PercpuCounterFoldsAtTheBatchAndComparesByReadOrSum()
    {
        using var m = Boot(2);
        using var c = m.PercpuCounterInit(100, Gfp.Kernel)!;
        Assert.Equal(32, c.Batch); // max(32, 2 × 2 CPUs)
        using (m.OnCpu(0))
        {
            c.Add(31);
            Assert.Equal(100, c.Read()); // still in CPU 0's delta
            Assert.Equal(131, c.Sum());
            c.Add(1); // the delta reaches the batch: folded
            Assert.Equal(132, c.Read());
        }
        using (m.OnCpu(1))
        {
            c.Sub(20);
        }
        Assert.Equal(132, c.Read());
        Assert.Equal(112, c.Sum());
        Assert.Equal(1, c.Compare(111));
        Assert.Equal(0, c.Compare(112));
        Assert.Equal(-1, c.Compare(113));
        Assert.Equal(1, c.Compare(-10_000)); // far away: decided by Read alone
        c.Set(-5);
        Assert.Equal(-5, c.Sum());
        Assert.Equal(0, c.SumPositive());
        Assert.Equal(0, c.ReadPositive());
    }

    [Fact]
    public void PercpuStatsReportsEveryChunkInTheKernelsFormat()
    {
        using var m = Boot(2);
        var a = m.AllocPercpu(8, 8);
        var b = m.AllocPercpu(100, 4);
        var c = m.AllocPercpu(24, 8);
        m.FreePercpu(b);
        string s = m.Proc.Read("/sys/kernel/debug/percpu_stats");
        Assert.StartsWith("Percpu Memory Statistics\nAllocation Info:\n----------------------------------------\n"
            + "  unit_size           :      1048576\n  static_size         :       217088\n  reserved_size       :         8192\n"
            + "  dyn_size            :        28672\n  atom_size           :      2097152\n  alloc_size          :      2097152\n\n"
            + "Global Stats:\n----------------------------------------\n"
            + "  nr_alloc            :            3\n  nr_dealloc          :            1\n  nr_cur_alloc        :            2\n"
            + "  nr_max_alloc        :            3\n  nr_chunks           :            1\n  nr_max_chunks       :            1\n"
            + "  min_alloc_size      :            8\n  max_alloc_size      :          100\n", s);
        // First chunk: 8 | free 104 (b's 100 and the 4 bytes of c's alignment) | 24.
        Assert.Contains("Chunk: <- First Chunk\n  nr_alloc            :            2\n  max_alloc_size      :          100\n", s);
        Assert.Contains("  free_bytes          :        28640\n", s);
        Assert.Contains("  sum_frag            :          104\n  max_frag            :          104\n"
            + "  cur_min_alloc       :            8\n  cur_med_alloc       :            8\n  cur_max_alloc       :           24\n", s);
        Assert.Contains("/sys/kernel/debug/percpu_stats", m.Proc.Paths);
        m.FreePercpu(a);
        m.FreePercpu(c);
    }
}
