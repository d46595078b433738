// The docs cannot rot: every C# block of README.md and docs/ is code of a program under examples/,
// line for line, and those programs are run here as processes, built in the test's own
// configuration (the test project references them), with their output checked. The programs read
// nothing outside the repository; the trace replay reads the capture copied beside the tests.
using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Kmem.Tests.Examples;

public partial class ExampleTests
{
    /// <summary>Pages written by others, whose code blocks are not examples.</summary>
    private static readonly string[] s_notChecked = ["architecture.md", "fidelity.md"];

    [Fact]
    public void EveryCSharpBlockOfTheDocsIsCodeOfAnExample()
    {
        string root = Repository.Root();
        var exampleLines = new HashSet<string>(StringComparer.Ordinal);
        foreach (string file in Directory.EnumerateFiles(Path.Combine(root, "examples"), "*.cs", SearchOption.AllDirectories))
        {
            foreach (string line in File.ReadLines(file))
            {
                exampleLines.Add(line.Trim());
            }
        }
        var pages = new List<string> { Path.Combine(root, "README.md") };
        pages.AddRange(Directory.EnumerateFiles(Path.Combine(root, "docs"), "*.md")
            .Where(p => !s_notChecked.Contains(Path.GetFileName(p))));

        var missing = new List<string>();
        int blocks = 0;
        foreach (string page in pages)
        {
            foreach (var (firstLine, lines) in CSharpBlocks(File.ReadAllLines(page)))
            {
                blocks++;
                missing.AddRange(lines.Where(l => !exampleLines.Contains(l.Text.Trim()))
                    .Select(l => $"{Path.GetRelativePath(root, page)}:{l.Number} (block at line {firstLine}): {l.Text.Trim()}"));
            }
        }
        Assert.True(blocks >= 8, $"only {blocks} C# blocks found in README.md and docs/");
        Assert.Empty(missing);
    }

    [Fact]
    public void TheBlockReaderFindsEveryLineOfABlockAndNothingElse()
    {
        string[] page = ["text", "```csharp", "int a = 1;", "", "  a++;", "```", "```sh", "ls", "```"];
        var blocks = CSharpBlocks(page).ToList();
        var block = Assert.Single(blocks);
        Assert.Equal(2, block.FirstLine);
        Assert.Equal(["int a = 1;", "  a++;"], block.Lines.Select(l => l.Text));
        Assert.Equal([3, 5], block.Lines.Select(l => l.Number));
    }

    [Fact]
    public void QuickStartPrintsBuddyinfoAndSlabinfoWithNothingLogged()
    {
        string output = RunExample("QuickStart");
        Assert.StartsWith("Node 0, zone      DMA ", output, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^my_objects +\d+ +\d+ +128 ", output); // 72 bytes, hardware-cache aligned
        Assert.Contains("16384 bytes; kmalloc ok, cache object ok, vmalloc ok; kernel log lines: 0", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("slub", "128")]
    [InlineData("slab", "128")]
    [InlineData("slob", "100")]
    public void SlabCachesRunsOnEveryAllocator(string allocator, string ksize)
    {
        string output = RunExample("SlabCaches", allocator);
        Assert.Contains($"ksize of a 100-byte kmalloc would be {ksize}; my_objects holds 72-byte objects", output, StringComparison.Ordinal);
        Assert.Contains("read 72 bytes into a slab object; its last byte is 71", output, StringComparison.Ordinal);
        Assert.EndsWith("kernel log lines: 0", output.TrimEnd(), StringComparison.Ordinal);
        if (allocator == "slub")
        {
            Assert.Matches(@"(?m)^64$", output); // kmalloc-64's objs_per_slab
            Assert.Matches(@"kmalloc-64 has \d\d attributes; /sys/kernel/slab lists \d+ entries", output);
        }
        else
        {
            Assert.DoesNotContain("/sys/kernel/slab lists", output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void VmallocMapsAMibAndKmapReachesAHighmemFrame()
    {
        string output = RunExample("Vmalloc");
        Assert.Matches(@"vmalloc: 1 MiB at a kernel-style 0xffffc9[0-9a-f]{10}, frames \d+ \.\. \d+", output);
        Assert.Contains("kvmalloc of 64 KiB came from kmalloc", output, StringComparison.Ordinal);
        Assert.Matches(@"0xffffc9[0-9a-f]+-0xffffc9[0-9a-f]+ +1052672 .* pages=256 vmalloc", output);
        var high = Regex.Match(output, @"highmem: pfn (\d+), direct-map address 0, read back 42 through kmap_local");
        Assert.True(high.Success, output);
        // X86Pae's lowmem ends at 0x36ffe000: the frame must lie above it.
        Assert.True(ulong.Parse(high.Groups[1].Value) >= 0x36ffe000 / 4096);
    }

    [Fact]
    public void MempoolPercpuCountsWhatItDid()
    {
        string output = RunExample("MempoolPercpu");
        Assert.Contains("mempool: element allocated, 0 still out", output, StringComparison.Ordinal);
        Assert.Contains("Chunk: <- First Chunk", output, StringComparison.Ordinal);
        Assert.Contains("per-CPU hits summed over CPUs: 1; percpu_counter sum: 5, read 0 (the delta stays per CPU below the batch); "
            + "state on CPU 0: 0; kernel warnings: 0", output, StringComparison.Ordinal);
    }

    [Fact]
    public void PressureSwapsAndReadsEveryByteBack()
    {
        string output = RunExample("Pressure");
        Assert.StartsWith("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority", output, StringComparison.Ordinal);
        Assert.Contains("file\t\t65532\t\t0\t\t-2", output, StringComparison.Ordinal); // 64 MiB less the header page, priority -2
        var summary = Regex.Match(output, @"read back ""hello"", oom_score ([1-9]\d*); the cached file holds ""cached"" on disk; 120 MiB touched on a 128 MiB machine, 0 pages wrong; pswpout (\d+)");
        Assert.True(summary.Success, output);
        Assert.True(long.Parse(summary.Groups[2].Value) > 0, "nothing was swapped out");
    }

    [Fact]
    public void MemoryPicturesWritesAPngAndTellsALargeKmalloc()
    {
        string dir = Directory.CreateTempSubdirectory("kmem-example-").FullName;
        try
        {
            string output = RunExampleIn("MemoryPictures", dir);
            Assert.Matches(@"frame \d+: LargeKmalloc; picture: ", output);
            Assert.Contains("L large kmalloc", output, StringComparison.Ordinal);
            byte[] png = File.ReadAllBytes(Path.Combine(dir, "memory.png"));
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ReplayTraceReplaysTheCaptureToAMarkerWithPictures()
    {
        string dir = Directory.CreateTempSubdirectory("kmem-example-").FullName;
        try
        {
            string output = RunExampleIn("ReplayTrace", dir, Captures.Trace(Captures.X64), "INIT_START");
            var first = Regex.Match(output, @"^(\d+) events; kmalloc size classes as in the kernel: 100[.,]0\s?%");
            Assert.True(first.Success, output);
            long events = long.Parse(first.Groups[1].Value);
            Assert.InRange(events, 200_000, 210_000);
            Assert.Contains("slabinfo - version: 2.1", output, StringComparison.Ordinal);
            Assert.Contains($"{events} events again; pictures: {events / 100_000} map-*.png", output, StringComparison.Ordinal);
            Assert.True(File.Exists(Path.Combine(dir, "map-100000.png")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>The ```csharp blocks of a Markdown page: the fence's line number and the block's non-blank lines.</summary>
    internal static IEnumerable<(int FirstLine, List<(int Number, string Text)> Lines)> CSharpBlocks(string[] page)
    {
        for (int i = 0; i < page.Length; i++)
        {
            if (page[i].Trim() != "```csharp")
            {
                continue;
            }
            int fence = i + 1;
            var lines = new List<(int, string)>();
            for (i++; i < page.Length && page[i].Trim() != "```"; i++)
            {
                if (page[i].Trim().Length > 0)
                {
                    lines.Add((i + 1, page[i]));
                }
            }
            yield return (fence, lines);
        }
    }

    private static string RunExample(string name, params string[] args) =>
        RunExampleIn(name, Repository.Root(), args);

    /// <summary>Runs examples/NAME as built beside this test (same configuration) and returns its stdout;
    /// a non-zero exit code, output on stderr or a run over two minutes fails the test.</summary>
    private static string RunExampleIn(string name, string workingDirectory, params string[] args)
    {
        var bin = new DirectoryInfo(AppContext.BaseDirectory);
        string tfm = bin.Name, configuration = bin.Parent!.Name;
        string dll = Path.Combine(Repository.Root(), "examples", name, "bin", configuration, tfm, name + ".dll");
        Assert.True(File.Exists(dll), $"{dll} is not built: the test project references every example, so a build of the tests builds it");

        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(dll);
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{name} ran for more than two minutes");
        }
        process.WaitForExit();
        string output = stdout.Result, errors = stderr.Result;
        Assert.True(process.ExitCode == 0 && errors.Length == 0, $"{name} exited with {process.ExitCode}\nstderr:\n{errors}\nstdout:\n{output}");
        return output;
    }
}
