// The repository stands alone: no source, project or script file refers to a folder beside
// the clone. The captures the tests and the command need live in captures/ (see Captures);
// .ci/run also runs the test command in a second clone with nothing beside it.
using System.Text.RegularExpressions;

namespace Kmem.Tests.Architecture;

public class StandAloneTests
{
    private static readonly string[] s_extensions = [".cs", ".csproj", ".props", ".targets", ".sh", ".slnx"];

    [Fact]
    public void NothingReadsOutsideTheRepository()
    {
        string root = Repository.Root();
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
                    if (s_outsideReference.IsMatch(lines[i]))
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
        foreach (string capture in new[] { Captures.X64, Captures.I386, Captures.Pressure })
        {
            foreach (string file in new[] { "trace.txt.xz", "meminfo.txt", "buddyinfo.txt", "slabinfo.txt", "zoneinfo.txt", "vmstat.txt", "pagetypeinfo.txt", "vmallocinfo.txt" })
            {
                Assert.True(File.Exists(Path.Combine(Repository.Root(), "captures", capture, file)), $"captures/{capture}/{file} is not in the repository");
            }
        }
    }

    // The workplace folder that sits beside a clone, spelt in pieces so that this file does not
    // name it itself: a relative path up into it, or its traces folder however joined.
    private static readonly string s_sibling = string.Concat("sha", "red");

    private static readonly Regex s_outsideReference = new(
        $@"\.\.[/\\]{s_sibling}\b|\b{s_sibling}[""/\\, ]+traces\b", RegexOptions.CultureInvariant);
}
