// The xz decoder of the system's liblzma (liblzma.so.5, part of every Linux distribution's base
// through xz-utils), driven through its lzma_stream API: it decodes several times faster than the
// managed decoder, which stays the fallback where the library cannot be loaded. Concatenated
// streams are decoded as one, as `xz -d` does. Errors are liblzma's, named: corrupt data, an
// unsupported check, a truncated file (no end of stream before the input ended).
// Not thread-safe; one reader owns one stream. The lzma_stream lives in native memory, so the
// pointers liblzma keeps into it stay valid; Dispose calls lzma_end and frees it.
using System.Runtime.InteropServices;

namespace Kmem.Trace;

internal sealed unsafe partial class NativeXzStream : Stream
{
    private const string Library = "liblzma.so.5";

    /// <summary>LZMA_CONCATENATED: decode every .xz stream of the input, one after another.</summary>
    private const uint Concatenated = 0x08;

    private const int LzmaRun = 0;
    private const int LzmaFinish = 3;
    private const int LzmaOk = 0;
    private const int LzmaStreamEnd = 1;

    /// <summary>sizeof(lzma_stream) on LP64 is 136 bytes; room to spare for a later layout.</summary>
    private const int StreamStructBytes = 256;

    private static readonly Lazy<bool> s_available = new(Probe);

    private readonly Stream _inner;
    private readonly byte[] _in = new byte[1 << 16];
    private readonly GCHandle _inPin;
    private LzmaStream* _strm;
    private bool _inputDone;
    private bool _finished;

    /// <summary>Whether liblzma can be loaded here.</summary>
    public static bool IsAvailable => s_available.Value;

    public NativeXzStream(Stream inner)
    {
        _inner = inner;
        _strm = (LzmaStream*)NativeMemory.AllocZeroed(StreamStructBytes);
        _inPin = GCHandle.Alloc(_in, GCHandleType.Pinned);
        int ret = lzma_stream_decoder(_strm, ulong.MaxValue, Concatenated);
        if (ret != LzmaOk)
        {
            Release();
            throw new InvalidDataException($"liblzma could not start an xz decoder ({Describe(ret)})");
        }
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        ObjectDisposedException.ThrowIf(_strm is null, this);
        if (_finished || buffer.IsEmpty)
        {
            return 0;
        }
        fixed (byte* outp = buffer)
        {
            _strm->NextOut = outp;
            _strm->AvailOut = (nuint)buffer.Length;
            while (_strm->AvailOut == (nuint)buffer.Length)
            {
                if (_strm->AvailIn == 0 && !_inputDone)
                {
                    int n = _inner.Read(_in, 0, _in.Length);
                    _inputDone = n == 0;
                    _strm->NextIn = (byte*)_inPin.AddrOfPinnedObject();
                    _strm->AvailIn = (nuint)n;
                }
                int ret = lzma_code(_strm, _inputDone ? LzmaFinish : LzmaRun);
                if (ret == LzmaStreamEnd)
                {
                    _finished = true;
                    break;
                }
                if (ret != LzmaOk)
                {
                    throw new InvalidDataException(Describe(ret));
                }
            }
            int produced = buffer.Length - (int)_strm->AvailOut;
            _strm->NextOut = null;
            _strm->AvailOut = 0;
            return produced;
        }
    }

    protected override void Dispose(bool disposing)
    {
        Release();
        if (disposing)
        {
            _inner.Dispose();
        }
        base.Dispose(disposing);
    }

    ~NativeXzStream() => Release();

    private void Release()
    {
        if (_strm is not null)
        {
            lzma_end(_strm);
            NativeMemory.Free(_strm);
            _strm = null;
        }
        if (_inPin.IsAllocated)
        {
            _inPin.Free();
        }
    }

    /// <summary>lzma_ret, as liblzma's documentation names its errors.</summary>
    private static string Describe(int ret) => ret switch
    {
        3 => "LZMA_UNSUPPORTED_CHECK: the integrity check type is not supported",
        5 => "LZMA_MEM_ERROR: cannot allocate memory",
        6 => "LZMA_MEMLIMIT_ERROR: the memory limit was reached",
        7 => "LZMA_FORMAT_ERROR: the input is not in the .xz format",
        8 => "LZMA_OPTIONS_ERROR: invalid or unsupported options",
        9 => "LZMA_DATA_ERROR: the data is corrupt",
        10 => "LZMA_BUF_ERROR: the file ended before the end of the xz stream",
        _ => $"lzma_ret {ret}",
    };

    private static bool Probe()
    {
        if (!OperatingSystem.IsLinux() || !NativeLibrary.TryLoad(Library, out nint handle))
        {
            return false;
        }
        bool found = NativeLibrary.TryGetExport(handle, "lzma_stream_decoder", out _)
            && NativeLibrary.TryGetExport(handle, "lzma_code", out _)
            && NativeLibrary.TryGetExport(handle, "lzma_end", out _);
        NativeLibrary.Free(handle);
        return found;
    }

    /// <summary>The leading fields of lzma_stream (the rest is reserved and left zero).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct LzmaStream
    {
        public byte* NextIn;
        public nuint AvailIn;
        public ulong TotalIn;
        public byte* NextOut;
        public nuint AvailOut;
        public ulong TotalOut;
    }

    [LibraryImport(Library)]
    private static partial int lzma_stream_decoder(LzmaStream* strm, ulong memlimit, uint flags);

    [LibraryImport(Library)]
    private static partial int lzma_code(LzmaStream* strm, int action);

    [LibraryImport(Library)]
    private static partial void lzma_end(LzmaStream* strm);

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
