// per_cpu_ptr, this_cpu_ptr and the this_cpu operations (include/linux/percpu-defs.h,
// asm-generic/percpu.h), and the typed forms of alloc_percpu and DEFINE_PER_CPU. A CPU's
// copy lies cpu × unit_size past CPU 0's in every chunk, so an address is one multiply-add.
// this_cpu arithmetic is atomic on the copy it touches (Interlocked for 4 and 8 bytes, a
// CAS loop for 1 and 2), because two threads may hold one CPU id. No lock.
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Kmem.Percpu;

internal static class PercpuAccess
{
    /// <summary>per_cpu_ptr: the address of <paramref name="cpu"/>'s copy.</summary>
    /// <exception cref="ArgumentException">The pointer is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The CPU is not 0 .. <paramref name="nrCpus"/> - 1.</exception>
    public static nint PerCpuPtr(PercpuPtr p, int cpu, int nrCpus, nint unitStride)
    {
        if (p.IsNull)
        {
            ThrowNullPercpu();
        }
        if ((uint)cpu >= (uint)nrCpus)
        {
            ThrowNoCpu(cpu, nrCpus);
        }
        return p.Unit0 + cpu * unitStride;
    }

    /// <summary>this_cpu_ptr: the address of the copy of <paramref name="cpu"/>, the calling one.</summary>
    /// <exception cref="ArgumentException">The pointer is null.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static nint ThisCpu<T>(PercpuPtr<T> p, int cpu, nint unitStride) where T : unmanaged
    {
        if (p.IsNull)
        {
            ThrowNullPercpu();
        }
        return p.Unit0 + cpu * unitStride;
    }

    /// <summary>alloc_percpu(type) and alloc_percpu_gfp: one zeroed <typeparamref name="T"/> per CPU, aligned as the type.</summary>
    public static unsafe PercpuPtr<T> Alloc<T>(PercpuAllocator allocator, Gfp gfp, string caller) where T : unmanaged =>
        new(allocator.Alloc((nuint)sizeof(T), AlignOf<T>(), false, gfp, caller));

    /// <summary>DEFINE_PER_CPU: a zeroed <typeparamref name="T"/> per CPU in the first chunk's static area.</summary>
    /// <exception cref="InvalidOperationException">The static area is full.</exception>
    public static unsafe PercpuVar<T> DefineStatic<T>(PercpuAllocator allocator, string name) where T : unmanaged =>
        new(name, new PercpuPtr<T>(allocator.DefineStatic(sizeof(T), (int)AlignOf<T>(), name)));

    /// <summary>this_cpu_read.</summary>
    public static unsafe T Read<T>(nint address) where T : unmanaged => Unsafe.ReadUnaligned<T>((void*)address);

    /// <summary>this_cpu_write.</summary>
    public static unsafe void Write<T>(nint address, T value) where T : unmanaged => Unsafe.WriteUnaligned((void*)address, value);

    /// <summary>this_cpu_add_return: adds atomically and returns the new value.</summary>
    /// <exception cref="NotSupportedException">The type is wider than 8 bytes.</exception>
    public static unsafe T AtomicAdd<T>(nint address, T value) where T : unmanaged, IBinaryInteger<T>
    {
        if (sizeof(T) == 4)
        {
            return Unsafe.BitCast<int, T>(Interlocked.Add(ref *(int*)address, Unsafe.BitCast<T, int>(value)));
        }
        if (sizeof(T) == 8)
        {
            return Unsafe.BitCast<long, T>(Interlocked.Add(ref *(long*)address, Unsafe.BitCast<T, long>(value)));
        }
        if (sizeof(T) == 2)
        {
            ref ushort slot = ref *(ushort*)address;
            while (true)
            {
                ushort old = Volatile.Read(ref slot);
                T sum = Unsafe.BitCast<ushort, T>(old) + value;
                if (Interlocked.CompareExchange(ref slot, Unsafe.BitCast<T, ushort>(sum), old) == old)
                {
                    return sum;
                }
            }
        }
        if (sizeof(T) == 1)
        {
            ref byte slot = ref *(byte*)address;
            while (true)
            {
                byte old = Volatile.Read(ref slot);
                T sum = Unsafe.BitCast<byte, T>(old) + value;
                if (Interlocked.CompareExchange(ref slot, Unsafe.BitCast<T, byte>(sum), old) == old)
                {
                    return sum;
                }
            }
        }
        throw new NotSupportedException($"this_cpu arithmetic on {typeof(T).Name} ({sizeof(T)} bytes): at most 8 bytes");
    }

    /// <summary>__alignof__ for an unmanaged type: the largest power of two dividing its size, at most 8.</summary>
    private static unsafe nuint AlignOf<T>() where T : unmanaged
    {
        int size = sizeof(T);
        return (nuint)Math.Min(8, size & -size);
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void ThrowNullPercpu() => throw new ArgumentException("NULL per-CPU pointer", "p");

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void ThrowNoCpu(int cpu, int nrCpus) =>
        throw new ArgumentOutOfRangeException(nameof(cpu), cpu, $"CPU {cpu} does not exist: the machine has CPUs 0..{nrCpus - 1}");
}
