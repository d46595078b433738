// Room for jemalloc's thread-local storage. Debian's libjemalloc is built with
// initial-exec TLS, which a library loaded after start-up can only get from the
// static TLS surplus glibc reserves at start; the runtime's own libraries use
// it up. So the program starts itself once more with that surplus enlarged.
using System.Diagnostics;

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
        foreach (var spec in NativeContender.Known)
        {
            if (NativeContender.TryLoad(spec.Name, out string? note) is null && note!.Contains("static TLS", StringComparison.Ordinal))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Runs this program again with the same arguments and <see cref="Tunable"/> added to the
    /// environment, sharing this console; returns its exit code.</summary>
    public static int Relaunch(string[] args)
    {
        string process = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell which program to start again");
        var start = new ProcessStartInfo(process) { UseShellExecute = false };
        // Started through the dotnet host ("dotnet Kmem.Bench.dll"): pass the assembly again.
        if (Path.GetFileNameWithoutExtension(process) == "dotnet")
        {
            start.ArgumentList.Add(Environment.GetCommandLineArgs()[0]);
        }
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }
        string? current = Environment.GetEnvironmentVariable(TunablesVariable);
        start.Environment[TunablesVariable] = string.IsNullOrEmpty(current) ? Tunable : $"{current}:{Tunable}";
        using var child = Process.Start(start) ?? throw new InvalidOperationException($"could not start {process}");
        child.WaitForExit();
        return child.ExitCode;
    }
}
