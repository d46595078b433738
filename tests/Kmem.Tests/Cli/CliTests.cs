// The kmem command run in-process (Program.Run with captured writers): the exit codes
// of the contract (0 ok, 1 bad input, 2 usage), the JSON object's fields, messages
// that name the file, line and expectation for each kind of malformed line, compare on
// a small trace, proc after the built-in workload, and help. Slices of the bundled
// real trace keep each run well under a second.
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Kmem.Tests.Trace;

namespace Kmem.Tests.Cli;

public sealed class CliTests : IDisposable
{
    private const string Kmalloc = "kmalloc: call_site=f+0x1/0x2 ptr=ffff888003000000 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL node=-1 accounted=false";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"kmem-cli-{Guid.NewGuid():N}");

    public CliTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Out, string Err) Kmem(params string[] args) => CliRun.Kmem(args);

    private string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    // The first <lines> lines of the slice, with capture B's meminfo.txt beside them (MemTotal 466,112 kB).
    private string SliceBesideMeminfo(int lines)
    {
        File.Copy(Path.Combine(ReplayData.BundledFolder, "meminfo.txt"), Path.Combine(_dir, "meminfo.txt"));
        return Slice(lines);
    }

    private string Slice(int lines)
    {
        string path = Path.Combine(_dir, "slice.txt");
        using var writer = new StreamWriter(path);
        using var reader = new StreamReader(new MemoryStream(ReplayData.Slice));
        for (int i = 0; i < lines && reader.ReadLine() is string line; i++)
        {
            writer.Write(line);
            writer.Write('\n');
        }
        return path;
    }

    [Fact]
    public void ReplaySpeedLeavesDecompressionOut()
    {
        string text = Slice(20_000);
        string gz = text + ".gz";
        using (var input = File.OpenRead(text))
        using (var output = new System.IO.Compression.GZipStream(File.Create(gz), System.IO.Compression.CompressionLevel.Fastest))
        {
            input.CopyTo(output);
        }
        foreach (var (trace, compressed) in new[] { (text, false), (gz, true) })
        {
            var (code, stdout, stderr) = Kmem("replay", trace, "--json");
            Assert.True(code == 0, stderr);
            using var doc = JsonDocument.Parse(stdout);
            var root = doc.RootElement;
            double seconds = root.GetProperty("seconds").GetDouble(), decompress = root.GetProperty("decompress_seconds").GetDouble();
            if (compressed)
            {
                // The shared parse decodes on its own thread: what counts is the decoding the replays waited for,
                // which is 0 when the replays are the slower side (as in a checked build).
                Assert.InRange(decompress, 0, seconds);
            }
            else
            {
                Assert.Equal(0, decompress);
            }
            double expected = root.GetProperty("events").GetInt64() / (seconds - decompress);
            Assert.InRange(root.GetProperty("events_per_second").GetDouble(), expected * 0.97, expected * 1.03);
        }
    }

    [Fact]
    public void ReplayJsonIsExactlyOneObjectWithTheContractsFields()
    {
        string trace = Slice(30_000);
        var (code, stdout, stderr) = Kmem("replay", trace, "--json", "--proc", "slabinfo", "--proc", "buddyinfo");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout); // throws on anything but one JSON value
        var root = doc.RootElement;
        Assert.Equal(JsonValueKind.Object, root.ValueKind);
        Assert.Equal(30_000 - 12, root.GetProperty("events").GetInt64());
        Assert.True(root.GetProperty("events_per_second").GetDouble() > 0);
        var checks = root.GetProperty("trace_checks");
        Assert.Equal(1.0, checks.GetProperty("kmalloc_size_class_match").GetDouble());
        Assert.Equal(1.0, checks.GetProperty("page_migratetype_match").GetDouble());
        var decisions = root.GetProperty("decisions_free_running");
        foreach (string kind in new[] { "pcp_refill", "pcp_drain", "zone", "fallback", "fallback_ownership", "new_slab", "slab_freed" })
        {
            var d = decisions.GetProperty(kind);
            long compared = d.GetProperty("compared").GetInt64(), kernelYes = d.GetProperty("kernel_yes").GetInt64(),
                kmemYes = d.GetProperty("kmem_yes").GetInt64(), both = d.GetProperty("both_yes").GetInt64();
            Assert.InRange(d.GetProperty("matched").GetInt64(), 0, compared);
            Assert.True(both <= kernelYes && both <= kmemYes && kernelYes <= compared && kmemYes <= compared, kind);
        }
        // A 30,000-event slice of boot makes new slabs and page allocations on both sides.
        Assert.True(decisions.GetProperty("new_slab").GetProperty("both_yes").GetInt64() > 0);
        Assert.True(decisions.GetProperty("zone").GetProperty("compared").GetInt64() > 0);
        Assert.True(root.GetProperty("untracked_frees").GetInt64() >= 0);
        Assert.Equal(0, root.GetProperty("bad_lines").GetInt64());
        Assert.Equal(JsonValueKind.Object, root.GetProperty("unknown_events").ValueKind);
        var consequences = root.GetProperty("consequences");
        foreach (string name in new[] { "mm_page_alloc_zone_locked", "pcp_refill", "mm_page_pcpu_drain", "mm_page_alloc_extfrag" })
        {
            var c = consequences.GetProperty(name);
            Assert.True(c.GetProperty("trace").GetInt64() >= 0 && c.GetProperty("kmem").GetInt64() >= 0, name);
        }
        var proc = root.GetProperty("proc");
        Assert.StartsWith("slabinfo - version: 2.1\n", proc.GetProperty("slabinfo").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("Node 0, zone      DMA", proc.GetProperty("buddyinfo").GetString(), StringComparison.Ordinal);
        Assert.Equal("x86_64", root.GetProperty("machine").GetProperty("preset").GetString());
        Assert.Equal(2, root.GetProperty("machine").GetProperty("cpus").GetInt32()); // the header's #P:2
        Assert.Equal(1L << 30, root.GetProperty("machine").GetProperty("memory_bytes").GetInt64()); // no meminfo.txt beside it
    }

    [Fact]
    public void ReplayTextHasTheSummaryFidelityAndTheChosenProcFiles()
    {
        string trace = SliceBesideMeminfo(20_000);
        var (code, stdout, stderr) = Kmem("replay", trace, "--proc", "meminfo");
        Assert.True(code == 0, stderr);
        Assert.Contains("# machine: x86_64, 512M, 2 CPUs, slub, seed 1", stdout, StringComparison.Ordinal); // MemTotal 466112 kB → 512M
        Assert.Contains("kmalloc size class (size_index) equal to the trace's bytes_alloc", stdout, StringComparison.Ordinal);
        Assert.Contains("decision by decision (aligned", stdout, StringComparison.Ordinal);
        Assert.Contains("decision by decision (free-running", stdout, StringComparison.Ordinal);
        Assert.Matches(@"
  pcp_refill +[0-9,]+ ", stdout);
        Assert.Contains("busiest slab caches", stdout, StringComparison.Ordinal);
        Assert.Contains("# /proc/meminfo\nMemTotal:", stdout, StringComparison.Ordinal);
        Assert.Equal("", stderr);
    }

    [Fact]
    public void ReplayWarnsWhenMemGivesLessThanTheCapturesMemTotal()
    {
        string trace = SliceBesideMeminfo(2_000);
        var (code, _, stderr) = Kmem("replay", trace, "--mem", "256M");
        Assert.True(code == 0, stderr);
        Assert.Contains("kmem: warning: --mem 256M is less than the traced machine's MemTotal (466,112 kB in the meminfo.txt beside the trace)", stderr, StringComparison.Ordinal);
        // As much as the capture's memory, or the default from it: no warning.
        (code, _, stderr) = Kmem("replay", trace, "--mem", "512M");
        Assert.True(code == 0, stderr);
        Assert.Equal("", stderr);
    }

    [Fact]
    public void CompareProcPrintsTheTableAgainstTheSnapshotFiles()
    {
        string dir = ReplayData.SliceFolder();
        try
        {
            var (code, stdout, stderr) = Kmem("replay", Path.Combine(dir, "trace.txt"), "--compare-proc", "--json");
            Assert.True(code == 0, stderr);
            using var doc = JsonDocument.Parse(stdout);
            var cmp = doc.RootElement.GetProperty("compare_proc");
            Assert.Equal(3, cmp.GetProperty("files").GetArrayLength());
            var dentry = cmp.GetProperty("slabinfo").EnumerateArray().Single(e => e.GetProperty("name").GetString() == "dentry");
            Assert.Equal(192, dentry.GetProperty("kernel").GetProperty("objsize").GetInt64());
            Assert.Equal(4, cmp.GetProperty("meminfo").GetArrayLength()); // MemTotal, Slab, SReclaimable, SUnreclaim
            (code, stdout, stderr) = Kmem("replay", Path.Combine(dir, "trace.txt"), "--compare-proc");
            Assert.True(code == 0, stderr);
            Assert.Contains("compare with the snapshot files beside the trace (slabinfo.txt, buddyinfo.txt, meminfo.txt)", stdout, StringComparison.Ordinal);
            Assert.Contains("not seen allocated in the trace", stdout, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    public static TheoryData<string, string> MalformedLines => new()
    {
        { "kmalloc: call_site=f+0x1/0x2 ptr=ffff888003000000 bytes_req=100 gfp_flags=GFP_KERNEL node=-1 accounted=false", "kmalloc: expected bytes_alloc=<number>" },
        { "kmalloc: call_site=f+0x1/0x2 ptr=ffff888003000000 bytes_req=1x0 bytes_alloc=128 gfp_flags=GFP_KERNEL node=-1 accounted=false", "expected bytes_req=<number>, found 'bytes_req=1x0'" },
        { "kmalloc: call_site=f+0x1/0x2 ptr=ffff888003000000 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_BOGUS node=-1 accounted=false", "expected gfp_flags=<flags>" },
        { "mm_page_alloc: page=ffffea0000000000 pfn=0xg000 order=0 migratetype=0 gfp_flags=GFP_KERNEL", "expected pfn=<0xhex or decimal>" },
        { "kfree: call_site=f+0x1/0x2 ptr=zz", "kfree: expected ptr=<hex pointer>" },
        { "kmem_cache_free: call_site=f+0x1/0x2 ptr=ffff888003000000", "kmem_cache_free: expected name=<cache name>" },
    };

    [Theory]
    [MemberData(nameof(MalformedLines))]
    public void AMalformedLineStopsTheRunWithExitCode1NamingFileLineAndExpectation(string bad, string expected)
    {
        string trace = Write("bad.txt", ReplayData.Header + ReplayData.Line(Kmalloc) + ReplayData.Line(bad));
        var (code, stdout, stderr) = Kmem("replay", trace);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains($"{trace}: line 5: ", stderr, StringComparison.Ordinal);
        Assert.Contains(expected, stderr, StringComparison.Ordinal);
        Assert.Contains(bad, stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal); // no stack trace

        (code, stdout, stderr) = Kmem("replay", trace, "--skip-bad", "--json");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal(1, doc.RootElement.GetProperty("bad_lines").GetInt64());
    }

    [Fact]
    public void AMalformedPrefixIsBadInputToo()
    {
        string trace = Write("prefix.txt", ReplayData.Header + "          <idle>-0       [000\n");
        var (code, _, stderr) = Kmem("replay", trace);
        Assert.Equal(1, code);
        Assert.Contains("line 4", stderr, StringComparison.Ordinal);
        Assert.Contains("no [CPU] field", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void TruncatedOrCorruptCompressedTracesAreBadInputWithoutAStackTrace()
    {
        byte[] text = Encoding.UTF8.GetBytes(ReplayData.Header + string.Concat(Enumerable.Repeat(ReplayData.Line(Kmalloc), 2000)));
        using var gz = new MemoryStream();
        using (var z = new GZipStream(gz, CompressionLevel.Optimal, leaveOpen: true))
        {
            z.Write(text);
        }
        byte[] bytes = gz.ToArray();
        string truncated = Path.Combine(_dir, "cut.txt.gz");
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);
        var (code, _, stderr) = Kmem("replay", truncated);
        Assert.Equal(1, code);
        Assert.Contains("truncated or corrupt gzip data", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);

        string xz = Path.Combine(_dir, "cut.txt.xz");
        byte[] real = new byte[200_000];
        using (var f = File.OpenRead(ReplayData.BundledTrace))
        {
            f.ReadExactly(real);
        }
        File.WriteAllBytes(xz, real);
        (code, _, stderr) = Kmem("replay", xz);
        Assert.Equal(1, code);
        Assert.Contains("truncated or corrupt xz data", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownEventsAreListedNotFatal()
    {
        string trace = Write("unknown.txt", ReplayData.Header + ReplayData.Line(Kmalloc) + ReplayData.Line("rss_stat: mm_id=1 curr=1 type=MM_ANONPAGES size=4096B"));
        var (code, stdout, _) = Kmem("replay", trace, "--json");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal(1, doc.RootElement.GetProperty("unknown_events").GetProperty("rss_stat").GetInt64());
    }

    [Theory]
    [InlineData("replay")]                                  // TRACE missing
    [InlineData("replay", "x.txt", "--slab", "slib")]
    [InlineData("replay", "x.txt", "--preset", "arm64")]
    [InlineData("replay", "x.txt", "--proc", "cpuinfo")]
    [InlineData("replay", "x.txt", "--mem", "lots")]
    [InlineData("replay", "x.txt", "--cpus", "0")]
    [InlineData("replay", "x.txt", "--mem", "1M")]          // below the machine's minimum
    [InlineData("--frobnicate")]
    [InlineData("proc", "meminfo", "--steps", "-1")]
    [InlineData("proc")]
    public void UsageErrorsExitWith2(params string[] args)
    {
        string trace = Write("x.txt", ReplayData.Header + ReplayData.Line(Kmalloc));
        var (code, stdout, stderr) = Kmem([.. args.Select(a => a == "x.txt" ? trace : a)]);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.StartsWith("kmem: ", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void AMissingTraceIsBadInput()
    {
        var (code, _, stderr) = Kmem("replay", Path.Combine(_dir, "nope.txt"));
        Assert.Equal(1, code);
        Assert.Contains("nope.txt: no such file", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void ASlabBackendThisBuildLacksIsAUsageErrorNamingIt()
    {
        string trace = Write("t.txt", ReplayData.Header + ReplayData.Line(Kmalloc));
        var (code, _, stderr) = Kmem("replay", trace, "--slab", "slob");
        if (code != 0)
        {
            Assert.Equal(2, code);
            Assert.Contains("--slab slob", stderr, StringComparison.Ordinal);
            Assert.Contains("not part of this build", stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void CompareGivesOneRowPerBackendInJson()
    {
        string trace = Slice(15_000);
        var (code, stdout, stderr) = Kmem("compare", trace, "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var backends = doc.RootElement.GetProperty("backends").EnumerateArray().ToList();
        Assert.Equal(["slub", "slab", "slob"], backends.Select(b => b.GetProperty("slab").GetString()));
        var slub = backends[0];
        Assert.True(slub.GetProperty("available").GetBoolean());
        Assert.True(slub.GetProperty("slab_bytes_peak").GetInt64() >= slub.GetProperty("slab_bytes_end").GetInt64());
        Assert.True(slub.GetProperty("slab_pages_end").GetInt64() * 4096 == slub.GetProperty("slab_bytes_end").GetInt64());
        Assert.InRange(slub.GetProperty("internal_fragmentation").GetDouble(), 0.0, 1.0);
        Assert.True(slub.GetProperty("events_per_second").GetDouble() > 0);
        foreach (var b in backends.Where(b => !b.GetProperty("available").GetBoolean()))
        {
            Assert.Contains("not part of this build", b.GetProperty("unavailable").GetString(), StringComparison.Ordinal);
        }
        (code, stdout, _) = Kmem("compare", trace);
        Assert.Equal(0, code);
        Assert.Contains("slub ", stdout, StringComparison.Ordinal);
        Assert.Contains("slob ", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void ProcRunsTheMixedWorkloadAndPrintsTheFiles()
    {
        var (code, stdout, stderr) = Kmem("proc", "slabinfo", "vmallocinfo", "--steps", "3000", "--mem", "256M");
        Assert.True(code == 0, stderr);
        Assert.Contains("# /proc/slabinfo\nslabinfo - version: 2.1", stdout, StringComparison.Ordinal);
        Assert.Contains("workload_dentry", stdout, StringComparison.Ordinal);
        Assert.Contains("# /proc/vmallocinfo", stdout, StringComparison.Ordinal);
        Assert.Contains("vmalloc", stdout[stdout.IndexOf("# /proc/vmallocinfo", StringComparison.Ordinal)..], StringComparison.Ordinal);
        var (code2, stdout2, _) = Kmem("proc", "slabinfo", "vmallocinfo", "--steps", "3000", "--mem", "256M");
        Assert.Equal(0, code2);
        Assert.Equal(stdout, stdout2); // deterministic for a seed
    }

    [Fact]
    public void ProcPrintsSysKernelSlabPaths()
    {
        var (code, stdout, stderr) = Kmem("proc", "/sys/kernel/slab/kmalloc-64/objs_per_slab", "sys/kernel/slab/kmalloc-128", "--steps", "200", "--mem", "256M");
        Assert.True(code == 0, stderr);
        Assert.Contains("# /sys/kernel/slab/kmalloc-64/objs_per_slab\n64\n", stdout, StringComparison.Ordinal);
        Assert.Contains("# /sys/kernel/slab/kmalloc-128\naliases:0\nalign:", stdout, StringComparison.Ordinal);
        (code, _, stderr) = Kmem("proc", "/sys/kernel/slab/no_such_cache", "--steps", "0", "--mem", "256M");
        Assert.Equal(2, code);
        Assert.Contains("no_such_cache: no such cache", stderr, StringComparison.Ordinal);
        (code, _, stderr) = Kmem("proc", "/sys/kernel/slab", "--slab", "slob", "--steps", "0", "--mem", "256M");
        Assert.Equal(2, code);
        Assert.Contains("only with --slab slub", stderr, StringComparison.Ordinal);
        (code, _, _) = Kmem("proc", "/sys/kernel/slabs", "--steps", "0");
        Assert.Equal(2, code);
    }

    [Fact]
    public void HelpExplainsTheCommands()
    {
        var (code, stdout, _) = Kmem("--help");
        Assert.Equal(0, code);
        foreach (string word in new[] { "replay", "compare", "proc", "bundled" })
        {
            Assert.Contains(word, stdout, StringComparison.Ordinal);
        }
        (code, stdout, _) = Kmem("replay", "--help");
        Assert.Equal(0, code);
        foreach (string option in new[] { "--slab", "--mem", "--cpus", "--preset", "--proc", "--until", "--compare-proc", "--skip-bad", "--json" })
        {
            Assert.Contains(option, stdout, StringComparison.Ordinal);
        }
    }
}
