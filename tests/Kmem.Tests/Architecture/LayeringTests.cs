// The layers of ARCHITECTURE.md, checked on the source: a file may use the types of its own layer
// and the layers below, never those above. Types are found by their declarations in src/Kmem, uses
// by name in the code (comments and strings stripped). Machine is the facade every layer extends
// (Machine.*.cs partials), so it and its partial files are not checked.
using System.Text.RegularExpressions;

namespace Kmem.Tests.Architecture;

public partial class LayeringTests
{
    /// <summary>Folder → layer; root files (options, CPUs) sit with the base.</summary>
    private static readonly Dictionary<string, int> s_layers = new()
    {
        [""] = 0,
        ["Physical"] = 0,
        ["Diagnostics"] = 0,
        ["PageAlloc"] = 1,
        ["Slab"] = 2,
        ["Highmem"] = 2,
        ["Mempool"] = 2,
        ["Reclaim"] = 2,
        // vmalloc.c allocates its bookkeeping from the slab layer; percpu.c maps its chunks with vmap.
        ["Vmalloc"] = 3,
        ["Percpu"] = 4,
        ["Proc"] = 5,
        ["Workload"] = 5,
        ["Machine"] = 5,
    };

    [Fact]
    public void NoLayerUsesATypeOfALayerAboveIt()
    {
        string root = SourceRoot();
        var files = Directory.GetFiles(root, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}")
                && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"))
            .Select(f => (Path: f, Layer: LayerOf(root, f), Code: StripCommentsAndStrings(File.ReadAllText(f))))
            .ToList();
        var declaredIn = new Dictionary<string, int>();
        foreach (var f in files)
        {
            foreach (Match d in Declaration().Matches(f.Code))
            {
                if (d.Groups[1].Value != "Machine")
                {
                    declaredIn[d.Groups[1].Value] = f.Layer;
                }
            }
        }
        Assert.True(declaredIn.Count > 30, "the source tree was not found or has too few types");
        var violations = new List<string>();
        foreach (var f in files.Where(f => !Path.GetFileName(f.Path).StartsWith("Machine", StringComparison.Ordinal)))
        {
            foreach (Match id in Identifier().Matches(f.Code))
            {
                if (declaredIn.TryGetValue(id.Value, out int layer) && layer > f.Layer)
                {
                    violations.Add($"{Path.GetRelativePath(root, f.Path)} (layer {f.Layer}) uses {id.Value} (layer {layer})");
                }
            }
        }
        Assert.Empty(violations.Distinct());
    }

    [Fact]
    public void TheVmallocLayerGetsWhatItUsesThroughItsConstructorNotTheMachine()
    {
        // VmapSpace is given the page allocator and the slab layer; no vmalloc file reaches for the facade.
        string vmalloc = Path.Combine(SourceRoot(), "Vmalloc");
        var holders = Directory.GetFiles(vmalloc, "*.cs")
            .Where(f => Regex.IsMatch(StripCommentsAndStrings(File.ReadAllText(f)), @"\bMachine\b"))
            .Select(Path.GetFileName)
            .ToList();
        Assert.True(Directory.GetFiles(vmalloc, "*.cs").Length >= 5, "the vmalloc folder was not found");
        Assert.Empty(holders);
    }

    private static int LayerOf(string root, string file)
    {
        string rel = Path.GetRelativePath(root, file);
        string folder = rel.Contains(Path.DirectorySeparatorChar) ? rel[..rel.IndexOf(Path.DirectorySeparatorChar)] : "";
        return s_layers.TryGetValue(folder, out int layer) ? layer
            : throw new InvalidOperationException($"src/Kmem/{folder} is not a layer of ARCHITECTURE.md: add it to the table");
    }

    private static string SourceRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "src", "Kmem");
            if (File.Exists(Path.Combine(candidate, "Kmem.csproj")))
            {
                return candidate;
            }
        }
        throw new DirectoryNotFoundException("src/Kmem not found above the test binary");
    }

    private static string StripCommentsAndStrings(string code) => CommentOrString().Replace(code, " ");

    [GeneratedRegex(@"//[^\n]*|/\*.*?\*/|@""(?:[^""]|"""")*""|\$?""(?:[^""\\\n]|\\.)*""|'(?:[^'\\\n]|\\.)'", RegexOptions.Singleline)]
    private static partial Regex CommentOrString();

    [GeneratedRegex(@"\b(?:class|struct|enum|interface|record)\s+([A-Z]\w*)")]
    private static partial Regex Declaration();

    [GeneratedRegex(@"\b[A-Z]\w*\b")]
    private static partial Regex Identifier();
}
