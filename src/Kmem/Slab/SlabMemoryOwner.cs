// A slab object as a .NET memory owner: a MemoryManager<byte> over the object's bytes in
// the direct map, so that it can travel as Memory<byte> (pipelines, streams, async code)
// and go back to its cache when the owner is disposed. The memory is off-heap and never
// moves, so pinning only hands out the pointer; it also holds the free back: an owner
// disposed while pinned frees its object at the last Unpin.
// Invariant: the object is freed exactly once, by whichever of Dispose or the last Unpin
// finds the owner disposed with no pins. State is one int changed by compare-and-swap:
// the pin count in the low bits, a Disposed bit and a Freed bit, so racing Dispose,
// Pin and Unpin calls from any threads agree on who frees.
using System.Buffers;
using Kmem.Slab;

namespace Kmem;

/// <summary>
/// Owns one object from <c>Machine.KmallocOwner</c> or <c>Machine.KmemCacheAllocOwner</c>: a
/// <see cref="MemoryManager{T}"/> (and so an <see cref="IMemoryOwner{T}"/>) whose memory is the object's real
/// bytes. Disposing it frees the object (kfree or kmem_cache_free) once; a second Dispose does nothing.
/// </summary>
/// <remarks>
/// <para>After Dispose, <see cref="GetSpan"/>, <see cref="MemoryManager{T}.Memory"/>, the span of any
/// <see cref="Memory{T}"/> taken from it and <see cref="Pin"/> throw <see cref="ObjectDisposedException"/>;
/// a span obtained before Dispose is not tracked (as with any span over native memory, do not keep one past
/// Dispose). Dispose while pinned is allowed: the object is freed when the last <see cref="MemoryHandle"/> is
/// disposed.</para>
/// <para>An owner that is never disposed keeps its object allocated, as a missing kfree would: there is no
/// finalizer, since freeing from the finalizer thread could race the machine's own disposal.</para>
/// <para>Every member may be called from any thread.</para>
/// </remarks>
public sealed unsafe class SlabMemoryOwner : MemoryManager<byte>
{
    private const int PinMask = (1 << 28) - 1;
    private const int DisposedBit = 1 << 28;
    private const int FreedBit = 1 << 29;

    /// <summary>The slab allocator the object goes back to.</summary>
    private readonly SlabBackend _slab;
    private readonly nint _ptr;
    private readonly int _length;
    private int _state;

    internal SlabMemoryOwner(SlabBackend slab, KmemCache? cache, nint ptr, int length)
    {
        _slab = slab;
        Cache = cache;
        _ptr = ptr;
        _length = length;
    }

    /// <summary>The cache the object came from, or null for a kmalloc'd block (freed with kfree).</summary>
    public KmemCache? Cache { get; }

    /// <summary>The object's direct-map address (<c>Machine.ZeroSizePtr</c> for a kmalloc of 0 bytes).</summary>
    /// <exception cref="ObjectDisposedException">The owner or its machine has been disposed.</exception>
    public nint Address
    {
        get
        {
            ThrowIfUnusable();
            return _ptr;
        }
    }

    /// <summary>The length of the memory: the size asked of kmalloc, or the cache's object size.</summary>
    public int Length => _length;

    /// <summary>Whether <see cref="IDisposable.Dispose"/> has been called.</summary>
    public bool IsDisposed => (Volatile.Read(ref _state) & DisposedBit) != 0;

    /// <summary>A span over the object's bytes.</summary>
    /// <exception cref="ObjectDisposedException">The owner or its machine has been disposed.</exception>
    public override Span<byte> GetSpan()
    {
        ThrowIfUnusable();
        return new Span<byte>((void*)_ptr, _length);
    }

    /// <summary>Pins the memory (it never moves: this only counts the pin, which holds back the free) and
    /// returns a handle with the pointer to element <paramref name="elementIndex"/>; disposing the handle
    /// unpins.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The index is outside 0..<see cref="Length"/>.</exception>
    /// <exception cref="ObjectDisposedException">The owner or its machine has been disposed.</exception>
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, _length);
        while (true)
        {
            int s = Volatile.Read(ref _state);
            if ((s & DisposedBit) != 0)
            {
                throw Disposed();
            }
            if ((s & PinMask) == PinMask)
            {
                throw new InvalidOperationException($"object 0x{KernelAddress:x} is pinned {PinMask} times already");
            }
            if (Interlocked.CompareExchange(ref _state, s + 1, s) == s)
            {
                break;
            }
        }
        return new MemoryHandle((byte*)_ptr + elementIndex, default, this);
    }

    /// <summary>Releases one pin; the last one of a disposed owner frees the object.</summary>
    /// <exception cref="InvalidOperationException">The owner is not pinned.</exception>
    public override void Unpin()
    {
        while (true)
        {
            int s = Volatile.Read(ref _state);
            if ((s & PinMask) == 0)
            {
                throw new InvalidOperationException($"object 0x{KernelAddress:x} is not pinned: Unpin without a matching Pin");
            }
            if (Interlocked.CompareExchange(ref _state, s - 1, s) == s)
            {
                if (s - 1 == DisposedBit)
                {
                    FreeOnce();
                }
                return;
            }
        }
    }

    /// <summary>Marks the owner disposed and frees the object unless it is pinned (then the last Unpin does).
    /// Later calls do nothing.</summary>
    /// <param name="disposing">True from <see cref="IDisposable.Dispose"/>; the class has no finalizer.</param>
    /// <exception cref="SlabBugException">The object was already freed behind the owner's back (a double
    /// free, reported as the allocator reports it).</exception>
    protected override void Dispose(bool disposing)
    {
        while (true)
        {
            int s = Volatile.Read(ref _state);
            if ((s & DisposedBit) != 0)
            {
                return;
            }
            if (Interlocked.CompareExchange(ref _state, s | DisposedBit, s) == s)
            {
                if (s == 0)
                {
                    FreeOnce();
                }
                return;
            }
        }
    }

    /// <summary>Frees the object if this caller wins the step from disposed-and-unpinned to freed.</summary>
    private void FreeOnce()
    {
        if (Interlocked.CompareExchange(ref _state, DisposedBit | FreedBit, DisposedBit) != DisposedBit || _slab.IsMemoryGone)
        {
            // Someone else freed it, or the machine's memory is gone with everything in it.
            return;
        }
        if (Cache is { } s)
        {
            _slab.CacheFree(s.ThrowIfDestroyed(), _ptr);
        }
        else
        {
            _slab.Kfree(_ptr);
        }
    }

    /// <summary>The object's address as reports show it (PAGE_OFFSET plus its physical offset).</summary>
    private ulong KernelAddress => _slab.KernelAddress(_ptr);

    private void ThrowIfUnusable()
    {
        if ((Volatile.Read(ref _state) & DisposedBit) != 0 || _slab.IsMemoryGone)
        {
            throw Disposed();
        }
    }

    private ObjectDisposedException Disposed() => _slab.IsMemoryGone
        ? new ObjectDisposedException("Machine", $"the machine that owned object 0x{KernelAddress:x} has been disposed")
        : new ObjectDisposedException(nameof(SlabMemoryOwner), $"object 0x{KernelAddress:x} of {Cache?.Name ?? "kmalloc"} was freed when its owner was disposed");
}
