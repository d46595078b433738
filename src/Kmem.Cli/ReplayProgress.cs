// The progress bar of long replays: Spectre.Console on stderr, only when stderr is a
// terminal (never in pipes, files or captured test writers), driven by the replayer's
// progress callback with how far through the input file the reader is.
using Spectre.Console;

namespace Kmem.Cli;

/// <summary>Runs work with a progress bar on stderr when stderr is a terminal.</summary>
public static class ReplayProgress
{
    /// <summary>Runs <paramref name="work"/>, handing it a progress callback (null when no bar is shown).</summary>
    public static T Run<T>(CliContext ctx, string label, Func<Action<TraceReplayer>?, T> work)
    {
        if (!ctx.ErrIsTerminal)
        {
            return work(null);
        }
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(ctx.Err),
            Interactive = InteractionSupport.Yes,
        });
        T result = default!;
        console.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(p =>
            {
                var task = p.AddTask(label, maxValue: 1000);
                result = work(r =>
                {
                    if (r.Reader is { InputLength: > 0 } reader)
                    {
                        task.Value = Math.Min(1000, 1000.0 * reader.InputBytesRead / reader.InputLength);
                    }
                });
                task.Value = 1000;
            });
        return result;
    }
}
