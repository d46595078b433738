// The OOM killer (mm/oom_kill.c): when reclaim cannot make progress for an
// allocation that may not fail, pick the task with the highest oom_badness
// (rss + swap entries + page-table pages, plus oom_score_adj × totalpages/1000;
// −1000 never), print the kernel's report (the invoking line, the task dump,
// the oom-kill summary and "Out of memory: Killed process …"), and free the
// victim's memory at once (what the oom_reaper and exit do in the kernel).
// /proc/<pid>/oom_score scales the badness to 0..2000.
// Locking: UserMemory.Lock for selection and the kill (the victim's exit takes
// Swapfile.Lock and Lruvecs.Lock inside it, in the order of LockOrder.cs).
using System.Globalization;
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Reclaim;

/// <summary>The OOM killer of one machine.</summary>
internal sealed class OomKill(PageAllocator pa, UserMemory memory, Swapfile swap, KernelLog log, VmEvents events)
{
    private readonly PageAllocator _pa = pa;
    private readonly UserMemory _memory = memory;
    private readonly Swapfile _swap = swap;
    private readonly KernelLog _log = log;
    private readonly VmEvents _events = events;

    /// <summary>OOM_SCORE_ADJ_MIN: a task with it is never chosen.</summary>
    public const short OomScoreAdjMin = -1000;

    /// <summary>totalram_pages + total_swap_pages.</summary>
    public long OomTotalPages => _pa.TotalRamPages + _swap.TotalSwapPages;

    /// <summary>oom_badness; long.MinValue for a task that may not be chosen.</summary>
    public static long OomBadness(TaskStruct t, long totalPages)
    {
        if (t.HasExited || t.OomScoreAdj == OomScoreAdjMin)
        {
            return long.MinValue;
        }
        long points = t.Rss + t.SwapEnts + t.PgtablesBytes / PhysMem.PageSize;
        long adj = t.OomScoreAdj * (totalPages / 1000);
        return points + adj;
    }

    /// <summary>proc_oom_score: (1000 + badness × 1000 / totalpages) × 2 / 3, 0 for an unkillable task.</summary>
    public long OomScore(TaskStruct t)
    {
        lock (_memory.Lock)
        {
            long total = OomTotalPages;
            long badness = OomBadness(t, total);
            return badness == long.MinValue ? 0 : (1000 + badness * 1000 / total) * 2 / 3;
        }
    }

    /// <summary>out_of_memory: select and kill. Returns whether a victim's memory was freed.</summary>
    public bool OutOfMemory(Gfp gfp, int order)
    {
        if (MmCurrent.Memalloc)
        {
            return false;
        }
        lock (_memory.Lock)
        {
            long total = OomTotalPages;
            TaskStruct? victim = null;
            long chosen = long.MinValue;
            foreach (var t in _memory.Tasks)
            {
                long points = OomBadness(t, total);
                if (points == long.MinValue || points < chosen)
                {
                    continue;
                }
                victim = t;
                chosen = points;
            }
            if (victim is null)
            {
                return false;
            }
            var log = _log;
            var cur = MmCurrent.Task;
            log.Printk($"{cur?.Comm ?? "kmem"} invoked oom-killer: gfp_mask=0x{(uint)gfp:x}({GfpFlags.Format(gfp)}), order={order}, oom_score_adj={cur?.OomScoreAdj ?? 0}");
            log.Printk("Tasks state (memory values in pages):");
            log.Printk("[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name");
            foreach (var t in _memory.Tasks)
            {
                log.Printk(string.Create(CultureInfo.InvariantCulture,
                    $"[{t.Pid,7}] {0,5} {t.Pid,5} {t.TotalVm,8} {t.Rss,8} {t.PgtablesBytes,8} {t.SwapEnts,8}         {t.OomScoreAdj,5} {t.Comm}"));
            }
            string mems = _pa.Nodes.Length == 1 ? "0" : $"0-{_pa.Nodes.Length - 1}";
            log.Printk($"oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed={mems},global_oom,task_memcg=/,task={victim.Comm},pid={victim.Pid},uid=0");
            log.Printk($"Out of memory: Killed process {victim.Pid} ({victim.Comm}) total-vm:{victim.TotalVm * 4}kB, anon-rss:{victim.Rss * 4}kB, "
                + $"file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:{victim.PgtablesBytes >> 10}kB oom_score_adj:{victim.OomScoreAdj}");
            victim.IsKilled = true;
            _memory.ExitMm(victim);
            log.Printk($"oom_reaper: reaped process {victim.Pid} ({victim.Comm}), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB");
            _events.Stats.OomKill++;
            return true;
        }
    }
}
