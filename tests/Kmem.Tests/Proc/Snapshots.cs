// The real /proc snapshots the reports are checked against (the captures' files, see
// Captures), and the small text tools the report tests share (line shapes, "name value" parsing).
using System.Globalization;
using System.Text.RegularExpressions;

namespace Kmem.Tests.Proc;

internal static partial class Snapshots
{
    /// <inheritdoc cref="Captures.X64"/>
    public const string X64 = Captures.X64;
    /// <inheritdoc cref="Captures.I386"/>
    public const string I386 = Captures.I386;

    /// <summary>The lines of a snapshot file (without the final empty string after the last newline).</summary>
    public static string[] Lines(string capture, string file)
    {
        return SplitLines(File.ReadAllText(Captures.File(capture, file + ".txt")));
    }

    /// <summary>Splits a report into lines; every report ends with a newline.</summary>
    public static string[] SplitLines(string text)
    {
        Assert.EndsWith("\n", text);
        return text[..^1].Split('\n');
    }

    /// <summary>A right-aligned number field, with the spaces that pad it, turned into as many '#': two lines
    /// have the same shape when every number sits in the same columns.</summary>
    public static string Shape(string line) => PaddedNumber().Replace(line, m => new string('#', m.Length));

    /// <summary>Every number replaced by "N": the labels, their padding and the punctuation stay.</summary>
    public static string Skeleton(string line) => Digits().Replace(line, "N");

    /// <summary>"name value" lines (vmstat) as a dictionary, checking the names are unique.</summary>
    public static Dictionary<string, long> NameValues(string text)
    {
        var d = new Dictionary<string, long>();
        foreach (var line in SplitLines(text))
        {
            var parts = line.Split(' ');
            Assert.Equal(2, parts.Length);
            d.Add(parts[0], long.Parse(parts[1], CultureInfo.InvariantCulture));
        }
        return d;
    }

    /// <summary>The whitespace-separated fields of a line after the first <paramref name="skip"/>, as numbers.</summary>
    public static long[] Fields(string line, int skip) =>
        [.. line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(skip).Select(f => long.Parse(f, CultureInfo.InvariantCulture))];

    /// <summary>A 512M, 2-CPU x86-64 machine, the size of the real capture.</summary>
    public static Machine BootX64() => Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });

    /// <summary>A 1536M, 1-CPU x86-32 PAE machine, the size of the real i386 capture.</summary>
    public static Machine BootPae() => Machine.Boot(new MachineOptions { Memory = "1536M", Cpus = 1, Preset = Preset.X86Pae, Seed = 1 });

    public static Machine Boot(string capture) => capture == X64 ? BootX64() : BootPae();

    [GeneratedRegex(@" *\d+")]
    private static partial Regex PaddedNumber();

    [GeneratedRegex(@"\d+")]
    private static partial Regex Digits();
}
