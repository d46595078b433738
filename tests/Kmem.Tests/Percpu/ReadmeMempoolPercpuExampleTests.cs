// The example of docs/mempool-percpu.md (also examples/MempoolPercpu), kept here line for line so that it keeps
// compiling and doing what the page says.
namespace Kmem.Tests.Percpu;

public class ReadmeMempoolPercpuExampleTests
{
    [Fact]
    public void TheReadmeMempoolAndPercpuExampleRunsAsDescribed()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2 });
        var output = new StringWriter();

        // A mempool keeps a reserve in front of an allocator: mm/mempool.c of 6.1.
        KmemCache bios = m.KmemCacheCreate("my_bio", 200, 0, SlabFlags.HwcacheAlign, null)!;
        Mempool pool = m.MempoolCreateSlabPool(16, bios)!;          // also MempoolCreateKmallocPool, MempoolCreatePagePool, MempoolCreate
        nint bio = m.MempoolAlloc(pool, Gfp.NoIo, TimeSpan.FromSeconds(5)); // waits for a free while the reserve is empty
        m.MempoolFree(bio, pool);                                   // refills the reserve first
        long stillOut = m.MempoolDestroy(pool);                     // returns (and logs) the elements still out

        // Per-CPU data: mm/percpu.c, percpu-defs.h, lib/percpu_counter.c.
        PercpuPtr<long> hits = m.AllocPercpu<long>();              // one zeroed long per possible CPU
        using (m.OnCpu(1)) m.ThisCpuInc(hits);                      // this_cpu_inc on CPU 1's copy
        long total = 0;
        foreach (int cpu in m.ForEachPossibleCpu()) total += m.PerCpu(hits, cpu);
        m.FreePercpu(hits);
        PercpuVar<int> state = m.DefinePerCpu<int>("state");      // DEFINE_PER_CPU, in the first chunk's static area
        using PercpuCounter pages = m.PercpuCounterInit(0, Gfp.Kernel)!;
        pages.Add(5);                                               // per-CPU delta, folded every max(32, 2 × CPUs)
        output.Write(m.Proc.Read("percpu_stats"));                  // /sys/kernel/debug/percpu_stats

        Assert.NotEqual(0, bio);
        Assert.Equal(0, stillOut);
        Assert.Equal(1, total);
        Assert.Equal(0, m.PerCpu(state, 0));
        Assert.Equal(5, pages.Sum());
        Assert.Equal(0, pages.Read());
        Assert.StartsWith("Percpu Memory Statistics\n", output.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain(m.Log.Lines, l => l.Contains("WARNING", StringComparison.Ordinal));
    }
}
