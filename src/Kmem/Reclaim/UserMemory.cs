// User address spaces (mm/mmap.c, mm/memory.c, kernel/fork.c, kernel/exit.c):
// the task list, CreateTask with its kernel stack (KernelStacks.cs), mmap/munmap of anonymous
// memory, software 4-level page tables in real frames from the page allocator,
// exit_mmap, and what reclaim, compaction and swapoff ask of a mapped page
// (folio_referenced, try_to_unmap, remove_migration_pte, unuse_pte). The fault
// path is in Fault.cs and the checks in UserMemory.Inspect.cs (the same class).
// Page-table entries are 64-bit words in the table frames (x86-64 layout: bit 0
// present, 1 RW, 2 user, 5 accessed, 6 dirty, pfn from bit 12). A swap entry is
// a non-present entry: type in bits 1..5, slot offset from bit 12 (offset 0 is
// the swap header, so a swap entry is never 0). Every preset uses 4 levels of 512
// entries over a 48-bit space (the 32-bit presets' 2- and 3-level formats are
// not modelled for user tables); table frames are GFP_PGTABLE_USER, so in lowmem, except PTE tables
// under CONFIG_HIGHPTE (x86-32), which add __GFP_HIGHMEM and are reached through a window of host
// mappings (Highmem/PteWindow.cs) where they lie in HighMem.
// Accounting as in 6.1 x86: PTE and PMD tables count in NR_PAGETABLE (their
// ctors), PUD, PMD and PTE tables in the mm's pgtables_bytes, the PGD in neither.
// Invariants (Validate): each task's rss, swap entries and table pages equal
// what its tables hold, and every present PTE's page names the task and the
// address in the reverse map and is on an LRU list.
// Locking: Lock is mmap_lock with every task's page-table lock (first of the
// four owner locks, LockOrder.cs): the task list, VMAs, tables, mm counters and
// an anonymous page's flags. Allocations happen with it dropped, and the walk
// is redone after them.
using Kmem.Highmem;
using Kmem.PageAlloc;
using Kmem.Physical;
using Kmem.Vmalloc;

namespace Kmem.Reclaim;

/// <summary>The tasks of one machine and their address spaces.</summary>
internal sealed unsafe partial class UserMemory
{
    private readonly PhysMem _mem;

    /// <summary>The machine's lifetime, which the tasks' public calls enter.</summary>
    public MachineLifetime Lifetime => _mem.Lifetime;
    private readonly PageAllocator _pa;
    private readonly Lruvecs _lru;
    private readonly Swapfile _swap;
    private readonly HighmemMaps _highmem;
    private readonly KernelLog _log;
    private readonly VmEvents _events;
    private readonly Preset _preset;
    // CONFIG_HIGHPTE: PTE tables are allocated with __GFP_HIGHMEM.
    private readonly bool _highPte;
    private readonly KernelStacks _stacks;
    private readonly List<TaskStruct> _tasks = [];
    private int _nextPid = 1000;
    private bool _disposed;

    /// <summary>Builds the owner over the lower layers it uses; <paramref name="highPte"/> is CONFIG_HIGHPTE (PTE
    /// tables may lie in HighMem); <paramref name="vmalloc"/> gives the vmalloc space (made on first use by its owner)
    /// for X64's VMAP_STACK kernel stacks.</summary>
    public UserMemory(PhysMem mem, PageAllocator pa, Lruvecs lru, Swapfile swap, HighmemMaps highmem, KernelLog log,
        VmEvents events, Preset preset, bool highPte, Func<VmapSpace> vmalloc)
    {
        _highPte = highPte;
        _mem = mem;
        _pa = pa;
        _lru = lru;
        _swap = swap;
        _highmem = highmem;
        _log = log;
        _events = events;
        _preset = preset;
        _stacks = new KernelStacks(pa, preset, vmalloc);
    }

    /// <summary>mmap_lock and the page-table locks (see LockOrder.cs).</summary>
    public Lock Lock { get; } = new();

    /// <summary>NR_ANON_MAPPED: anonymous pages mapped by tasks.</summary>
    public long NrAnonPages;

    /// <summary>NR_PAGETABLE: page-table pages of every task.</summary>
    public long NrPageTable;

    /// <summary>NR_KERNEL_STACK_KB.</summary>
    public long NrKernelStackKb;

    /// <summary>vm_committed_as: pages of every task's private anonymous mappings (accounted at mmap).</summary>
    public long CommittedPages;

    /// <summary>The live tasks, oldest first (for_each_process order); under Lock.</summary>
    public List<TaskStruct> Tasks => _tasks;

    /// <summary>No task may be created from now on (the machine is going away).</summary>
    public void Shutdown()
    {
        lock (Lock)
        {
            _disposed = true;
        }
    }

    public const ulong PtePresent = 1, PteRw = 2, PteUser = 4, PteAccessed = 1 << 5, PteDirty = 1 << 6;
    private const ulong PtePfnMask = 0x000F_FFFF_FFFF_F000;
    private const ulong TableEntryBits = PtePresent | PteRw | PteUser | PteAccessed | PteDirty;

    public static uint PtePfn(ulong e) => (uint)((e & PtePfnMask) >> PhysMem.PageShift);

    public static bool PteIsSwap(ulong e) => e != 0 && (e & PtePresent) == 0;

    /// <summary>TASK_SIZE of the preset: the top of user address space.</summary>
    private ulong TaskSize => _preset == Preset.X64 ? 0x7FFF_FFFF_F000UL : 0xC000_0000UL;

    /// <summary>Where mmap starts looking (bottom-up first fit).</summary>
    private ulong MmapBase => _preset == Preset.X64 ? 0x7F00_0000_0000UL : 0x4000_0000UL;

    /// <summary>Entry <paramref name="index"/> of a table: through the direct map, or for a HIGHPTE table in HighMem
    /// through the table window (PteWindow.cs), which keeps it mapped for the rest of the step (under Lock).</summary>
    private ulong* TableEntry(uint tablePfn, int index)
    {
        nint page = _mem.PageAddress(tablePfn);
        return (ulong*)(page != 0 ? page : _highmem.PteTables.Map(tablePfn)) + index;
    }

    private static int IndexAt(ulong va, int level) => (int)((va >> (PhysMem.PageShift + 9 * level)) & 511);

    /// <summary>
    /// Walks the task's tables to the PTE of <paramref name="va"/>. Returns null when a table is missing,
    /// with <paramref name="missing"/> the level (3 PUD table … 1 PTE table) whose table must be made.
    /// </summary>
    private ulong* Walk(TaskStruct t, ulong va, out int missing)
    {
        uint table = t.PgdPfn;
        for (int level = 3; level >= 1; level--)
        {
            ulong e = *TableEntry(table, IndexAt(va, level));
            if ((e & PtePresent) == 0)
            {
                missing = level;
                return null;
            }
            table = PtePfn(e);
        }
        missing = 0;
        return TableEntry(table, IndexAt(va, 0));
    }

    /// <summary>copy_process, the memory part: a PGD and a kernel stack (KernelStacks.cs: X64 16 KiB from the CPU's
    /// stack cache or vmalloc, as with VMAP_STACK; x86-32 THREAD_SIZE 8 KiB as one order-1 block). Null when either
    /// allocation fails. Without <paramref name="ownStack"/> the task has no stack of its own: the trace replay's
    /// tasks, whose kernel's stacks the page path already replays (vmalloc's bulk pages on X64, the order-1 block's
    /// mm_page_alloc on x86-32), so a stack of Kmem's own would take those pages a second time.</summary>
    public TaskStruct? CreateTask(string name, short oomScoreAdj, bool ownStack = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (oomScoreAdj is < -1000 or > 1000)
        {
            throw new ArgumentOutOfRangeException(nameof(oomScoreAdj), oomScoreAdj, "oom_score_adj is -1000..1000");
        }
        ObjectDisposedException.ThrowIf(_disposed, "Machine");
        string comm = name.Length > 15 ? name[..15] : name;
        nint stack = 0;
        Page stackPages = Page.Null;
        if (ownStack && !_stacks.Alloc(out stack, out stackPages))
        {
            return null;
        }
        var pgd = AllocTablePage(null, 4);
        if (pgd.IsNull)
        {
            if (ownStack)
            {
                _stacks.Free(stack, stackPages);
            }
            return null;
        }
        _mem.Frame(pgd.RawPfn).Flags |= PageFlags.Table;
        lock (Lock)
        {
            var t = new TaskStruct(this, _nextPid++, comm, oomScoreAdj)
            {
                PgdPfn = pgd.RawPfn, HasOwnStack = ownStack, StackVmalloc = stack, StackPages = stackPages,
            };
            _tasks.Add(t);
            NrKernelStackKb += ownStack ? _stacks.StackKb : 0;
            return t;
        }
    }

    private static void ThrowIfDead(TaskStruct t)
    {
        if (t.HasExited)
        {
            throw new TaskKilledException(t);
        }
    }

    public ulong Mmap(TaskStruct t, ulong length)
    {
        if (length == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length), "mmap of 0 bytes (EINVAL)");
        }
        ulong len = (length + PhysMem.PageSize - 1) & ~(ulong)(PhysMem.PageSize - 1);
        lock (Lock)
        {
            ThrowIfDead(t);
            ulong start = MmapBase;
            int i = 0;
            for (; i < t.Vmas.Count; i++)
            {
                var v = t.Vmas[i];
                if (v.End <= start)
                {
                    continue;
                }
                if (v.Start >= start + len)
                {
                    break;
                }
                start = v.End;
            }
            if (start + len > TaskSize || start + len < start)
            {
                return 0;
            }
            t.Vmas.Insert(i, new Vma(start, start + len));
            t.TotalVm += (long)(len >> PhysMem.PageShift);
            CommittedPages += (long)(len >> PhysMem.PageShift);
            return start;
        }
    }

    public void Munmap(TaskStruct t, ulong addr, ulong length)
    {
        if ((addr & (PhysMem.PageSize - 1)) != 0 || length == 0)
        {
            throw new ArgumentException($"munmap(0x{addr:x}, {length}): the address must be page-aligned and the length non-zero (EINVAL)");
        }
        ulong end = addr + ((length + PhysMem.PageSize - 1) & ~(ulong)(PhysMem.PageSize - 1));
        lock (Lock)
        {
            ThrowIfDead(t);
            var kept = new List<Vma>();
            foreach (var v in t.Vmas)
            {
                if (v.End <= addr || v.Start >= end)
                {
                    kept.Add(v);
                    continue;
                }
                ulong s = Math.Max(v.Start, addr), e = Math.Min(v.End, end);
                ZapRange(t, s, e);
                t.TotalVm -= (long)((e - s) >> PhysMem.PageShift);
                CommittedPages -= (long)((e - s) >> PhysMem.PageShift);
                if (v.Start < s)
                {
                    kept.Add(new Vma(v.Start, s));
                }
                if (e < v.End)
                {
                    kept.Add(new Vma(e, v.End));
                }
            }
            t.Vmas.Clear();
            t.Vmas.AddRange(kept);
            FreeEmptyTables(t, t.PgdPfn, 4);
        }
    }

    /// <summary>madvise(MADV_DONTNEED): zap_page_range over [addr, addr + length), the VMAs kept.</summary>
    public void MadviseDontneed(TaskStruct t, ulong addr, ulong length)
    {
        lock (Lock)
        {
            ThrowIfDead(t);
            ZapRange(t, addr, addr + ((length + PhysMem.PageSize - 1) & ~(ulong)(PhysMem.PageSize - 1)));
        }
    }

    /// <summary>follow_page: the frame mapped at <paramref name="va"/>, or PhysMem.NoPfn (not present, swapped out).</summary>
    public uint FollowPage(TaskStruct t, ulong va)
    {
        lock (Lock)
        {
            if (t.HasExited)
            {
                return PhysMem.NoPfn;
            }
            ulong* pte = Walk(t, va, out _);
            return pte is not null && (*pte & PtePresent) != 0 ? PtePfn(*pte) : PhysMem.NoPfn;
        }
    }

    public void SetOomScoreAdj(TaskStruct t, short value)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(value, OomKill.OomScoreAdjMin);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(value, (short)1000);
        lock (Lock)
        {
            t.OomScoreAdj = value;
        }
    }

    /// <summary>zap_pte_range: unmaps and frees every page and swap entry in [start, end).</summary>
    private void ZapRange(TaskStruct t, ulong start, ulong end)
    {
        for (ulong va = start; va < end; va += PhysMem.PageSize)
        {
            ulong* pte = Walk(t, va, out int missing);
            if (pte is null)
            {
                // Skip to the end of the range the missing table would cover.
                ulong span = 1UL << (PhysMem.PageShift + 9 * missing);
                va = (va & ~(span - 1)) + span - PhysMem.PageSize;
                continue;
            }
            ulong e = *pte;
            if (e == 0)
            {
                continue;
            }
            *pte = 0;
            if ((e & PtePresent) != 0)
            {
                uint pfn = PtePfn(e);
                t.Rss--;
                NrAnonPages--;
                if ((_mem.Frame(pfn).Flags & PageFlags.SwapCache) != 0)
                {
                    _swap.DeleteFromSwapCache(pfn);
                }
                _lru.LruDel(pfn);
                _pa.FreePages(new Page(pfn), 0);
            }
            else
            {
                t.SwapEnts--;
                _swap.SwapFree(e);
                FreeSwapCachePage(e);
            }
        }
    }

    /// <summary>free_pgtables: gives back tables (below the PGD) that map nothing any more. Returns whether
    /// the table at <paramref name="tablePfn"/> is now empty.</summary>
    private bool FreeEmptyTables(TaskStruct t, uint tablePfn, int level)
    {
        bool empty = true;
        for (int i = 0; i < 512; i++)
        {
            ulong* e = TableEntry(tablePfn, i);
            if (*e == 0)
            {
                continue;
            }
            if (level > 1 && (*e & PtePresent) != 0 && FreeEmptyTables(t, PtePfn(*e), level - 1))
            {
                FreeTablePage(t, PtePfn(*e), level - 1);
                *e = 0;
                continue;
            }
            empty = false;
        }
        return empty;
    }

    /// <summary>Level of a table: 3 PUD table, 2 PMD table, 1 PTE table (what it points to is one level down).</summary>
    private void FreeTablePage(TaskStruct t, uint pfn, int level)
    {
        t.PgtablePages--;
        if (level <= 2)
        {
            NrPageTable--;
        }
        _mem.Frame(pfn).Flags &= ~PageFlags.Table;
        FreeTableFrame(pfn);
    }

    /// <summary>do_exit for the memory: exit_mmap, the PGD and the kernel stack. Under Lock.</summary>
    public void Exit(TaskStruct t)
    {
        lock (Lock)
        {
            if (t.HasExited)
            {
                return;
            }
            ExitMm(t);
        }
    }

    /// <summary>Frees the task's whole address space and stack and takes it off the task list (under Lock).</summary>
    public void ExitMm(TaskStruct t)
    {
        foreach (var v in t.Vmas)
        {
            ZapRange(t, v.Start, v.End);
        }
        t.Vmas.Clear();
        CommittedPages -= t.TotalVm;
        t.TotalVm = 0;
        FreeEmptyTables(t, t.PgdPfn, 4);
        _mem.Frame(t.PgdPfn).Flags &= ~PageFlags.Table;
        FreeTableFrame(t.PgdPfn);
        t.PgdPfn = PhysMem.NoPfn;
        if (t.HasOwnStack)
        {
            NrKernelStackKb -= _stacks.StackKb;
            _stacks.Free(t.StackVmalloc, t.StackPages);
        }
        t.StackVmalloc = 0;
        t.StackPages = Page.Null;
        t.HasExited = true;
        _tasks.Remove(t);
    }

    // ---- What reclaim, compaction and swapoff ask of a mapped anonymous page (under Lock) ----

    /// <summary>folio_referenced for an anonymous page: test and clear the accessed bit of the one PTE that
    /// maps it. Returns whether it was set.</summary>
    public bool TestClearYoung(uint pfn)
    {
        if (_lru.OwnerOf(pfn) is not TaskStruct t)
        {
            return false;
        }
        ulong* pte = Walk(t, _lru.IndexOf(pfn), out _);
        if (pte is null || (*pte & PtePresent) == 0 || PtePfn(*pte) != pfn || (*pte & PteAccessed) == 0)
        {
            return false;
        }
        *pte &= ~PteAccessed;
        return true;
    }

    /// <summary>try_to_unmap for a swap-cache page: the PTE's dirty bit moves to the page and the PTE becomes
    /// the swap entry (one more user of the slot); the task's rss becomes a swap entry.</summary>
    public void TryToUnmap(uint pfn, ulong swapEntry)
    {
        var t = (TaskStruct)_lru.OwnerOf(pfn)!;
        ulong* pte = Walk(t, _lru.IndexOf(pfn), out _);
        if ((*pte & PteDirty) != 0)
        {
            _mem.Frame(pfn).Flags |= PageFlags.Dirty;
        }
        _swap.SwapDuplicate(swapEntry);
        *pte = swapEntry;
        _mem.Frame(pfn).MapCount = 0;
        t.Rss--;
        t.SwapEnts++;
        NrAnonPages--;
    }

    /// <summary>remove_migration_pte: the PTE that maps the page at <paramref name="va"/> points at frame
    /// <paramref name="to"/>, its other bits kept.</summary>
    public void RepointPte(TaskStruct t, ulong va, uint to)
    {
        ulong* pte = Walk(t, va, out _);
        *pte = ((ulong)to << PhysMem.PageShift) | (*pte & ~PtePfnMask);
    }

    /// <summary>try_to_unuse: faults every entry of swap area <paramref name="type"/> back in, task by task, in one
    /// forward pass over each task's mappings (the area takes no new entries while swapoff runs, so none appears
    /// behind the scan), and takes each page out of that area's swap cache.</summary>
    public void TryToUnuse(int type)
    {
        var resume = new Dictionary<TaskStruct, ulong>();
        while (true)
        {
            (TaskStruct Task, ulong Va)? next = null;
            lock (Lock)
            {
                foreach (var t in _tasks)
                {
                    if (FindSwapPte(t, type, resume.GetValueOrDefault(t)) is { } va)
                    {
                        next = (t, va);
                        resume[t] = va + PhysMem.PageSize;
                        break;
                    }
                    resume[t] = ulong.MaxValue;
                }
                if (next is null)
                {
                    return;
                }
            }
            var (task, addr) = next.Value;
            try
            {
                FaultIn(task, addr, write: false, out bool locked);
                try
                {
                    ulong* pte = Walk(task, addr, out _);
                    uint pfn = PtePfn(*pte);
                    ref PageFrame f = ref _mem.Frame(pfn);
                    if ((f.Flags & PageFlags.SwapCache) != 0 && Swapfile.SwapType(f.Private) == type)
                    {
                        _swap.DeleteFromSwapCache(pfn);
                        f.Flags |= PageFlags.Dirty;
                    }
                }
                finally
                {
                    if (locked)
                    {
                        Lock.Exit();
                    }
                }
            }
            catch (TaskKilledException)
            {
                // The task died (perhaps OOM-killed to make room); its entries went with it.
            }
        }
    }

    /// <summary>The first address at or after <paramref name="from"/> whose PTE holds an entry of swap area
    /// <paramref name="type"/>, or null (a task's VMAs are kept sorted by address).</summary>
    private ulong? FindSwapPte(TaskStruct t, int type, ulong from)
    {
        foreach (var v in t.Vmas)
        {
            if (v.End <= from)
            {
                continue;
            }
            for (ulong va = Math.Max(v.Start, from); va < v.End; va += PhysMem.PageSize)
            {
                ulong* pte = Walk(t, va, out int missing);
                if (pte is null)
                {
                    ulong span = 1UL << (PhysMem.PageShift + 9 * missing);
                    va = (va & ~(span - 1)) + span - PhysMem.PageSize;
                    continue;
                }
                if (PteIsSwap(*pte) && Swapfile.SwapType(*pte) == type)
                {
                    return va;
                }
            }
        }
        return null;
    }
}
