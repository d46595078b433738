// The real kernel captures the tests compare with: captures/ at the repository root, copied
// beside the test binary by the project file. Nothing here looks outside the test's own folder,
// so a clone with nothing beside it runs every test.
namespace Kmem.Tests;

internal static class Captures
{
    /// <summary>x86-64, 512M, 2 CPUs, SLUB: the capture bundled with the command.</summary>
    public const string X64 = "linux-6.1-boot-B";

    /// <summary>i386 PAE with HighMem, 1536M, 1 CPU.</summary>
    public const string I386 = "linux-i386-highmem";

    /// <summary>x86-64, 384M, 2 CPUs, 128M swap: swap-out, compaction and an OOM kill.</summary>
    public const string Pressure = "linux-6.1-pressure-Q";

    /// <summary>The folder of a capture: trace.txt.xz and the /proc snapshot files.</summary>
    public static string Folder(string capture)
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "captures", capture);
        Assert.True(Directory.Exists(dir), $"capture {capture} is missing from {Path.Combine(AppContext.BaseDirectory, "captures")}");
        return dir;
    }

    /// <summary>A file of a capture, which must exist.</summary>
    public static string File(string capture, string file)
    {
        string path = Path.Combine(Folder(capture), file);
        Assert.True(System.IO.File.Exists(path), $"capture file {path} is missing");
        return path;
    }

    /// <summary>The recorded trace of a capture (trace.txt.xz).</summary>
    public static string Trace(string capture) => File(capture, "trace.txt.xz");
}
