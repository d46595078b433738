// A replay's machine shaped like a capture's: what Kmem derives at boot from the capture's
// managed pages (the watermarks, lowmem_reserve, per-CPU list high and batch) equals the
// kernel's zoneinfo lines, for a capture recorded after boot too, whose init memory the boot
// log gives (MachineOptions.InitMemoryPages).
namespace Kmem.Tests.Cli;

public class CliCaptureBootTests
{
    // Each zone's derived lines: min, low, high, protection and the per-CPU lists' high and batch.
    private static List<string> Derived(string zoneinfo) =>
        [.. zoneinfo.Split('\n').Select(l => l.Trim())
            .Where(l => l.StartsWith("Node ", StringComparison.Ordinal) || l.StartsWith("min ", StringComparison.Ordinal)
                || l.StartsWith("low ", StringComparison.Ordinal) || l.StartsWith("high ", StringComparison.Ordinal)
                || l.StartsWith("protection:", StringComparison.Ordinal) || l.StartsWith("high:", StringComparison.Ordinal)
                || l.StartsWith("batch:", StringComparison.Ordinal))
            .Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries)))];

    [Theory]
    [InlineData(Captures.Pressure)] // recorded from 0.51 s: its init memory comes from meta/dmesg.txt
    [InlineData(Captures.X64)] // recorded from boot: the trace releases it
    public void TheWatermarksReservesAndPcpSizesKmemDerivesAreTheCapturesOwn(string capture)
    {
        var (code, output, err) = CliRun.Kmem("replay", Captures.Trace(capture), "--until", "INIT_START", "--proc", "zoneinfo");
        Assert.True(code == 0, err);
        string kmem = output[output.IndexOf("Node 0, zone", StringComparison.Ordinal)..];
        string kernel = File.ReadAllText(Captures.File(capture, "zoneinfo.txt"));
        Assert.Equal(Derived(kernel), Derived(kmem));
    }
}
