// User address spaces (mm/mmap.c, mm/memory.c, kernel/fork.c, kernel/exit.c):
// CreateTask with its kernel stack, mmap/munmap of anonymous memory, software
// 4-level page tables in real frames from the page allocator, the page-fault
// path (do_anonymous_page, do_swap_page) and exit_mmap.
// Page-table entries are 64-bit words in the table frames (x86-64 layout: bit 0
// present, 1 RW, 2 user, 5 accessed, 6 dirty, pfn from bit 12). A swap entry is
// a non-present entry: type in bits 1..5, slot offset from bit 12 (offset 0 is
// the swap header, so a swap entry is never 0). Every preset uses 4 levels of 512
// entries over a 48-bit space (the 32-bit presets' 2- and 3-level formats are
// not modelled for user tables); table frames are GFP_KERNEL, so in lowmem.
// Accounting as in 6.1 x86: PTE and PMD tables count in NR_PAGETABLE (their
// ctors), PUD, PMD and PTE tables in the mm's pgtables_bytes, the PGD in neither.
// Locking: MmState.Lock around every walk and change; allocations happen with
// the lock dropped, and the walk is redone after them.
using Kmem.Physical;

namespace Kmem.Reclaim;

internal sealed unsafe partial class MmState
{
    public const ulong PtePresent = 1, PteRw = 2, PteUser = 4, PteAccessed = 1 << 5, PteDirty = 1 << 6;
    private const ulong PtePfnMask = 0x000F_FFFF_FFFF_F000;
    private const ulong TableEntryBits = PtePresent | PteRw | PteUser | PteAccessed | PteDirty;

    public static uint PtePfn(ulong e) => (uint)((e & PtePfnMask) >> PhysMem.PageShift);

    public static bool PteIsSwap(ulong e) => e != 0 && (e & PtePresent) == 0;

    /// <summary>TASK_SIZE of the preset: the top of user address space.</summary>
    private ulong TaskSize => _m.Preset == Preset.X64 ? 0x7FFF_FFFF_F000UL : 0xC000_0000UL;

    /// <summary>Where mmap starts looking (bottom-up first fit).</summary>
    private ulong MmapBase => _m.Preset == Preset.X64 ? 0x7F00_0000_0000UL : 0x4000_0000UL;

    private ulong* TableEntry(uint tablePfn, int index) => (ulong*)_mem.PageAddress(tablePfn) + index;

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

    /// <summary>copy_process, the memory part: a PGD and a kernel stack (X64: 16 KiB from vmalloc, as with
    /// VMAP_STACK; x86-32: THREAD_SIZE 8 KiB as one order-1 block). Null when either allocation fails.</summary>
    public TaskStruct? CreateTask(string name, short oomScoreAdj)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (oomScoreAdj is < -1000 or > 1000)
        {
            throw new ArgumentOutOfRangeException(nameof(oomScoreAdj), oomScoreAdj, "oom_score_adj is -1000..1000");
        }
        ObjectDisposedException.ThrowIf(IsDisposed, _m);
        string comm = name.Length > 15 ? name[..15] : name;
        nint stack = 0;
        Page stackPages = Page.Null;
        int stackKb;
        if (_m.Preset == Preset.X64)
        {
            stack = _m.Vmalloc(16 << 10, "alloc_thread_stack_node");
            if (stack == 0)
            {
                return null;
            }
            stackKb = 16;
        }
        else
        {
            stackPages = _pa.AllocPages(Gfp.KernelAccount | Gfp.Zero, 1, -1);
            if (stackPages.IsNull)
            {
                return null;
            }
            stackKb = 8;
        }
        var pgd = _pa.AllocPages(Gfp.KernelAccount | Gfp.Zero, 0, -1);
        if (pgd.IsNull)
        {
            FreeStack(stack, stackPages);
            return null;
        }
        _mem.Frame(pgd.RawPfn).Flags |= PageFlags.Table;
        StartKcompactd();
        lock (Lock)
        {
            var t = new TaskStruct(this, NextPid(), comm, oomScoreAdj) { PgdPfn = pgd.RawPfn, StackVmalloc = stack, StackPages = stackPages };
            _tasks.Add(t);
            NrKernelStackKb += stackKb;
            return t;
        }
    }

    private void FreeStack(nint stack, Page pages)
    {
        if (stack != 0)
        {
            _m.Vfree(stack);
        }
        if (!pages.IsNull)
        {
            _pa.FreePages(pages, 1);
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
                    DeleteFromSwapCache(pfn);
                }
                LruDel(pfn);
                FreeUserPage(pfn);
            }
            else
            {
                t.SwapEnts--;
                SwapFree(e);
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
        _pa.FreePages(new Page(pfn), 0);
    }

    /// <summary>Faults in and copies one access, page by page.</summary>
    public void Access(TaskStruct t, ulong vaddr, Span<byte> readInto, ReadOnlySpan<byte> writeFrom, bool write)
    {
        int length = write ? writeFrom.Length : readInto.Length;
        lock (Lock)
        {
            ThrowIfDead(t);
            if (length > 0 && !Covered(t, vaddr, (ulong)length))
            {
                throw new SegmentationFaultException(t, FirstUncovered(t, vaddr, (ulong)length));
            }
        }
        int done = 0;
        while (done < length)
        {
            ulong va = vaddr + (ulong)done;
            int offset = (int)(va & (PhysMem.PageSize - 1));
            int chunk = Math.Min(length - done, PhysMem.PageSize - offset);
            t_current = t;
            uint pfn;
            bool locked;
            try
            {
                pfn = FaultIn(t, va & ~(ulong)(PhysMem.PageSize - 1), write, out locked);
            }
            finally
            {
                t_current = null;
            }
            try
            {
                var page = new Page(pfn);
                if (write)
                {
                    _m.MemcpyToPage(page, offset, writeFrom.Slice(done, chunk));
                }
                else
                {
                    _m.MemcpyFromPage(readInto.Slice(done, chunk), page, offset);
                }
            }
            finally
            {
                if (locked)
                {
                    Lock.Exit();
                }
            }
            done += chunk;
        }
    }

    private static bool Covered(TaskStruct t, ulong start, ulong length)
    {
        ulong end = start + length;
        ulong at = start;
        foreach (var v in t.Vmas)
        {
            if (v.End <= at)
            {
                continue;
            }
            if (v.Start > at)
            {
                return false;
            }
            at = v.End;
            if (at >= end)
            {
                return true;
            }
        }
        return false;
    }

    private static ulong FirstUncovered(TaskStruct t, ulong start, ulong length)
    {
        for (ulong va = start; va < start + length; va = (va & ~(ulong)(PhysMem.PageSize - 1)) + PhysMem.PageSize)
        {
            if (!Covered(t, va, 1))
            {
                return va;
            }
        }
        return start;
    }

    /// <summary>
    /// handle_mm_fault for one page: returns its pfn with Lock held (the caller copies, then exits the lock),
    /// after setting the accessed bit (and dirty for a write). Allocates missing tables and the page with the
    /// lock dropped; a swap entry is read back (do_swap_page), from the swap cache when the page is still there.
    /// </summary>
    private uint FaultIn(TaskStruct t, ulong va, bool write, out bool locked)
    {
        Page spare = Page.Null;
        try
        {
            while (true)
            {
                Lock.Enter();
                bool holding = true;
                try
                {
                    ThrowIfDead(t);
                    ulong* pte = Walk(t, va, out int missing);
                    if (pte is null)
                    {
                        if (!spare.IsNull && IsTableSpare(spare))
                        {
                            InstallTable(t, va, missing, spare.RawPfn);
                            spare = Page.Null;
                            continue;
                        }
                        Lock.Exit();
                        holding = false;
                        FreeSpare(ref spare);
                        spare = _pa.AllocPages(Gfp.KernelAccount | Gfp.Zero, 0, -1);
                        if (spare.IsNull)
                        {
                            PagefaultOutOfMemory(t);
                        }
                        _mem.Frame(spare.RawPfn).Flags |= PageFlags.Table;
                        continue;
                    }
                    ulong e = *pte;
                    if ((e & PtePresent) != 0)
                    {
                        *pte = e | PteAccessed | (write ? PteDirty : 0);
                        locked = true;
                        holding = false;
                        return PtePfn(e);
                    }
                    if (!spare.IsNull && !IsTableSpare(spare))
                    {
                        uint pfn = spare.RawPfn;
                        spare = Page.Null;
                        if (PteIsSwap(e))
                        {
                            SwapReadPage(e, pfn);
                            SwapCacheAdd(e, pfn);
                            LruAdd(pfn, anon: true);
                            MapSwapPage(t, va, pte, e, pfn, write, major: true);
                        }
                        else
                        {
                            // do_anonymous_page: a zeroed page, mapped writable; dirty from the start, since
                            // its contents exist nowhere else.
                            _mem.Frame(pfn).Flags |= PageFlags.Dirty;
                            _mem.Frame(pfn).MapCount = 1;
                            SetOwner(pfn, t, va);
                            LruAdd(pfn, anon: true);
                            *pte = ((ulong)pfn << PhysMem.PageShift) | TableEntryBits;
                            t.Rss++;
                            NrAnonPages++;
                            Stats.Pgfault++;
                        }
                        continue;
                    }
                    Lock.Exit();
                    holding = false;
                    FreeSpare(ref spare);
                    // alloc_zeroed_user_highpage_movable, or the swap-in page (read over, so not zeroed).
                    spare = _pa.AllocPages(PteIsSwap(e) ? Gfp.HighUserMovable : Gfp.HighUserMovable | Gfp.Zero, 0, -1);
                    if (spare.IsNull)
                    {
                        PagefaultOutOfMemory(t);
                    }
                }
                finally
                {
                    if (holding)
                    {
                        Lock.Exit();
                    }
                }
            }
        }
        finally
        {
            FreeSpare(ref spare);
        }
    }

    private bool IsTableSpare(Page p) => (_mem.Frame(p.RawPfn).Flags & PageFlags.Table) != 0;

    private void FreeSpare(ref Page spare)
    {
        if (!spare.IsNull)
        {
            _mem.Frame(spare.RawPfn).Flags &= ~PageFlags.Table;
            _pa.FreePages(spare, 0);
            spare = Page.Null;
        }
    }

    /// <summary>pagefault_out_of_memory: the allocator gave up even after the OOM killer; the faulting task dies.</summary>
    private void PagefaultOutOfMemory(TaskStruct t)
    {
        lock (Lock)
        {
            if (!t.HasExited)
            {
                _m.Log.Printk($"Out of memory: task {t.Pid} ({t.Comm}) could not fault in a page and is killed");
                t.IsKilled = true;
                ExitMm(t);
            }
        }
        throw new TaskKilledException(t);
    }

    /// <summary>Installs a zeroed table frame at the missing level (under Lock).</summary>
    private void InstallTable(TaskStruct t, ulong va, int missing, uint tablePfn)
    {
        uint table = t.PgdPfn;
        for (int level = 3; level > missing; level--)
        {
            table = PtePfn(*TableEntry(table, IndexAt(va, level)));
        }
        *TableEntry(table, IndexAt(va, missing)) = ((ulong)tablePfn << PhysMem.PageShift) | TableEntryBits;
        t.PgtablePages++;
        if (missing <= 2)
        {
            NrPageTable++;
        }
    }

    /// <summary>Maps a swap-cache page at the PTE holding swap entry <paramref name="entry"/> (do_swap_page).
    /// A write fault takes the page out of the swap cache and frees the slot: the copy on swap is stale.</summary>
    private void MapSwapPage(TaskStruct t, ulong va, ulong* pte, ulong entry, uint pfn, bool write, bool major)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        f.MapCount = 1;
        SetOwner(pfn, t, va);
        *pte = ((ulong)pfn << PhysMem.PageShift) | PtePresent | PteRw | PteUser | PteAccessed;
        t.SwapEnts--;
        t.Rss++;
        NrAnonPages++;
        SwapFree(entry);
        Stats.Pgfault++;
        if (major)
        {
            Stats.Pgmajfault++;
        }
        // A write makes the copy on swap stale; and with swap more than half full (vm_swap_full) the slot is
        // worth more free than as a cache of a page now in memory.
        if (write || VmSwapFull)
        {
            DeleteFromSwapCache(pfn);
            f.Flags |= PageFlags.Dirty;
        }
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
    private void ExitMm(TaskStruct t)
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
        _pa.FreePages(new Page(t.PgdPfn), 0);
        t.PgdPfn = PhysMem.NoPfn;
        NrKernelStackKb -= t.StackVmalloc != 0 ? 16 : 8;
        FreeStack(t.StackVmalloc, t.StackPages);
        t.StackVmalloc = 0;
        t.StackPages = Page.Null;
        t.HasExited = true;
        _tasks.Remove(t);
    }

    /// <summary>Counts the task's present pages, swap entries and tables, and compares them with its counters.</summary>
    private void ValidateTask(TaskStruct t)
    {
        long rss = 0, swap = 0, tables = 0;
        void WalkTable(uint table, int level, ulong baseVa)
        {
            for (int i = 0; i < 512; i++)
            {
                ulong e = *TableEntry(table, i);
                if (e == 0)
                {
                    continue;
                }
                ulong va = baseVa | ((ulong)i << (PhysMem.PageShift + 9 * level));
                if (level > 0)
                {
                    tables++;
                    WalkTable(PtePfn(e), level - 1, va);
                }
                else if ((e & PtePresent) != 0)
                {
                    rss++;
                    uint pfn = PtePfn(e);
                    if (OwnerOf(pfn) != t || IndexOf(pfn) != va || (_mem.Frame(pfn).Flags & PageFlags.Lru) == 0)
                    {
                        throw new InvalidOperationException($"task {t.Pid}: pte at 0x{va:x} maps pfn 0x{pfn:x} whose rmap or LRU state is wrong");
                    }
                }
                else
                {
                    swap++;
                }
            }
        }
        WalkTable(t.PgdPfn, 3, 0);
        if (rss != t.Rss || swap != t.SwapEnts || tables != t.PgtablePages)
        {
            throw new InvalidOperationException($"task {t.Pid}: counters rss {t.Rss} swapents {t.SwapEnts} tables {t.PgtablePages}, tables hold {rss}/{swap}/{tables}");
        }
    }
}
