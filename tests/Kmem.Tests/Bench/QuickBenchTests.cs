// The quick comparison's pure logic: statistics, the random size distribution,
// option parsing, the report's ratios, targets and JSON shape, and leaving out a
// contender that cannot run. No timing is asserted: speed is measured only in bench/.
using System.Text.Json;
using Kmem.Bench;

namespace Kmem.Tests.Bench;

public class QuickBenchTests
{
    [Fact]
    public void SummaryOfAnOddCountIsTheMiddleValueWithMinAndMax()
    {
        var s = Summary.Of([9.0, 1.0, 5.0, 7.0, 3.0]);
        Assert.Equal(5.0, s.Median);
        Assert.Equal(1.0, s.Min);
        Assert.Equal(9.0, s.Max);
        Assert.Equal(5, s.Count);
    }

    [Fact]
    public void SummaryOfAnEvenCountIsTheMeanOfTheMiddleTwo()
    {
        var s = Summary.Of([4.0, 1.0, 10.0, 2.0]);
        Assert.Equal(3.0, s.Median);
        Assert.Equal(1.0, s.Min);
        Assert.Equal(10.0, s.Max);
    }

    [Fact]
    public void SummaryRefusesAnEmptySampleAndNaN()
    {
        Assert.Throws<ArgumentException>(() => Summary.Of([]));
        Assert.Throws<ArgumentException>(() => Summary.Of([1.0, double.NaN]));
    }

    [Fact]
    public void RandomSizesStayInRangeAndFillEveryOctaveEvenly()
    {
        int[] sizes = SizeDistribution.Sizes(80_000, 7);
        Assert.All(sizes, s => Assert.InRange(s, SizeDistribution.MinSize, SizeDistribution.MaxSize));
        var perOctave = sizes.GroupBy(s => System.Numerics.BitOperations.Log2((uint)s)).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(Enumerable.Range(4, 8), perOctave.Keys.Order());
        Assert.All(perOctave.Values, n => Assert.InRange(n, 9_000, 11_000)); // 10,000 expected in each
        Assert.InRange(sizes.Average(), SizeDistribution.Mean * 0.97, SizeDistribution.Mean * 1.03);
        Assert.Equal(764.5, SizeDistribution.Mean);
    }

    [Fact]
    public void RandomSizesAndFreeOrderRepeatForASeed()
    {
        Assert.Equal(SizeDistribution.Sizes(1000, 3), SizeDistribution.Sizes(1000, 3));
        Assert.NotEqual(SizeDistribution.Sizes(1000, 3), SizeDistribution.Sizes(1000, 4));
        int[] order = SizeDistribution.Permutation(10_000, 5);
        Assert.Equal(Enumerable.Range(0, 10_000), order.Order());
        Assert.NotEqual(Enumerable.Range(0, 10_000), order);
    }

    [Fact]
    public void OptionsParseAndNameTheWrongOne()
    {
        var o = QuickOptions.Parse(["--quick", "--json", "--repetitions", "7", "--contenders", "SLUB kmalloc, mimalloc", "--no-memory"]);
        Assert.True(o.Json);
        Assert.Equal(7, o.Repetitions);
        Assert.Equal(["SLUB kmalloc", "mimalloc"], o.Contenders!);
        Assert.False(o.Memory);
        Assert.True(o.Boot);
        Assert.Equal(9, QuickOptions.Parse([]).Repetitions);
        Assert.Contains("--repetitions", Assert.Throws<ArgumentException>(() => QuickOptions.Parse(["--repetitions", "0"])).Message);
        Assert.Contains("--frobnicate", Assert.Throws<ArgumentException>(() => QuickOptions.Parse(["--frobnicate"])).Message);
        Assert.Contains("hoard", Assert.Throws<ArgumentException>(() => QuickOptions.Parse(["--contenders", "hoard"])).Message);
        Assert.Contains("needs a value", Assert.Throws<ArgumentException>(() => QuickOptions.Parse(["--workloads"])).Message);
        Assert.Throws<ArgumentException>(() => QuickOptions.Parse(["--json", "--markdown"]));
        Assert.Equal(("new byte[]", "larson"), QuickOptions.Parse(["--memory-child", QuickOptions.ChildArgument("new byte[]", "larson")]).MemoryChild);
        Assert.Contains("WORKLOAD:CONTENDER", Assert.Throws<ArgumentException>(() => QuickOptions.Parse(["--memory-child", "batch"])).Message);
    }

    [Fact]
    public void RunRefusesAWrongOptionWithExitCode2()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        Assert.Equal(2, QuickBench.Run(["--repetitions", "many"], [], output, error));
        Assert.Contains("\"many\"", error.ToString());
        Assert.Equal("", output.ToString());
    }

    private static BenchReport MadeUpReport()
    {
        static TimingResult T(string workload, int threads, string contender, double ns) =>
            new(workload, "op", threads, contender, new Summary(ns, ns * 0.9, ns * 1.2, 7));
        return new BenchReport
        {
            Runtime = ".NET test",
            Host = "test host",
            LoadAtStart = "0.10 0.20 0.30",
            LoadAtEnd = "0.40 0.50 0.60",
            Repetitions = 7,
            WorkloadOrder = [BenchReport.Pair64, BenchReport.Pair64TwoThreads, BenchReport.Batch, BenchReport.CrossThread, BenchReport.LarsonOne, BenchReport.LarsonTwo],
            Contenders = [new("SLUB kmalloc", ContenderKind.Kmem), new("glibc malloc", ContenderKind.Host), new("mimalloc", ContenderKind.Host), new("tcmalloc", ContenderKind.Host)],
            Notes = ["jemalloc skipped: not installed"],
            Timings =
            [
                T(BenchReport.Pair64, 1, "SLUB kmalloc", 12), T(BenchReport.Pair64, 1, "glibc malloc", 24), T(BenchReport.Pair64, 1, "mimalloc", 16), T(BenchReport.Pair64, 1, "tcmalloc", 10),
                T(BenchReport.Pair64TwoThreads, 2, "SLUB kmalloc", 12.5),
                T(BenchReport.Batch, 1, "SLUB kmalloc", 20), T(BenchReport.Batch, 1, "glibc malloc", 90), T(BenchReport.Batch, 1, "mimalloc", 25), T(BenchReport.Batch, 1, "tcmalloc", 30),
                T(BenchReport.LarsonOne, 1, "SLUB kmalloc", 40), T(BenchReport.LarsonTwo, 2, "SLUB kmalloc", 50), T(BenchReport.LarsonTwo, 2, "mimalloc", 60),
            ],
            Memory = [new("batch", "SLUB kmalloc", 1000, 1300), new("batch", "mimalloc", 1000, 1200), new("batch", "glibc malloc", 1000, 1500)],
            Handoffs = [new(BenchReport.Pair64TwoThreads, 41.2, 40.6), new(BenchReport.LarsonTwo, 163.4, 41.0)],
        };
    }

    [Fact]
    public void RatiosAreThisTimeOverGlibcAndMimalloc()
    {
        var r = MadeUpReport();
        var slub = r.Find(BenchReport.Pair64, "SLUB kmalloc")!;
        Assert.Equal(0.5, r.RatioTo(slub, BenchReport.GlibcBaseline));
        Assert.Equal(0.75, r.RatioTo(slub, BenchReport.MimallocBaseline));
        Assert.Null(r.RatioTo(r.Find(BenchReport.LarsonOne, "SLUB kmalloc")!, BenchReport.GlibcBaseline)); // glibc did not run it
    }

    [Fact]
    public void TargetsAreRatiosAgainstTheFastestOtherContender()
    {
        var targets = MadeUpReport().Targets();
        var pair = targets[0];
        Assert.Equal(10.0 / 12, pair.Ratio!.Value, 9); // tcmalloc, the fastest, over SLUB
        Assert.False(pair.Met);
        Assert.Contains("tcmalloc", pair.Detail);
        Assert.Equal(25.0 / 20, targets[1].Ratio!.Value, 9); // batch: mimalloc is the closest
        Assert.True(targets[1].Met);
        Assert.Null(targets[2].Ratio); // cross-thread not measured
        Assert.Equal(60.0 / 50, targets[3].Ratio!.Value, 9);
        var scaling = targets[4];
        Assert.Equal(2 * 40.0 / 50, scaling.Ratio!.Value, 9);
        Assert.False(scaling.Met); // 1.6 < 1.8
        Assert.Equal(1.2 / 1.3, targets[5].Ratio!.Value, 9); // memory: mimalloc holds 1.2, SLUB 1.3
    }

    [Fact]
    public void TheFloorIsMeasuredAgainstButNeverCountsAsARival()
    {
        var r = MadeUpReport();
        r.Contenders.Add(new(ContenderSet.FloorName, ContenderKind.Floor));
        r.Contenders.Add(new("SLAB kmalloc", ContenderKind.Kmem));
        r.Timings.Add(new(BenchReport.Pair64, "op", 1, ContenderSet.FloorName, new Summary(6, 5, 7, 7)));
        r.Timings.Add(new(BenchReport.Pair64, "op", 1, "SLAB kmalloc", new Summary(24, 20, 30, 7)));
        var targets = r.Targets();
        // Faster than tcmalloc's 10 ns, the floor's 6 ns does not become the fastest rival.
        Assert.Equal(10.0 / 12, targets[0].Ratio!.Value, 9);
        var floor64 = targets.Single(t => t.Name.StartsWith("pair 64 B: C# floor", StringComparison.Ordinal));
        Assert.Equal(6.0 / 12, floor64.Ratio!.Value, 9);
        Assert.False(floor64.Met); // 12 ns is 2x the floor, more than 1.3x
        Assert.Null(targets.Single(t => t.Name.StartsWith("pair 16 B", StringComparison.Ordinal)).Ratio);
        var slab = targets.Single(t => t.Name.StartsWith("SLAB's array caches", StringComparison.Ordinal));
        Assert.Equal(12.0 / 24, slab.Ratio!.Value, 9);
        Assert.False(slab.Met); // SLAB at 2x SLUB
    }

    [Fact]
    public void JsonHasEveryFieldAMachineReads()
    {
        var stream = new MemoryStream();
        MadeUpReport().WriteJson(stream);
        using var doc = JsonDocument.Parse(stream.ToArray());
        var root = doc.RootElement;
        Assert.Equal("0.10 0.20 0.30", root.GetProperty("loadAverage").GetProperty("start").GetString());
        Assert.Equal(7, root.GetProperty("repetitions").GetInt32());
        var handoff = root.GetProperty("lineHandoffs")[1];
        Assert.Equal(BenchReport.LarsonTwo, handoff.GetProperty("workload").GetString());
        Assert.Equal(163.4, handoff.GetProperty("beforeNs").GetDouble());
        Assert.Equal(41.0, handoff.GetProperty("afterNs").GetDouble());
        Assert.Contains("log-uniform", root.GetProperty("sizeDistribution").GetString());
        Assert.Equal("kmem", root.GetProperty("contenders")[0].GetProperty("kind").GetString());
        Assert.Equal("jemalloc skipped: not installed", root.GetProperty("notes")[0].GetString());
        var first = root.GetProperty("timings")[0];
        Assert.Equal(BenchReport.Pair64, first.GetProperty("workload").GetString());
        Assert.Equal("SLUB kmalloc", first.GetProperty("contender").GetString());
        Assert.Equal(12, first.GetProperty("medianNs").GetDouble());
        Assert.Equal(10.8, first.GetProperty("minNs").GetDouble(), 9);
        Assert.Equal(14.4, first.GetProperty("maxNs").GetDouble(), 9);
        Assert.Equal(0.5, first.GetProperty("vsGlibc").GetDouble());
        Assert.Equal(0.75, first.GetProperty("vsMimalloc").GetDouble());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("timings")[9].GetProperty("vsGlibc").ValueKind);
        Assert.Equal(1.3, root.GetProperty("memory")[0].GetProperty("heldOverRequested").GetDouble());
        Assert.Equal(10, root.GetProperty("targets").GetArrayLength()); // six against rivals, three against the floor, SLAB against SLUB
        Assert.True(root.GetProperty("targets")[1].GetProperty("met").GetBoolean());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("targets")[2].GetProperty("met").ValueKind);
    }

    [Fact]
    public void TextAndMarkdownShowEveryContenderAndTheNotes()
    {
        var text = new StringWriter();
        var report = MadeUpReport();
        report.WriteText(text);
        Assert.Contains("load average at start: 0.10 0.20 0.30; at end: 0.40 0.50 0.60", text.ToString());
        Assert.Contains("note: jemalloc skipped: not installed", text.ToString());
        var markdown = new StringWriter();
        report.WriteMarkdown(markdown);
        string[] lines = markdown.ToString().Split('\n');
        Assert.EndsWith("pair 64 B, 2 threads 41 / 41; larson 2 threads 163 / 41.", lines[0].TrimEnd());
        Assert.StartsWith("Cache-line handoff between the two worker cores", lines[0], StringComparison.Ordinal);
        Assert.Equal("| workload (ns/op, median) | SLUB kmalloc | glibc malloc | mimalloc | tcmalloc |", lines[2].TrimEnd());
        Assert.Contains("larson 2 threads 163 / 41", text.ToString());
    }

    [Fact]
    public void AMissingLibraryIsLeftOutWithANote()
    {
        var missing = new NativeLibrarySpec("nosuchalloc", "libnosuchalloc.so.9", "libnosuchalloc9", "malloc", "free", "aligned_alloc", true);
        using var set = ContenderSet.Create(n => n is "nosuchalloc" or "glibc malloc", NativeLibraries.Glibc, [missing]);
        Assert.Equal(["glibc malloc"], set.Contenders.Select(c => c.Name));
        Assert.Contains(set.Notes, n => n.StartsWith("nosuchalloc skipped:", StringComparison.Ordinal) && n.Contains("libnosuchalloc9"));
    }

    [Fact]
    public void ALibraryWithoutTheEntryPointsIsLeftOutWithANote()
    {
        var wrong = new NativeLibrarySpec("libc-no-malloc", "libc.so.6", "libc6", "no_such_malloc", "free", "aligned_alloc", true);
        using var set = ContenderSet.Create(n => n == "libc-no-malloc", NativeLibraries.Glibc, [wrong]);
        Assert.Empty(set.Contenders);
        Assert.Contains(set.Notes, n => n.Contains("does not export no_such_malloc"));
    }

    [Fact]
    public void ASlabBackendIsUsedWhenItsSlabApiWorksAndOtherwiseLeftOutWithANote()
    {
        using var set = ContenderSet.Create(n => n.StartsWith("SLUB", StringComparison.Ordinal) || n.StartsWith("SLOB", StringComparison.Ordinal));
        Assert.Equal(["SLUB kmalloc", "SLUB cache"], set.Contenders.Select(c => c.Name).Take(2));
        using var slob = Machine.Boot(new MachineOptions { Memory = "128M", Slab = SlabAllocator.Slob });
        bool works = ContenderSet.SlabWorks(slob, out string? why);
        Assert.Equal(works, set.Contenders.Any(c => c.Name == "SLOB kmalloc"));
        Assert.Equal(!works, set.Notes.Any(n => n.StartsWith("SLOB skipped: ", StringComparison.Ordinal) && n.Contains(why ?? "?", StringComparison.Ordinal)));
    }

    [Fact]
    public void EveryContenderRunsEveryWorkloadItSupportsAndGivesEverythingBack()
    {
        // One unit of each workload, to check that the loops free all they allocate: once every cache is shrunk,
        // the SLUB machine's slab pages are back to what they were before.
        using var set = ContenderSet.Create(n => n is "SLUB kmalloc" or "SLUB cache" or "new byte[]" or "Kmem pages");
        var slub = set.Contenders[0].Machine!;
        long slabBefore = SlabBytesAfterShrinking(slub);
        using var threads = new TwoThreads();
        foreach (var w in QuickBench.AllWorkloads())
        {
            foreach (var c in set.Contenders.Where(c => c.Supports(w)))
            {
                using var run = c.Create(w, threads);
                Assert.True(run.Run(1) > TimeSpan.Zero);
            }
        }
        Assert.Equal(slabBefore, SlabBytesAfterShrinking(slub));
        var batch = QuickBench.AllWorkloads().Single(w => w.Name == BenchReport.Batch);
        Assert.False(set.Contenders.Single(c => c.Name == "Kmem pages").Supports(batch));
        Assert.False(set.Contenders.Single(c => c.Name == "SLUB cache").Supports(QuickBench.AllWorkloads().Single(w => w.Name == "pair 64 KiB")));
    }

    [Fact]
    public void TheLineHandoffIsTheTimeOfOneOfTheTwoThreadsTurns()
    {
        // Each turn waits for the other thread's store to reach it, so it costs at least a nanosecond; the median
        // round's 2,000 turns cannot have taken longer than all three rounds (a lost turn would hang the round).
        using var threads = new TwoThreads();
        var elapsed = System.Diagnostics.Stopwatch.StartNew();
        double ns = threads.LineHandoffNs(trips: 1_000, rounds: 3);
        Assert.InRange(ns, 1, elapsed.Elapsed.TotalNanoseconds / 2_000.0);
    }

    private static long SlabBytesAfterShrinking(Machine m)
    {
        foreach (var cache in m.SlabCaches)
        {
            m.KmemCacheShrink(cache);
        }
        return Contender.MeminfoBytes(m.Proc.Read("meminfo"), "Slab");
    }
}
