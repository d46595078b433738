// task_struct with its mm_struct, reduced to what memory management needs: a
// pid, a name, oom_score_adj, the anonymous mappings (VMAs), the page-table
// root, the mm counters (rss, swap entries, page-table bytes) and the kernel
// stack. The work is done by UserMemory (UserMemory.cs, Fault.cs); this is the public handle.
// Every field is guarded by UserMemory.Lock (LockOrder.cs).
using Kmem.Physical;
using Kmem.Reclaim;

namespace Kmem;

/// <summary>
/// A task (a process with its own address space), created by <see cref="Machine.CreateTask"/>. Its memory is
/// anonymous mappings (<see cref="Mmap"/>), touched only through <see cref="Read"/> and <see cref="Write"/>, which
/// fault pages in on demand through the task's 4-level page tables; reclaim may swap its pages out at any time
/// and a later access brings them back. The OOM killer may kill it: then every method except the counters
/// throws <see cref="TaskKilledException"/>.
/// </summary>
/// <remarks>Every member may be called from any thread; one task's calls are serialized by the layer's lock.</remarks>
public sealed class TaskStruct
{
    private readonly UserMemory _memory;
    private readonly MachineLifetime _life;

    internal TaskStruct(UserMemory memory, int pid, string comm, short oomScoreAdj)
    {
        _memory = memory;
        _life = memory.Lifetime;
        Pid = pid;
        Comm = comm;
        OomScoreAdj = oomScoreAdj;
    }

    /// <summary>The process id.</summary>
    public int Pid { get; }

    /// <summary>The task's name (comm, at most 15 characters as the kernel keeps it).</summary>
    public string Comm { get; }

    /// <summary>oom_score_adj: −1000 (never killed) … 1000.</summary>
    public short OomScoreAdj { get; internal set; }

    /// <summary>The OOM killer killed this task and freed its memory.</summary>
    public bool IsKilled { get; internal set; }

    /// <summary>The task exited (<see cref="Exit"/>) or was killed; its memory is free.</summary>
    public bool HasExited { get; internal set; }

    /// <summary>MM_ANONPAGES: pages mapped in its page tables (its rss).</summary>
    public long Rss { get; internal set; }

    /// <summary>MM_SWAPENTS: its pages that are out on swap.</summary>
    public long SwapEnts { get; internal set; }

    /// <summary>mm_pgtables_bytes: page-table pages below the root (PUD, PMD and PTE tables) in bytes.</summary>
    public long PgtablesBytes => PgtablePages * PhysMem.PageSize;

    /// <summary>total_vm: pages of its mappings.</summary>
    public long TotalVm { get; internal set; }

    /// <summary>mmap of anonymous private memory: reserves <paramref name="length"/> bytes (rounded up to
    /// pages) of address space; no page is allocated until it is touched.</summary>
    /// <returns>The start address, or 0 when the address space has no room (ENOMEM).</returns>
    /// <exception cref="ArgumentOutOfRangeException">The length is 0.</exception>
    /// <exception cref="TaskKilledException">The task was killed or has exited.</exception>
    public ulong Mmap(ulong length) { using var _ = _life.Enter(); return _memory.Mmap(this, length); }

    /// <summary>munmap: removes the mappings in [addr, addr + length), freeing their pages and swap slots.</summary>
    /// <exception cref="ArgumentException">The address is not page-aligned or the length is 0.</exception>
    /// <exception cref="TaskKilledException">The task was killed or has exited.</exception>
    public void Munmap(ulong addr, ulong length) { using var _ = _life.Enter(); _memory.Munmap(this, addr, length); }

    /// <summary>Copies the task's memory at <paramref name="vaddr"/> into <paramref name="destination"/>,
    /// faulting pages in: a page never touched reads as zeros, a swapped-out page is read back from swap.</summary>
    /// <remarks>May sleep: a fault allocates a page with GFP_HIGHUSER_MOVABLE, which may reclaim, swap or
    /// call the OOM killer.</remarks>
    /// <exception cref="SegmentationFaultException">Part of the range is not mapped.</exception>
    /// <exception cref="TaskKilledException">The task was killed (possibly by this very fault) or has exited.</exception>
    public void Read(ulong vaddr, Span<byte> destination) { using var _ = _life.Enter(); _memory.Access(this, vaddr, destination, default, write: false); }

    /// <summary>Copies <paramref name="source"/> into the task's memory at <paramref name="vaddr"/>, faulting
    /// pages in and marking them dirty.</summary>
    /// <remarks>May sleep, as <see cref="Read"/>.</remarks>
    /// <exception cref="SegmentationFaultException">Part of the range is not mapped.</exception>
    /// <exception cref="TaskKilledException">The task was killed or has exited.</exception>
    public void Write(ulong vaddr, ReadOnlySpan<byte> source) { using var _ = _life.Enter(); _memory.Access(this, vaddr, default, source, write: true); }

    /// <summary>madvise(MADV_POPULATE_WRITE, or MADV_POPULATE_READ without <paramref name="write"/>): faults in
    /// every page of [addr, addr + length) as <see cref="Write"/> or <see cref="Read"/> would, without copying:
    /// missing pages are allocated zeroed (and marked dirty for a write), swapped-out pages read back.</summary>
    /// <remarks>May sleep, as <see cref="Read"/>.</remarks>
    /// <exception cref="SegmentationFaultException">Part of the range is not mapped (where the kernel returns ENOMEM).</exception>
    /// <exception cref="TaskKilledException">The task was killed or has exited.</exception>
    public void MadvisePopulate(ulong addr, ulong length, bool write) { using var _ = _life.Enter(); _memory.Populate(this, addr, length, write); }

    /// <summary>do_exit: frees every page, swap slot, page table and the kernel stack. A second call does nothing.</summary>
    public void Exit() { using var _ = _life.Enter(); _memory.Exit(this); }

    /// <summary>madvise(MADV_DONTNEED): frees the pages and swap entries of [addr, addr + length) and leaves the
    /// mapping in place (a later access faults in a zeroed page). For a trace replay that frees single pages.</summary>
    internal void MadviseDontneed(ulong addr, ulong length) { using var _ = _life.Enter(); _memory.MadviseDontneed(this, addr, length); }

    /// <summary>The frame mapped at <paramref name="vaddr"/>, or uint.MaxValue when none is present.</summary>
    internal uint FollowPage(ulong vaddr) { using var _ = _life.Enter(); return _memory.FollowPage(this, vaddr); }

    /// <summary>Writing /proc/&lt;pid&gt;/oom_score_adj (oom_score_adj_update).</summary>
    internal void SetOomScoreAdj(short value) { using var _ = _life.Enter(); _memory.SetOomScoreAdj(this, value); }

    /// <inheritdoc/>
    public override string ToString() => $"{Pid} ({Comm})";

    /// <summary>MMF_OOM_SKIP: the OOM killer is done with this mm (reaped or exited); it is not waited for and
    /// never chosen again.</summary>
    internal bool MmfOomSkip;

    /// <summary>oom_task_origin: the task is doing work that allocates for the whole system (swapoff's
    /// try_to_unuse), so the OOM killer chooses it first.</summary>
    internal bool OomOrigin;

    internal uint PgdPfn;
    internal long PgtablePages;
    // False for a trace replay's task, whose kernel stack is the traced kernel's (UserMemory.CreateTask).
    internal bool HasOwnStack;
    internal nint StackVmalloc;
    internal Page StackPages;
    internal readonly List<Vma> Vmas = [];
}

/// <summary>vm_area_struct: one anonymous mapping [Start, End).</summary>
internal sealed record class Vma(ulong Start, ulong End);

/// <summary>An access to an address the task has not mapped (SIGSEGV).</summary>
public sealed class SegmentationFaultException : Exception
{
    /// <summary>Creates the exception for the faulting address.</summary>
    public SegmentationFaultException(TaskStruct task, ulong address)
        : base($"segfault at {address:x} in task {task.Pid} ({task.Comm}): no mapping there") => Address = address;

    /// <summary>The faulting address.</summary>
    public ulong Address { get; }
}

/// <summary>The task was killed (by the OOM killer) or has exited: its memory is gone.</summary>
public sealed class TaskKilledException : Exception
{
    /// <summary>Creates the exception for the task.</summary>
    public TaskKilledException(TaskStruct task)
        : base(task.IsKilled ? $"task {task.Pid} ({task.Comm}) was killed by the OOM killer" : $"task {task.Pid} ({task.Comm}) has exited")
        => Task = task;

    /// <summary>The task.</summary>
    public TaskStruct Task { get; }
}

/// <summary>A kernel panic from the OOM killer: vm.panic_on_oom is set and memory ran out. The machine's log holds
/// the report (the invoking line and the task dump) and the panic line.</summary>
public sealed class OomPanicException : KernelBugException
{
    /// <summary>Creates the exception with the panic message.</summary>
    public OomPanicException(string message)
        : base(message)
    {
    }
}
