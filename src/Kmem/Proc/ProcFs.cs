// The machine's procfs and debugfs files for memory management: each file's
// text, by method or by path, in the kernel's own format byte for byte. Every
// read builds the text afresh from the live counters; nothing is cached.
// Reports take one zone lock at a time (see each report), never a pcp lock.
// The layers are given at construction; those the machine creates lazily are
// reached through IProcSources.
using Kmem.Physical;
using Kmem.PageAlloc;
using Kmem.Proc;
using Kmem.Reclaim;
using Kmem.Slab;

namespace Kmem;

/// <summary>
/// The memory-management files of /proc and /sys/kernel/debug for one machine (<see cref="Machine.Proc"/>),
/// produced in the text formats of Linux 6.1.
/// </summary>
/// <remarks>Every method may be called from any thread, while the machine allocates and frees. A report
/// is consistent within each zone's lines; different zones may be read a moment apart, as in the kernel.</remarks>
public sealed class ProcFs
{
    private readonly PageAllocator _pa;
    private readonly SlabBackend? _slab;
    private readonly MmLayer _mm;
    private readonly IProcSources _sources;
    private readonly MachineLifetime _life;
    private readonly string[] _names;
    private readonly string[] _paths;
    private readonly (string Name, string Path, Func<string> Show)[] _files;

    /// <param name="pa">The page allocator (zones, nodes, counters, the boot options).</param>
    /// <param name="slab">The slab layer; null when this build lacks the one the machine was booted with.</param>
    /// <param name="mm">The reclaim layer (swap areas).</param>
    /// <param name="sources">The layers the machine creates on first use.</param>
    /// <param name="life">The machine's lifetime, which every report enters.</param>
    internal ProcFs(PageAllocator pa, SlabBackend? slab, MmLayer mm, IProcSources sources, MachineLifetime life)
    {
        _life = life;
        _pa = pa;
        _slab = slab;
        _mm = mm;
        _sources = sources;
        (string, string, Func<string>)[] files =
        [
            ("buddyinfo", "/proc/buddyinfo", Buddyinfo),
            ("pagetypeinfo", "/proc/pagetypeinfo", Pagetypeinfo),
            ("zoneinfo", "/proc/zoneinfo", Zoneinfo),
            ("meminfo", "/proc/meminfo", Meminfo),
            ("vmstat", "/proc/vmstat", Vmstat),
            ("slabinfo", "/proc/slabinfo", Slabinfo),
            ("vmallocinfo", "/proc/vmallocinfo", Vmallocinfo),
            ("swaps", "/proc/swaps", Swaps),
            ("unusable_index", "/sys/kernel/debug/extfrag/unusable_index", ExtfragUnusableIndex),
            ("extfrag_index", "/sys/kernel/debug/extfrag/extfrag_index", ExtfragIndex),
            ("slobinfo", SlobinfoPath, Slobinfo),
            ("percpu_stats", "/sys/kernel/debug/percpu_stats", PercpuStats),
        ];
        // /proc/slabinfo exists only with a slab layer that has one (not SLOB); Kmem's slobinfo only with SLOB.
        bool hasSlabinfo = slab is { Kind: not SlabAllocator.Slob };
        bool hasSlobinfo = slab is { Kind: SlabAllocator.Slob };
        _files = [.. files.Where(f => f.Item1 switch { "slabinfo" => hasSlabinfo, "slobinfo" => hasSlobinfo, _ => true })];
        _names = [.. _files.Select(f => f.Name)];
        _paths = [.. _files.Select(f => f.Path)];
    }

    /// <summary>The short names of the files (buddyinfo, …, unusable_index, extfrag_index).</summary>
    public IReadOnlyList<string> Names { get { _life.ThrowIfDisposed(); return _names; } }

    /// <summary>The full paths of the files (/proc/buddyinfo, …, /sys/kernel/debug/extfrag/extfrag_index).</summary>
    public IReadOnlyList<string> Paths { get { _life.ThrowIfDisposed(); return _paths; } }

    /// <summary>/proc/buddyinfo: free blocks per order, one line per populated zone.</summary>
    public string Buddyinfo() { using var _ = _life.Enter(); return Proc.Buddyinfo.Show(_pa); }

    /// <summary>/proc/pagetypeinfo: free blocks per order and migrate type, and pageblocks per migrate type.</summary>
    public string Pagetypeinfo() { using var _ = _life.Enter(); return Proc.Pagetypeinfo.Show(_pa); }

    /// <summary>/proc/zoneinfo: every zone's counters, watermarks, lowmem reserves and per-CPU lists.</summary>
    public string Zoneinfo() { using var _ = _life.Enter(); return Proc.Zoneinfo.Show(_pa); }

    /// <summary>/proc/meminfo: the system-wide memory summary in kB.</summary>
    public string Meminfo() { using var _ = _life.Enter(); return Proc.Meminfo.Show(_pa, _sources.VmallocPages, _sources.PercpuPages); }

    /// <summary>/proc/vmstat: every vm counter and event of the preset's kernel.</summary>
    public string Vmstat() { using var _ = _life.Enter(); return VmStat.Show(_pa); }

    /// <summary>/proc/slabinfo (version 2.1): every slab cache, newest first.</summary>
    /// <exception cref="InvalidOperationException">The machine was booted with SLOB, which has no
    /// /proc/slabinfo (as in Linux).</exception>
    public string Slabinfo()
    {
        using var _ = _life.Enter();
        return _slab is { Kind: not SlabAllocator.Slob } slab ? Proc.Slabinfo.Show(slab) : throw new InvalidOperationException(_slab is null ? "this build has no slab layer for this machine's slab allocator" : "SLOB has no /proc/slabinfo (as in Linux)");
    }

    /// <summary>Where Kmem puts its own SLOB summary: not a kernel path, since Linux has no such file.</summary>
    public const string SlobinfoPath = "/kmem/slobinfo";

    /// <summary>Kmem's own SLOB summary (<see cref="SlobinfoPath"/>; Linux has no report for SLOB): per free
    /// list (free_slob_small, free_slob_medium, free_slob_large) its pages and free units, the pages SLOB
    /// holds (slob pages, full ones, blocks of a page or more), and per owner (kmalloc, then each cache,
    /// oldest first) the live blocks, the bytes asked for and the bytes held, with a total line.</summary>
    /// <exception cref="InvalidOperationException">The machine was not booted with SLOB.</exception>
    public string Slobinfo()
    {
        using var _ = _life.Enter();
        return _slab is Slob slob ? Proc.Slobinfo.Show(slob) : throw new InvalidOperationException("slobinfo is Kmem's summary of SLOB; this machine was booted with " + _pa.Options.Slab);
    }

    /// <summary>/proc/vmallocinfo: every vmalloc and vmap area by address (range, size with the guard page,
    /// caller, pages, flags, frames per node on X64), then the lazily freed ranges not yet purged.</summary>
    /// <exception cref="ObjectDisposedException">The machine has been disposed.</exception>
    public string Vmallocinfo() { using var _ = _life.Enter(); return _sources.VmallocSpace.Show(); }

    /// <summary>/proc/swaps: the active swap areas (file name, type, size and use in kB, priority).</summary>
    public string Swaps() { using var _ = _life.Enter(); return _mm.ProcSwaps(); }

    /// <summary>/sys/kernel/debug/extfrag/unusable_index: per zone and order, the share of free memory that
    /// cannot serve a request of that order (0.000 to 1.000).</summary>
    public string ExtfragUnusableIndex() { using var _ = _life.Enter(); return Extfrag.UnusableIndex(_pa); }

    /// <summary>/sys/kernel/debug/extfrag/extfrag_index: per zone and order, whether a failing request would
    /// fail for lack of memory (toward 0) or fragmentation (toward 1); -1.000 when it would succeed.</summary>
    public string ExtfragIndex() { using var _ = _life.Enter(); return Extfrag.FragmentationIndex(_pa); }

    /// <summary>/sys/kernel/debug/percpu_stats: the per-CPU allocator's setup (unit, static, reserved and dynamic
    /// sizes), its global counters, and per chunk its allocations, free bytes, largest free run and fragments.</summary>
    /// <remarks>Sets the per-CPU allocator up if nothing has used it yet (the kernel's exists from boot).</remarks>
    public string PercpuStats() { using var _ = _life.Enter(); return Proc.PercpuStats.Show(_sources.PercpuAllocator); }

    /// <summary>Whether <paramref name="path"/> names a file this machine provides (see <see cref="Read"/>).</summary>
    public bool Knows(string path) { using var _ = _life.Enter(); return Find(path) >= 0; }

    /// <summary>The full path of a file given by name or path ("buddyinfo" → "/proc/buddyinfo").</summary>
    /// <exception cref="FileNotFoundException">No such file; the message lists the files there are.</exception>
    public string PathOf(string path) { using var _ = _life.Enter(); return _files[FindOrThrow(path)].Path; }

    /// <summary>
    /// Reads a file by its full path ("/proc/buddyinfo", "/sys/kernel/debug/extfrag/unusable_index"), its
    /// short name ("buddyinfo", "unusable_index") or the tail of its path ("extfrag/unusable_index").
    /// </summary>
    /// <returns>The file's text, exactly as the kernel prints it.</returns>
    /// <exception cref="FileNotFoundException">No such file; the message lists the files there are.</exception>
    public string Read(string path) { using var _ = _life.Enter(); return _files[FindOrThrow(path)].Show(); }

    private int Find(string? path)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            return -1;
        }
        string p = path.Trim();
        for (int i = 0; i < _files.Length; i++)
        {
            var f = _files[i];
            if (p == f.Name || p == f.Path || f.Path.EndsWith("/" + p.TrimStart('/'), StringComparison.Ordinal))
            {
                return i;
            }
        }
        return -1;
    }

    private int FindOrThrow(string path)
    {
        int i = Find(path);
        return i >= 0 ? i
            : throw new FileNotFoundException($"{path}: no such file; the files Kmem provides are {string.Join(", ", Paths)}", path);
    }
}
