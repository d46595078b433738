// What every subcommand writes to and how it fails: the output and error writers
// (Console's, or captured ones when the command runs in-process), whether stderr is a
// terminal (progress bars), and the exit codes of the command's contract.
namespace Kmem.Cli;

/// <summary>The writers and terminal facts one run of the command uses.</summary>
/// <param name="Out">Standard output: reports, and under --json exactly one JSON object.</param>
/// <param name="Err">Standard error: errors, warnings and progress.</param>
/// <param name="ErrIsTerminal">Whether <paramref name="Err"/> is an interactive terminal (progress bars only then).</param>
public sealed record CliContext(TextWriter Out, TextWriter Err, bool ErrIsTerminal)
{
    /// <summary>Success.</summary>
    public const int Ok = 0;
    /// <summary>Bad input: a malformed trace, a missing or unreadable file.</summary>
    public const int BadInput = 1;
    /// <summary>A usage error: an unknown option, a bad value.</summary>
    public const int Usage = 2;
    /// <summary>An internal error (a bug in Kmem).</summary>
    public const int Internal = 3;

    /// <summary>Writes "kmem: MESSAGE" to stderr and returns <paramref name="code"/>.</summary>
    public int Fail(int code, string message)
    {
        Err.WriteLine($"kmem: {message}");
        return code;
    }
}

/// <summary>A usage error found after parsing (a value the parser let through); exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);
