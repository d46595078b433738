// The host primitives physical memory is built from: memfd_create, ftruncate,
// mmap and munmap from libc. Every call checks its result and turns a failure
// into an exception that names the call and errno; nothing here holds state.
using System.Runtime.InteropServices;

namespace Kmem.Physical;

internal static partial class Libc
{
    public const int ProtNone = 0x0;
    public const int ProtRead = 0x1;
    public const int ProtWrite = 0x2;
    public const int MapShared = 0x01;
    public const int MapPrivate = 0x02;
    public const int MapFixed = 0x10;
    public const int MapAnonymous = 0x20;
    public const int MapNoReserve = 0x4000;
    public const uint MfdCloexec = 0x1;
    private static readonly nint s_mapFailed = -1;

    [LibraryImport("libc", EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MemfdCreateRaw(string name, uint flags);

    [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
    private static partial int FtruncateRaw(int fd, long length);

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint MmapRaw(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static partial int MunmapRaw(nint addr, nuint length);

    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    private static partial int FallocateRaw(int fd, int mode, long offset, long length);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int CloseRaw(int fd);

    public static int MemfdCreate(string name)
    {
        int fd = MemfdCreateRaw(name, MfdCloexec);
        return fd >= 0 ? fd : throw Fail("memfd_create");
    }

    public static void Ftruncate(int fd, long length)
    {
        if (FtruncateRaw(fd, length) != 0)
        {
            throw Fail($"ftruncate({length})");
        }
    }

    /// <summary>mmap; returns 0 instead of throwing when <paramref name="mayFail"/> (ENOMEM from the map-count limit).</summary>
    public static nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset, bool mayFail = false)
    {
        nint p = MmapRaw(addr, length, prot, flags, fd, offset);
        if (p == s_mapFailed)
        {
            return mayFail ? 0 : throw Fail($"mmap({length} bytes)");
        }
        return p;
    }

    public static void Munmap(nint addr, nuint length)
    {
        if (MunmapRaw(addr, length) != 0)
        {
            throw Fail("munmap");
        }
    }

    /// <summary>fallocate(PUNCH_HOLE|KEEP_SIZE): the range reads as zeros and its host memory is freed.</summary>
    public static void PunchHole(int fd, long offset, long length)
    {
        const int KeepSize = 0x01, PunchHoleMode = 0x02;
        if (FallocateRaw(fd, KeepSize | PunchHoleMode, offset, length) != 0)
        {
            throw Fail("fallocate(PUNCH_HOLE)");
        }
    }

    public static void Close(int fd) => CloseRaw(fd);

    private static InvalidOperationException Fail(string call) =>
        new($"{call} failed: errno {Marshal.GetLastPInvokeError()} ({Marshal.GetLastPInvokeErrorMessage()})");
}
