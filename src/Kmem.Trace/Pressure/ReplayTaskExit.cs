// do_exit for a replay's task whose trace task's address space is gone and which maps nothing
// any more (PressureReplay.MmGone): free_pgtables for its tables below the PGD, counted in the
// tables' class of the per-CPU drift, then exit_mm's PGD, counted in the class its creation with
// the task's first user page was (PcpDrift's user class). The task has no kernel stack of its
// own: the page path holds the kernel's. Replaying thread only.
namespace Kmem;

/// <summary>A replay task's exit, scoped by drift class.</summary>
internal static class ReplayTaskExit
{
    public static void Exit(TaskStruct task, Func<DriftClass, IDisposable>? scope)
    {
        Unmap(task, scope);
        Finish(task, scope);
    }

    /// <summary>exit_mmap's part: every VMA unmapped, the tables below the PGD freed.</summary>
    public static void Unmap(TaskStruct task, Func<DriftClass, IDisposable>? scope)
    {
        using (scope?.Invoke(DriftClass.PageTable))
        {
            foreach (var v in task.Vmas.ToArray())
            {
                task.Munmap(v.Start, v.End - v.Start);
            }
        }
    }

    /// <summary>The rest of the exit: the PGD (mmdrop).</summary>
    public static void Finish(TaskStruct task, Func<DriftClass, IDisposable>? scope)
    {
        using (scope?.Invoke(DriftClass.User))
        {
            task.Exit();
        }
    }
}
