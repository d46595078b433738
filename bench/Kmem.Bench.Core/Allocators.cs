// The allocators as the workloads see them: one small struct per kind, so that a
// workload's loop, generic over the struct, is compiled once per allocator with
// the calls inlined (no virtual call between the loop and the allocator). A
// handle is a pointer (nint) or, for the managed contenders, the array itself.
// Stateless apart from what each struct holds; thread safety is the allocator's.
using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kmem.Bench;

/// <summary>An allocator under test. <see cref="Alloc"/> never returns a failed allocation: it throws.</summary>
internal interface IAllocator<THandle>
{
    /// <summary>An object of at least <paramref name="size"/> bytes.</summary>
    THandle Alloc(int size);

    /// <summary>Frees an object <see cref="Alloc"/> returned for <paramref name="size"/> bytes.</summary>
    void Free(THandle handle, int size);

    /// <summary>Writes the object's first byte, as a program that uses what it allocates does.</summary>
    void Touch(THandle handle);

    /// <summary>Writes every one of the object's <paramref name="size"/> bytes (so the host has to back them).</summary>
    void Fill(THandle handle, int size);

    /// <summary>Increments each of the object's first <paramref name="size"/> bytes <paramref name="rounds"/> times
    /// (the cache-scratch workload's writes).</summary>
    void Scribble(THandle handle, int size, int rounds);
}

/// <summary>Raw-memory helpers shared by the pointer allocators.</summary>
internal static unsafe class RawMemory
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Touch(nint p) => *(byte*)p = 1;

    public static void Fill(nint p, int size) => new Span<byte>((void*)p, size).Fill(0x5a);

    /// <summary>Volatile increments, so that the compiler keeps every write (the point is the cache traffic).</summary>
    public static void Scribble(byte* p, int size, int rounds)
    {
        for (int r = 0; r < rounds; r++)
        {
            for (int i = 0; i < size; i++)
            {
                Volatile.Write(ref p[i], (byte)(Volatile.Read(ref p[i]) + 1));
            }
        }
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowFailed(int size) =>
        throw new InvalidOperationException($"an allocation of {size} bytes failed during the benchmark");
}

/// <summary>Kmem's kmalloc: <see cref="Machine.Kmalloc"/> and <see cref="Machine.Kfree"/>.</summary>
internal readonly struct KmallocAllocator(Machine machine) : IAllocator<nint>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Alloc(int size)
    {
        nint p = machine.Kmalloc((nuint)size, Gfp.Kernel);
        if (p == 0)
        {
            RawMemory.ThrowFailed(size);
        }
        return p;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(nint handle, int size) => machine.Kfree(handle);

    public void Touch(nint handle) => RawMemory.Touch(handle);
    public void Fill(nint handle, int size) => RawMemory.Fill(handle, size);
    public unsafe void Scribble(nint handle, int size, int rounds) => RawMemory.Scribble((byte*)handle, size, rounds);
}

/// <summary>
/// Kmem's kmem_cache API as a program with its own caches uses it: one cache per power-of-two size
/// class from 16 B to 4 KiB (created with no flags), the class chosen by the caller from the size.
/// </summary>
internal readonly struct KmemCacheAllocator : IAllocator<nint>
{
    /// <summary>The largest object a class holds.</summary>
    public const int MaxSize = 4096;
    private const int MinShift = 4;

    private readonly Machine _machine;
    private readonly KmemCache[] _caches;

    /// <summary>Creates the caches bench-16 … bench-4096 on <paramref name="machine"/>.</summary>
    public KmemCacheAllocator(Machine machine)
    {
        _machine = machine;
        _caches = new KmemCache[BitOperations.Log2(MaxSize) - MinShift + 1];
        for (int i = 0; i < _caches.Length; i++)
        {
            uint size = 1u << (i + MinShift);
            _caches[i] = machine.KmemCacheCreate($"bench-{size}", size, 0, SlabFlags.None, null)
                ?? throw new InvalidOperationException($"kmem_cache_create of bench-{size} failed");
        }
    }

    /// <summary>The class of <paramref name="size"/>: the index of the smallest power of two at least 16 that holds it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ClassOf(int size) => size <= 1 << MinShift ? 0 : BitOperations.Log2((uint)size - 1) + 1 - MinShift;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Alloc(int size)
    {
        nint p = _machine.KmemCacheAlloc(_caches[ClassOf(size)], Gfp.Kernel);
        if (p == 0)
        {
            RawMemory.ThrowFailed(size);
        }
        return p;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(nint handle, int size) => _machine.KmemCacheFree(_caches[ClassOf(size)], handle);

    public void Touch(nint handle) => RawMemory.Touch(handle);
    public void Fill(nint handle, int size) => RawMemory.Fill(handle, size);
    public unsafe void Scribble(nint handle, int size, int rounds) => RawMemory.Scribble((byte*)handle, size, rounds);
}

/// <summary>Kmem's page allocator: __get_free_pages of the smallest order that holds the size, then free_pages.</summary>
internal readonly struct PagesAllocator(Machine machine) : IAllocator<nint>
{
    /// <summary>The order of a block of at least <paramref name="size"/> bytes.</summary>
    public static int OrderOf(int size) => Machine.GetOrder((nuint)size);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Alloc(int size)
    {
        nint p = machine.GetFreePages(Gfp.Kernel, OrderOf(size));
        if (p == 0)
        {
            RawMemory.ThrowFailed(size);
        }
        return p;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(nint handle, int size) => machine.FreePages(handle, OrderOf(size));

    public void Touch(nint handle) => RawMemory.Touch(handle);
    public void Fill(nint handle, int size) => RawMemory.Fill(handle, size);
    public unsafe void Scribble(nint handle, int size, int rounds) => RawMemory.Scribble((byte*)handle, size, rounds);
}

/// <summary>Kmem's vmalloc: a virtually contiguous area over scattered frames, then vfree.</summary>
internal readonly struct VmallocAllocator(Machine machine) : IAllocator<nint>
{
    public nint Alloc(int size)
    {
        nint p = machine.Vmalloc((nuint)size);
        if (p == 0)
        {
            RawMemory.ThrowFailed(size);
        }
        return p;
    }

    public void Free(nint handle, int size) => machine.Vfree(handle);
    public void Touch(nint handle) => RawMemory.Touch(handle);
    public void Fill(nint handle, int size) => RawMemory.Fill(handle, size);
    public unsafe void Scribble(nint handle, int size, int rounds) => RawMemory.Scribble((byte*)handle, size, rounds);
}

/// <summary>glibc through .NET's own entry points: NativeMemory.Alloc and NativeMemory.Free.</summary>
internal readonly unsafe struct NativeMemoryAllocator : IAllocator<nint>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Alloc(int size) => (nint)NativeMemory.Alloc((nuint)size); // throws OutOfMemoryException itself

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(nint handle, int size) => NativeMemory.Free((void*)handle);

    public void Touch(nint handle) => RawMemory.Touch(handle);
    public void Fill(nint handle, int size) => RawMemory.Fill(handle, size);
    public void Scribble(nint handle, int size, int rounds) => RawMemory.Scribble((byte*)handle, size, rounds);
}

/// <summary>
/// A native malloc and free called through unmanaged function pointers with the GC transition suppressed:
/// the calls never call back into .NET, never throw and return quickly (a rare slow path, an mmap or a
/// contended lock, only delays a garbage collection that waits for this thread by as much).
/// </summary>
internal readonly unsafe struct FunctionPointerAllocator : IAllocator<nint>
{
    private readonly delegate* unmanaged[SuppressGCTransition]<nuint, void*> _malloc;
    private readonly delegate* unmanaged[SuppressGCTransition]<void*, void> _free;

    public FunctionPointerAllocator(nint malloc, nint free)
    {
        _malloc = (delegate* unmanaged[SuppressGCTransition]<nuint, void*>)malloc;
        _free = (delegate* unmanaged[SuppressGCTransition]<void*, void>)free;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Alloc(int size)
    {
        void* p = _malloc((nuint)size);
        if (p == null)
        {
            RawMemory.ThrowFailed(size);
        }
        return (nint)p;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(nint handle, int size) => _free((void*)handle);

    public void Touch(nint handle) => RawMemory.Touch(handle);
    public void Fill(nint handle, int size) => RawMemory.Fill(handle, size);
    public void Scribble(nint handle, int size, int rounds) => RawMemory.Scribble((byte*)handle, size, rounds);
}

/// <summary>
/// The floor: what C# itself allows for an alloc+free pair, a bare thread-local freelist per power-of-two class
/// (16 B to 4 KiB, the classes of <see cref="KmemCacheAllocator"/>): one [ThreadStatic] read, a pop or a push, no
/// checks, no bound, no statistics. Empty classes are refilled from 64 KiB blocks of native memory that are never
/// given back (a bench thread's working set stays within a few blocks per class). Every other contender pays at
/// least this; the distance to it is what the allocator itself costs.
/// </summary>
internal readonly unsafe struct FloorAllocator : IAllocator<nint>
{
    /// <summary>The largest object a class holds.</summary>
    public const int MaxSize = KmemCacheAllocator.MaxSize;
    private const int BlockBytes = 64 * 1024;

    /// <summary>The calling thread's freelist heads, one per class; a free object's first word links the next.</summary>
    [ThreadStatic]
    private static nint[]? t_heads;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Alloc(int size)
    {
        int c = KmemCacheAllocator.ClassOf(size);
        var heads = t_heads;
        if (heads is not null)
        {
            nint p = heads[c];
            if (p != 0)
            {
                heads[c] = *(nint*)p;
                return p;
            }
        }
        return Refill(c);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(nint handle, int size)
    {
        // A thread that frees before its first allocation (cache-scratch's workers free the object the main
        // thread gave them) gets its heads here.
        var heads = t_heads ??= new nint[KmemCacheAllocator.ClassOf(MaxSize) + 1];
        int c = KmemCacheAllocator.ClassOf(size);
        *(nint*)handle = heads[c];
        heads[c] = handle;
    }

    /// <summary>Chains a new block's objects of class <paramref name="c"/> and returns the first.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static nint Refill(int c)
    {
        var heads = t_heads ??= new nint[KmemCacheAllocator.ClassOf(MaxSize) + 1];
        int size = 16 << c;
        nint block = (nint)NativeMemory.AlignedAlloc(BlockBytes, 64);
        int count = BlockBytes / size;
        for (int i = 1; i < count - 1; i++)
        {
            *(nint*)(block + (i * size)) = block + ((i + 1) * size);
        }
        *(nint*)(block + ((count - 1) * size)) = heads[c];
        heads[c] = count > 1 ? block + size : heads[c];
        return block;
    }

    public void Touch(nint handle) => RawMemory.Touch(handle);
    public void Fill(nint handle, int size) => RawMemory.Fill(handle, size);
    public void Scribble(nint handle, int size, int rounds) => RawMemory.Scribble((byte*)handle, size, rounds);
}

/// <summary>ArrayPool&lt;byte&gt;.Shared: Rent and Return (an array of at least the size, often larger).</summary>
internal readonly struct ArrayPoolAllocator : IAllocator<byte[]>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte[] Alloc(int size) => ArrayPool<byte>.Shared.Rent(size);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(byte[] handle, int size) => ArrayPool<byte>.Shared.Return(handle);

    public void Touch(byte[] handle) => handle[0] = 1;
    public void Fill(byte[] handle, int size) => handle.AsSpan(0, size).Fill(0x5a);

    public unsafe void Scribble(byte[] handle, int size, int rounds)
    {
        fixed (byte* p = handle)
        {
            RawMemory.Scribble(p, size, rounds);
        }
    }
}

/// <summary>The garbage collector: <c>new byte[size]</c>; "free" drops the reference.</summary>
internal readonly struct GcAllocator : IAllocator<byte[]>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte[] Alloc(int size) => new byte[size];

    /// <summary>Nothing to free; KeepAlive stops the compiler from dropping an array nobody reads.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(byte[] handle, int size) => GC.KeepAlive(handle);

    public void Touch(byte[] handle) => handle[0] = 1;
    public void Fill(byte[] handle, int size) => handle.AsSpan(0, size).Fill(0x5a);

    public unsafe void Scribble(byte[] handle, int size, int rounds)
    {
        fixed (byte* p = handle)
        {
            RawMemory.Scribble(p, size, rounds);
        }
    }
}
