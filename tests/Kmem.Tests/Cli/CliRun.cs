// Runs the kmem command in-process, as the tests of its subcommands do: the exit code
// and what it wrote to stdout and stderr.
using Kmem.Cli;

namespace Kmem.Tests.Cli;

internal static class CliRun
{
    /// <summary>Runs <c>kmem ARGS</c> and returns its exit code, stdout and stderr.</summary>
    public static (int Code, string Out, string Err) Kmem(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }
}
