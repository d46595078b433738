// A machine nobody disposed: once unreferenced it is collected, whatever its threads and
// reports hold (kswapd and kcompactd reach only the layers, never the machine), and its
// finalizer stops the daemons and gives the host back its memfd and every mapping of it.
// The memfd is told apart from other tests' machines by its inode, read from the direct
// map's line in /proc/self/maps.
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Kmem.Tests.Lifetime;

public class CollectedMachineTests
{
    [Fact]
    public void AnUndisposedUnreferencedMachineIsCollectedAndGivesItsMemfdAndMappingsBack()
    {
        var (weak, inode) = BootUseAndDrop();
        Assert.NotEmpty(MapsLinesOf(inode));
        for (int i = 0; i < 50 && (weak.IsAlive || MapsLinesOf(inode).Count > 0); i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Thread.Sleep(i);
        }
        Assert.False(weak.IsAlive, "the machine is still reachable after it was dropped");
        Assert.Equal([], MapsLinesOf(inode));
        Assert.Equal([], FdsOf(inode));
    }

    [Fact]
    public void ADisposedMachineHasNoMappingOrFdLeft()
    {
        var m = Machine.Boot(new MachineOptions { Memory = "128M", Cpus = 2 });
        ulong inode = InodeOf(m);
        Touch(m);
        Assert.NotEmpty(MapsLinesOf(inode));
        m.Dispose();
        Assert.Equal([], MapsLinesOf(inode));
        Assert.Equal([], FdsOf(inode));
    }

    /// <summary>Boots a threaded machine (no seed: kswapd and kcompactd run on their own threads), uses every layer
    /// and the reports, and lets go of it.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (WeakReference Weak, ulong Inode) BootUseAndDrop()
    {
        var m = Machine.Boot(new MachineOptions { Memory = "128M", Cpus = 2 });
        Touch(m);
        return (new WeakReference(m), InodeOf(m));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Touch(Machine m)
    {
        var cache = m.KmemCacheCreate("collected", 80, 0, SlabFlags.None, null)!;
        nint obj = m.KmemCacheAlloc(cache, Gfp.Kernel);
        nint p = m.Kmalloc(100, Gfp.Kernel);
        nint v = m.Vmalloc(1 << 16);
        _ = m.Proc.Meminfo();
        _ = m.Metrics.InstrumentNames;
        _ = m.SysSlab.List();
        var task = m.CreateTask("collected")!;
        ulong va = task.Mmap(1 << 20);
        task.Write(va, new byte[4096]);
        var counter = m.PercpuCounterInit(5, Gfp.Kernel)!;
        counter.Add(3);
        // Pressure: most of memory taken and given back, so that kswapd's thread is woken and started.
        var pages = new List<Page>();
        for (Page pg; !(pg = m.AllocPages(Gfp.Kernel | Gfp.NoWarn | Gfp.NoRetry, 4)).IsNull && pages.Count < 1000;)
        {
            pages.Add(pg);
        }
        pages.ForEach(pg => m.FreePages(pg, 4));
        m.Vfree(v);
        m.Kfree(p);
        m.KmemCacheFree(cache, obj);
    }

    private static ulong InodeOf(Machine m)
    {
        string start = m.Mem.DirectMapBase.ToString("x", CultureInfo.InvariantCulture);
        string line = File.ReadLines("/proc/self/maps").First(l => l.StartsWith(start + "-", StringComparison.Ordinal));
        return ulong.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[4], CultureInfo.InvariantCulture);
    }

    private static List<string> MapsLinesOf(ulong inode) =>
        [.. File.ReadLines("/proc/self/maps").Where(l => l.Contains("kmem-physmem", StringComparison.Ordinal)
            && l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[4] == inode.ToString(CultureInfo.InvariantCulture))];

    /// <summary>The process's fds open on the inode (from /proc/self/fdinfo's ino line; none where the host's
    /// kernel does not give it).</summary>
    private static List<string> FdsOf(ulong inode)
    {
        var fds = new List<string>();
        foreach (string info in Directory.GetFiles("/proc/self/fdinfo"))
        {
            try
            {
                string? ino = File.ReadLines(info).FirstOrDefault(l => l.StartsWith("ino:", StringComparison.Ordinal));
                string? target = new FileInfo(Path.Combine("/proc/self/fd", Path.GetFileName(info))).LinkTarget;
                if (ino is not null && ulong.Parse(ino[4..].Trim(), CultureInfo.InvariantCulture) == inode
                    && target is not null && target.Contains("kmem-physmem", StringComparison.Ordinal))
                {
                    fds.Add(Path.GetFileName(info));
                }
            }
            catch (IOException)
            {
                // The fd was closed while the list was read.
            }
        }
        return fds;
    }
}
