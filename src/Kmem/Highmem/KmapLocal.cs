// kmap_local and kmap_atomic (mm/highmem.c, "kmap_local" section): each thread gets
// a stack of KM_MAX_IDX slots in a small host window, reserved on first use, passed
// to a new thread once its owner exits, given back on Dispose. Invariants: slots
// [0, Idx) of a stack are mapped (Pfn[i] is the frame), the rest are PROT_NONE;
// unmapping is strictly LIFO. Locking: a stack is used by its own thread; its lock
// only keeps it apart from Dispose. _windowsLock guards the stack list and _disposed.
using Kmem.Physical;

namespace Kmem.Highmem;

/// <summary>Per-thread kmap_local slot stacks.</summary>
internal sealed class KmapLocal : IDisposable
{
    /// <summary>KM_MAX_IDX in 6.1 without CONFIG_DEBUG_KMAP_LOCAL.</summary>
    public const int KmMaxIdx = 16;

    private readonly PhysMem _mem;
    private readonly Action<KernelBugException> _bug;
    private readonly KernelLog _log;
    private readonly CpuTopology _cpus;
    private readonly ThreadLocal<LocalStack?> _stacks = new();
    private readonly Lock _windowsLock = new();
    private readonly List<LocalStack> _all = [];
    private bool _disposed;

    public KmapLocal(PhysMem mem, Action<KernelBugException> bug, KernelLog log, CpuTopology cpus)
    {
        _mem = mem;
        _bug = bug;
        _log = log;
        _cpus = cpus;
    }

    /// <summary>One thread's kmap_ctrl: its window, nesting depth and the frame in each slot.</summary>
    private sealed class LocalStack
    {
        public readonly Lock Lock = new();
        /// <summary>The thread the stack belongs to; once it has exited, another thread may adopt the stack.</summary>
        public Thread Owner = Thread.CurrentThread;
        public nint Window;
        public int Idx;
        public readonly uint[] Pfn = new uint[KmMaxIdx];
        /// <summary>The CPU pins kmap_atomic took (its preempt_disable), innermost last.</summary>
        public readonly Stack<(nint Address, CpuScope Pin)> Atomic = new();
        public bool Dead;
    }

    private static nuint WindowBytes => (nuint)KmMaxIdx << PhysMem.PageShift;

    /// <summary>Nesting depth of the calling thread's kmap_local stack.</summary>
    public int Depth => _stacks.IsValueCreated && _stacks.Value is { } s ? s.Idx : 0;

    /// <summary>Host windows reserved: one per thread that mapped a highmem frame, an exited thread's reused.</summary>
    public int Windows
    {
        get
        {
            lock (_windowsLock)
            {
                return _all.Count(s => s.Window != 0);
            }
        }
    }

    /// <summary>__kmap_local_pfn_prot: maps a highmem frame into the next slot of the calling thread.</summary>
    /// <returns>The host address, or 0 when the stack is full (BUG reported) or the host refused the mapping.</returns>
    public nint Map(uint pfn)
    {
        var stack = Current();
        lock (stack.Lock)
        {
            ObjectDisposedException.ThrowIf(stack.Dead, this);
            // kmap_local_idx_push: BUG_ON(idx >= KM_MAX_IDX), reported outside the stack lock.
            if (stack.Idx < KmMaxIdx)
            {
                if (stack.Window == 0)
                {
                    stack.Window = Libc.Mmap(0, WindowBytes, Libc.ProtNone, Libc.MapPrivate | Libc.MapAnonymous | Libc.MapNoReserve, -1, 0);
                }
                nint slot = stack.Window + (stack.Idx << PhysMem.PageShift);
                if (Libc.Mmap(slot, PhysMem.PageSize, Libc.ProtRead | Libc.ProtWrite, Libc.MapShared | Libc.MapFixed,
                    _mem.Fd, (long)pfn << PhysMem.PageShift, mayFail: true) == 0)
                {
                    _log.Printk($"WARNING: CPU: {_cpus.Current} PID: {Environment.ProcessId} at mm/highmem.c __kmap_local_pfn_prot: "
                        + $"the host refused to map pfn:0x{pfn:x} (map count limit): kmap_local fails");
                    return 0;
                }
                stack.Pfn[stack.Idx++] = pfn;
                return slot;
            }
        }
        _bug(new KernelBugException($"kernel BUG at mm/highmem.c: kmap_local_idx_push: pfn:0x{pfn:x} would be kmap_local "
            + $"mapping {KmMaxIdx + 1}, beyond KM_MAX_IDX ({KmMaxIdx}) on this task"));
        return 0;
    }

    /// <summary>kunmap_local_indexed: unmaps the top slot of the calling thread, which
    /// <paramref name="address"/> must fall in. A lowmem (direct-map) address needs nothing.</summary>
    /// <returns>False (reported) when the address is not this thread's top mapping; nothing changes then.</returns>
    public bool Unmap(nint address)
    {
        var stack = _stacks.IsValueCreated ? _stacks.Value : null;
        if (_mem.VirtToPfn(address) != PhysMem.NoPfn)
        {
            return true; // page_address of a lowmem page: no slot was taken
        }
        string? warning = null;
        if (stack is null)
        {
            warning = "the task has no kmap_local mapping";
        }
        else
        {
            lock (stack.Lock)
            {
                ObjectDisposedException.ThrowIf(stack.Dead, this);
                nuint off = (nuint)address - (nuint)stack.Window;
                int idx = stack.Window != 0 && off < WindowBytes ? (int)(off >> PhysMem.PageShift) : -1;
                if (idx < 0)
                {
                    warning = "the address is not a kmap_local mapping of this task";
                }
                else if (idx >= stack.Idx)
                {
                    warning = $"slot {idx} is not mapped (depth {stack.Idx})";
                }
                else if (idx != stack.Idx - 1)
                {
                    warning = $"slot {idx} (pfn:0x{stack.Pfn[idx]:x}) is not the last one mapped: slot {stack.Idx - 1} "
                        + $"(pfn:0x{stack.Pfn[stack.Idx - 1]:x}) must be unmapped first (kmap_local is LIFO)";
                }
                else
                {
                    Libc.Mmap(stack.Window + (idx << PhysMem.PageShift), PhysMem.PageSize, Libc.ProtNone,
                        Libc.MapPrivate | Libc.MapAnonymous | Libc.MapNoReserve | Libc.MapFixed, -1, 0);
                    stack.Idx--;
                    return true;
                }
            }
        }
        _bug(new KernelBugException($"WARNING: CPU: {_cpus.Current} PID: {Environment.ProcessId} at mm/highmem.c kunmap_local_indexed: "
            + $"{warning}; nothing unmapped"));
        return false;
    }

    /// <summary>The frame the calling thread has mapped at <paramref name="address"/>, or <see cref="PhysMem.NoPfn"/>.</summary>
    public uint PfnAt(nint address)
    {
        var stack = _stacks.IsValueCreated ? _stacks.Value : null;
        if (stack is null)
        {
            return PhysMem.NoPfn;
        }
        lock (stack.Lock)
        {
            nuint off = (nuint)address - (nuint)stack.Window;
            int idx = stack.Window != 0 && off < WindowBytes ? (int)(off >> PhysMem.PageShift) : -1;
            return idx >= 0 && idx < stack.Idx ? stack.Pfn[idx] : PhysMem.NoPfn;
        }
    }

    /// <summary>Records the CPU pin kmap_atomic took for <paramref name="address"/>.</summary>
    public void PushAtomic(nint address, CpuScope pin) => Current().Atomic.Push((address, pin));

    /// <summary>The CPU pin of the innermost kmap_atomic if it mapped <paramref name="address"/>'s page.</summary>
    /// <returns>False when the calling thread is not in kmap_atomic, or its innermost one is another page.</returns>
    public bool PeekAtomic(nint address, out CpuScope pin)
    {
        pin = default;
        var stack = _stacks.IsValueCreated ? _stacks.Value : null;
        if (stack is null || stack.Atomic.Count == 0)
        {
            return false;
        }
        var (mapped, scope) = stack.Atomic.Peek();
        if (((nuint)mapped >> PhysMem.PageShift) != ((nuint)address >> PhysMem.PageShift))
        {
            return false;
        }
        pin = scope;
        return true;
    }

    /// <summary>Forgets the innermost kmap_atomic pin.</summary>
    public void PopAtomic() => Current().Atomic.Pop();

    /// <summary>Gives every thread's window back; later use throws <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        lock (_windowsLock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            foreach (var stack in _all)
            {
                lock (stack.Lock)
                {
                    stack.Dead = true;
                    if (stack.Window != 0)
                    {
                        Libc.Munmap(stack.Window, WindowBytes);
                        stack.Window = 0;
                    }
                }
            }
            _all.Clear();
        }
        _stacks.Dispose();
    }

    private LocalStack Current()
    {
        if (_stacks.Value is { } stack)
        {
            return stack;
        }
        lock (_windowsLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            // A thread that exited cannot use its stack again: hand its window to this thread, so
            // short-lived threads do not each keep a window until the machine is disposed.
            stack = _all.Find(s => !s.Owner.IsAlive);
            if (stack is null)
            {
                stack = new LocalStack();
                _all.Add(stack);
            }
            else
            {
                Adopt(stack);
            }
            _stacks.Value = stack;
            return stack;
        }
    }

    /// <summary>Takes over a dead thread's stack, unmapping whatever it left mapped.</summary>
    private static void Adopt(LocalStack stack)
    {
        lock (stack.Lock)
        {
            if (stack.Idx > 0)
            {
                Libc.Mmap(stack.Window, (nuint)stack.Idx << PhysMem.PageShift, Libc.ProtNone,
                    Libc.MapPrivate | Libc.MapAnonymous | Libc.MapNoReserve | Libc.MapFixed, -1, 0);
                stack.Idx = 0;
            }
            stack.Atomic.Clear(); // the pins were the dead thread's own
            stack.Owner = Thread.CurrentThread;
        }
    }
}
