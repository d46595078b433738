// Trace replay under BenchmarkDotNet, on the real trace bundled with the command
// (Linux 6.1 x86-64 capture B, 1,826,878 events, 309 MB of text): decompressed once
// to a temporary file in the setup, so that Replay and Parse time the text alone;
// Decompress times the xz decoding apart. Replay boots a machine shaped like the
// traced one (x86-64, 512 MiB, 2 CPUs) and replays every event on one thread,
// parsing included; ReplayDecisions and ReplayAligned are the two replays `kmem replay`
// runs (Kmem's decisions set against the kernel's, and the aligned run beside it), on
// the same machine without the boot reserve (no zoneinfo.txt beside the temporary text).
// ReplayBoth runs the two at once, each parsing the text; ReplayBothShared as the
// command does, the text parsed once on a thread of its own (SharedTrace).
// Events per second = 1,826,878 / the mean time (twice that for the pair).
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using SharpCompress.Compressors.Xz;

namespace Kmem.Bench;

[MemoryDiagnoser]
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 1, iterationCount: 5)]
public class ReplayBenchmarks
{
    private string _text = "";
    private string _xz = "";

    /// <summary>The bundled trace, found above the benchmark's folder.</summary>
    public static string BundledTrace()
    {
        string relative = Path.Combine("captures", "linux-6.1-boot-B", "trace.txt.xz");
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string path = Path.Combine(d.FullName, relative);
            if (File.Exists(path))
            {
                return path;
            }
        }
        throw new FileNotFoundException($"no {relative} above {AppContext.BaseDirectory}");
    }

    [GlobalSetup]
    public void Setup()
    {
        _xz = BundledTrace();
        _text = Path.Combine(Path.GetTempPath(), $"kmem-replay-bench-{Environment.ProcessId}.txt");
        using var xz = new XZStream(new BufferedStream(File.OpenRead(_xz), 1 << 16));
        using var output = File.Create(_text);
        xz.CopyTo(output);
    }

    [GlobalCleanup]
    public void Cleanup() => File.Delete(_text);

    /// <summary>Boot, then replay every event of the decompressed text (parsing included).</summary>
    [Benchmark(Baseline = true)]
    public long Replay()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        using var reader = TraceReader.Open(_text);
        return new TraceReplayer(m).Replay(reader).Events;
    }

    /// <summary>The command's main replay: the machine records its decisions, compared with the kernel's.</summary>
    [Benchmark]
    public long ReplayDecisions() => ReplayRecorded(aligned: false);

    /// <summary>The command's aligned replay: Kmem's per-CPU lists set to the kernel's before each decision.</summary>
    [Benchmark]
    public long ReplayAligned() => ReplayRecorded(aligned: true);

    private long ReplayRecorded(bool aligned)
    {
        using var reader = TraceReader.Open(_text);
        return ReplayRecorded(aligned, reader);
    }

    private static long ReplayRecorded(bool aligned, TraceReader reader)
    {
        using var m = TraceReplayer.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        return new TraceReplayer(m, new TraceReplayOptions { Aligned = aligned }).Replay(reader).Events;
    }

    /// <summary>Both replays at once on two threads, each parsing the text itself.</summary>
    [Benchmark]
    public long ReplayBoth()
    {
        var aligned = Task.Run(() => ReplayRecorded(aligned: true));
        return ReplayRecorded(aligned: false) + aligned.GetAwaiter().GetResult();
    }

    /// <summary>Both replays at once as `kmem replay` runs them: the text parsed once, on a thread of its own.</summary>
    [Benchmark]
    public long ReplayBothShared()
    {
        using var source = TraceReader.Open(_text);
        using var shared = new SharedTrace(source, 2);
        var aligned = Task.Run(() => ReplayRecorded(aligned: true, shared.Follower(1)));
        return ReplayRecorded(aligned: false, shared.Follower(0)) + aligned.GetAwaiter().GetResult();
    }

    /// <summary>Parse every event of the decompressed text, nothing else.</summary>
    [Benchmark]
    public long Parse()
    {
        using var reader = TraceReader.Open(_text);
        while (reader.TryRead(out _))
        {
        }
        return reader.Events;
    }

    /// <summary>Decode the xz file to nothing (what a replay of the .xz pays on top).</summary>
    [Benchmark]
    public long Decompress()
    {
        using var xz = new XZStream(new BufferedStream(File.OpenRead(_xz), 1 << 16));
        var buffer = new byte[1 << 18];
        long total = 0;
        int n;
        while ((n = xz.Read(buffer, 0, buffer.Length)) > 0)
        {
            total += n;
        }
        return total;
    }
}
