// Every kind of bad input the command can be given, each refused with the contract's exit
// code (1 bad input, 2 usage) and a message that says what is wrong and where, with nothing
// on stdout and no stack trace: empty or non-ftrace files, a directory as the trace, an
// --until marker the trace lacks, numbers that are not numbers, unknown bench workloads, gfp
// masks no allocation can carry, a trace replayed on a preset of the other word size, and
// machine values that came from the trace rather than the command line.
using Kmem.Tests.Trace;

namespace Kmem.Tests.Cli;

public sealed class CliBadInputTests : IDisposable
{
    private const string Kmalloc = "kmalloc: call_site=f+0x1/0x2 ptr=ffff888003000000 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL node=-1 accounted=false";
    private const string Kmalloc32 = "kmalloc: call_site=f+0x1/0x2 ptr=c1005280 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL node=-1 accounted=false";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"kmem-bad-{Guid.NewGuid():N}");

    public CliBadInputTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    /// <summary>Runs kmem and checks the contract of a refusal: the code, "kmem: " and each part on stderr,
    /// nothing on stdout, no stack trace.</summary>
    private static string Refused(int expectedCode, string[] args, params string[] parts)
    {
        var (code, stdout, stderr) = CliRun.Kmem(args);
        Assert.Equal(expectedCode, code);
        Assert.Equal("", stdout);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("System.", stderr, StringComparison.Ordinal);
        foreach (string part in parts)
        {
            Assert.Contains(part, stderr, StringComparison.Ordinal);
        }
        return stderr;
    }

    [Fact]
    public void AnEmptyFileIsNoFtraceCapture()
    {
        string trace = Write("empty.txt", "");
        string err = Refused(1, ["replay", trace], $"kmem: {trace}: ", "is empty", "not an ftrace capture");
        Assert.Single(err.TrimEnd('\n').Split('\n'));
        Refused(1, ["compare", trace], "is empty");
    }

    [Fact]
    public void CommentsWithoutAHeaderOrAnEventAreNoCapture()
    {
        string trace = Write("comments.txt", "#\n# nothing here\n\n");
        Refused(1, ["replay", trace], $"{trace}: ", "no '# tracer:' header", "not an ftrace capture");
    }

    [Fact]
    public void AHeaderWithoutEventsIsACaptureOfNothing()
    {
        string trace = Write("header.txt", ReplayData.Header);
        var (code, stdout, _) = CliRun.Kmem("replay", trace);
        Assert.Equal(0, code);
        Assert.Contains("0 events", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void MalformedLinesOnlyAreNoCaptureEvenWhenSkipped()
    {
        string trace = Write("junk.txt", "hello\nworld\n");
        Refused(1, ["replay", trace, "--skip-bad"], "none of its 2 lines is an ftrace event line", "2 malformed");
    }

    [Fact]
    public void ADirectoryIsNotATraceFile()
    {
        Refused(1, ["replay", _dir], $"kmem: {_dir}: is a directory, not a trace file");
        Refused(1, ["compare", _dir], "is a directory");
    }

    [Fact]
    public void AnUntilMarkerTheTraceLacksIsBadInputListingItsMarkers()
    {
        string trace = Write("markers.txt", ReplayData.Header + ReplayData.Line(Kmalloc)
            + ReplayData.Line("tracing_mark_write: PHASE boot") + ReplayData.Line("tracing_mark_write: PHASE work"));
        Refused(1, ["replay", trace, "--until", "PHASE end"],
            $"kmem: {trace}: no trace marker contains 'PHASE end' (--until)", "the trace's markers: 'PHASE boot', 'PHASE work'");
        Refused(1, ["compare", trace, "--until", "PHASE end"], "no trace marker contains 'PHASE end'");

        var (code, stdout, _) = CliRun.Kmem("replay", trace, "--until", "PHASE work");
        Assert.Equal(0, code);
        Assert.Contains("2 events", stdout, StringComparison.Ordinal); // the kmalloc and the first marker
    }

    [Fact]
    public void AnUntilMarkerInATraceWithoutMarkersSaysSo()
    {
        string trace = Write("plain.txt", ReplayData.Header + ReplayData.Line(Kmalloc));
        Refused(1, ["replay", trace, "--until", "X"], "no trace marker contains 'X'", "the trace has no markers");
    }

    [Fact]
    public void AnEmptyUntilIsAUsageError()
    {
        string trace = Write("plain.txt", ReplayData.Header + ReplayData.Line(Kmalloc));
        Refused(2, ["replay", trace, "--until", ""], "--until needs a MARKER");
    }

    [Theory]
    [InlineData("replay", "T", "--cpus", "x", "--cpus: 'x' is not a whole number")]
    [InlineData("replay", "T", "--seed", "1.5", "--seed: '1.5' is not a whole number")]
    [InlineData("replay", "T", "--cpus", "99999999999", "--cpus: '99999999999' is too large")]
    [InlineData("replay", "T", "--cpus", "0", "--cpus must be 1 or more, not 0")]
    [InlineData("replay", "T", "--map", "m.png", "--map-every", "zz", "--map-every: 'zz' is not a whole number")]
    [InlineData("compare", "T", "--seed", "x", "--seed: 'x' is not a whole number")]
    [InlineData("proc", "meminfo", "--steps", "many", "--steps: 'many' is not a whole number")]
    [InlineData("proc", "meminfo", "--cpus", "-2", "--cpus must be 1 or more, not -2")]
    [InlineData("bench", "--repetitions", "x", "--repetitions: 'x' is not a whole number")]
    [InlineData("scenario", "pressure", "--seed", "x", "--seed: 'x' is not a whole number")]
    public void ANumberThatIsNotOneIsAUsageErrorNamingTheOption(params string[] argsThenMessage)
    {
        string trace = Write("t.txt", ReplayData.Header + ReplayData.Line(Kmalloc));
        string[] args = [.. argsThenMessage[..^1].Select(a => a == "T" ? trace : a)];
        string err = Refused(2, args, $"kmem: {argsThenMessage[^1]}");
        Assert.DoesNotContain("Int32", err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("x86_64", "--mem", "0", "--mem 0 is too small")]
    [InlineData("x86_64", "--cpus", "100000", "--cpus 100000 — a machine has 1..8192 CPUs")]
    [InlineData("x86_32_pae", "--mem", "65G", "--mem 65G is above the X86Pae preset's limit")]
    public void AMachineTheOptionsCannotBuildIsAUsageErrorUnderTheOptionsName(string preset, string option, string value, string message)
    {
        string trace = Write("t.txt", ReplayData.Header + ReplayData.Line(preset == "x86_64" ? Kmalloc : Kmalloc32));
        Refused(2, ["replay", trace, "--preset", preset, option, value], $"kmem: {message}");
    }

    [Fact]
    public void AHeaderCpuCountNoMachineHasIsBadInputOfTheTrace()
    {
        string trace = Write("t.txt", "# tracer: nop\n# entries-in-buffer/entries-written: 1/1   #P:99999\n" + ReplayData.Line(Kmalloc));
        Refused(1, ["replay", trace], $"{trace}: the header's #P:99999", "give --cpus N");
        var (code, _, _) = CliRun.Kmem("replay", trace, "--cpus", "2");
        Assert.Equal(0, code);
    }

    [Fact]
    public void UnknownBenchWorkloadsAreAUsageErrorListingTheValidNames()
    {
        var (code, stdout, stderr) = CliRun.Kmem("bench", "--workloads", "zzz");
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Contains("--workloads: \"zzz\" matches no workload", stderr, StringComparison.Ordinal);
        Assert.Contains("\"pair 64 B\"", stderr, StringComparison.Ordinal);
        Assert.Contains("\"larson 2 threads\"", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("mm_page_alloc: page=ffffea0000000000 pfn=0x1000 order=0 migratetype=0 gfp_flags=__GFP_RECLAIMABLE|__GFP_MOVABLE", "__GFP_RECLAIMABLE and __GFP_MOVABLE together")]
    [InlineData("kmalloc: call_site=f+0x1/0x2 ptr=ffff888003000000 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL|__GFP_RECLAIMABLE|__GFP_MOVABLE node=-1 accounted=false", "__GFP_RECLAIMABLE and __GFP_MOVABLE together")]
    [InlineData("mm_page_alloc: page=ffffea0000000000 pfn=0x1000 order=0 migratetype=0 gfp_flags=GFP_DMA|GFP_DMA32", "zone modifiers GFP_DMA|GFP_DMA32 together")]
    [InlineData("mm_page_alloc: page=ffffea0000000000 pfn=0x1000 order=0 migratetype=0 gfp_flags=0xffffffff", "zone modifiers")]
    public void AGfpMaskNoAllocationCanCarryIsBadInputAtItsLine(string line, string why)
    {
        string trace = Write("gfp.txt", ReplayData.Header + ReplayData.Line(Kmalloc) + ReplayData.Line(line));
        Refused(1, ["replay", trace], $"kmem: {trace}: line 5: ", why, line);
    }

    [Fact]
    public void A64BitTraceOnA32BitPresetIsRefusedNamingTheAddress()
    {
        string trace = Write("x64.txt", ReplayData.Header + ReplayData.Line(Kmalloc));
        Refused(1, ["replay", trace, "--preset", "x86_32_pae"],
            $"kmem: {trace}: line 4: ffff888003000000 is a 64-bit kernel address", "--preset x86_32_pae", "use --preset x86_64");
        Refused(1, ["compare", trace, "--preset", "x86_32"], "64-bit kernel address");
    }

    [Fact]
    public void A32BitTraceOnX64IsRefusedAndRunsOnA32BitPreset()
    {
        // kmalloc(0)'s ZERO_SIZE_PTR (0x10) is printed alike on both: the 32-bit pointer decides.
        string zero = "kmalloc: call_site=f+0x1/0x2 ptr=0000000000000010 bytes_req=0 bytes_alloc=0 gfp_flags=GFP_KERNEL node=-1 accounted=false";
        string trace = Write("i386.txt", ReplayData.Header + ReplayData.Line(zero) + ReplayData.Line(Kmalloc32));
        Refused(1, ["replay", trace], $"{trace}: line 5: c1005280 is a 32-bit kernel address", "use --preset x86_32_pae");
        var (code, _, _) = CliRun.Kmem("replay", trace, "--preset", "x86_32_pae");
        Assert.Equal(0, code);
    }

    [Fact]
    public void AByteOrderMarkBeforeTheHeaderIsNotALine()
    {
        string trace = Write("bom.txt", "\uFEFF" + ReplayData.Header + ReplayData.Line(Kmalloc));
        var (code, stdout, stderr) = CliRun.Kmem("replay", trace, "--cpus", "2");
        Assert.Equal(0, code);
        Assert.Equal("", stderr);
        Assert.Contains("1 events", stdout, StringComparison.Ordinal);
    }
}
