// The per-CPU allocator's public face on Machine (include/linux/percpu.h, percpu-defs.h,
// mm/percpu.c): alloc_percpu and free_percpu, per_cpu_ptr and this_cpu_ptr, the this_cpu
// operations, DEFINE_PER_CPU and for_each_possible_cpu. Every member forwards to the Percpu
// layer (PercpuAllocator, PercpuAccess, PercpuCounter). The allocator is created on first use
// under _percpuLock; its first chunk lies inside what boot reserved (memblock, never in the
// buddy lists), so creating it late changes no free count. It owns its locking.
using System.Numerics;
using Kmem.Percpu;

namespace Kmem;

public sealed partial class Machine
{
    private readonly Lock _percpuLock = new();
    private PercpuAllocator? _percpu;
    private bool _percpuDisposed;
    private nint _percpuUnitStride;

    /// <summary>The per-CPU allocator, set up on first use.</summary>
    internal PercpuAllocator PercpuAllocator => CreateOnce(ref _percpu, _percpuLock, ref _percpuDisposed, static m =>
    {
        var a = new PercpuAllocator(m.PageAllocator, m.VmallocSpace, m._cpus, m.Log);
        m._percpuUnitStride = a.UnitSize;
        return a;
    });

    /// <summary>pcpu_nr_pages: pages holding per-CPU memory (meminfo's Percpu), 0 before the first use.</summary>
    internal long PercpuPages => Volatile.Read(ref _percpu)?.NrPages ?? 0;

    /// <summary>pcpu_unit_size: the bytes each CPU has in every chunk, and so the distance between two CPUs'
    /// copies of an object (1 MiB on X64 with 2 CPUs, as the real kernel computes it). Sets the allocator up.</summary>
    public int PercpuUnitSize { get { using var _ = _life.Enter(); return PercpuAllocator.UnitSize; } }

    /// <summary>for_each_possible_cpu: the CPUs 0 .. <see cref="NrCpus"/> - 1, for <c>foreach</c>.</summary>
    public PossibleCpus ForEachPossibleCpu() { using var _ = _life.Enter(); return new(NrCpus); }

    /// <summary>__alloc_percpu: <paramref name="size"/> zeroed bytes for every possible CPU, aligned to
    /// <paramref name="align"/>. May create a chunk (GFP_KERNEL).</summary>
    /// <param name="size">Bytes, 1 .. 32 KiB (PCPU_MIN_UNIT_SIZE); rounded up to 4.</param>
    /// <param name="align">A power of two up to the page size (at least 4 is used).</param>
    /// <returns>The pointer, or <see cref="PercpuPtr.Null"/> with the kernel's warning in the log when the size or
    /// alignment is illegal or memory runs out.</returns>
    /// <remarks>May sleep.</remarks>
    public PercpuPtr AllocPercpu(nuint size, nuint align) { using var _ = _life.Enter(); return new(PercpuAllocator.Alloc(size, align, false, Gfp.Kernel, "__alloc_percpu")); }

    /// <summary>__alloc_percpu_gfp: as <see cref="AllocPercpu(nuint, nuint)"/> with <paramref name="gfp"/>; without
    /// all of GFP_KERNEL the allocation is atomic and only uses the chunks that exist. __GFP_NOWARN silences the
    /// failure warning.</summary>
    /// <returns>The pointer, or <see cref="PercpuPtr.Null"/>.</returns>
    public PercpuPtr AllocPercpuGfp(nuint size, nuint align, Gfp gfp) { using var _ = _life.Enter(); return new(PercpuAllocator.Alloc(size, align, false, gfp, "__alloc_percpu_gfp")); }

    /// <summary>__alloc_reserved_percpu: from the first chunk's reserved area (8 KiB on X64, where module static
    /// per-CPU data goes); on presets without one, as <see cref="AllocPercpu(nuint, nuint)"/>.</summary>
    /// <returns>The pointer, or <see cref="PercpuPtr.Null"/> when the reserved area is full (logged).</returns>
    public PercpuPtr AllocReservedPercpu(nuint size, nuint align) { using var _ = _life.Enter(); return new(PercpuAllocator.Alloc(size, align, true, Gfp.Kernel, "__alloc_reserved_percpu")); }

    /// <summary>alloc_percpu(type): one zeroed <typeparamref name="T"/> per possible CPU, aligned as the type.</summary>
    /// <returns>The pointer, or the default (null) pointer.</returns>
    /// <remarks>May sleep.</remarks>
    public PercpuPtr<T> AllocPercpu<T>() where T : unmanaged { using var _ = _life.Enter(); return PercpuAccess.Alloc<T>(PercpuAllocator, Gfp.Kernel, "alloc_percpu"); }

    /// <summary>alloc_percpu_gfp(type, gfp).</summary>
    /// <returns>The pointer, or the default (null) pointer.</returns>
    public PercpuPtr<T> AllocPercpuGfp<T>(Gfp gfp) where T : unmanaged { using var _ = _life.Enter(); return PercpuAccess.Alloc<T>(PercpuAllocator, gfp, "alloc_percpu_gfp"); }

    /// <summary>free_percpu: frees every CPU's copy. <see cref="PercpuPtr.Null"/> is ignored. When this frees the
    /// last object of a chunk while another chunk is wholly free, the extra free chunk is destroyed.</summary>
    /// <exception cref="KernelBugException">The pointer is not the start of a live per-CPU allocation (double
    /// free, a pointer inside an area, a static variable); nothing changes (with <see cref="OnBug.Report"/> the
    /// report is logged instead).</exception>
    public void FreePercpu(PercpuPtr p)
    {
        using var _ = _life.Enter();
        if (!p.IsNull && PercpuAllocator.Free(p.Unit0) is { } problem)
        {
            Bug(new KernelBugException($"BUG: {problem}"));
        }
    }

    /// <summary>free_percpu of a typed pointer.</summary>
    public void FreePercpu<T>(PercpuPtr<T> p) where T : unmanaged { using var _ = _life.Enter(); FreePercpu(p.Untyped); }

    /// <summary>per_cpu_ptr: the address of <paramref name="cpu"/>'s copy.</summary>
    /// <exception cref="ArgumentException">The pointer is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The CPU does not exist.</exception>
    public nint PerCpuPtr(PercpuPtr p, int cpu) { using var _ = _life.Enter(); return PercpuAccess.PerCpuPtr(p, cpu, NrCpus, _percpuUnitStride); }

    /// <summary>per_cpu_ptr of a typed pointer.</summary>
    public nint PerCpuPtr<T>(PercpuPtr<T> p, int cpu) where T : unmanaged { using var _ = _life.Enter(); return PerCpuPtr(p.Untyped, cpu); }

    /// <summary>per_cpu(var, cpu): <paramref name="cpu"/>'s copy, by reference.</summary>
    /// <exception cref="ArgumentException">The pointer is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The CPU does not exist.</exception>
    public unsafe ref T PerCpu<T>(PercpuPtr<T> p, int cpu) where T : unmanaged { using var _ = _life.Enter(); return ref *(T*)PerCpuPtr(p.Untyped, cpu); }

    /// <summary>this_cpu_ptr: the address of the calling CPU's copy (<see cref="CurrentCpu"/>).</summary>
    /// <exception cref="ArgumentException">The pointer is null.</exception>
    public nint ThisCpuPtr(PercpuPtr p) { using var _ = _life.Enter(); return PerCpuPtr(p, CurrentCpu); }

    /// <summary>this_cpu_ptr of a typed pointer.</summary>
    public nint ThisCpuPtr<T>(PercpuPtr<T> p) where T : unmanaged { using var _ = _life.Enter(); return PerCpuPtr(p.Untyped, CurrentCpu); }

    /// <summary>this_cpu_read: the calling CPU's copy.</summary>
    public T ThisCpuRead<T>(PercpuPtr<T> p) where T : unmanaged { using var _ = _life.Enter(); return PercpuAccess.Read<T>(ThisCpu(p)); }

    /// <summary>this_cpu_write: sets the calling CPU's copy.</summary>
    public void ThisCpuWrite<T>(PercpuPtr<T> p, T value) where T : unmanaged { using var _ = _life.Enter(); PercpuAccess.Write(ThisCpu(p), value); }

    /// <summary>this_cpu_add: adds to the calling CPU's copy, atomically with respect to another thread holding
    /// the same CPU id.</summary>
    /// <exception cref="NotSupportedException">The type is wider than 8 bytes.</exception>
    public void ThisCpuAdd<T>(PercpuPtr<T> p, T value) where T : unmanaged, IBinaryInteger<T> { using var _ = _life.Enter(); PercpuAccess.AtomicAdd(ThisCpu(p), value); }

    /// <summary>this_cpu_sub.</summary>
    public void ThisCpuSub<T>(PercpuPtr<T> p, T value) where T : unmanaged, IBinaryInteger<T> { using var _ = _life.Enter(); PercpuAccess.AtomicAdd(ThisCpu(p), T.Zero - value); }

    /// <summary>this_cpu_inc.</summary>
    public void ThisCpuInc<T>(PercpuPtr<T> p) where T : unmanaged, IBinaryInteger<T> { using var _ = _life.Enter(); PercpuAccess.AtomicAdd(ThisCpu(p), T.One); }

    /// <summary>this_cpu_dec.</summary>
    public void ThisCpuDec<T>(PercpuPtr<T> p) where T : unmanaged, IBinaryInteger<T> { using var _ = _life.Enter(); PercpuAccess.AtomicAdd(ThisCpu(p), T.Zero - T.One); }

    /// <summary>this_cpu_add_return: adds and returns the calling CPU's new value.</summary>
    public T ThisCpuAddReturn<T>(PercpuPtr<T> p, T value) where T : unmanaged, IBinaryInteger<T> { using var _ = _life.Enter(); return PercpuAccess.AtomicAdd(ThisCpu(p), value); }

    /// <summary>per_cpu(var, cpu) of a static variable.</summary>
    public ref T PerCpu<T>(PercpuVar<T> v, int cpu) where T : unmanaged { using var _ = _life.Enter(); return ref PerCpu(VarPtr(v), cpu); }

    /// <summary>this_cpu_read of a static variable.</summary>
    public T ThisCpuRead<T>(PercpuVar<T> v) where T : unmanaged { using var _ = _life.Enter(); return ThisCpuRead(VarPtr(v)); }

    /// <summary>this_cpu_write of a static variable.</summary>
    public void ThisCpuWrite<T>(PercpuVar<T> v, T value) where T : unmanaged { using var _ = _life.Enter(); ThisCpuWrite(VarPtr(v), value); }

    /// <summary>this_cpu_add of a static variable.</summary>
    public void ThisCpuAdd<T>(PercpuVar<T> v, T value) where T : unmanaged, IBinaryInteger<T> { using var _ = _life.Enter(); ThisCpuAdd(VarPtr(v), value); }

    /// <summary>this_cpu_inc of a static variable.</summary>
    public void ThisCpuInc<T>(PercpuVar<T> v) where T : unmanaged, IBinaryInteger<T> { using var _ = _life.Enter(); ThisCpuInc(VarPtr(v)); }

    /// <summary>this_cpu_dec of a static variable.</summary>
    public void ThisCpuDec<T>(PercpuVar<T> v) where T : unmanaged, IBinaryInteger<T> { using var _ = _life.Enter(); ThisCpuDec(VarPtr(v)); }

    private static PercpuPtr<T> VarPtr<T>(PercpuVar<T> v) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(v);
        return v.Address;
    }

    /// <summary>DEFINE_PER_CPU: a zeroed <typeparamref name="T"/> per CPU in the first chunk's static area,
    /// kept for the machine's lifetime.</summary>
    /// <param name="name">The variable's name.</param>
    /// <returns>The variable; use it wherever a <see cref="PercpuPtr{T}"/> is taken.</returns>
    /// <exception cref="InvalidOperationException">The static area is full.</exception>
    public PercpuVar<T> DefinePerCpu<T>(string name) where T : unmanaged
    {
        using var _ = _life.Enter();
        ArgumentException.ThrowIfNullOrEmpty(name);
        return PercpuAccess.DefineStatic<T>(PercpuAllocator, name);
    }

    /// <summary>percpu_counter_init: a <see cref="PercpuCounter"/> starting at <paramref name="amount"/>.</summary>
    /// <returns>The counter, or null when its per-CPU deltas cannot be allocated.</returns>
    public PercpuCounter? PercpuCounterInit(long amount, Gfp gfp) { using var _ = _life.Enter(); return PercpuCounter.Init(PercpuAllocator, _cpus, amount, gfp, _life); }

    private nint ThisCpu<T>(PercpuPtr<T> p) where T : unmanaged => PercpuAccess.ThisCpu(p, CurrentCpu, _percpuUnitStride);
}
