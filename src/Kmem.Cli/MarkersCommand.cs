// kmem markers TRACE: the trace's markers (tracing_mark_write lines) in order, with their line
// numbers and timestamps, so that --until has something to aim at. Reads the trace once; no
// machine is booted.
using System.CommandLine;
using System.Globalization;

namespace Kmem.Cli;

/// <summary>The markers subcommand.</summary>
public static class MarkersCommand
{
    /// <summary>Creates the subcommand.</summary>
    public static Command Create(CliContext ctx)
    {
        var trace = new Argument<string>("TRACE") { Description = "the trace (plain, .gz or .xz)" };
        var command = new Command("markers", "List the trace's markers (tracing_mark_write) with their line numbers: the texts --until can stop at.") { trace };
        command.SetAction(parse => Run(ctx, parse.GetValue(trace)!));
        return command;
    }

    private static int Run(CliContext ctx, string trace)
    {
        if (TraceInput.CheckFile(trace) is string missing)
        {
            return ctx.Fail(CliContext.BadInput, missing);
        }
        try
        {
            using var reader = TraceReader.Open(trace);
            int count = 0;
            while (reader.TryRead(out var e))
            {
                if (e.Kind == TraceEventKind.Marker)
                {
                    count++;
                    ctx.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{reader.Lines,10}  {e.Text}"));
                }
            }
            if (count == 0)
            {
                ctx.Err.WriteLine($"kmem: {trace}: the trace has no markers");
            }
            return CliContext.Ok;
        }
        catch (TraceFormatException e)
        {
            return ctx.Fail(CliContext.BadInput, e.Message);
        }
    }
}
