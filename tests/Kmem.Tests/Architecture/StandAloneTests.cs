// The repository stands alone: no source, project or script file refers to a folder beside
// the clone. The captures the tests and the command need live in captures/ (see Captures);
// .ci/run also runs the test command in a second clone with nothing beside it.
using System.Text.RegularExpressions;

namespace Kmem.Tests.Architecture;

public partial class StandAloneTests
{
    private static readonly string[] s_extensions = [".cs", ".csproj", ".props", ".targets", ".sh", ".slnx"];

    [Fact]
    public void NothingReadsOutsideTheRepository()
    {
        string root = RepositoryRoot();
        var offenders = new List<string>();
        foreach (string top in new[] { "src", "tests", "bench", "examples", ".ci" })
        {
            string dir = Path.Combine(root, top);
            if (!Directory.Exists(dir))
            {
                continue;
            }
            foreach (string file in Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories))
            {
                string sep = Path.DirectorySeparatorChar.ToString();
                if (file.Contains(sep + "obj" + sep) || file.Contains(sep + "bin" + sep)
                    || !(s_extensions.Contains(Path.GetExtension(file)) || top == ".ci"))
                {
                    continue;
                }
                string[] lines = File.ReadAllLines(file);
                for (int i = 0; i < lines.Length; i++)
                {
                    if (OutsideReference().IsMatch(lines[i]) && !file.EndsWith(nameof(StandAloneTests) + ".cs", StringComparison.Ordinal))
                    {
                        offenders.Add($"{Path.GetRelativePath(root, file)}:{i + 1}: {lines[i].Trim()}");
                    }
                }
            }
        }
        Assert.Empty(offenders);
    }

    [Fact]
    public void EveryCaptureTheTestsUseIsInTheRepository()
    {
        foreach (string capture in new[] { Captures.X64, Captures.I386 })
        {
            foreach (string file in new[] { "trace.txt.xz", "meminfo.txt", "buddyinfo.txt", "slabinfo.txt", "zoneinfo.txt", "vmstat.txt", "pagetypeinfo.txt", "vmallocinfo.txt" })
            {
                Assert.True(File.Exists(Path.Combine(RepositoryRoot(), "captures", capture, file)), $"captures/{capture}/{file} is not in the repository");
            }
        }
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Kmem.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new DirectoryNotFoundException("Kmem.slnx not found above the test binary");
    }

    // "../shared", "shared/traces", Path.Combine(…, "shared", "traces"): a folder beside the clone.
    [GeneratedRegex(@"\.\.[/\\]shared\b|\bshared[""/\\, ]+traces\b")]
    private static partial Regex OutsideReference();
}
