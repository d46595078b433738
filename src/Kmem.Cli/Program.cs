// The kmem command: a thin face over the library. Program registers the subcommands
// (one line each; every subcommand lives in its own file) and turns the parser's
// verdicts into the exit codes of the contract: 0 ok, 1 bad input, 2 usage, 3 internal.
using System.CommandLine;
using System.CommandLine.Invocation;

namespace Kmem.Cli;

/// <summary>The entry point of <c>kmem</c>.</summary>
public static class Program
{
    /// <summary>Runs the command with the console's writers.</summary>
    public static int Main(string[] args) =>
        Run(args, Console.Out, Console.Error, errIsTerminal: !Console.IsErrorRedirected);

    /// <summary>Runs the command in-process: what <c>kmem ARGS</c> would print goes to the writers.</summary>
    /// <param name="args">The arguments.</param>
    /// <param name="stdout">Standard output.</param>
    /// <param name="stderr">Standard error.</param>
    /// <param name="errIsTerminal">Whether stderr is a terminal (progress bars).</param>
    /// <returns>The exit code.</returns>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, bool errIsTerminal = false)
    {
        ArgumentNullException.ThrowIfNull(args);
        var ctx = new CliContext(stdout, stderr, errIsTerminal);
        var root = DefaultCommand.Create(ctx);
        root.Subcommands.Add(ReplayCommand.Create(ctx));
        root.Subcommands.Add(CompareCommand.Create(ctx));
        root.Subcommands.Add(ProcCommand.Create(ctx));
        root.Subcommands.Add(ScenarioCommand.Create(ctx));
        root.Subcommands.Add(BenchCommand.Create(ctx));
        root.Subcommands.Add(MarkersCommand.Create(ctx));
        root.Subcommands.Add(ServeCommand.Create(ctx));
        return Invoke(ctx, root, args);
    }

    private static int Invoke(CliContext ctx, RootCommand root, string[] args)
    {
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0 && parse.Action is ParseErrorAction or null)
        {
            foreach (var error in parse.Errors)
            {
                ctx.Err.WriteLine($"kmem: {error.Message}");
            }
            ctx.Err.WriteLine("Try 'kmem --help' (or 'kmem COMMAND --help') for the commands and options.");
            return CliContext.Usage;
        }
        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = ctx.Out, Error = ctx.Err, EnableDefaultExceptionHandler = false });
        }
        catch (UsageException e)
        {
            return ctx.Fail(CliContext.Usage, e.Message);
        }
        catch (IOException e)
        {
            return ctx.Fail(CliContext.BadInput, e.Message);
        }
        catch (UnauthorizedAccessException e)
        {
            return ctx.Fail(CliContext.BadInput, e.Message);
        }
        catch (FormatException e)
        {
            return ctx.Fail(CliContext.BadInput, e.Message);
        }
        catch (PlatformNotSupportedException e)
        {
            return ctx.Fail(CliContext.Internal, e.Message);
        }
        catch (Exception e)
        {
            ctx.Err.WriteLine($"kmem: internal error: {e.GetType().Name}: {e.Message}");
            ctx.Err.WriteLine(e.StackTrace);
            return CliContext.Internal;
        }
    }
}
