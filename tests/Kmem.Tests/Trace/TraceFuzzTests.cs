// Fuzzing of everything that reads outside input: real trace lines (Data/sample-lines.txt and
// lines of both captures) mutated by CsCheck (bytes flipped, spans cut or doubled, tokens and
// extreme numbers spliced in, lines truncated), read plain, gzip-compressed and from damaged
// gzip and xz data; the same lines replayed through the kmem command; GfpFlags.Parse and
// MachineOptions.ParseSize on generated text; the command's machine options with generated
// values. The only exceptions allowed out are the documented ones: TraceFormatException naming
// the file (and the line number whenever a line is shown) from the reader, FormatException from
// the parsers, and from the command only its exit codes 0, 1 and 2, never 3 (an internal error).
// The default run is short (fixed iteration counts); the long one is behind the Soak trait:
//   dotnet test --filter "Category=Soak&FullyQualifiedName~TraceFuzz"
using System.IO.Compression;
using System.Text;
using CsCheck;
using Kmem.Tests.Cli;

namespace Kmem.Tests.Trace;

public class TraceFuzzTests
{
    /// <summary>Iterations of the default run; the soak run multiplies them.</summary>
    internal const int Short = 300;
    internal const int Long = 30_000;

    public static readonly byte[][] RealLines = LoadLines();

    private static byte[][] LoadLines()
    {
        var lines = new List<byte[]>();
        foreach (string line in File.ReadLines(TraceData.SampleLinesPath))
        {
            if (line.Length > 0 && line[0] != '#')
            {
                lines.Add(Encoding.UTF8.GetBytes(line));
            }
        }
        // Every 97th line of the x86-64 capture's first 100,000: all its event kinds, in their real spellings.
        using var reader = new StreamReader(new MemoryStream(ReplayData.Slice));
        for (int i = 0; reader.ReadLine() is string line; i++)
        {
            if (i % 97 == 0 && line.Length > 0 && line[0] != '#')
            {
                lines.Add(Encoding.UTF8.GetBytes(line));
            }
        }
        return [.. lines];
    }

    /// <summary>What a mutation may splice in: separators, field names, flag names, numbers at the edges of
    /// their types, control and non-UTF-8 bytes.</summary>
    private static readonly string[] s_tokens =
    [
        " ", "  ", "=", "|", "-", ":", "[", "]", "(", ")", "0x", "+0x", "/", "\r", "\0", "\t", "#", "#P:",
        "0", "-1", "1", "10", "11", "12", "63", "64", "4096", "4194304", "2147483647", "2147483648", "4294967295", "4294967296",
        "9223372036854775807", "18446744073709551615", "18446744073709551616", "99999999999999999999999",
        "ffffffffffffffff", "fffffffffffffffff", "(null)", "none", "true", "false",
        "GFP_KERNEL", "GFP_DMA", "GFP_DMA32", "__GFP_HIGHMEM", "__GFP_MOVABLE", "__GFP_RECLAIMABLE", "GFP_ATOMIC", "__GFP_NOFAIL",
        "order=", "pfn=", "ptr=", "page=", "node=", "bytes_req=", "bytes_alloc=", "gfp_flags=", "migratetype=", "name=",
        "call_site=", "size=", "align=", "off=", "base_addr=", "kmalloc: ", "kfree: ", "mm_page_alloc: ", "tracing_mark_write: ",
        "CPU:1 [LOST 5 EVENTS]", "\u00e9", "\uFEFF",
    ];

    private static readonly Gen<byte[]> s_token = Gen.OneOf(
        Gen.OneOfConst(s_tokens).Select(Encoding.UTF8.GetBytes),
        Gen.Byte.Array[1, 4]);

    private abstract record Mutation;

    private sealed record Flip(double At, byte Value) : Mutation;

    private sealed record Cut(double At, int Length) : Mutation;

    private sealed record Splice(double At, byte[] Bytes) : Mutation;

    private sealed record Repeat(double At, int Length) : Mutation;

    private sealed record Truncate(double At) : Mutation;

    private static readonly Gen<Mutation> s_mutation = Gen.OneOf(
        Gen.Select(Gen.Double[0, 1], Gen.Byte, (a, v) => (Mutation)new Flip(a, v)),
        Gen.Select(Gen.Double[0, 1], Gen.Int[1, 24], (a, n) => (Mutation)new Cut(a, n)),
        Gen.Select(Gen.Double[0, 1], s_token, (a, t) => (Mutation)new Splice(a, t)),
        Gen.Select(Gen.Double[0, 1], Gen.Int[1, 40], (a, n) => (Mutation)new Repeat(a, n)),
        Gen.Double[0, 1].Select(a => (Mutation)new Truncate(a)));

    private static byte[] Apply(byte[] line, Mutation[] mutations)
    {
        var b = new List<byte>(line);
        foreach (var m in mutations)
        {
            int at(double f) => Math.Min(b.Count, (int)(f * b.Count));
            switch (m)
            {
                case Flip(var a, var v) when b.Count > 0:
                    b[Math.Min(b.Count - 1, at(a))] = v;
                    break;
                case Cut(var a, var n):
                    int c = at(a);
                    b.RemoveRange(c, Math.Min(n, b.Count - c));
                    break;
                case Splice(var a, var bytes):
                    b.InsertRange(at(a), bytes);
                    break;
                case Repeat(var a, var n):
                    int d = at(a);
                    b.InsertRange(d, b.GetRange(d, Math.Min(n, b.Count - d)));
                    break;
                case Truncate(var a):
                    int t = at(a);
                    b.RemoveRange(t, b.Count - t);
                    break;
            }
        }
        return [.. b];
    }

    /// <summary>A real line, mutated or (one time in four) as it is.</summary>
    internal static readonly Gen<byte[]> MutatedLine =
        from index in Gen.Int[0, RealLines.Length - 1]
        from mutations in Gen.OneOf(Gen.Const(Array.Empty<Mutation>()), s_mutation.Array[1, 4], s_mutation.Array[1, 4], s_mutation.Array[1, 4])
        select Apply(RealLines[index], mutations);

    /// <summary>A trace text: the real header (or none), then real lines, some mutated.</summary>
    internal static readonly Gen<byte[]> MutatedTrace =
        from header in Gen.Bool
        from lines in MutatedLine.Array[1, 12]
        select Join(header, lines);

    private static byte[] Join(bool header, byte[][] lines)
    {
        var ms = new MemoryStream();
        if (header)
        {
            ms.Write(Encoding.UTF8.GetBytes(ReplayData.Header));
        }
        foreach (var line in lines)
        {
            ms.Write(line);
            ms.WriteByte((byte)'\n');
        }
        return ms.ToArray();
    }

    /// <summary>Reads the data to its end; only a TraceFormatException that names the file, and the line number
    /// when it shows a line, may come out.</summary>
    internal static void ReadAll(byte[] data, string name, bool skipBad)
    {
        try
        {
            using var reader = new TraceReader(new MemoryStream(data, writable: false), name, new TraceReaderOptions { SkipBad = skipBad });
            while (reader.TryRead(out _))
            {
            }
        }
        catch (TraceFormatException e)
        {
            Assert.StartsWith(name + ": ", e.Message, StringComparison.Ordinal);
            Assert.Equal(name, e.FileName);
            Assert.False(e.Line is not null && e.LineNumber < 1, $"a line is shown without its number: {e.Message}");
            Assert.False(string.IsNullOrEmpty(e.Expected));
        }
    }

    internal static byte[] Gzip(byte[] data)
    {
        var output = new MemoryStream();
        using (var gz = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
        {
            gz.Write(data);
        }
        return output.ToArray();
    }

    /// <summary>The first bytes of the i386 capture's xz file: a valid xz start, truncated.</summary>
    internal static readonly byte[] XzHead = ReadHead(Captures.Trace(Captures.I386), 48 << 10);

    private static byte[] ReadHead(string path, int bytes)
    {
        using var file = File.OpenRead(path);
        byte[] head = new byte[bytes];
        file.ReadExactly(head);
        return head;
    }

    private static readonly Gen<(int At, byte Value)[]> s_damage = Gen.Select(Gen.Int[0, int.MaxValue], Gen.Byte).Array[1, 6];

    internal static byte[] Damage(byte[] data, (int At, byte Value)[] damage, int keep)
    {
        byte[] copy = data.AsSpan(0, Math.Clamp(keep, 1, data.Length)).ToArray();
        foreach (var (at, value) in damage)
        {
            copy[at % copy.Length] = value;
        }
        return copy;
    }

    [Fact]
    public void MutatedRealLinesAreReadOrRefusedWithALineNumber() =>
        MutatedTrace.Sample(data =>
        {
            ReadAll(data, "fuzz.txt", skipBad: false);
            ReadAll(data, "fuzz.txt", skipBad: true);
        }, iter: Short * 3);

    [Fact]
    public void MutatedLinesReadTheSameThroughGzip() =>
        MutatedTrace.Sample(data =>
        {
            ReadAll(Gzip(data), "fuzz.txt.gz", skipBad: false);
        }, iter: Short);

    [Fact]
    public void DamagedGzipDataIsACleanError()
    {
        byte[] gz = Gzip(Join(true, RealLines));
        Gen.Select(s_damage, Gen.Int[1, gz.Length]).Sample((damage, keep) => ReadAll(Damage(gz, damage, keep), "fuzz.gz", skipBad: true), iter: Short);
    }

    [Fact]
    public void DamagedXzDataIsACleanError() =>
        Gen.Select(s_damage, Gen.Int[1, XzHead.Length]).Sample((damage, keep) => ReadAll(Damage(XzHead, damage, keep), "fuzz.xz", skipBad: true), iter: Short / 3);

    private static readonly string[] s_gfpTokens =
        [.. s_tokens.Where(t => t.StartsWith("GFP_", StringComparison.Ordinal) || t.StartsWith("__GFP_", StringComparison.Ordinal)),
            "GFP_NOWAIT", "GFP_HIGHUSER_MOVABLE", "__GFP_ZERO", "__GFP_COMP", "0x", "0x10", "0xffffffff", "0x100000000", "4294967295",
            "4294967296", "-1", "none", "", "gfp_kernel", " GFP_KERNEL", "GFP_KERNEL ", "0X1", "0x-1", "+1", "1e3", "\u0660"];

    internal static readonly Gen<string> GfpText = Gen.OneOf(
        Gen.OneOfConst(s_gfpTokens).Array[1, 5].Select(parts => string.Join('|', parts)),
        Gen.String,
        Gen.Char["GFP_|x0123456789abcdefKERNLZO "].Array[0, 30].Select(c => new string(c)));

    internal static void CheckGfp(string text)
    {
        bool ok = GfpFlags.TryParse(text, out var fromTry);
        try
        {
            var gfp = GfpFlags.Parse(text);
            Assert.True(ok, $"TryParse refused what Parse read: '{text}'");
            Assert.Equal(fromTry, gfp);
            // What Format prints, Parse reads back to the same mask.
            Assert.Equal(gfp, GfpFlags.Parse(GfpFlags.Format(gfp)));
        }
        catch (FormatException e)
        {
            Assert.False(ok, $"Parse refused what TryParse read: '{text}'");
            Assert.Contains("gfp flag", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void GfpFlagsParseReadsOrThrowsFormatExceptionOnly() => GfpText.Sample(CheckGfp, iter: Short * 10);

    internal static readonly Gen<string> SizeText = Gen.OneOf(
        Gen.Select(Gen.OneOfConst("", "-", "+", " "), Gen.OneOf(Gen.Long.Select(n => n.ToString(System.Globalization.CultureInfo.InvariantCulture)), Gen.Const("99999999999999999999"), Gen.Const("1.5"), Gen.Const("0")),
            Gen.OneOfConst("", "K", "M", "G", "T", "P", "k", "m", "g", "KB", "MiB", " G", "G ", "%", "B"), (sign, n, unit) => sign + n + unit),
        Gen.String,
        Gen.Char["0123456789KMGT.- "].Array[0, 12].Select(c => new string(c)));

    internal static void CheckSize(string text)
    {
        try
        {
            long bytes = MachineOptions.ParseSize(text, "--mem");
            Assert.True(bytes >= 0, $"'{text}' read as {bytes} bytes");
        }
        catch (FormatException e)
        {
            Assert.Contains("--mem", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void SizesReadOrThrowFormatExceptionOnly() => SizeText.Sample(CheckSize, iter: Short * 10);

    /// <summary>Writes the trace, replays it through the command on a small machine, and checks the contract:
    /// exit code 0 or 1 (never 3), one "kmem: " message and nothing on stdout when it fails.</summary>
    internal static void ReplayThroughTheCommand(byte[] data, string dir)
    {
        string path = Path.Combine(dir, "fuzz.txt");
        File.WriteAllBytes(path, data);
        var (code, stdout, stderr) = CliRun.Kmem("replay", path, "--mem", "128M", "--cpus", "2", "--json");
        Assert.True(code is 0 or 1, $"exit code {code} for\n{Encoding.UTF8.GetString(data)}\n{stderr}");
        if (code == 1)
        {
            Assert.Equal("", stdout);
            Assert.StartsWith("kmem: ", stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void MutatedTracesReplayOrAreRefusedAsBadInput()
    {
        string dir = Directory.CreateTempSubdirectory("kmem-fuzz-").FullName;
        try
        {
            MutatedTrace.Sample(data => ReplayThroughTheCommand(data, dir), iter: Short / 10, threads: 1);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Machine options with values from the edges: the command parses, validates and boots, and any
    /// refusal is exit code 1 or 2 with nothing on stdout.</summary>
    internal static readonly Gen<string[]> MachineArgGen =
        from cpus in Gen.OneOf(Gen.OneOfConst("1", "2", "3", "0", "-1", "x", "2147483648", "", "8193", "1e2", "0x2"), Gen.Int[1, 8].Select(n => n.ToString(System.Globalization.CultureInfo.InvariantCulture)))
        // Sizes a small host boots in a moment, and the edges the validation must refuse (16T: the 32-bit pfn limit).
        from mem in Gen.OneOfConst("64M", "128M", "100M", "63M", "4095", "1G", "0", "", "-64M", "64m", "16T", "64T", "65T", "12Q", "9223372036854775807", "1.5G", "0x40M")
        from preset in Gen.OneOfConst("x86_64", "x86_32", "x86_32_pae", "arm64", "")
        from slab in Gen.OneOfConst("slub", "slab", "slob", "SLUB")
        from seed in Gen.OneOfConst("1", "-7", "x", "2147483647", "99999999999")
        from until in Gen.OneOfConst<string?>(null, "", "PHASE", "nothing")
        select Build(cpus, mem, preset, slab, seed, until);

    private static string[] Build(string cpus, string mem, string preset, string slab, string seed, string? until)
    {
        var args = new List<string> { "--cpus", cpus, "--mem", mem, "--preset", preset, "--slab", slab, "--seed", seed };
        if (until is not null)
        {
            args.AddRange(["--until", until]);
        }
        return [.. args];
    }

    internal static void RunWithMachineArgs(string trace, string[] args)
    {
        var (code, stdout, stderr) = CliRun.Kmem(["replay", trace, .. args]);
        Assert.True(code is 0 or 1 or 2, $"exit code {code} for {string.Join(' ', args)}\n{stderr}");
        if (code != 0)
        {
            Assert.Equal("", stdout);
            Assert.StartsWith("kmem: ", stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void MachineOptionsFromTheEdgesAreRunOrRefusedAsUsageOrBadInput()
    {
        string dir = Directory.CreateTempSubdirectory("kmem-fuzz-").FullName;
        try
        {
            string trace = Path.Combine(dir, "t.txt");
            // A pointer of neither word size (ZERO_SIZE_PTR) keeps every preset possible.
            File.WriteAllText(trace, ReplayData.Header + ReplayData.Line("kmalloc: call_site=f+0x1/0x2 ptr=0000000000000010 bytes_req=0 bytes_alloc=0 gfp_flags=GFP_KERNEL node=-1 accounted=false")
                + ReplayData.Line("tracing_mark_write: PHASE one"));
            MachineArgGen.Sample(args => RunWithMachineArgs(trace, args), iter: Short / 10, threads: 1);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

/// <summary>The long fuzz runs: the same properties, a hundred times the iterations.</summary>
[Trait("Category", "Soak")]
public class TraceFuzzSoakTests
{
    [Fact]
    public void MutatedRealLinesAreReadOrRefusedWithALineNumber() =>
        TraceFuzzTests.MutatedTrace.Sample(data =>
        {
            TraceFuzzTests.ReadAll(data, "fuzz.txt", skipBad: false);
            TraceFuzzTests.ReadAll(data, "fuzz.txt", skipBad: true);
            TraceFuzzTests.ReadAll(TraceFuzzTests.Gzip(data), "fuzz.txt.gz", skipBad: false);
        }, iter: TraceFuzzTests.Long);

    [Fact]
    public void GfpAndSizesReadOrThrowFormatExceptionOnly()
    {
        TraceFuzzTests.GfpText.Sample(TraceFuzzTests.CheckGfp, iter: TraceFuzzTests.Long * 10);
        TraceFuzzTests.SizeText.Sample(TraceFuzzTests.CheckSize, iter: TraceFuzzTests.Long * 10);
    }

    [Fact]
    public void MutatedTracesReplayOrAreRefusedAsBadInput()
    {
        string dir = Directory.CreateTempSubdirectory("kmem-fuzz-").FullName;
        try
        {
            TraceFuzzTests.MutatedTrace.Sample(data => TraceFuzzTests.ReplayThroughTheCommand(data, dir), iter: TraceFuzzTests.Long / 10, threads: 1);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
