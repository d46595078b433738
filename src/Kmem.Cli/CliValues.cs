// How the command reads numeric option values: a whole number in invariant culture,
// with a message that names the option and the text given ("--cpus: 'x' is not a whole
// number") instead of the parser's own, which names a .NET type. A value the parser
// refuses is a usage error (exit code 2). Stateless.
using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace Kmem.Cli;

/// <summary>Parsers for the numeric options of the subcommands.</summary>
public static class CliValues
{
    /// <summary>Makes <paramref name="option"/> read a whole number of at least <paramref name="min"/>.</summary>
    /// <returns>The option.</returns>
    public static Option<int> Whole(Option<int> option, int min = int.MinValue)
    {
        ArgumentNullException.ThrowIfNull(option);
        option.CustomParser = r => (int)Read(r, option.Name, min, int.MaxValue);
        return option;
    }

    /// <summary>Makes an optional <paramref name="option"/> read a whole number of at least <paramref name="min"/>.</summary>
    /// <returns>The option.</returns>
    public static Option<int?> Whole(Option<int?> option, int min = int.MinValue)
    {
        ArgumentNullException.ThrowIfNull(option);
        option.CustomParser = r => (int)Read(r, option.Name, min, int.MaxValue);
        return option;
    }

    /// <summary>Makes an optional <paramref name="option"/> read a whole number of at least <paramref name="min"/>.</summary>
    /// <returns>The option.</returns>
    public static Option<long?> Whole(Option<long?> option, long min = long.MinValue)
    {
        ArgumentNullException.ThrowIfNull(option);
        option.CustomParser = r => Read(r, option.Name, min, long.MaxValue);
        return option;
    }

    /// <summary>The value of the last token (an option given twice takes its last value, as the parser does).</summary>
    private static long Read(ArgumentResult result, string name, long min, long max)
    {
        string text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        if (!long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
        {
            bool digits = text.Length > 0 && text.TrimStart('-').All(char.IsAsciiDigit);
            result.AddError(digits ? $"{name}: '{text}' is too large (at most {max})" : $"{name}: '{text}' is not a whole number");
            return 0;
        }
        if (value > max)
        {
            result.AddError($"{name}: '{text}' is too large (at most {max})");
            return 0;
        }
        if (value < min)
        {
            result.AddError($"{name} must be {min} or more, not {value}");
            return 0;
        }
        return value;
    }
}
