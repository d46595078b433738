// A fragmented machine, as compaction tests and benchmarks want one: two tasks fault
// their pages in turn until the buddy lists hold only a few hundred pages, then one
// exits, so the free memory lies in single pages between the other's. Uses only
// Machine's task API; deterministic on a seeded machine.
namespace Kmem.Workload;

/// <summary>Builds a machine whose free memory lies between a task's pages.</summary>
internal static class FragmentedMemory
{
    /// <summary>Interleaves two tasks' pages until <paramref name="leaveFree"/> pages stay free, then ends one of
    /// them; returns the task that keeps its pages.</summary>
    public static TaskStruct Interleave(Machine m, long leaveFree = 400)
    {
        var keeper = m.CreateTask("keeper")!;
        var leaver = m.CreateTask("leaver")!;
        ulong a = keeper.Mmap(64 << 20), b = leaver.Mmap(64 << 20);
        var page = new byte[Machine.PageSize];
        for (int n = 0; m.PageAllocator.NrFreePages > leaveFree; n++)
        {
            keeper.Write(a + (ulong)n * Machine.PageSize, page);
            leaver.Write(b + (ulong)n * Machine.PageSize, page);
        }
        leaver.Exit();
        return keeper;
    }
}
