// The page cache over real files (mm/filemap.c, mm/page-writeback.c,
// mm/truncate.c, fs/drop_caches.c): a file's pages by index, allocated with the
// mapping's gfp (GFP_HIGHUSER_MOVABLE), filled from disk on first use, marked
// dirty by writes, written back by Fsync and by reclaim, dropped by reclaim
// when clean and by DropCaches. mark_page_accessed promotes a page that is
// used twice while inactive.
// Locking: MmState.Lock; page allocation with it dropped.
using Kmem.Physical;

namespace Kmem.Reclaim;

internal sealed partial class MmState
{
    private readonly List<CachedFile> _files = [];

    public CachedFile OpenFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = System.IO.Path.GetFullPath(path);
        var fs = new FileStream(full, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite, 1, FileOptions.RandomAccess);
        StartKcompactd();
        lock (Lock)
        {
            if (IsDisposed)
            {
                fs.Dispose();
                throw new ObjectDisposedException(nameof(Machine));
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
                _m.MemcpyFromPage(destination.Slice(done, chunk), new Page(pfn), inPage);
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
                _m.MemcpyToPage(new Page(pfn), inPage, source.Slice(done, chunk));
                ref PageFrame fr = ref _mem.Frame(pfn);
                if ((fr.Flags & PageFlags.Dirty) == 0)
                {
                    fr.Flags |= PageFlags.Dirty;
                    NrDirty++;
                    Stats.NrDirtied++;
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
                        SetOwner(pfn, f, (ulong)index);
                        _mem.Frame(pfn).Flags |= PageFlags.Uptodate;
                        LruAdd(pfn, anon: false);
                        continue;
                    }
                    Lock.Exit();
                    holding = false;
                    spare = _pa.AllocPages(Gfp.HighUserMovable, 0, -1);
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
                _pa.FreePages(spare, 0);
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
            Stats.Pgpgin += PhysMem.PageSize >> 10;
        }
        _m.MemcpyToPage(new Page(pfn), 0, _ioBuffer);
    }

    /// <summary>mark_page_accessed: inactive unreferenced → referenced; inactive referenced → active.</summary>
    private void MarkPageAccessed(uint pfn)
    {
        ref PageFrame fr = ref _mem.Frame(pfn);
        if ((fr.Flags & (PageFlags.Active | PageFlags.Referenced)) == PageFlags.Referenced && (fr.Flags & PageFlags.Lru) != 0)
        {
            fr.Flags &= ~PageFlags.Referenced;
            MoveToList(pfn, LruList.ActiveFile);
            Stats.Pgactivate++;
        }
        else
        {
            fr.Flags |= PageFlags.Referenced;
        }
    }

    /// <summary>writepage: the page's bytes within i_size back to the file; the page is clean after.</summary>
    private void WriteBackCachePage(CachedFile f, long index, uint pfn)
    {
        ref PageFrame fr = ref _mem.Frame(pfn);
        int bytes = (int)Math.Clamp(f.Length - (index << PhysMem.PageShift), 0, PhysMem.PageSize);
        fr.Flags |= PageFlags.Writeback;
        NrWriteback++;
        _m.MemcpyFromPage(_ioBuffer, new Page(pfn), 0);
        RandomAccess.Write(f.Stream.SafeFileHandle, _ioBuffer.AsSpan(0, bytes), index << PhysMem.PageShift);
        NrWriteback--;
        fr.Flags &= ~(PageFlags.Writeback | PageFlags.Dirty);
        NrDirty--;
        Stats.NrWritten++;
        Stats.Pgpgout += PhysMem.PageSize >> 10;
    }

    public void Fsync(CachedFile f)
    {
        lock (Lock)
        {
            ObjectDisposedException.ThrowIf(f.Closed, f);
            foreach (var (index, pfn) in f.Pages.OrderBy(kv => kv.Key))
            {
                if ((_mem.Frame(pfn).Flags & PageFlags.Dirty) != 0)
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
    }

    /// <summary>__filemap_remove_folio + free: a page leaves the cache (it must be clean and on its list).</summary>
    private void RemoveCachePage(CachedFile f, uint pfn)
    {
        f.Pages.Remove((long)IndexOf(pfn));
        f.CachedPages--;
        NrFilePages--;
        LruDel(pfn);
        FreeUserPage(pfn);
    }

    /// <summary>drop_caches: 1 drops clean page-cache pages, 2 shrinks the slab caches, 3 both.</summary>
    public void DropCaches(int mode)
    {
        if (mode is < 1 or > 3)
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "drop_caches takes 1 (page cache), 2 (slab) or 3 (both)");
        }
        if ((mode & 1) != 0)
        {
            lock (Lock)
            {
                foreach (var f in _files)
                {
                    foreach (var pfn in f.Pages.Values.ToArray())
                    {
                        if ((_mem.Frame(pfn).Flags & (PageFlags.Dirty | PageFlags.Writeback)) == 0)
                        {
                            RemoveCachePage(f, pfn);
                        }
                    }
                }
                Stats.DropPagecache++;
            }
        }
        if ((mode & 2) != 0)
        {
            DropSlab();
        }
    }

    /// <summary>The file half of shrink_folio_list: dirty pages are written back first (only with __GFP_FS),
    /// then the page leaves the cache.</summary>
    private PageRef ShrinkFilePage(uint pfn, bool referencedPage, ref ScanControl sc)
    {
        var f = (CachedFile)OwnerOf(pfn)!;
        long index = (long)IndexOf(pfn);
        ref PageFrame fr = ref _mem.Frame(pfn);
        if ((fr.Flags & PageFlags.Dirty) != 0)
        {
            // PAGEREF_RECLAIM_CLEAN for a referenced page; GFP_NOFS never writes back.
            if (referencedPage || (sc.Gfp & Gfp.Fs) == 0)
            {
                return PageRef.Keep;
            }
            WriteBackCachePage(f, index, pfn);
            Stats.NrVmscanWrite++;
        }
        f.Pages.Remove(index);
        f.CachedPages--;
        NrFilePages--;
        LruDelIsolated(pfn);
        FreeUserPage(pfn);
        return PageRef.Reclaim;
    }
}
