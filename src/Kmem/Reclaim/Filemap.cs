// The page cache over real files (mm/filemap.c, mm/page-writeback.c,
// mm/truncate.c, fs/drop_caches.c): a file's pages by index, allocated with the
// mapping's gfp (GFP_HIGHUSER_MOVABLE), filled from disk on first use, marked
// dirty by writes, written back by Fsync and by reclaim, dropped by reclaim
// when clean and by drop_caches. mark_page_accessed promotes a page that is
// used twice while inactive.
// Invariants (Validate): each file's nrpages equals the pages its map holds.
// Locking: Lock is i_pages (second of the four owner locks, LockOrder.cs): the
// file list, every file's index → page map, i_size, NR_FILE_PAGES, NR_FILE_DIRTY
// and a file page's flags; page allocation with it dropped.
using Kmem.Highmem;
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Reclaim;

/// <summary>The page cache of one machine.</summary>
internal sealed class Filemap(PhysMem mem, PageAllocator pa, Lruvecs lru, HighmemMaps highmem, VmEvents events, Dcache dcache) : IDisposable
{
    private readonly byte[] _ioBuffer = new byte[PhysMem.PageSize];

    /// <summary>The machine's lifetime, which the files' public calls enter.</summary>
    public MachineLifetime Lifetime => mem.Lifetime;
    private bool _disposed;

    /// <summary>i_pages (see LockOrder.cs).</summary>
    public Lock Lock { get; } = new();

    /// <summary>NR_FILE_PAGES minus the swap cache: page-cache pages.</summary>
    public long NrFilePages;

    /// <summary>NR_FILE_DIRTY.</summary>
    public long NrDirty;

    private readonly List<CachedFile> _files = [];

    public CachedFile OpenFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = System.IO.Path.GetFullPath(path);
        var fs = new FileStream(full, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite, 1, FileOptions.RandomAccess);
        // path_openat: the dentry (and its inode) first, with no lock held, since the slab objects may need reclaim.
        if (!dcache.Dget(full))
        {
            fs.Dispose();
            throw new InsufficientMemoryException($"open {full}: no memory for its dentry and inode (ENOMEM)");
        }
        lock (Lock)
        {
            if (_disposed)
            {
                fs.Dispose();
                dcache.Dput(full);
                throw new ObjectDisposedException("Machine");
            }
            var f = new CachedFile(this, full, fs);
            _files.Add(f);
            return f;
        }
    }

    public int FileRead(CachedFile f, long offset, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        long length;
        lock (Lock)
        {
            ObjectDisposedException.ThrowIf(f.Closed, f);
            length = f.Length;
        }
        int total = (int)Math.Clamp(length - offset, 0, destination.Length);
        int done = 0;
        while (done < total)
        {
            long pos = offset + done;
            int inPage = (int)(pos & (PhysMem.PageSize - 1));
            int chunk = Math.Min(total - done, PhysMem.PageSize - inPage);
            uint pfn = GetCachePage(f, pos >> PhysMem.PageShift);
            try
            {
                highmem.MemcpyFromPage(destination.Slice(done, chunk), pfn, inPage);
            }
            finally
            {
                Lock.Exit();
            }
            done += chunk;
        }
        return total;
    }

    public void FileWrite(CachedFile f, long offset, ReadOnlySpan<byte> source)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        int done = 0;
        while (done < source.Length)
        {
            long pos = offset + done;
            int inPage = (int)(pos & (PhysMem.PageSize - 1));
            int chunk = Math.Min(source.Length - done, PhysMem.PageSize - inPage);
            uint pfn = GetCachePage(f, pos >> PhysMem.PageShift);
            try
            {
                highmem.MemcpyToPage(pfn, inPage, source.Slice(done, chunk));
                ref PageFrame fr = ref mem.Frame(pfn);
                if ((fr.Flags & PageFlags.Dirty) == 0)
                {
                    fr.Flags |= PageFlags.Dirty;
                    NrDirty++;
                    events.Stats.NrDirtied++;
                }
                f.Length = Math.Max(f.Length, pos + chunk);
            }
            finally
            {
                Lock.Exit();
            }
            done += chunk;
        }
    }

    /// <summary>filemap_get_page: the cached page at <paramref name="index"/>, read in on a miss; returned
    /// with Lock held (the caller copies, then exits the lock).</summary>
    private uint GetCachePage(CachedFile f, long index)
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
                    ObjectDisposedException.ThrowIf(f.Closed, f);
                    if (f.Pages.TryGetValue(index, out uint pfn))
                    {
                        MarkPageAccessed(pfn);
                        holding = false;
                        return pfn;
                    }
                    if (!spare.IsNull)
                    {
                        pfn = spare.RawPfn;
                        spare = Page.Null;
                        ReadCachePage(f, index, pfn);
                        f.Pages.Add(index, pfn);
                        f.CachedPages++;
                        NrFilePages++;
                        lru.SetOwner(pfn, f, (ulong)index);
                        mem.Frame(pfn).Flags |= PageFlags.Uptodate;
                        lru.LruAdd(pfn, anon: false);
                        continue;
                    }
                    Lock.Exit();
                    holding = false;
                    spare = pa.AllocPages(Gfp.HighUserMovable, 0, -1);
                    if (spare.IsNull)
                    {
                        throw new InsufficientMemoryException($"{f.Path}: no page for the page cache at index {index} (ENOMEM)");
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
            if (!spare.IsNull)
            {
                pa.FreePages(spare, 0);
            }
        }
    }

    /// <summary>The file's bytes of one page from disk (zeros past the end), into the frame.</summary>
    private void ReadCachePage(CachedFile f, long index, uint pfn)
    {
        Array.Clear(_ioBuffer);
        long pos = index << PhysMem.PageShift;
        int n = 0;
        while (n < PhysMem.PageSize)
        {
            int r = RandomAccess.Read(f.Stream.SafeFileHandle, _ioBuffer.AsSpan(n), pos + n);
            if (r <= 0)
            {
                break;
            }
            n += r;
        }
        if (n > 0)
        {
            Interlocked.Add(ref events.Stats.Pgpgin, PhysMem.PageSize >> 10);
        }
        highmem.MemcpyToPage(pfn, 0, _ioBuffer);
    }

    /// <summary>mark_page_accessed: inactive unreferenced → referenced; inactive referenced → active.</summary>
    private void MarkPageAccessed(uint pfn)
    {
        ref PageFrame fr = ref mem.Frame(pfn);
        if ((fr.Flags & (PageFlags.Active | PageFlags.Referenced)) == PageFlags.Referenced && (fr.Flags & PageFlags.Lru) != 0)
        {
            fr.Flags &= ~PageFlags.Referenced;
            lru.MoveToList(pfn, LruList.ActiveFile);
            events.Stats.Pgactivate++;
        }
        else
        {
            fr.Flags |= PageFlags.Referenced;
        }
    }

    /// <summary>writepage: the page's bytes within i_size back to the file; the page is clean after.</summary>
    private void WriteBackCachePage(CachedFile f, long index, uint pfn)
    {
        ref PageFrame fr = ref mem.Frame(pfn);
        int bytes = (int)Math.Clamp(f.Length - (index << PhysMem.PageShift), 0, PhysMem.PageSize);
        fr.Flags |= PageFlags.Writeback;
        events.NrWriteback++;
        highmem.MemcpyFromPage(_ioBuffer, pfn, 0);
        RandomAccess.Write(f.Stream.SafeFileHandle, _ioBuffer.AsSpan(0, bytes), index << PhysMem.PageShift);
        events.NrWriteback--;
        fr.Flags &= ~(PageFlags.Writeback | PageFlags.Dirty);
        NrDirty--;
        events.Stats.NrWritten++;
        events.Stats.Pgpgout += PhysMem.PageSize >> 10;
    }

    public void Fsync(CachedFile f)
    {
        lock (Lock)
        {
            ObjectDisposedException.ThrowIf(f.Closed, f);
            foreach (var (index, pfn) in f.Pages.OrderBy(kv => kv.Key))
            {
                if ((mem.Frame(pfn).Flags & PageFlags.Dirty) != 0)
                {
                    WriteBackCachePage(f, index, pfn);
                }
            }
            if (f.Stream.Length < f.Length)
            {
                f.Stream.SetLength(f.Length);
            }
            f.Stream.Flush(flushToDisk: true);
        }
    }

    public void CloseFile(CachedFile f)
    {
        lock (Lock)
        {
            if (f.Closed)
            {
                return;
            }
            Fsync(f);
            foreach (var pfn in f.Pages.Values.ToArray())
            {
                RemoveCachePage(f, pfn);
            }
            f.DisposeHandle();
            _files.Remove(f);
        }
        // __fput: the dentry's reference goes last, outside i_pages (dput takes the dcache's own lock).
        dcache.Dput(f.Path);
    }

    /// <summary>__filemap_remove_folio + free: a page leaves the cache (it must be clean and on its list).</summary>
    private void RemoveCachePage(CachedFile f, uint pfn)
    {
        f.Pages.Remove((long)lru.IndexOf(pfn));
        f.CachedPages--;
        NrFilePages--;
        lru.LruDel(pfn);
        pa.FreePages(new Page(pfn), 0);
    }

    /// <summary>drop_caches 1: every clean page leaves the cache (dirty and writeback pages stay).</summary>
    public void DropPagecache()
    {
        lock (Lock)
        {
            foreach (var f in _files)
            {
                foreach (var pfn in f.Pages.Values.ToArray())
                {
                    if ((mem.Frame(pfn).Flags & (PageFlags.Dirty | PageFlags.Writeback)) == 0)
                    {
                        RemoveCachePage(f, pfn);
                    }
                }
            }
            events.Stats.DropPagecache++;
        }
    }

    /// <summary>The file half of shrink_folio_list: dirty pages are written back first (only with __GFP_FS),
    /// then the page leaves the cache.</summary>
    public PageRef ShrinkFilePage(uint pfn, bool referencedPage, Gfp gfp)
    {
        var f = (CachedFile)lru.OwnerOf(pfn)!;
        long index = (long)lru.IndexOf(pfn);
        ref PageFrame fr = ref mem.Frame(pfn);
        if ((fr.Flags & PageFlags.Dirty) != 0)
        {
            // PAGEREF_RECLAIM_CLEAN for a referenced page; GFP_NOFS never writes back.
            if (referencedPage || (gfp & Gfp.Fs) == 0)
            {
                return PageRef.Keep;
            }
            WriteBackCachePage(f, index, pfn);
            events.Stats.NrVmscanWrite++;
        }
        f.Pages.Remove(index);
        f.CachedPages--;
        NrFilePages--;
        lru.LruDelIsolated(pfn);
        pa.FreePages(new Page(pfn), 0);
        return PageRef.Reclaim;
    }

    /// <summary>A migrated cache page: the file's slot points at its new frame (under Lock).</summary>
    public static void Migrate(CachedFile f, long index, uint to) => f.Pages[index] = to;

    /// <summary>Checks each file's page count against its map.</summary>
    public void Validate()
    {
        lock (Lock)
        {
            foreach (var f in _files)
            {
                if (f.Pages.Count != f.CachedPages)
                {
                    throw new InvalidOperationException($"{f.Path}: {f.CachedPages} cached pages counted, {f.Pages.Count} held");
                }
            }
        }
    }

    /// <summary>Closes every file's handle; the cache is left as it is (the machine is going away).</summary>
    public void Dispose()
    {
        lock (Lock)
        {
            _disposed = true;
            foreach (var f in _files.ToArray())
            {
                f.DisposeHandle();
            }
        }
    }
}
