// The persistent kmap window (mm/highmem.c, kmap_high/kunmap_high): LAST_PKMAP host
// pages reserved once; highmem frames are mapped into them with MAP_FIXED over the memfd.
// Invariants: _count[n] is 0 (free, unmapped), 1 (mapped, unused until the next flush)
// or k+1 (held by k callers); a slot with a non-zero count maps _slotPfn[n], and
// _pageSlot[_slotPfn[n]] == n. Locking: all state under _kmapLock (kmap_lock); callers
// with no free slot sleep on its monitor (pkmap_map_wait).
using Kmem.Physical;

namespace Kmem.Highmem;

/// <summary>The pkmap window: kmap/kunmap of highmem frames with the kernel's pkmap_count rules.</summary>
internal sealed class Pkmap : IDisposable
{
    /// <summary>PKMAP_BASE on the 32-bit presets: VMALLOC_END (0xfeffe000, from the 6.1 i386 kernel's
    /// VmallocTotal and lowmem end) plus the two guard pages between vmalloc and pkmap.</summary>
    public const ulong Base = 0xff000000;

    private readonly object _kmapLock = new();
    private readonly PhysMem _mem;
    private readonly Action<KernelBugException> _bug;
    private readonly KernelLog _log;
    private readonly CpuTopology _cpus;
    /// <summary>pkmap_count.</summary>
    private readonly int[] _count;
    /// <summary>The frame each slot maps (the slot's PTE); <see cref="PhysMem.NoPfn"/> when none.</summary>
    private readonly uint[] _slotPfn;
    /// <summary>page_address_htable: the slot a highmem frame is mapped at.</summary>
    private readonly Dictionary<uint, int> _pageSlot = [];
    private readonly nint _window;
    private int _lastPkmapNr;
    /// <summary>Callers asleep on pkmap_map_wait.</summary>
    private int _waiters;
    private long _sleeps;
    private bool _disposed;

    public Pkmap(PhysMem mem, int lastPkmap, Action<KernelBugException> bug, KernelLog log, CpuTopology cpus)
    {
        _mem = mem;
        _bug = bug;
        _log = log;
        _cpus = cpus;
        LastPkmap = lastPkmap;
        _count = new int[lastPkmap];
        _slotPfn = new uint[lastPkmap];
        Array.Fill(_slotPfn, PhysMem.NoPfn);
        // Address space only: PROT_NONE and NORESERVE cost nothing until a slot is mapped.
        _window = Libc.Mmap(0, WindowBytes, Libc.ProtNone, Libc.MapPrivate | Libc.MapAnonymous | Libc.MapNoReserve, -1, 0);
    }

    /// <summary>LAST_PKMAP.</summary>
    public int LastPkmap { get; }

    private nuint WindowBytes => (nuint)LastPkmap << PhysMem.PageShift;

    private nint SlotAddress(int nr) => _window + (nr << PhysMem.PageShift);

    /// <summary>kmap_high: maps <paramref name="pfn"/> (a highmem frame) or takes one more hold on its slot.
    /// Sleeps while every slot is held, until <paramref name="timeoutMs"/> (-1: for ever) or cancellation.</summary>
    /// <returns>The host address, or 0 on timeout, cancellation or when the host refuses the mapping.</returns>
    public nint KmapHigh(uint pfn, int timeoutMs, CancellationToken cancel)
    {
        long deadline = timeoutMs < 0 ? long.MaxValue : Environment.TickCount64 + timeoutMs;
        // Cancellation wakes every sleeper; each one checks its own token.
        using var wake = cancel.CanBeCanceled ? cancel.Register(WakeAll) : default;
        lock (_kmapLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_pageSlot.TryGetValue(pfn, out int nr))
            {
                nr = MapNewVirtual(pfn, deadline, cancel);
                if (nr < 0)
                {
                    return 0;
                }
            }
            _count[nr]++;
            return SlotAddress(nr);
        }
    }

    /// <summary>kunmap_high: drops one hold; the last one leaves the mapping cached (count 1) until a flush.</summary>
    /// <returns>False (the bug already reported) when the frame is not kmapped.</returns>
    public bool KunmapHigh(uint pfn)
    {
        string? bug = null;
        lock (_kmapLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_pageSlot.TryGetValue(pfn, out int nr))
            {
                bug = $"kernel BUG at mm/highmem.c: kunmap_high: pfn:0x{pfn:x} is not kmapped (page_address is NULL)";
            }
            else if (_count[nr] == 1)
            {
                bug = $"kernel BUG at mm/highmem.c: kunmap_high: pkmap_count[{nr}] of pfn:0x{pfn:x} (0x{KernelAddress(nr):x}) "
                    + "would drop to 0: kunmap without a matching kmap";
            }
            else if (--_count[nr] == 1 && _waiters > 0)
            {
                // The kernel wakes pkmap_map_wait once a slot has no holder left.
                Monitor.PulseAll(_kmapLock);
            }
        }
        if (bug is not null)
        {
            // Reported outside kmap_lock: the policy may throw or log.
            _bug(new KernelBugException(bug));
            return false;
        }
        return true;
    }

    /// <summary>kmap_flush_unused: frees every slot that is mapped but unused.</summary>
    public void FlushUnused()
    {
        lock (_kmapLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FlushAllZeroPkmaps();
        }
    }

    /// <summary>The host address <paramref name="pfn"/> is kmapped at, or 0 (page_address for highmem).</summary>
    public nint AddressOf(uint pfn)
    {
        lock (_kmapLock)
        {
            return !_disposed && _pageSlot.TryGetValue(pfn, out int nr) ? SlotAddress(nr) : 0;
        }
    }

    /// <summary>The frame mapped at a host address inside the window, or <see cref="PhysMem.NoPfn"/>
    /// (outside the window, or a free slot).</summary>
    public uint PfnAt(nint address)
    {
        lock (_kmapLock)
        {
            int nr = _disposed ? -1 : SlotOf(address);
            return nr < 0 ? PhysMem.NoPfn : _slotPfn[nr];
        }
    }

    /// <summary>pkmap_count of the slot holding <paramref name="pfn"/>, or -1 when it is not mapped.</summary>
    public int CountOf(uint pfn)
    {
        lock (_kmapLock)
        {
            return _pageSlot.TryGetValue(pfn, out int nr) ? _count[nr] : -1;
        }
    }

    /// <summary>pkmap_count of every mapped frame, taken at one instant (for checks and reports).</summary>
    public Dictionary<uint, int> Counts()
    {
        lock (_kmapLock)
        {
            return _pageSlot.ToDictionary(e => e.Key, e => _count[e.Value]);
        }
    }

    /// <summary>How many times a caller went to sleep for want of a free slot.</summary>
    public long Sleeps
    {
        get
        {
            lock (_kmapLock)
            {
                return _sleeps;
            }
        }
    }

    /// <summary>Callers asleep waiting for a slot.</summary>
    public int Waiters
    {
        get
        {
            lock (_kmapLock)
            {
                return _waiters;
            }
        }
    }

    /// <summary>PKMAP_ADDR(nr): the kernel-style address of a slot, for reports.</summary>
    public static ulong KernelAddress(int nr) => Base + ((ulong)nr << PhysMem.PageShift);

    /// <summary>PKMAP_NR: the slot a host address falls in, or -1.</summary>
    public int SlotOf(nint address)
    {
        nuint off = (nuint)address - (nuint)_window;
        return off < WindowBytes ? (int)(off >> PhysMem.PageShift) : -1;
    }

    /// <summary>Checks the window's invariants (file header); throws naming the first slot that breaks one.</summary>
    public void Validate()
    {
        lock (_kmapLock)
        {
            int mapped = 0;
            for (int nr = 0; nr < LastPkmap; nr++)
            {
                bool hasPfn = _slotPfn[nr] != PhysMem.NoPfn;
                if (_count[nr] < 0 || (_count[nr] == 0) == hasPfn)
                {
                    throw new InvalidOperationException($"pkmap slot {nr}: pkmap_count {_count[nr]} with pfn 0x{_slotPfn[nr]:x}");
                }
                if (hasPfn)
                {
                    mapped++;
                    if (!_pageSlot.TryGetValue(_slotPfn[nr], out int back) || back != nr)
                    {
                        throw new InvalidOperationException($"pkmap slot {nr}: pfn 0x{_slotPfn[nr]:x} is not looked up to it");
                    }
                }
            }
            if (mapped != _pageSlot.Count)
            {
                throw new InvalidOperationException($"pkmap: {_pageSlot.Count} pages looked up, {mapped} slots mapped");
            }
        }
    }

    public void Dispose()
    {
        lock (_kmapLock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            // One munmap gives back the window and every slot mapping inside it.
            Libc.Munmap(_window, WindowBytes);
            Monitor.PulseAll(_kmapLock);
        }
    }

    /// <summary>map_new_virtual: the next free slot after last_pkmap_nr, flushing unused slots when the
    /// scan wraps, sleeping when a whole pass finds none. Called and returns with the lock held.</summary>
    /// <returns>The slot, or -1 on timeout, cancellation or a refused host mapping.</returns>
    private int MapNewVirtual(uint pfn, long deadline, CancellationToken cancel)
    {
        while (true)
        {
            int count = LastPkmap;
            bool found = false;
            while (true)
            {
                _lastPkmapNr = (_lastPkmapNr + 1) & (LastPkmap - 1);
                if (_lastPkmapNr == 0)
                {
                    FlushAllZeroPkmaps();
                    count = LastPkmap;
                }
                if (_count[_lastPkmapNr] == 0)
                {
                    found = true;
                    break;
                }
                if (--count == 0)
                {
                    break;
                }
            }
            if (found)
            {
                break;
            }
            if (!SleepForSlot(deadline, cancel))
            {
                // Another caller may have mapped the page just as the wait ended.
                return _pageSlot.TryGetValue(pfn, out int late) ? late : -1;
            }
            ObjectDisposedException.ThrowIf(_disposed || _mem.Lifetime.IsDisposed, this);
            if (_pageSlot.TryGetValue(pfn, out int mapped))
            {
                return mapped; // somebody else mapped it while we slept
            }
        }
        int nr = _lastPkmapNr;
        if (Libc.Mmap(SlotAddress(nr), PhysMem.PageSize, Libc.ProtRead | Libc.ProtWrite,
            Libc.MapShared | Libc.MapFixed, _mem.Fd, (long)pfn << PhysMem.PageShift, mayFail: true) == 0)
        {
            _log.Printk($"WARNING: CPU: {_cpus.Current} PID: {Environment.ProcessId} at mm/highmem.c map_new_virtual: "
                + $"the host refused to map pfn:0x{pfn:x} at 0x{KernelAddress(nr):x} (map count limit): kmap fails");
            return -1;
        }
        _count[nr] = 1;
        _slotPfn[nr] = pfn;
        _pageSlot[pfn] = nr;
        return nr;
    }

    /// <summary>Sleeps on pkmap_map_wait (the lock is released meanwhile).</summary>
    /// <returns>False on timeout or cancellation.</returns>
    private bool SleepForSlot(long deadline, CancellationToken cancel)
    {
        if (cancel.IsCancellationRequested)
        {
            return false;
        }
        long left = deadline == long.MaxValue ? Timeout.Infinite : deadline - Environment.TickCount64;
        if (deadline != long.MaxValue && left <= 0)
        {
            return false;
        }
        _waiters++;
        _sleeps++;
        // The machine's Dispose wakes the sleeper, which then throws ObjectDisposedException.
        var shutdown = _mem.Lifetime.ShutdownToken.Register(static s => ((Pkmap)s!).WakeAll(), this);
        try
        {
            ObjectDisposedException.ThrowIf(_mem.Lifetime.IsDisposed, this);
            bool woken = Monitor.Wait(_kmapLock, left == Timeout.Infinite ? Timeout.Infinite : (int)Math.Min(left, int.MaxValue));
            return woken && !cancel.IsCancellationRequested;
        }
        finally
        {
            _waiters--;
            // Unregister, not Dispose: Dispose waits for a callback already running, and that callback (WakeAll)
            // waits for the lock this thread holds.
            shutdown.Unregister();
        }
    }

    private void WakeAll()
    {
        lock (_kmapLock)
        {
            Monitor.PulseAll(_kmapLock);
        }
    }

    /// <summary>flush_all_zero_pkmaps: every slot mapped but unused (count 1) becomes free; its host
    /// mapping is replaced by PROT_NONE, a run of adjacent slots in one call (the kernel's one TLB flush).</summary>
    private void FlushAllZeroPkmaps()
    {
        int runStart = -1;
        for (int i = 0; i <= LastPkmap; i++)
        {
            if (i < LastPkmap && _count[i] == 1)
            {
                _count[i] = 0;
                _pageSlot.Remove(_slotPfn[i]);
                _slotPfn[i] = PhysMem.NoPfn;
                if (runStart < 0)
                {
                    runStart = i;
                }
                continue;
            }
            if (runStart >= 0)
            {
                Libc.Mmap(SlotAddress(runStart), (nuint)(i - runStart) << PhysMem.PageShift, Libc.ProtNone,
                    Libc.MapPrivate | Libc.MapAnonymous | Libc.MapNoReserve | Libc.MapFixed, -1, 0);
                runStart = -1;
            }
        }
    }
}
