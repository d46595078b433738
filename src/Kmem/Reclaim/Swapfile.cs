// Swap (mm/swapfile.c, mm/swap_state.c, mm/page_io.c): swap areas on real
// files made by Mkswap (the kernel's swap header: version 1, last_page, the
// "SWAPSPACE2" magic in the last 10 bytes of page 0), slots with use counts in
// swap_map (the count of PTEs holding the entry, plus SWAP_HAS_CACHE while a
// page is in the swap cache), the swap cache itself (entry → page), swap-out
// and swap-in of page bytes, swapon, the two ends of swapoff (try_to_unuse in
// between walks the tasks: UserMemory.cs) and /proc/swaps.
// A slot's life: get_swap_page marks it HAS_CACHE; unmapping the page adds one
// PTE reference per mapping; leaving the cache clears HAS_CACHE; the slot is
// free when the byte is 0.
// Locking: Lock is swap_lock (third of the four owner locks, LockOrder.cs),
// taken by every method, I/O included. A frame's flags are its owner's: the
// callers that change a swap-cache page's flags through here hold UserMemory.Lock.
using System.Text;
using Kmem.Highmem;
using Kmem.Physical;

namespace Kmem.Reclaim;

/// <summary>swap_info_struct: one active swap area.</summary>
internal sealed class SwapInfo : IDisposable
{
    public const byte SwapHasCache = 0x40;
    public const byte SwapMapMax = 0x3e;

    public required string Path;
    public required FileStream File;
    public required byte[] SwapMap;
    public int Type;
    public int Prio;
    /// <summary>Usable slots: 1..Pages (slot 0 is the header).</summary>
    public long Pages;
    public long InusePages;
    public uint Cursor = 1;
    /// <summary>SWP_WRITEOK: new slots may be taken (cleared while swapoff runs).</summary>
    public bool WriteOk = true;

    public void Dispose() => File.Dispose();
}

/// <summary>The swap areas and the swap cache of one machine.</summary>
internal sealed class Swapfile(PhysMem mem, HighmemMaps highmem, KernelLog log, VmEvents events) : IDisposable
{
    /// <summary>MAX_SWAPFILES on x86-64 with the special types taken out.</summary>
    public const int MaxSwapfiles = 29;
    private const int SwapMagicOffset = PhysMem.PageSize - 10;

    private readonly SwapInfo?[] _swaps = new SwapInfo?[MaxSwapfiles];
    private bool _disposed;
    private readonly Dictionary<ulong, uint> _swapCache = [];
    private readonly byte[] _ioBuffer = new byte[PhysMem.PageSize];
    private int _leastPriority = -1;

    /// <summary>swap_lock (see LockOrder.cs).</summary>
    public Lock Lock { get; } = new();

    /// <summary>NR_SWAPCACHE.</summary>
    public long NrSwapCache;

    /// <summary>total_swap_pages.</summary>
    public long TotalSwapPages { get; private set; }

    /// <summary>Free swap slots of every active area (nr_swap_pages).</summary>
    public long NrSwapPages { get; private set; }

    public static ulong MakeSwapEntry(int type, uint offset) => ((ulong)offset << PhysMem.PageShift) | ((ulong)type << 1);

    public static int SwapType(ulong entry) => (int)((entry >> 1) & 0x1f);

    public static uint SwapOffset(ulong entry) => (uint)(entry >> PhysMem.PageShift);

    /// <summary>mkswap: makes (or overwrites) a swap file of <paramref name="size"/> bytes.</summary>
    public static void Mkswap(string path, long size, Random random)
    {
        if (size < 10L * PhysMem.PageSize || size % PhysMem.PageSize != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "a swap file is a whole number of pages, at least 10 (40 KiB)");
        }
        using var fs = new FileStream(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None);
        fs.SetLength(size);
        var header = new byte[PhysMem.PageSize];
        BitConverter.TryWriteBytes(header.AsSpan(1024), 1u);
        BitConverter.TryWriteBytes(header.AsSpan(1028), (uint)(size / PhysMem.PageSize - 1));
        random.NextBytes(header.AsSpan(1036, 16));
        "SWAPSPACE2"u8.CopyTo(header.AsSpan(SwapMagicOffset));
        fs.Write(header);
    }

    /// <summary>sys_swapon: activates the swap file at <paramref name="path"/>.</summary>
    public void Swapon(string path, int priority)
    {
        string full = System.IO.Path.GetFullPath(path);
        lock (Lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, "Machine");
            if (_swaps.Any(s => s is not null && s.Path == full))
            {
                throw new InvalidOperationException($"swapon: {full}: already active (EBUSY)");
            }
            int type = Array.IndexOf(_swaps, null);
            if (type < 0)
            {
                throw new InvalidOperationException($"swapon: {full}: {MaxSwapfiles} swap areas are already active (EPERM)");
            }
            var fs = new FileStream(full, FileMode.Open, FileAccess.ReadWrite, FileShare.Read, 1, FileOptions.RandomAccess);
            try
            {
                var header = new byte[PhysMem.PageSize];
                if (RandomAccess.Read(fs.SafeFileHandle, header, 0) != header.Length || !header.AsSpan(SwapMagicOffset).SequenceEqual("SWAPSPACE2"u8))
                {
                    throw new InvalidDataException($"swapon: {full}: missing the SWAPSPACE2 signature (run mkswap first)");
                }
                uint version = BitConverter.ToUInt32(header, 1024);
                uint lastPage = BitConverter.ToUInt32(header, 1028);
                long filePages = fs.Length / PhysMem.PageSize;
                if (version != 1 || lastPage < 1 || lastPage >= filePages)
                {
                    throw new InvalidDataException($"swapon: {full}: bad swap header (version {version}, last_page {lastPage}, file of {filePages} pages)");
                }
                int prio = priority >= 0 ? Math.Min(priority, short.MaxValue) : --_leastPriority;
                var si = new SwapInfo { Path = full, File = fs, SwapMap = new byte[lastPage + 1], Type = type, Prio = prio, Pages = lastPage };
                _swaps[type] = si;
                TotalSwapPages += si.Pages;
                NrSwapPages += si.Pages;
                log.Printk($"Adding {si.Pages * 4}k swap on {full}.  Priority:{prio} extents:1 across:{si.Pages * 4}k");
            }
            catch
            {
                fs.Dispose();
                throw;
            }
        }
    }

    /// <summary>sys_swapoff, its start: the area takes no new slots and leaves the totals. Returns it, for
    /// try_to_unuse and <see cref="FinishSwapoff"/>.</summary>
    /// <param name="path">The swap file.</param>
    /// <param name="nrFreePages">Free pages now: swapoff refuses (ENOMEM) when memory and the other areas
    /// cannot hold what this one holds.</param>
    public SwapInfo BeginSwapoff(string path, long nrFreePages)
    {
        string full = System.IO.Path.GetFullPath(path);
        lock (Lock)
        {
            var si = _swaps.FirstOrDefault(s => s is not null && s.Path == full)
                ?? throw new ArgumentException($"swapoff: {full}: not an active swap area (EINVAL)", nameof(path));
            if (NrSwapPages - (si.Pages - si.InusePages) + nrFreePages < si.InusePages)
            {
                throw new InvalidOperationException($"swapoff: {full}: not enough memory to take back {si.InusePages} pages (ENOMEM)");
            }
            si.WriteOk = false;
            NrSwapPages -= si.Pages - si.InusePages;
            TotalSwapPages -= si.Pages;
            return si;
        }
    }

    /// <summary>sys_swapoff, its end once try_to_unuse has faulted every entry back: pages still in the swap cache
    /// of the area (mapped, clean) leave it dirty, since their only other copy is about to go, and the area is
    /// removed. The caller holds UserMemory.Lock (the pages' flags are their tasks').</summary>
    public void FinishSwapoff(SwapInfo si)
    {
        lock (Lock)
        {
            foreach (var (_, pfn) in _swapCache.Where(kv => SwapType(kv.Key) == si.Type).ToArray())
            {
                DeleteFromSwapCache(pfn);
                mem.Frame(pfn).Flags |= PageFlags.Dirty;
            }
            if (si.InusePages != 0)
            {
                throw new InvalidOperationException($"swapoff: {si.Path}: {si.InusePages} slots still in use");
            }
            _swaps[si.Type] = null;
            si.Dispose();
            if (si.Prio < 0 && si.Prio == _leastPriority)
            {
                _leastPriority++;
            }
        }
    }

    /// <summary>get_swap_page: a free slot of the highest-priority area with room, marked SWAP_HAS_CACHE; 0 if none.</summary>
    public ulong GetSwapPage()
    {
        lock (Lock)
        {
            SwapInfo? best = null;
            foreach (var s in _swaps)
            {
                if (s is { WriteOk: true } && s.InusePages < s.Pages && (best is null || s.Prio > best.Prio))
                {
                    best = s;
                }
            }
            if (best is null)
            {
                return 0;
            }
            uint n = (uint)best.Pages;
            for (uint i = 0; i < n; i++)
            {
                uint off = best.Cursor;
                best.Cursor = off >= n ? 1 : off + 1;
                if (best.SwapMap[off] == 0)
                {
                    best.SwapMap[off] = SwapInfo.SwapHasCache;
                    best.InusePages++;
                    NrSwapPages--;
                    return MakeSwapEntry(best.Type, off);
                }
            }
            return 0;
        }
    }

    /// <summary>vm_swap_full: less than half of the swap space is free.</summary>
    public bool VmSwapFull => NrSwapPages * 2 < TotalSwapPages;

    /// <summary>Whether any active area has a free slot (get_scan_count scans anon only then).</summary>
    public bool CanSwap => NrSwapPages > 0;

    private SwapInfo Info(ulong entry) => _swaps[SwapType(entry)]
        ?? throw new InvalidOperationException($"swap entry 0x{entry:x} names no active swap area");

    /// <summary>swap_duplicate: one more PTE holds the entry.</summary>
    public void SwapDuplicate(ulong entry)
    {
        lock (Lock)
        {
            var si = Info(entry);
            ref byte b = ref si.SwapMap[SwapOffset(entry)];
            if ((b & SwapInfo.SwapMapMax) >= SwapInfo.SwapMapMax)
            {
                throw new InvalidOperationException($"swap entry 0x{entry:x}: use count overflow (no count continuation in Kmem)");
            }
            b++;
        }
    }

    /// <summary>swap_free: a PTE drops the entry; the slot is free when nothing holds it.</summary>
    public void SwapFree(ulong entry)
    {
        lock (Lock)
        {
            var si = Info(entry);
            uint off = SwapOffset(entry);
            ref byte b = ref si.SwapMap[off];
            if ((b & ~SwapInfo.SwapHasCache) == 0)
            {
                throw new InvalidOperationException($"swap_free: entry 0x{entry:x} has no users (Bad swap entry)");
            }
            b--;
            ReleaseIfUnused(si, off);
        }
    }

    private void ReleaseIfUnused(SwapInfo si, uint off)
    {
        if (si.SwapMap[off] == 0)
        {
            si.InusePages--;
            if (si.WriteOk)
            {
                NrSwapPages++;
            }
        }
    }

    /// <summary>add_to_swap_cache.</summary>
    public void SwapCacheAdd(ulong entry, uint pfn)
    {
        lock (Lock)
        {
            ref PageFrame f = ref mem.Frame(pfn);
            // swapcache_prepare: the slot is pinned by the cache (already so for a slot fresh from get_swap_page).
            Info(entry).SwapMap[SwapOffset(entry)] |= SwapInfo.SwapHasCache;
            f.Flags |= PageFlags.SwapCache;
            f.Private = entry;
            _swapCache.Add(entry, pfn);
            NrSwapCache++;
        }
    }

    /// <summary>lookup_swap_cache: the frame caching <paramref name="entry"/>, or PhysMem.NoPfn.</summary>
    public uint LookupSwapCache(ulong entry)
    {
        lock (Lock)
        {
            return _swapCache.TryGetValue(entry, out uint pfn) ? pfn : PhysMem.NoPfn;
        }
    }

    /// <summary>swap_count: how many PTEs hold <paramref name="entry"/> (SWAP_HAS_CACHE not counted).</summary>
    public int SwapCount(ulong entry)
    {
        lock (Lock)
        {
            return Info(entry).SwapMap[SwapOffset(entry)] & ~SwapInfo.SwapHasCache;
        }
    }

    /// <summary>delete_from_swap_cache + put_swap_page: the page leaves the cache and the slot loses SWAP_HAS_CACHE.</summary>
    public void DeleteFromSwapCache(uint pfn)
    {
        lock (Lock)
        {
            ref PageFrame f = ref mem.Frame(pfn);
            ulong entry = f.Private;
            _swapCache.Remove(entry);
            f.Flags &= ~PageFlags.SwapCache;
            f.Private = 0;
            NrSwapCache--;
            var si = Info(entry);
            uint off = SwapOffset(entry);
            si.SwapMap[off] &= unchecked((byte)~SwapInfo.SwapHasCache);
            ReleaseIfUnused(si, off);
        }
    }

    /// <summary>swap_writepage: the page's bytes to its slot.</summary>
    public void SwapWritePage(ulong entry, uint pfn)
    {
        lock (Lock)
        {
            var si = Info(entry);
            highmem.MemcpyFromPage(_ioBuffer, pfn, 0);
            RandomAccess.Write(si.File.SafeFileHandle, _ioBuffer, (long)SwapOffset(entry) * PhysMem.PageSize);
            events.Stats.Pswpout++;
            events.Stats.Pgpgout += PhysMem.PageSize >> 10;
        }
    }

    /// <summary>swap_readpage: the slot's bytes into the page.</summary>
    public void SwapReadPage(ulong entry, uint pfn)
    {
        lock (Lock)
        {
            var si = Info(entry);
            int n = RandomAccess.Read(si.File.SafeFileHandle, _ioBuffer, (long)SwapOffset(entry) * PhysMem.PageSize);
            if (n != PhysMem.PageSize)
            {
                throw new IOException($"swap read of slot {SwapOffset(entry)} of {si.Path} returned {n} bytes");
            }
            highmem.MemcpyToPage(pfn, 0, _ioBuffer);
            events.Stats.Pswpin++;
            Interlocked.Add(ref events.Stats.Pgpgin, PhysMem.PageSize >> 10);
        }
    }

    /// <summary>/proc/swaps (swap_show).</summary>
    public string ProcSwaps()
    {
        var sb = new StringBuilder("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n");
        lock (Lock)
        {
            foreach (var si in _swaps)
            {
                if (si is null)
                {
                    continue;
                }
                string name = EscapePath(si.Path);
                long bytes = si.Pages << (PhysMem.PageShift - 10);
                long inuse = si.InusePages << (PhysMem.PageShift - 10);
                sb.Append(name).Append(' ', name.Length < 40 ? 40 - name.Length : 1).Append("file\t")
                    .Append('\t').Append(bytes).Append('\t').Append(bytes < 10000000 ? "\t" : "")
                    .Append(inuse).Append('\t').Append(inuse < 10000000 ? "\t" : "").Append(si.Prio).Append('\n');
            }
        }
        return sb.ToString();
    }

    /// <summary>seq_file_path's escaping of " \t\n\\" as octal.</summary>
    private static string EscapePath(string path)
    {
        var sb = new StringBuilder();
        foreach (char c in path)
        {
            if (c is ' ' or '\t' or '\n' or '\\')
            {
                sb.Append('\\').Append(Convert.ToString(c, 8).PadLeft(3, '0'));
            }
            else
            {
                sb.Append(c);
            }
        }
        return sb.ToString();
    }

    /// <summary>A migrated swap-cache page: the cache entry points at its new frame.</summary>
    public void MigrateSwapCache(ulong entry, uint to)
    {
        lock (Lock)
        {
            _swapCache[entry] = to;
        }
    }

    /// <summary>Closes every swap file; the areas stay as they are (the machine is going away).</summary>
    public void Dispose()
    {
        lock (Lock)
        {
            _disposed = true;
            foreach (var s in _swaps)
            {
                s?.Dispose();
            }
        }
    }
}
