// The host mappings of HIGHPTE page tables (CONFIG_HIGHPTE, x86-32): a user PTE table allocated with
// __GFP_HIGHMEM may lie in HighMem, where it has no direct-map address, and 6.1 maps it with kmap_local
// for each access (pte_offset_map, pte_unmap). Kmem's table walks keep a PTE pointer for the length of
// one step (a fault, an unmap, a table move), so the user tables' owner reaches HighMem tables through a
// small window instead: the last Slots tables reached stay mapped, and the least recently used slot is
// mapped over for a new one. A step uses at most two tables at once (a table move), far fewer than the
// slots, so a pointer it holds stays valid through it. A slot shows its frame's bytes (the memfd at the
// frame's offset) whoever owns the frame later, so a freed table needs no unmapping.
// Invariants: _pfn[i] is the frame slot i maps (NoPfn when none) and _slotOf its inverse; _stamp[i] is
// when slot i was last reached. Locking: _lock (table walks run under UserMemory.Lock already; the lock
// keeps Dispose and a walk apart).
using Kmem.Physical;

namespace Kmem.Highmem;

/// <summary>A window of host mappings for page-table frames in HighMem.</summary>
internal sealed class PteWindow(PhysMem mem) : IDisposable
{
    /// <summary>Tables kept mapped.</summary>
    public const int Slots = 32;

    private readonly Lock _lock = new();
    private readonly uint[] _pfn = [.. Enumerable.Repeat(PhysMem.NoPfn, Slots)];
    private readonly long[] _stamp = new long[Slots];
    private readonly Dictionary<uint, int> _slotOf = [];
    private nint _window;
    private long _clock;
    private bool _disposed;

    /// <summary>Host mappings made so far (a slot mapped over counts again).</summary>
    public long Maps { get; private set; }

    /// <summary>The host address of HighMem frame <paramref name="pfn"/>, mapped in a slot if it is not already.</summary>
    /// <exception cref="InvalidOperationException">The host refused the mapping (its map count limit).</exception>
    public nint Map(uint pfn)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_window == 0)
            {
                _window = Libc.Mmap(0, (nuint)Slots << PhysMem.PageShift, Libc.ProtNone, Libc.MapPrivate | Libc.MapAnonymous | Libc.MapNoReserve, -1, 0);
            }
            if (!_slotOf.TryGetValue(pfn, out int slot))
            {
                slot = 0;
                for (int i = 1; i < Slots; i++)
                {
                    if (_stamp[i] < _stamp[slot])
                    {
                        slot = i;
                    }
                }
                nint at = _window + (slot << PhysMem.PageShift);
                if (Libc.Mmap(at, PhysMem.PageSize, Libc.ProtRead | Libc.ProtWrite, Libc.MapShared | Libc.MapFixed,
                    mem.Fd, (long)pfn << PhysMem.PageShift, mayFail: true) == 0)
                {
                    throw new InvalidOperationException($"the host refused to map the page table at pfn 0x{pfn:x} (its map count limit)");
                }
                if (_pfn[slot] != PhysMem.NoPfn)
                {
                    _slotOf.Remove(_pfn[slot]);
                }
                _pfn[slot] = pfn;
                _slotOf[pfn] = slot;
                Maps++;
            }
            _stamp[slot] = ++_clock;
            return _window + (slot << PhysMem.PageShift);
        }
    }

    /// <summary>Gives the window back; later use throws <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            if (_window != 0)
            {
                Libc.Munmap(_window, (nuint)Slots << PhysMem.PageShift);
                _window = 0;
            }
        }
    }
}
