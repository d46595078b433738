// The compressed side of a trace: sniffing the format by its magic bytes, and the
// read-only stream that feeds a decoder the bytes already sniffed, then the rest, while
// keeping the total and the last 8 bytes, which hold a gzip member's trailer (CRC32,
// ISIZE). The gzip decoder ends quietly on a truncated file; the trailer is what tells.
// Not thread-safe; one reader owns one source.
namespace Kmem.Trace;

internal static class TraceSniff
{
    public static ReadOnlySpan<byte> GzipMagic => [0x1f, 0x8b];

    public static ReadOnlySpan<byte> XzMagic => [0xfd, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0x00];

    private static ReadOnlySpan<byte> ZstdMagic => [0x28, 0xb5, 0x2f, 0xfd];

    private static ReadOnlySpan<byte> Lz4Magic => [0x04, 0x22, 0x4d, 0x18];

    /// <summary>Bytes needed to tell the formats apart.</summary>
    public const int HeadLength = 6;

    public static TraceCompression Detect(ReadOnlySpan<byte> head) =>
        head.StartsWith(XzMagic) ? TraceCompression.Xz
        : head.StartsWith(GzipMagic) ? TraceCompression.Gzip
        : TraceCompression.None;

    /// <summary>A name for a compression this reader does not decode, or null.</summary>
    public static string? Unsupported(ReadOnlySpan<byte> head) =>
        head.StartsWith(ZstdMagic) ? "zstd"
        : head.StartsWith("BZh"u8) ? "bzip2"
        : head.StartsWith(Lz4Magic) ? "lz4"
        : null;

    /// <summary>The compression a file name's extension announces.</summary>
    public static TraceCompression FromExtension(string name) =>
        name.EndsWith(".xz", StringComparison.OrdinalIgnoreCase) ? TraceCompression.Xz
        : name.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? TraceCompression.Gzip
        : TraceCompression.None;
}

internal sealed class TraceSource : Stream
{
    private readonly Stream _inner;
    private readonly byte[] _head;
    private int _headPos;
    private readonly byte[] _tail = new byte[8];

    public TraceSource(byte[] head, Stream inner)
    {
        _head = head;
        _inner = inner;
    }

    /// <summary>Bytes handed out so far.</summary>
    public long Total { get; private set; }

    /// <summary>Reads the rest of the input so that <see cref="Trailer"/> is the file's end.</summary>
    public void Drain()
    {
        var scratch = new byte[64 * 1024];
        while (Read(scratch, 0, scratch.Length) > 0)
        {
        }
    }

    /// <summary>ISIZE of the last gzip member (the last 4 bytes, little-endian), when at least 8 bytes were read.</summary>
    public uint Trailer => (uint)(_tail[4] | (_tail[5] << 8) | (_tail[6] << 16) | (_tail[7] << 24));

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => Total;
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n;
        if (_headPos < _head.Length)
        {
            n = Math.Min(buffer.Length, _head.Length - _headPos);
            _head.AsSpan(_headPos, n).CopyTo(buffer);
            _headPos += n;
        }
        else
        {
            n = _inner.Read(buffer);
        }
        Keep(buffer[..n]);
        Total += n;
        return n;
    }

    private void Keep(ReadOnlySpan<byte> chunk)
    {
        if (chunk.Length >= 8)
        {
            chunk[^8..].CopyTo(_tail);
            return;
        }
        // Shift the window left by the new bytes' count, then append them.
        _tail.AsSpan(chunk.Length).CopyTo(_tail);
        chunk.CopyTo(_tail.AsSpan(8 - chunk.Length));
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
