// Room for jemalloc's thread-local storage. Debian's libjemalloc is built with
// initial-exec TLS, which a library loaded after start-up can only get from the
// static TLS surplus glibc reserves at start; the runtime's own libraries use
// it up. So the program starts itself once more with that surplus enlarged.
namespace Kmem.Bench;

internal static class StaticTls
{
    /// <summary>The glibc tunable (GLIBC_TUNABLES) that sizes the static TLS surplus, with room for jemalloc.</summary>
    public const string Tunable = "glibc.rtld.optional_static_tls=16384";

    private const string TunablesVariable = "GLIBC_TUNABLES";

    /// <summary>Whether this process should be started again with <see cref="Tunable"/>: a native contender
    /// failed to load for lack of static TLS room, and the tunable is not set yet.</summary>
    public static bool RelaunchNeeded()
    {
        if (!OperatingSystem.IsLinux() || (Environment.GetEnvironmentVariable(TunablesVariable) ?? "").Contains("optional_static_tls", StringComparison.Ordinal))
        {
            return false;
        }
        foreach (var spec in NativeLibraries.Known)
        {
            if (NativeLibraries.TryLoad(spec, out string? note) == 0 && note!.Contains("static TLS", StringComparison.Ordinal))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Runs this program again with <paramref name="args"/> and <see cref="Tunable"/> added to the
    /// environment, sharing this console; returns its exit code.</summary>
    public static int Relaunch(IEnumerable<string> args)
    {
        var start = SelfProcess.StartInfo(args);
        string? current = Environment.GetEnvironmentVariable(TunablesVariable);
        start.Environment[TunablesVariable] = string.IsNullOrEmpty(current) ? Tunable : $"{current}:{Tunable}";
        using var child = System.Diagnostics.Process.Start(start) ?? throw new InvalidOperationException($"could not start {start.FileName}");
        child.WaitForExit();
        return child.ExitCode;
    }
}

/// <summary>Starting this same program again (to relaunch it, or to measure in a child process).</summary>
internal static class SelfProcess
{
    /// <summary>A start description for this program with <paramref name="args"/>; when it runs through the dotnet
    /// host ("dotnet X.dll") the assembly is passed again.</summary>
    public static System.Diagnostics.ProcessStartInfo StartInfo(IEnumerable<string> args)
    {
        string process = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell which program to start again");
        var start = new System.Diagnostics.ProcessStartInfo(process) { UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(process) == "dotnet")
        {
            start.ArgumentList.Add(Environment.GetCommandLineArgs()[0]);
        }
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }
        return start;
    }
}
