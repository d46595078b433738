// docs/mempool-percpu.md's program: a mempool in front of a slab cache, per-CPU data with this_cpu
// operations, DEFINE_PER_CPU and a percpu_counter, then /sys/kernel/debug/percpu_stats.
using Kmem;

using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });

// A mempool keeps a reserve in front of an allocator: mm/mempool.c of 6.1.
KmemCache bios = m.KmemCacheCreate("my_bio", 200, 0, SlabFlags.HwcacheAlign, null)!;
Mempool pool = m.MempoolCreateSlabPool(16, bios)!;          // also MempoolCreateKmallocPool, MempoolCreatePagePool, MempoolCreate
nint bio = m.MempoolAlloc(pool, Gfp.NoIo, TimeSpan.FromSeconds(5)); // waits for a free while the reserve is empty
m.MempoolFree(bio, pool);                                   // refills the reserve first
m.MempoolDestroy(pool);                                     // returns (and logs) the elements still out
Console.WriteLine($"mempool: element {(bio != 0 ? "allocated" : "refused")}, {pool.ElementsOut} still out");

// Per-CPU data: mm/percpu.c, percpu-defs.h, lib/percpu_counter.c.
PercpuPtr<long> hits = m.AllocPercpu<long>();              // one zeroed long per possible CPU
using (m.OnCpu(1)) m.ThisCpuInc(hits);                      // this_cpu_inc on CPU 1's copy
long total = 0;
foreach (int cpu in m.ForEachPossibleCpu()) total += m.PerCpu(hits, cpu);
m.FreePercpu(hits);
PercpuVar<int> state = m.DefinePerCpu<int>("state");      // DEFINE_PER_CPU, in the first chunk's static area
using PercpuCounter pages = m.PercpuCounterInit(0, Gfp.Kernel)!;
pages.Add(5);                                               // per-CPU delta, folded every max(32, 2 × CPUs)
Console.Write(m.Proc.Read("percpu_stats"));                 // /sys/kernel/debug/percpu_stats
Console.WriteLine($"per-CPU hits summed over CPUs: {total}; percpu_counter sum: {pages.Sum()}, read {pages.Read()} "
    + $"(the delta stays per CPU below the batch); state on CPU 0: {m.PerCpu(state, 0)}; "
    + $"kernel warnings: {m.Log.Lines.Count(l => l.Contains("WARNING", StringComparison.Ordinal))}");
