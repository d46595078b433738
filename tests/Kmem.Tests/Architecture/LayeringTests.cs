// The layers of docs/architecture.md, checked on the source. The table of rows is read from that
// page, so the page and the test cannot drift apart. A unit is a folder of src/Kmem ("(root)" for
// its top-level files) or a whole other project (Kmem.Trace, Kmem.MemoryMap, Kmem.Cli). A file may
// use the types of its own unit and of units in lower rows; units of one row do not use each other.
// Types are found by their namespace-level declarations, uses by name in the code (comments and strings stripped);
// a name declared in two units is ambiguous and not checked. Every file is checked, Machine's too.
using System.Text;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace Kmem.Tests.Architecture;

public partial class LayeringTests(ITestOutputHelper output)
{
    private const string Root = "(root)";

    [Fact]
    public void NoUnitUsesATypeOfItsOwnRowOrAbove()
    {
        var source = Source.Load();
        var violations = new List<string>();
        foreach (var file in source.Files)
        {
            foreach (var (name, unit) in source.Uses(file))
            {
                if (source.Rows[unit] >= source.Rows[file.Unit])
                {
                    violations.Add($"{file.Relative} ({file.Unit}, row {source.Rows[file.Unit]}) uses {name} ({unit}, row {source.Rows[unit]})");
                }
            }
        }
        Assert.True(violations.Count == 0, "upward or sideways uses:\n" + string.Join("\n", violations.Distinct()));
    }

    [Fact]
    public void EveryUnitIsARowOfTheArchitecturePage()
    {
        var source = Source.Load();
        Assert.True(source.Declared.Count > 100, "the source tree was not found or has too few types");
        var units = source.Files.Select(f => f.Unit).Distinct().ToList();
        Assert.Equal([], units.Where(u => !source.Rows.ContainsKey(u)).Select(u => $"{u} is not in the table"));
        Assert.Equal([], source.Rows.Keys.Where(u => !units.Contains(u)).Select(u => $"{u} has no source file"));
    }

    /// <summary>Prints each unit's row and the units it uses: the dependency view of the folders.</summary>
    [Fact]
    public void PrintsTheDependencyView()
    {
        var source = Source.Load();
        var uses = new SortedDictionary<string, SortedSet<string>>(StringComparer.Ordinal);
        foreach (var file in source.Files)
        {
            var set = uses.TryGetValue(file.Unit, out var s) ? s : uses[file.Unit] = new SortedSet<string>(StringComparer.Ordinal);
            foreach (var (_, unit) in source.Uses(file))
            {
                set.Add(unit);
            }
        }
        var text = new StringBuilder();
        foreach (var unit in uses.Keys.OrderByDescending(u => source.Rows[u]).ThenBy(u => u, StringComparer.Ordinal))
        {
            string targets = string.Join(", ", uses[unit].Select(u => $"{u} ({source.Rows[u]})"));
            text.AppendLine($"row {source.Rows[unit]}  {unit,-16} -> {(targets.Length == 0 ? "nothing" : targets)}");
        }
        output.WriteLine(text.ToString());
        Assert.Contains("Machine", text.ToString(), StringComparison.Ordinal);
    }

    private sealed record SourceFile(string Path, string Relative, string Unit, string Code);

    private sealed partial class Source
    {
        public required Dictionary<string, int> Rows { get; init; }
        public required List<SourceFile> Files { get; init; }
        /// <summary>Type name → the one unit that declares it (names declared in two units are left out).</summary>
        public required Dictionary<string, string> Declared { get; init; }

        /// <summary>The types of other units that a file names.</summary>
        public IEnumerable<(string Name, string Unit)> Uses(SourceFile file)
        {
            // Enum bodies declare members, not uses; a name after '.' is a member (SlabAllocator.Slub);
            // a name between a type and '{' or "=>" is a property being declared (string? SlubThreadCache { get; }).
            string code = EnumBody().Replace(file.Code, " ");
            foreach (Match id in Identifier().Matches(code))
            {
                if (id.Index > 0 && code[id.Index - 1] == '.' || MemberDeclaration().IsMatch(code.AsSpan(id.Index)) && PrecededByType(code, id.Index))
                {
                    continue;
                }
                if (Declared.TryGetValue(id.Value, out string? unit) && unit != file.Unit)
                {
                    yield return (id.Value, unit);
                }
            }
        }

        public static Source Load()
        {
            string repo = Repository.Root();
            var rows = ReadRows(Path.Combine(repo, "docs", "architecture.md"));
            var files = new List<SourceFile>();
            foreach (string project in new[] { "Kmem", "Kmem.Trace", "Kmem.MemoryMap", "Kmem.Live", "Kmem.Cli" })
            {
                string dir = Path.Combine(repo, "src", project);
                foreach (string path in Directory.GetFiles(dir, "*.cs", SearchOption.AllDirectories))
                {
                    string rel = Path.GetRelativePath(dir, path);
                    string first = rel.Split(Path.DirectorySeparatorChar)[0];
                    if (first is "obj" or "bin")
                    {
                        continue;
                    }
                    string unit = project != "Kmem" ? project : rel.Contains(Path.DirectorySeparatorChar) ? first : Root;
                    files.Add(new SourceFile(path, Path.Combine("src", project, rel), unit, StripCommentsAndStrings(File.ReadAllText(path))));
                }
            }
            var owners = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
            foreach (var f in files)
            {
                foreach (Match d in Declaration().Matches(f.Code))
                {
                    (owners.TryGetValue(d.Groups[1].Value, out var set) ? set : owners[d.Groups[1].Value] = []).Add(f.Unit);
                }
            }
            var declared = owners.Where(o => o.Value.Count == 1).ToDictionary(o => o.Key, o => o.Value.Single(), StringComparer.Ordinal);
            return new Source { Rows = rows, Files = files, Declared = declared };
        }

        /// <summary>The "| row | folders | … |" table of the architecture page.</summary>
        private static Dictionary<string, int> ReadRows(string page)
        {
            var rows = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (string line in File.ReadLines(page))
            {
                var m = RowLine().Match(line);
                if (m.Success)
                {
                    int row = int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
                    foreach (string unit in m.Groups[2].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                    {
                        rows.Add(unit, row);
                    }
                }
            }
            Assert.True(rows.Count >= 10, $"{page} has no layer table (| row | folders | … |)");
            return rows;
        }

        private static string StripCommentsAndStrings(string code) => CommentOrString().Replace(code, " ");

        /// <summary>Whether the word before <paramref name="index"/> is a type (a member declaration's type).</summary>
        private static bool PrecededByType(string code, int index)
        {
            int i = index - 1;
            while (i >= 0 && char.IsWhiteSpace(code[i]))
            {
                i--;
            }
            if (i < 0 || !(char.IsLetterOrDigit(code[i]) || code[i] is '?' or '>' or ']' or '_'))
            {
                return false;
            }
            int end = i + 1;
            while (i >= 0 && (char.IsLetterOrDigit(code[i]) || code[i] == '_'))
            {
                i--;
            }
            return code[(i + 1)..end] is not ("new" or "return" or "is" or "as" or "in" or "case");
        }

        [GeneratedRegex(@"\benum\s+\w+[^{]*\{[^}]*\}")]
        private static partial Regex EnumBody();

        [GeneratedRegex(@"^\w+\s*(?:\{|=>)")]
        private static partial Regex MemberDeclaration();

        [GeneratedRegex(@"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|")]
        private static partial Regex RowLine();

        [GeneratedRegex(@"//[^\n]*|/\*.*?\*/|@""(?:[^""]|"""")*""|\$?""(?:[^""\\\n]|\\.)*""|'(?:[^'\\\n]|\\.)'", RegexOptions.Singleline)]
        private static partial Regex CommentOrString();

        // Types declared at namespace level (file-scoped namespaces: no indentation); a nested type is
        // named through its outer type, and its short name (Kind, Entry) would be ambiguous anyway.
        [GeneratedRegex(@"^(?:(?:public|internal|file|sealed|static|abstract|unsafe|partial|readonly|ref)\s+)*(?:class|struct|enum|interface|record(?:\s+struct)?)\s+([A-Z]\w*)", RegexOptions.Multiline)]
        private static partial Regex Declaration();

        [GeneratedRegex(@"\b[A-Z]\w*\b")]
        private static partial Regex Identifier();
    }
}
