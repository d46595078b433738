// The memory-pressure layer's public face on Machine: tasks (fork/exit),
// the page cache (open, drop_caches), swap (mkswap, swapon, swapoff),
// shrinkers, the OOM score and the vm sysctls of reclaim. Everything forwards
// to the layer's owners through MmLayer; Reclaim/LockOrder.cs has the locking.
using Kmem.Reclaim;

namespace Kmem;

public sealed partial class Machine
{
    /// <summary>The reclaim layer (the page allocator's reclaimer).</summary>
    internal MmLayer Mm { get; }

    /// <summary>fork: a new task with an empty address space, a page-table root and a kernel stack (X64: 16 KiB
    /// from vmalloc, as with VMAP_STACK; X86/X86Pae: an order-1 block, THREAD_SIZE 8 KiB).</summary>
    /// <param name="name">The task's name (comm; cut to 15 characters).</param>
    /// <param name="oomScoreAdj">oom_score_adj, −1000 (never OOM-killed) … 1000.</param>
    /// <returns>The task, or null when its kernel stack or page-table root cannot be allocated (fork's ENOMEM:
    /// on a fragmented 32-bit machine the order-1 stack is what fails).</returns>
    /// <exception cref="ArgumentOutOfRangeException">oom_score_adj is out of range.</exception>
    /// <remarks>May sleep (the allocations may reclaim).</remarks>
    public TaskStruct? CreateTask(string name, short oomScoreAdj = 0) { using var _ = _life.Enter(); return Mm.CreateTask(name, oomScoreAdj); }

    /// <summary>A trace replay's task: as <see cref="CreateTask"/> but with no kernel stack of its own, since the
    /// replay's page path already holds the traced kernel's stack pages.</summary>
    internal TaskStruct? CreateReplayedTask(string name, short oomScoreAdj) { using var _ = _life.Enter(); return Mm.CreateTask(name, oomScoreAdj, ownStack: false); }

    /// <summary>The live tasks, oldest first.</summary>
    public IReadOnlyList<TaskStruct> Tasks { get { using var _ = _life.Enter(); return Mm.TasksSnapshot(); } }

    /// <summary>/proc/&lt;pid&gt;/oom_score: (1000 + badness × 1000 / totalpages) × 2 / 3, where badness is
    /// rss + swap entries + page-table pages + oom_score_adj × totalpages / 1000 and totalpages is RAM plus swap;
    /// 0 for a task with oom_score_adj −1000 or one that has exited.</summary>
    public long OomScore(TaskStruct task)
    {
        using var _ = _life.Enter();
        ArgumentNullException.ThrowIfNull(task);
        return Mm.OomScore(task);
    }

    /// <summary>Opens (creating if needed) a real file whose reads and writes go through this machine's page cache.</summary>
    /// <exception cref="IOException">The file cannot be opened.</exception>
    public CachedFile OpenFile(string path) { using var _ = _life.Enter(); return Mm.OpenFile(path); }

    /// <summary>/proc/sys/vm/drop_caches: 1 frees clean page-cache pages, 2 shrinks the slab caches through the
    /// shrinkers, 3 both. Dirty pages stay (fsync first to drop them too).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The mode is not 1, 2 or 3.</exception>
    public void DropCaches(int mode) { using var _ = _life.Enter(); Mm.DropCaches(mode); }

    /// <summary>mkswap: writes a swap file of <paramref name="size"/> bytes (a whole number of pages) with the
    /// kernel's version-1 header, ready for <see cref="Swapon"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The size is under 10 pages or not a whole number of pages.</exception>
    public void Mkswap(string path, long size) { using var _ = _life.Enter(); MmLayer.Mkswap(path, size, Random); }

    /// <summary>swapon: starts swapping to the file at <paramref name="path"/>, made by <see cref="Mkswap"/>.</summary>
    /// <param name="path">The swap file.</param>
    /// <param name="priority">0 or more, or −1 for the next automatic priority (−2, −3, … as the kernel gives).</param>
    /// <exception cref="InvalidDataException">The file has no valid swap header.</exception>
    /// <exception cref="InvalidOperationException">The file is already in use, or too many areas are active.</exception>
    public void Swapon(string path, int priority = -1) { using var _ = _life.Enter(); Mm.Swapon(path, priority); }

    /// <summary>swapoff: reads every swapped-out page of the area back into memory, then stops using it.</summary>
    /// <exception cref="ArgumentException">The file is not an active swap area.</exception>
    /// <exception cref="InvalidOperationException">Memory cannot hold the pages (ENOMEM); nothing changed.</exception>
    /// <remarks>May sleep and reclaim; may invoke the OOM killer.</remarks>
    public void Swapoff(string path) { using var _ = _life.Enter(); Mm.Swapoff(path); }

    /// <summary>register_shrinker: reclaim will call the shrinker's callbacks from now on.</summary>
    /// <exception cref="InvalidOperationException">It is already registered.</exception>
    public void RegisterShrinker(Shrinker shrinker) { using var _ = _life.Enter(); Mm.RegisterShrinker(shrinker); }

    /// <summary>unregister_shrinker.</summary>
    /// <exception cref="InvalidOperationException">It is not registered.</exception>
    public void UnregisterShrinker(Shrinker shrinker) { using var _ = _life.Enter(); Mm.UnregisterShrinker(shrinker); }

    /// <summary>vm.swappiness: 0..200 (default 60), the weight of anonymous pages against page cache in reclaim.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Out of 0..200.</exception>
    public int Swappiness
    {
        get { _life.ThrowIfDisposed(); return Mm.Swappiness; }
        set { _life.ThrowIfDisposed(); Mm.Swappiness = value is >= 0 and <= 200 ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, "vm.swappiness is 0..200"); }
    }

    /// <summary>vm.panic_on_oom: 0 (default: the OOM killer chooses a victim), 1 or 2 (the machine panics instead:
    /// the allocation that ran out of memory throws <see cref="OomPanicException"/>, with the report in the log).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Out of 0..2.</exception>
    public int PanicOnOom
    {
        get { using var _ = _life.Enter(); return Mm.PanicOnOom; }
        set
        {
            using var _ = _life.Enter();
            Mm.PanicOnOom = value is >= 0 and <= 2 ? value
                : throw new ArgumentOutOfRangeException(nameof(value), value, "vm.panic_on_oom is 0..2");
        }
    }

    /// <summary>vm.extfrag_threshold: 0..1000 (default 500). A costly allocation whose zone's fragmentation index
    /// is at or under it is failing for lack of memory, so direct compaction is skipped for reclaim.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Out of 0..1000.</exception>
    public int ExtfragThreshold
    {
        get { _life.ThrowIfDisposed(); return Mm.ExtfragThreshold; }
        set { _life.ThrowIfDisposed(); Mm.ExtfragThreshold = value is >= 0 and <= 1000 ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, "vm.extfrag_threshold is 0..1000"); }
    }

    /// <summary>vm.compaction_proactiveness: 0..100 (default 20). kcompactd compacts a node in the background when
    /// its fragmentation score passes min(max(100 − p, 5) + 10, 100), down to max(100 − p, 5); 0 turns it off.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Out of 0..100.</exception>
    public int CompactionProactiveness
    {
        get { _life.ThrowIfDisposed(); return Mm.CompactionProactiveness; }
        set { _life.ThrowIfDisposed(); Mm.CompactionProactiveness = value is >= 0 and <= 100 ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, "vm.compaction_proactiveness is 0..100"); }
    }

    /// <summary>/proc/sys/vm/compact_memory: compacts every zone of every node, moving task and page-cache pages
    /// toward the end of each zone so that free memory gathers into large blocks at its start.</summary>
    /// <returns>The pages migrated.</returns>
    public long CompactMemory() { using var _ = _life.Enter(); return Mm.CompactMemory(); }
}
