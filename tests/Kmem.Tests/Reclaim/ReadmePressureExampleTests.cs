// The example of docs/memory-pressure.md (also examples/Pressure), kept here line for line so that it keeps
// compiling and doing what the page says.
namespace Kmem.Tests.Reclaim;

[Collection("reclaim-files")]
public class ReadmePressureExampleTests
{
    [Fact]
    public void TheMemoryPressureExampleRunsAsDescribed()
    {
        var output = new StringWriter();

        using var m = Machine.Boot(new MachineOptions { Memory = "128M" });
        string swapfile = Path.GetTempFileName();
        m.Mkswap(swapfile, 64 << 20);                          // a real file with the kernel's swap header
        m.Swapon(swapfile);                                    // /proc/swaps lists it, priority -2
        TaskStruct t = m.CreateTask("worker")!;                // null when fork would fail (no kernel stack)
        ulong a = t.Mmap(160 << 20);                           // address space only: pages come on first touch
        t.Write(a, "hello"u8);                                 // faults in a zeroed GFP_HIGHUSER_MOVABLE page
        var back = new byte[5];
        t.Read(a, back);                                       // a swapped-out page would come back from the file
        long score = m.OomScore(t);                            // /proc/<pid>/oom_score
        string data;
        using (CachedFile f = m.OpenFile(Path.GetTempFileName()))
        {
            f.Write(0, "cached"u8);                            // a dirty page in the page cache
            f.Fsync();                                         // now on disk
            data = f.Path;
        }
        m.DropCaches(3);                                       // /proc/sys/vm/drop_caches
        m.CompactMemory();                                     // /proc/sys/vm/compact_memory
        output.Write(m.Proc.Read("swaps"));
        t.Exit();

        Assert.Equal("hello"u8.ToArray(), back);
        Assert.True(score > 0);
        Assert.Equal("cached", File.ReadAllText(data));
        File.Delete(data);
        File.Delete(swapfile);
        Assert.Contains("file\t\t65532\t\t0\t\t-2", output.ToString(), StringComparison.Ordinal);
    }
}
