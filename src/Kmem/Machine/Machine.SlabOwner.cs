// The slab layer's .NET memory owners on Machine: kmalloc and kmem_cache_alloc whose
// object comes wrapped in a SlabMemoryOwner (a MemoryManager<byte>), so that it can
// travel as Memory<byte> and is freed once when the owner is disposed. Works on every
// backend, since the owner frees through the slab allocator's kfree / kmem_cache_free.
namespace Kmem;

public sealed partial class Machine
{
    /// <summary><see cref="Kmalloc"/> wrapped in an owner: <paramref name="size"/> bytes as
    /// <see cref="Memory{T}"/>, given back with kfree when the owner is disposed.</summary>
    /// <param name="size">Bytes wanted, at most <see cref="KmallocMaxSize"/>; 0 gives an empty owner over
    /// <see cref="ZeroSizePtr"/>.</param>
    /// <param name="gfp">GFP flags, as for <see cref="Kmalloc"/> (<see cref="Gfp.Zero"/> zeroes the block).</param>
    /// <returns>The owner, or null when kmalloc fails (as it returns 0).</returns>
    public SlabMemoryOwner? KmallocOwner(nuint size, Gfp gfp)
    {
        using var _ = _life.Enter();
        // Above KMALLOC_MAX_SIZE kmalloc fails (with its warning), so a block that exists fits an int.
        var slab = SlabOrThrow;
        nint p = slab.Kmalloc(size, gfp, -1);
        return p == 0 ? null : new SlabMemoryOwner(slab, null, p, checked((int)size));
    }

    /// <summary><see cref="KmemCacheAlloc"/> wrapped in an owner: one object of <paramref name="s"/>
    /// (<see cref="KmemCache.ObjectSize"/> bytes) as <see cref="Memory{T}"/>, given back with kmem_cache_free
    /// when the owner is disposed.</summary>
    /// <returns>The owner, or null when the allocation fails.</returns>
    /// <exception cref="ObjectDisposedException">The cache was destroyed.</exception>
    public SlabMemoryOwner? KmemCacheAllocOwner(KmemCache s, Gfp gfp)
    {
        using var _ = _life.Enter();
        var slab = SlabOrThrow;
        nint p = slab.Alloc(CheckCache(s), gfp, -1);
        return p == 0 ? null : new SlabMemoryOwner(slab, s, p, (int)s.ObjectSize);
    }
}
