// The OOM killer (mm/oom_kill.c): when reclaim cannot make progress for an
// allocation that may not fail: vm.panic_on_oom (1: an unconstrained OOM, 2:
// any) panics with the report (OomPanicException); otherwise the victim is
// chosen by select_bad_process: a task that is already a victim and not yet
// done (no MMF_OOM_SKIP) makes the killer wait for it (nothing killed, the
// allocator retries), a done one is passed over, an oom_task_origin task
// (swapoff's caller) is chosen first, then the highest oom_badness (rss + swap
// entries + page-table pages, plus oom_score_adj × totalpages/1000; −1000
// never). The kernel's report is printed (the invoking line, the task dump, the
// oom-kill summary and "Out of memory: Killed process …"); the oom_reaper frees
// the victim's memory and exit the rest, both at once here (the reaper is
// infinitely fast), after which the mm has MMF_OOM_SKIP. Kmem has no cpusets
// or mempolicies, so the constraint is always CONSTRAINT_NONE.
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

    /// <summary>vm.panic_on_oom: 0 (kill), 1 (panic for an unconstrained OOM), 2 (always panic).</summary>
    public int PanicOnOom { get; set; }

    /// <summary>oom_badness; long.MinValue for a task that may not be chosen.</summary>
    public static long OomBadness(TaskStruct t, long totalPages)
    {
        if (t.HasExited || t.OomScoreAdj == OomScoreAdjMin || t.MmfOomSkip)
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
            if (PanicOnOom != 0)
            {
                // check_panic_on_oom: every OOM here is unconstrained, so 1 and 2 both panic.
                DumpHeader(gfp, order);
                string why = PanicOnOom == 2 ? "compulsory" : "system-wide";
                _log.Printk($"Kernel panic - not syncing: Out of memory: {why} panic_on_oom is enabled");
                throw new OomPanicException($"Out of memory: {why} panic_on_oom is enabled");
            }
            TaskStruct? victim = null;
            long chosen = long.MinValue;
            foreach (var t in _memory.Tasks)
            {
                if (t.HasExited)
                {
                    continue;
                }
                if (t.IsKilled)
                {
                    if (t.MmfOomSkip)
                    {
                        continue;
                    }
                    // A victim is still freeing its memory: wait for it rather than kill another (abort).
                    return true;
                }
                long points = t.OomOrigin ? long.MaxValue : OomBadness(t, total);
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
            DumpHeader(gfp, order);
            string mems = _pa.Nodes.Length == 1 ? "0" : $"0-{_pa.Nodes.Length - 1}";
            log.Printk($"oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed={mems},global_oom,task_memcg=/,task={victim.Comm},pid={victim.Pid},uid=0");
            log.Printk($"Out of memory: Killed process {victim.Pid} ({victim.Comm}) total-vm:{victim.TotalVm * 4}kB, anon-rss:{victim.Rss * 4}kB, "
                + $"file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:{victim.PgtablesBytes >> 10}kB oom_score_adj:{victim.OomScoreAdj}");
            victim.IsKilled = true;
            _memory.ExitMm(victim);
            log.Printk($"oom_reaper: reaped process {victim.Pid} ({victim.Comm}), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB");
            victim.MmfOomSkip = true;
            _events.Stats.OomKill++;
            return true;
        }
    }

    /// <summary>dump_header: the invoking line and the task dump.</summary>
    private void DumpHeader(Gfp gfp, int order)
    {
        var cur = MmCurrent.Task;
        _log.Printk($"{cur?.Comm ?? "kmem"} invoked oom-killer: gfp_mask=0x{(uint)gfp:x}({GfpFlags.Format(gfp)}), order={order}, oom_score_adj={cur?.OomScoreAdj ?? 0}");
        _log.Printk("Tasks state (memory values in pages):");
        _log.Printk("[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name");
        foreach (var t in _memory.Tasks)
        {
            _log.Printk(string.Create(CultureInfo.InvariantCulture,
                $"[{t.Pid,7}] {0,5} {t.Pid,5} {t.TotalVm,8} {t.Rss,8} {t.PgtablesBytes,8} {t.SwapEnts,8}         {t.OomScoreAdj,5} {t.Comm}"));
        }
    }
}
