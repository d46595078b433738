// struct file with its address_space, as a public handle: an open real file
// whose reads and writes go through the page cache (Filemap.cs does the
// work). Pages is the cache's index → pfn map; all fields are guarded by
// Filemap.Lock (LockOrder.cs).
using Kmem.Physical;
using Kmem.Reclaim;

namespace Kmem;

/// <summary>
/// An open file read and written through the machine's page cache (<see cref="Machine.OpenFile"/>): reads fill
/// the cache from the real file, writes dirty cached pages, <see cref="Fsync"/> or reclaim write them back.
/// </summary>
/// <remarks>Every member may be called from any thread. Dispose (close) writes dirty pages back and drops the
/// file's pages from the cache.</remarks>
public sealed class CachedFile : IDisposable
{
    private readonly Filemap _filemap;
    private readonly MachineLifetime _life;

    internal CachedFile(Filemap filemap, string path, FileStream stream)
    {
        _filemap = filemap;
        _life = filemap.Lifetime;
        Path = path;
        Stream = stream;
        Length = stream.Length;
    }

    /// <summary>The file's full path.</summary>
    public string Path { get; }

    /// <summary>i_size: the file's length, including writes not yet written back.</summary>
    public long Length { get; internal set; }

    /// <summary>Pages of this file in the cache (nrpages).</summary>
    public long CachedPages { get; internal set; }

    /// <summary>Reads up to <paramref name="destination"/>.Length bytes at <paramref name="offset"/> through the cache.</summary>
    /// <returns>The bytes read (fewer at the end of the file, 0 beyond it).</returns>
    /// <exception cref="InsufficientMemoryException">No page could be allocated for the cache (ENOMEM).</exception>
    /// <exception cref="ObjectDisposedException">The file was closed.</exception>
    public int Read(long offset, Span<byte> destination) { using var _ = _life.Enter(); return _filemap.FileRead(this, offset, destination); }

    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/> into the cache, dirtying its pages and
    /// growing the file if needed. The bytes reach the disk on <see cref="Fsync"/> or when reclaim writes the
    /// pages back.</summary>
    /// <exception cref="InsufficientMemoryException">No page could be allocated for the cache (ENOMEM).</exception>
    /// <exception cref="ObjectDisposedException">The file was closed.</exception>
    public void Write(long offset, ReadOnlySpan<byte> source) { using var _ = _life.Enter(); _filemap.FileWrite(this, offset, source); }

    /// <summary>fsync: writes every dirty page back and flushes the file to the device.</summary>
    public void Fsync() { using var _ = _life.Enter(); _filemap.Fsync(this); }

    /// <summary>Closes the file: writes it back and drops its pages from the cache.</summary>
    public void Dispose()
    {
        // The machine's Dispose closed every file already.
        if (_life.IsDisposed)
        {
            return;
        }
        using var _ = _life.Enter();
        _filemap.CloseFile(this);
    }

    /// <inheritdoc/>
    public override string ToString() => Path;

    internal readonly FileStream Stream;
    internal readonly Dictionary<long, uint> Pages = [];
    internal bool Closed;

    internal void DisposeHandle()
    {
        Closed = true;
        Stream.Dispose();
    }
}
