// The C# face of a __percpu pointer and of DEFINE_PER_CPU (include/linux/percpu-defs.h):
// a handle on an object that exists once per possible CPU. It carries the address of the
// CPU 0 copy; the copy of CPU n lies n units further (per_cpu_ptr), so a handle is as cheap
// as a pointer. Handles are immutable values; the memory behind them is guarded by nobody:
// this_cpu operations (Machine.Percpu.cs) are atomic on the one copy they touch.
namespace Kmem;

/// <summary>A per-CPU pointer (<c>void __percpu *</c>) from <see cref="Machine.AllocPercpu(nuint, nuint)"/>;
/// <see cref="Null"/> (the default) when an allocation failed.</summary>
public readonly struct PercpuPtr : IEquatable<PercpuPtr>
{
    internal PercpuPtr(nint unit0) => Unit0 = unit0;

    /// <summary>The address of CPU 0's copy.</summary>
    internal nint Unit0 { get; }

    /// <summary>No allocation.</summary>
    public static PercpuPtr Null => default;

    /// <summary>True for <see cref="Null"/>.</summary>
    public bool IsNull => Unit0 == 0;

    /// <inheritdoc/>
    public bool Equals(PercpuPtr other) => Unit0 == other.Unit0;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is PercpuPtr p && Equals(p);

    /// <inheritdoc/>
    public override int GetHashCode() => Unit0.GetHashCode();

    /// <summary>Same allocation.</summary>
    public static bool operator ==(PercpuPtr a, PercpuPtr b) => a.Equals(b);

    /// <summary>Different allocations.</summary>
    public static bool operator !=(PercpuPtr a, PercpuPtr b) => !a.Equals(b);

    /// <summary>"percpu:0x…" (CPU 0's copy) or "(null)".</summary>
    public override string ToString() => IsNull ? "(null)" : $"percpu:0x{Unit0:x}";
}

/// <summary>A typed per-CPU pointer (<c>T __percpu *</c>) from <see cref="Machine.AllocPercpu{T}"/>;
/// the default value (<see cref="IsNull"/>) when an allocation failed.</summary>
/// <typeparam name="T">The per-CPU object's type.</typeparam>
public readonly struct PercpuPtr<T> : IEquatable<PercpuPtr<T>> where T : unmanaged
{
    internal PercpuPtr(nint unit0) => Unit0 = unit0;

    /// <summary>The address of CPU 0's copy.</summary>
    internal nint Unit0 { get; }

    /// <summary>True when no allocation is behind the pointer (the default value).</summary>
    public bool IsNull => Unit0 == 0;

    /// <summary>The same pointer, untyped.</summary>
    public PercpuPtr Untyped => new(Unit0);

    /// <summary>The same pointer, untyped.</summary>
    public static implicit operator PercpuPtr(PercpuPtr<T> p) => p.Untyped;

    /// <inheritdoc/>
    public bool Equals(PercpuPtr<T> other) => Unit0 == other.Unit0;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is PercpuPtr<T> p && Equals(p);

    /// <inheritdoc/>
    public override int GetHashCode() => Unit0.GetHashCode();

    /// <summary>Same allocation.</summary>
    public static bool operator ==(PercpuPtr<T> a, PercpuPtr<T> b) => a.Equals(b);

    /// <summary>Different allocations.</summary>
    public static bool operator !=(PercpuPtr<T> a, PercpuPtr<T> b) => !a.Equals(b);

    /// <summary>"percpu:0x…" (CPU 0's copy) or "(null)".</summary>
    public override string ToString() => IsNull ? "(null)" : $"percpu:0x{Unit0:x}";
}

/// <summary>A static per-CPU variable (DEFINE_PER_CPU) from <see cref="Machine.DefinePerCpu{T}"/>: it lives in
/// the first chunk's static area for the machine's lifetime and is never freed.</summary>
/// <typeparam name="T">The variable's type.</typeparam>
public sealed class PercpuVar<T> where T : unmanaged
{
    internal PercpuVar(string name, PercpuPtr<T> ptr)
    {
        Name = name;
        Address = ptr;
    }

    /// <summary>The variable's name.</summary>
    public string Name { get; }

    /// <summary>Its per-CPU pointer (&amp;var in C), for every per-CPU and this_cpu operation.</summary>
    public PercpuPtr<T> Address { get; }

    /// <summary>The variable's per-CPU pointer.</summary>
    public static implicit operator PercpuPtr<T>(PercpuVar<T> v)
    {
        ArgumentNullException.ThrowIfNull(v);
        return v.Address;
    }

    /// <summary>The variable's per-CPU pointer.</summary>
    public PercpuPtr<T> ToPercpuPtr() => Address;

    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({Address})";
}

/// <summary>The possible CPUs, 0 .. NrCpus - 1, for <c>foreach</c> (for_each_possible_cpu); allocation-free
/// in a <c>foreach</c>, and an <see cref="IEnumerable{T}"/> for LINQ.</summary>
public readonly struct PossibleCpus : IEquatable<PossibleCpus>, IEnumerable<int>
{
    internal PossibleCpus(int count) => Count = count;

    /// <summary>num_possible_cpus.</summary>
    public int Count { get; }

    /// <summary>The enumerator <c>foreach</c> uses.</summary>
    public Enumerator GetEnumerator() => new(Count);

    IEnumerator<int> IEnumerable<int>.GetEnumerator() => Enumerable.Range(0, Count).GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => Enumerable.Range(0, Count).GetEnumerator();

    /// <inheritdoc/>
    public bool Equals(PossibleCpus other) => Count == other.Count;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is PossibleCpus c && Equals(c);

    /// <inheritdoc/>
    public override int GetHashCode() => Count;

    /// <summary>Same CPUs.</summary>
    public static bool operator ==(PossibleCpus a, PossibleCpus b) => a.Equals(b);

    /// <summary>Different CPUs.</summary>
    public static bool operator !=(PossibleCpus a, PossibleCpus b) => !a.Equals(b);

    /// <summary>Walks the CPU numbers in order.</summary>
    public struct Enumerator
    {
        private readonly int _count;

        internal Enumerator(int count)
        {
            _count = count;
            Current = -1;
        }

        /// <summary>The CPU.</summary>
        public int Current { get; private set; }

        /// <summary>Steps to the next CPU.</summary>
        public bool MoveNext() => ++Current < _count;
    }
}
