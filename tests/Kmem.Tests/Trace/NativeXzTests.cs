// liblzma's decoder against the managed one: the same bytes for a real capture and for concatenated
// streams, and liblzma's own error names for corrupt and truncated data.
using System.Runtime.InteropServices;
using Kmem.Trace;
using SharpCompress.Compressors.Xz;

namespace Kmem.Tests.Trace;

public class NativeXzTests
{
    /// <summary>lzma_easy_buffer_encode at preset 1 with a CRC64 check: an .xz stream of <paramref name="data"/>.</summary>
    private static unsafe byte[] Xz(byte[] data)
    {
        var output = new byte[data.Length + 4096];
        nuint written = 0;
        fixed (byte* input = data, outp = output)
        {
            Assert.Equal(0, lzma_easy_buffer_encode(1, 4, 0, input, (nuint)data.Length, outp, &written, (nuint)output.Length));
        }
        return output[..(int)written];
    }

    [DllImport("liblzma.so.5")]
    private static extern unsafe int lzma_easy_buffer_encode(uint preset, int check, nint allocator, byte* input, nuint inSize,
        byte* output, nuint* outPos, nuint outSize);

    private static byte[] ReadAll(Stream s)
    {
        var all = new MemoryStream();
        var buffer = new byte[7919]; // an odd size: output boundaries fall anywhere
        int n;
        while ((n = s.Read(buffer, 0, buffer.Length)) > 0)
        {
            all.Write(buffer, 0, n);
        }
        return all.ToArray();
    }

    [Fact]
    public void LiblzmaLoadsOnLinux() => Assert.True(NativeXzStream.IsAvailable, "liblzma.so.5 did not load");

    [Fact]
    public void BothDecodersGiveTheSameBytesOfTheI386Capture()
    {
        byte[] xz = File.ReadAllBytes(TraceData.RealTrace(TraceData.I386));
        using var native = new NativeXzStream(new MemoryStream(xz));
        using var managed = new XZStream(new MemoryStream(xz));
        byte[] a = ReadAll(native);
        byte[] b = ReadAll(managed);
        Assert.True(a.Length > 10_000_000, $"only {a.Length} bytes decoded");
        Assert.True(a.AsSpan().SequenceEqual(b), "the decoders disagree");
    }

    [Fact]
    public void ConcatenatedStreamsDecodeAsOne()
    {
        byte[] first = "first stream\n"u8.ToArray();
        byte[] second = "second stream\n"u8.ToArray();
        using var s = new NativeXzStream(new MemoryStream([.. Xz(first), .. Xz(second)]));
        Assert.Equal("first stream\nsecond stream\n", System.Text.Encoding.ASCII.GetString(ReadAll(s)));
    }

    [Fact]
    public void TruncatedDataIsNamedAsSuch()
    {
        byte[] xz = Xz(new byte[200_000].Select((_, i) => (byte)(i * 7 % 251)).ToArray());
        using var s = new NativeXzStream(new MemoryStream(xz[..(xz.Length / 2)]));
        var ex = Assert.Throws<InvalidDataException>(() => ReadAll(s));
        Assert.Contains("LZMA_BUF_ERROR", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CorruptDataIsNamedAsSuch()
    {
        byte[] xz = Xz(new byte[200_000].Select((_, i) => (byte)(i * 7 % 251)).ToArray());
        xz[xz.Length / 2] ^= 0x55;
        using var s = new NativeXzStream(new MemoryStream(xz));
        var ex = Assert.Throws<InvalidDataException>(() => ReadAll(s));
        Assert.Contains("LZMA_DATA_ERROR", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReadAfterDisposeThrows()
    {
        var s = new NativeXzStream(new MemoryStream(Xz("x"u8.ToArray())));
        s.Dispose();
        Assert.Throws<ObjectDisposedException>(() => s.Read(new byte[4], 0, 4));
    }
}
