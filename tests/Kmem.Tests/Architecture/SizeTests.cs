// Rooms of a readable size: no source file over 600 lines, no class over 1,000 lines of code
// (a partial class counted over all its files; comments and blank lines left out, since the
// documentation of a public face is not its bulk). A line counts for the namespace-level type
// declared last above it in its file.
using System.Text.RegularExpressions;

namespace Kmem.Tests.Architecture;

public partial class SizeTests
{
    private const int MaxFileLines = 600;
    private const int MaxClassCodeLines = 1000;

    [Fact]
    public void NoFileIsOver600Lines()
    {
        var over = SourceFiles().Select(f => (File: f, Lines: File.ReadAllLines(f).Length))
            .Where(f => f.Lines > MaxFileLines).Select(f => $"{f.File}: {f.Lines} lines").ToList();
        Assert.True(over.Count == 0, "files over " + MaxFileLines + " lines:\n" + string.Join("\n", over));
    }

    [Fact]
    public void NoClassIsOver1000LinesOfCode()
    {
        var perType = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string file in SourceFiles())
        {
            // Each line counts for the namespace-level type declared last above it.
            string? type = null;
            foreach (string line in File.ReadLines(file))
            {
                if (TopLevelType().Match(line) is { Success: true } m)
                {
                    type = m.Groups[1].Value;
                }
                if (type is not null && line.Trim() is { Length: > 0 } t && !t.StartsWith("//", StringComparison.Ordinal))
                {
                    perType[type] = perType.GetValueOrDefault(type) + 1;
                }
            }
        }
        Assert.True(perType.Count > 50, "the source tree was not found");
        var over = perType.Where(t => t.Value > MaxClassCodeLines).Select(t => $"{t.Key}: {t.Value} lines of code").ToList();
        Assert.True(over.Count == 0, "classes over " + MaxClassCodeLines + " lines of code:\n" + string.Join("\n", over));
    }

    private static IEnumerable<string> SourceFiles()
    {
        string sep = Path.DirectorySeparatorChar.ToString();
        return Directory.GetFiles(Path.Combine(Repository.Root(), "src"), "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains(sep + "obj" + sep) && !f.Contains(sep + "bin" + sep));
    }

    // A type declared at namespace level (file-scoped namespaces: no indentation).
    [GeneratedRegex(@"^(?:(?:public|internal|file|sealed|static|abstract|unsafe|partial|readonly|ref)\s+)*(?:class|struct|record(?:\s+struct)?|interface|enum)\s+([A-Z]\w*)")]
    private static partial Regex TopLevelType();
}
