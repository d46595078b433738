// /sys/kernel/slab (mm/slub.c 6.1 sysfs attributes): the geometry against the real kernel's slabinfo, the
// counters after a known sequence of allocations and frees whose SLUB outcome is worked out here by hand
// (cpu slab, cpu partial, node partial, min_partial), directory names and links of merged caches
// (create_unique_id), debug flags, NUMA suffixes, the debugfs alloc/free traces of slub_debug=U caches, and
// the errors for bad names and other allocators.
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using CsCheck;

namespace Kmem.Tests.Proc;

public class SysSlabTests
{
    private static Machine Boot(int cpus = 2, int nodes = 1, Preset preset = Preset.X64, string? slubDebug = null) =>
        Machine.Boot(new MachineOptions { Memory = "512M", Cpus = cpus, Nodes = nodes, Preset = preset, Seed = 5, SlubDebug = slubDebug });

    [Theory]
    [InlineData(Snapshots.X64, Preset.X64, 2, "512M")]
    [InlineData(Snapshots.I386, Preset.X86Pae, 1, "1536M")]
    public void KmallocGeometryAgreesWithTheRealKernelsSlabinfo(string capture, Preset preset, int cpus, string memory)
    {
        using var m = Machine.Boot(new MachineOptions { Memory = memory, Cpus = cpus, Preset = preset, Seed = 5 });
        var sys = m.SysSlab;
        int compared = 0;
        foreach (string line in Snapshots.Lines(capture, "slabinfo").Skip(2))
        {
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (!f[0].Contains("kmalloc", StringComparison.Ordinal))
            {
                continue;
            }
            // <objsize> <objperslab> <pagesperslab>
            Assert.Equal(f[3] + "\n", sys.Read(f[0], "slab_size"));
            Assert.Equal(f[4] + "\n", sys.Read(f[0], "objs_per_slab"));
            int order = int.Parse(sys.Read(f[0], "order"), System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(long.Parse(f[5], System.Globalization.CultureInfo.InvariantCulture), 1L << order);
            // A kmalloc cache is never merged: a directory under its own name, no aliases, all of it usercopy.
            Assert.Contains(new SysSlabEntry(f[0], null), sys.List());
            Assert.Equal("0\n", sys.Read(f[0], "aliases"));
            Assert.Equal(sys.Read(f[0], "object_size"), sys.Read(f[0], "usersize"));
            compared++;
        }
        // Every kmalloc type (normal, cg, rcl, dma) and size (8 … 8k, 96, 192) of the capture.
        Assert.Equal(52, compared);
        Assert.Equal("96\n", sys.Read("kmalloc-96", "object_size"));
        Assert.Equal("1\n", sys.Read("kmalloc-rcl-64", "reclaim_account"));
        Assert.Equal("1\n", sys.Read("dma-kmalloc-64", "cache_dma"));
        Assert.Equal("0\n", sys.Read("kmalloc-64", "cache_dma"));
    }

    [Fact]
    public void CountersFollowAKnownSequenceOfAllocationsAndFrees()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("sysfs_counts", 256, 0, SlabFlags.NoMerge, null)!;
        var sys = m.SysSlab;
        const string dir = "sysfs_counts";
        // calculate_order with 2 CPUs wants 4 * (fls(2) + 1) = 12 objects: order 0 holds 16 of 256 bytes, no waste.
        const int perSlab = 16;
        Assert.Equal("256\n", sys.Read(dir, "slab_size"));
        Assert.Equal($"{perSlab}\n", sys.Read(dir, "objs_per_slab"));
        Assert.Equal("0\n", sys.Read(dir, "order"));
        // min_partial = clamp(ilog2(256) / 2, 5, 10); cpu_partial is 52 objects for sizes of 256..1023.
        Assert.Equal("5\n", sys.Read(dir, "min_partial"));
        Assert.Equal("52\n", sys.Read(dir, "cpu_partial"));
        Assert.Equal("0\n", sys.Read(dir, "slabs"));
        Assert.Equal("0\n", sys.Read(dir, "cpu_slabs"));

        var objs = new nint[40];
        using (m.OnCpu(0))
        {
            for (int i = 0; i < objs.Length; i++)
            {
                objs[i] = m.KmemCacheAlloc(s, Gfp.Kernel);
            }
        }
        // Slabs A and B are full (on no list), C is CPU 0's slab with 8 of 16 handed out. Every object of a cpu
        // slab counts as in use: only node partial slabs have free objects in the count.
        Assert.Equal("3 N0=3\n", sys.Read(dir, "slabs"));
        Assert.Equal("48 N0=48\n", sys.Read(dir, "total_objects"));
        Assert.Equal("48 N0=48\n", sys.Read(dir, "objects"));
        Assert.Equal("0\n", sys.Read(dir, "partial"));
        Assert.Equal("0\n", sys.Read(dir, "objects_partial"));
        Assert.Equal("1 N0=1\n", sys.Read(dir, "cpu_slabs"));
        Assert.Equal("0(0)\n", sys.Read(dir, "slabs_cpu_partial"));

        using (m.OnCpu(0))
        {
            // Freeing into full slab A freezes it onto CPU 0's partial list.
            m.KmemCacheFree(s, objs[0]);
            m.KmemCacheFree(s, objs[1]);
        }
        Assert.Equal("2 N0=2\n", sys.Read(dir, "cpu_slabs"));
        Assert.Equal($"{perSlab / 2}(1) C0={perSlab / 2}(1)\n", sys.Read(dir, "slabs_cpu_partial"));
        Assert.Equal("48 N0=48\n", sys.Read(dir, "objects"));
        using (m.OnCpu(1))
        {
            // Slab B goes onto CPU 1's partial list; CPU 1 has no cpu slab, so cpu_slabs skips it (as the kernel does).
            for (int i = perSlab; i < perSlab + 3; i++)
            {
                m.KmemCacheFree(s, objs[i]);
            }
        }
        Assert.Equal("2 N0=2\n", sys.Read(dir, "cpu_slabs"));
        Assert.Equal($"{perSlab}(2) C0={perSlab / 2}(1) C1={perSlab / 2}(1)\n", sys.Read(dir, "slabs_cpu_partial"));

        // Shrinking flushes every CPU: C (8 in use), A (14) and B (13) land on the node's partial list.
        Assert.Equal(1, m.KmemCacheShrink(s));
        Assert.Equal("3 N0=3\n", sys.Read(dir, "partial"));
        Assert.Equal("35 N0=35\n", sys.Read(dir, "objects_partial"));
        Assert.Equal("35 N0=35\n", sys.Read(dir, "objects"));
        Assert.Equal("48 N0=48\n", sys.Read(dir, "total_objects"));
        Assert.Equal("0\n", sys.Read(dir, "cpu_slabs"));
        Assert.Equal("0(0)\n", sys.Read(dir, "slabs_cpu_partial"));
        Assert.Contains("\nsysfs_counts          35     48    256   16    1 ", m.Proc.Slabinfo(), StringComparison.Ordinal);

        using (m.OnCpu(0))
        {
            foreach (int i in Enumerable.Range(0, objs.Length).Where(i => i is not (0 or 1) and not (>= perSlab and < perSlab + 3)))
            {
                m.KmemCacheFree(s, objs[i]);
            }
        }
        // Three empty slabs stay on the partial list: fewer than min_partial (5).
        Assert.Equal("3 N0=3\n", sys.Read(dir, "partial"));
        Assert.Equal("0\n", sys.Read(dir, "objects"));
        Assert.Equal("0\n", sys.Read(dir, "objects_partial"));
        m.SysSlab.Write(dir, "shrink", "1\n");
        Assert.Equal("0\n", sys.Read(dir, "slabs"));
        Assert.Equal("0\n", sys.Read(dir, "partial"));
        Assert.Equal("0\n", sys.Read(dir, "total_objects"));
    }

    private static long Total(SysSlab sys, string dir, string attr)
    {
        string text = sys.Read(dir, attr);
        return long.Parse(text[..text.IndexOfAny([' ', '\n'])], CultureInfo.InvariantCulture);
    }

    [Fact]
    public void CountersKeepTheirArithmeticUnderRandomAllocationAndFree()
    {
        // Ops: (cpu, alloc or free, which live object). After any sequence the counters must agree with each other,
        // and after a shrink (every CPU flushed) with the number of objects the test holds.
        Gen.Select(Gen.Int[0, 1], Gen.Int[0, 99], Gen.Int[0, 1 << 20]).Array[20, 400].Sample(ops =>
        {
            using var m = Boot();
            var s = m.KmemCacheCreate("sysfs_prop", 512, 0, SlabFlags.NoMerge, null)!;
            var sys = m.SysSlab;
            const string dir = "sysfs_prop";
            var live = new List<nint>();
            foreach (var (cpu, kind, pick) in ops)
            {
                using var pin = m.OnCpu(cpu);
                if (kind < 60 || live.Count == 0)
                {
                    live.Add(m.KmemCacheAlloc(s, Gfp.Kernel));
                }
                else
                {
                    int i = pick % live.Count;
                    m.KmemCacheFree(s, live[i]);
                    live.RemoveAt(i);
                }
            }
            long perSlab = Total(sys, dir, "objs_per_slab");
            long slabs = Total(sys, dir, "slabs");
            long objects = Total(sys, dir, "objects");
            Assert.Equal(slabs * perSlab, Total(sys, dir, "total_objects"));
            Assert.InRange(objects, live.Count, slabs * perSlab);
            Assert.InRange(Total(sys, dir, "cpu_slabs"), 0, slabs);
            Assert.InRange(Total(sys, dir, "partial"), 0, slabs);
            Assert.InRange(Total(sys, dir, "objects_partial"), 0, objects);
            Assert.Equal(objects, m.SlabLayer!.Stats(s).ActiveObjs);
            string cpuPartial = sys.Read(dir, "slabs_cpu_partial");
            var perCpu = Regex.Matches(cpuPartial, @" C\d+=\d+\((\d+)\)").Sum(x => int.Parse(x.Groups[1].Value, CultureInfo.InvariantCulture));
            Assert.Equal(int.Parse(Regex.Match(cpuPartial, @"^\d+\((\d+)\)").Groups[1].Value, CultureInfo.InvariantCulture), perCpu);

            m.KmemCacheShrink(s);
            slabs = Total(sys, dir, "slabs");
            long partial = Total(sys, dir, "partial");
            Assert.Equal(live.Count, Total(sys, dir, "objects"));
            Assert.Equal(0, Total(sys, dir, "cpu_slabs"));
            Assert.Equal("0(0)\n", sys.Read(dir, "slabs_cpu_partial"));
            Assert.True((live.Count + perSlab - 1) / perSlab <= slabs);
            // Every free object now sits in a node partial slab.
            Assert.Equal(slabs * perSlab - live.Count, partial * perSlab - Total(sys, dir, "objects_partial"));
            if (live.Count == 0)
            {
                Assert.Equal(0, slabs);
            }
        }, iter: 25, threads: 1);
    }

    [Fact]
    public void CountsArePerNodeOnANumaMachineAndPlainWithoutNuma()
    {
        using (var m = Boot(nodes: 2))
        {
            var s = m.KmemCacheCreate("sysfs_numa", 512, 0, SlabFlags.NoMerge, null)!;
            nint a, b;
            using (m.OnCpu(0))
            {
                a = m.KmemCacheAllocNode(s, Gfp.Kernel, 0);
            }
            using (m.OnCpu(1))
            {
                b = m.KmemCacheAllocNode(s, Gfp.Kernel, 1);
            }
            Assert.Equal("2 N0=1 N1=1\n", m.SysSlab.Read("sysfs_numa", "slabs"));
            Assert.Equal("2 N0=1 N1=1\n", m.SysSlab.Read("sysfs_numa", "cpu_slabs"));
            m.KmemCacheFree(s, a);
            m.KmemCacheFree(s, b);
        }
        using (var m = Boot(cpus: 1, preset: Preset.X86Pae))
        {
            var s = m.KmemCacheCreate("sysfs_flat", 512, 0, SlabFlags.NoMerge, null)!;
            nint a = m.KmemCacheAlloc(s, Gfp.Kernel);
            // Debian's i386 kernels have no CONFIG_NUMA: no per-node suffix.
            Assert.Equal("1\n", m.SysSlab.Read("sysfs_flat", "slabs"));
            Assert.Equal("1\n", m.SysSlab.Read("sysfs_flat", "cpu_slabs"));
            m.KmemCacheFree(s, a);
        }
    }

    [Fact]
    public void AMergedCacheHasAUniqueIdDirectoryAndALinkPerName()
    {
        using var m = Boot();
        var a = m.KmemCacheCreate("sysfs_merge_a", 60, 0, SlabFlags.None, null)!;
        var b = m.KmemCacheCreate("sysfs_merge_b", 64, 0, SlabFlags.None, null)!;
        Assert.Same(a, b);
        var sys = m.SysSlab;
        string dir = sys.Resolve("sysfs_merge_a");
        Assert.Equal(":0000064", dir);
        Assert.Equal(dir, sys.Resolve("sysfs_merge_b"));
        var list = sys.List();
        Assert.Contains(new SysSlabEntry(":0000064", null), list);
        Assert.Contains(new SysSlabEntry("sysfs_merge_a", ":0000064"), list);
        Assert.Contains(new SysSlabEntry("sysfs_merge_b", ":0000064"), list);
        Assert.Contains("sysfs_merge_b -> :0000064\n", sys.ListText(), StringComparison.Ordinal);
        Assert.Equal(list.Select(e => e.Name).Order(StringComparer.Ordinal), list.Select(e => e.Name));
        Assert.Equal($"{a.RefCount - 1}\n", sys.Read("sysfs_merge_b", "aliases"));
        Assert.True(a.RefCount >= 2);
        Assert.Equal("64\n", sys.Read(dir, "object_size"));

        // create_unique_id: the MERGE_SAME flags as letters before the size.
        var rcl = m.KmemCacheCreate("sysfs_rcl", 200, 0, SlabFlags.ReclaimAccount | SlabFlags.Account, null)!;
        Assert.Equal(":aA-0000200", sys.Resolve("sysfs_rcl"));
        var dma = m.KmemCacheCreate("sysfs_dma", 200, 0, SlabFlags.CacheDma, null)!;
        Assert.Equal(":d-0000200", sys.Resolve("sysfs_dma"));
        Assert.Equal("1\n", sys.Read("sysfs_dma", "cache_dma"));

        // Unmergeable caches (a constructor, RCU, NoMerge) keep their own name.
        var ctor = m.KmemCacheCreate("sysfs_ctor", 64, 0, SlabFlags.None, InitOnce)!;
        Assert.Contains(new SysSlabEntry("sysfs_ctor", null), sys.List());
        Assert.Equal("InitOnce\n", sys.Read("sysfs_ctor", "ctor"));
        Assert.Equal("", sys.Read(dir, "ctor"));
        var rcu = m.KmemCacheCreate("sysfs_rcu", 64, 0, SlabFlags.TypesafeByRcu, null)!;
        Assert.Equal("sysfs_rcu", sys.Resolve("sysfs_rcu"));
        Assert.Equal("1\n", sys.Read("sysfs_rcu", "destroy_by_rcu"));
        Assert.Equal("0\n", sys.Read(dir, "destroy_by_rcu"));

        // Destroying the alias drops its name; destroying the cache drops the directory.
        m.KmemCacheDestroy(b);
        foreach (var c in new[] { rcl, dma, ctor, rcu })
        {
            m.KmemCacheDestroy(c);
        }
        Assert.DoesNotContain(sys.List(), e => e.Name is "sysfs_ctor" or "sysfs_rcu" or "sysfs_rcl");
    }

    private static void InitOnce(nint p)
    {
    }

    [Fact]
    public void DebugFlagsShowAndDebugCachesKeepNoCpuPartialSlabs()
    {
        using var m = Boot(slubDebug: "FZPU,sysfs_dbg");
        var s = m.KmemCacheCreate("sysfs_dbg", 100, 0, SlabFlags.None, null)!;
        var sys = m.SysSlab;
        // slub_debug makes a cache unmergeable: its directory has its own name.
        Assert.Contains(new SysSlabEntry("sysfs_dbg", null), sys.List());
        foreach (string flag in new[] { "sanity_checks", "red_zone", "poison", "store_user" })
        {
            Assert.Equal("1\n", sys.Read("sysfs_dbg", flag));
        }
        Assert.Equal("0\n", sys.Read("sysfs_dbg", "trace"));
        Assert.Equal("0\n", sys.Read("sysfs_dbg", "cpu_partial"));
        Assert.Equal($"{s.Size}\n", sys.Read("sysfs_dbg", "slab_size"));
        Assert.NotEqual("100\n", sys.Read("sysfs_dbg", "slab_size"));
        Assert.Equal("100\n", sys.Read("sysfs_dbg", "object_size"));
        Assert.Equal("0\n", sys.Read("kmalloc-128", "poison"));
    }

    [Fact]
    public void DumpListsEveryAttributeWithAValueAsGrepDoes()
    {
        using var m = Boot();
        var sys = m.SysSlab;
        string dump = sys.Dump("kmalloc-64");
        string[] lines = dump.TrimEnd('\n').Split('\n');
        var names = lines.Select(l => l[..l.IndexOf(':')]).ToArray();
        Assert.Equal(names.Order(StringComparer.Ordinal), names);
        // ctor (no constructor), shrink and validate print nothing, so grep shows no line for them.
        Assert.Equal(sys.Attributes("kmalloc-64").Where(a => a is not ("ctor" or "shrink" or "validate")), names);
        Assert.Contains("objs_per_slab:64\n", dump, StringComparison.Ordinal);
        Assert.Contains("object_size:64\n", dump, StringComparison.Ordinal);
        foreach (string attr in new[] { "object_size", "slab_size", "objs_per_slab", "order", "partial", "cpu_slabs", "aliases",
            "total_objects", "objects", "objects_partial", "cpu_partial", "min_partial", "align", "cache_dma", "reclaim_account",
            "hwcache_align", "poison", "red_zone", "store_user", "sanity_checks", "trace", "destroy_by_rcu", "slabs", "ctor",
            "slabs_cpu_partial", "usersize", "failslab", "shrink" })
        {
            Assert.Contains(attr, sys.Attributes("kmalloc-64"));
        }
        Assert.Equal(sys.Read("kmalloc-64", "order"), sys.ReadPath("/sys/kernel/slab/kmalloc-64/order"));
        Assert.Equal(dump, sys.ReadPath("sys/kernel/slab/kmalloc-64"));
        Assert.Equal(sys.ListText(), sys.ReadPath("/sys/kernel/slab/"));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static nint[] AllocSix(Machine m, KmemCache s)
    {
        var objs = new nint[6];
        for (int i = 0; i < objs.Length; i++)
        {
            objs[i] = m.KmemCacheAlloc(s, Gfp.Kernel);
        }
        return objs;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static nint[] AllocTwo(Machine m, KmemCache s) => [m.KmemCacheAlloc(s, Gfp.Kernel), m.KmemCacheAlloc(s, Gfp.Kernel)];

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void FreeOne(Machine m, KmemCache s, nint p) => m.KmemCacheFree(s, p);

    [Fact]
    public void AllocAndFreeTracesGroupTheObjectsInUseByCaller()
    {
        using var m = Boot(slubDebug: "U,sysfs_trk");
        var s = m.KmemCacheCreate("sysfs_trk", 64, 0, SlabFlags.None, null)!;
        var sys = m.SysSlab;
        Assert.Equal("No data\n", sys.AllocTraces("sysfs_trk"));
        nint[] six, two;
        using (m.OnCpu(1))
        {
            six = AllocSix(m, s);
            FreeOne(m, s, six[5]);
            // The freed slot is the next one handed out, so one of AllocTwo's objects carries FreeOne's free track.
            two = AllocTwo(m, s);
        }
        Assert.Contains(six[5], two);
        int pid = Environment.CurrentManagedThreadId;
        string alloc = sys.AllocTraces("sysfs_trk");
        var entries = alloc.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, entries.Length);
        Assert.Matches(new Regex($@"^      5 AllocSix age=\d+(/\d+/\d+)? pid={pid} cpus=1\n        KmemCacheAlloc\n        AllocSix\n"), entries[0]);
        Assert.Matches(new Regex($@"^      2 AllocTwo age=\d+(/\d+/\d+)? pid={pid} cpus=1\n        KmemCacheAlloc\n        AllocTwo\n"), entries[1]);
        string free = sys.FreeTraces("sysfs_trk");
        // Six objects in use were never freed: their free track was never set (pid 0, cpu 0, age from boot, no
        // stack, so no blank line after it).
        Assert.Matches(new Regex($@"^      6 <not-available> age=\d+ pid=0 cpus=0\n      1 FreeOne age=\d+ pid={pid} cpus=1\n        KmemCacheFree\n        FreeOne\n"), free);
        // Ages move with the clock between two reads; the rest is the same.
        static string NoAges(string text) => Regex.Replace(text, @"age=[\d/]+", "age=");
        Assert.Equal(NoAges(alloc), NoAges(sys.ReadPath("/sys/kernel/debug/slab/sysfs_trk/alloc_traces")));
        Assert.Equal(NoAges(free), NoAges(sys.ReadPath("sys/kernel/debug/slab/sysfs_trk/free_traces")));
        Assert.Throws<FileNotFoundException>(() => sys.ReadPath("/sys/kernel/debug/slab/sysfs_trk/alloc_calls"));
        Assert.Throws<FileNotFoundException>(() => sys.AllocTraces("kmalloc-64"));
        Assert.Throws<FileNotFoundException>(() => sys.FreeTraces("no_such_cache"));
        foreach (nint p in six.Take(5).Concat(two))
        {
            m.KmemCacheFree(s, p);
        }
        Assert.Equal("No data\n", sys.AllocTraces("sysfs_trk"));
    }

    [Fact]
    public void WritingCpuPartialAndMinPartialChangesWhereSlabsGo()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("sysfs_tune", 256, 0, SlabFlags.NoMerge, null)!;
        var sys = m.SysSlab;
        const string dir = "sysfs_tune";
        var objs = new nint[40];
        using (m.OnCpu(0))
        {
            for (int i = 0; i < objs.Length; i++)
            {
                objs[i] = m.KmemCacheAlloc(s, Gfp.Kernel);
            }
        }
        Assert.Equal("1 N0=1\n", sys.Read(dir, "cpu_slabs"));
        Assert.Equal("0\n", sys.Read(dir, "partial"));
        // cpu_partial_store: 0 objects means at most the slab just frozen; every CPU is flushed.
        sys.Write(dir, "cpu_partial", "0\n");
        Assert.Equal("0\n", sys.Read(dir, "cpu_partial"));
        Assert.Equal(0u, s.CpuPartialSlabs);
        Assert.Equal("0\n", sys.Read(dir, "cpu_slabs"));
        // Slab C (8 of 16 in use) went to the node list on the flush; A and B are full.
        Assert.Equal("1 N0=1\n", sys.Read(dir, "partial"));
        using (m.OnCpu(1))
        {
            m.KmemCacheFree(s, objs[0]);   // A onto CPU 1's partial list
            m.KmemCacheFree(s, objs[16]);  // B replaces it; A is unfrozen to the node list
        }
        Assert.Equal("8(1) C1=8(1)\n", sys.Read(dir, "slabs_cpu_partial"));
        Assert.Equal("2 N0=2\n", sys.Read(dir, "partial"));

        // min_partial_store: with 0, a node slab that empties goes straight back to the page allocator.
        sys.Write(dir, "min_partial", "+0");
        Assert.Equal("0\n", sys.Read(dir, "min_partial"));
        using (m.OnCpu(1))
        {
            for (int i = 1; i < 16; i++)
            {
                m.KmemCacheFree(s, objs[i]);
            }
        }
        Assert.Equal("2 N0=2\n", sys.Read(dir, "slabs"));
        Assert.Equal("1 N0=1\n", sys.Read(dir, "partial"));
        sys.Write(dir, "min_partial", "7\n");
        Assert.Equal(7, s.MinPartial);

        Assert.Throws<ArgumentException>(() => sys.Write(dir, "min_partial", "-1"));
        Assert.Throws<ArgumentException>(() => sys.Write(dir, "cpu_partial", "lots"));
        Assert.Throws<ArgumentException>(() => sys.Write(dir, "min_partial", "99999999999"));
        Assert.Equal("7\n", sys.Read(dir, "min_partial"));
        sys.Write(dir, "cpu_partial", "52");
        Assert.Equal(7u, s.CpuPartialSlabs);
        using (m.OnCpu(0))
        {
            foreach (nint p in objs.Skip(17))
            {
                m.KmemCacheFree(s, p);
            }
        }
        m.KmemCacheShrink(s);
        Assert.Equal("0\n", sys.Read(dir, "slabs"));
    }

    [Fact]
    public void ADebugCacheTakesNoCpuPartialLimit()
    {
        using var m = Boot(slubDebug: "F,sysfs_dbg_tune");
        m.KmemCacheCreate("sysfs_dbg_tune", 64, 0, SlabFlags.None, null);
        Assert.Throws<ArgumentException>(() => m.SysSlab.Write("sysfs_dbg_tune", "cpu_partial", "10"));
        m.SysSlab.Write("sysfs_dbg_tune", "cpu_partial", "0");
        Assert.Equal("0\n", m.SysSlab.Read("sysfs_dbg_tune", "cpu_partial"));
    }

    [Fact]
    public void BadNamesAndWritesAreRefusedWithClearErrors()
    {
        using var m = Boot();
        var sys = m.SysSlab;
        var noCache = Assert.Throws<DirectoryNotFoundException>(() => sys.Read("no_such_cache", "order"));
        Assert.Contains("/sys/kernel/slab/no_such_cache", noCache.Message, StringComparison.Ordinal);
        var noAttr = Assert.Throws<FileNotFoundException>(() => sys.Read("kmalloc-64", "alloc_calls"));
        Assert.Contains("objs_per_slab", noAttr.Message, StringComparison.Ordinal);
        Assert.Throws<UnauthorizedAccessException>(() => sys.Write("kmalloc-64", "order", "3"));
        Assert.Throws<ArgumentException>(() => sys.Write("kmalloc-64", "shrink", "0"));
        Assert.Throws<FileNotFoundException>(() => sys.ReadPath("/proc/slabinfo"));
        Assert.True(SysSlab.IsSysSlabPath("/sys/kernel/slab/kmalloc-8/order"));
        Assert.False(SysSlab.IsSysSlabPath("/sys/kernel/slabs"));
        Assert.Equal("8\n", sys.Read("kmalloc-8", "object_size"));
    }

    [Theory]
    [InlineData(SlabAllocator.Slab)]
    [InlineData(SlabAllocator.Slob)]
    public void SlabAndSlobHaveNoSysKernelSlab(SlabAllocator kind)
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "256M", Slab = kind, Seed = 1 });
        Assert.False(m.SysSlab.Available);
        var e = Assert.Throws<InvalidOperationException>(() => m.SysSlab.List());
        Assert.Contains("SLUB", e.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => m.SysSlab.Read("kmalloc-64", "order"));
    }
}
