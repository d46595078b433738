// SLUB freelist hardening (mm/slub.c, mm/slab_common.c, 6.1): CONFIG_SLAB_FREELIST_HARDENED stores each free
// pointer as ptr ^ s->random ^ swab(address of the pointer), so a leaked or overwritten free pointer is useless
// without the cache's secret; CONFIG_SLAB_FREELIST_RANDOM chains a new slab's objects in the order of a
// per-cache Fisher-Yates permutation (cache_random_seq_create) from a random start (shuffle_freelist).
// Both are boot options; off, the free pointer costs one AND and two XORs against zeroes. The secrets and
// permutations come from the slab layer's seeded random source under its lock, so a seeded run repeats.
using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Kmem.Slab;

internal sealed unsafe partial class Slub
{
    /// <summary>get_freepointer (freelist_ptr decoding): the next free object after <paramref name="obj"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static nint GetFreepointer(KmemCache s, nint obj)
    {
        nint addr = obj + (nint)s.Offset;
        return *(nint*)addr ^ s.FpRandom ^ ((nint)BinaryPrimitives.ReverseEndianness((ulong)addr) & s.FpSwabMask);
    }

    /// <summary>set_freepointer (freelist_ptr encoding).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void SetFreepointer(KmemCache s, nint obj, nint fp)
    {
        nint addr = obj + (nint)s.Offset;
        *(nint*)addr = fp ^ s.FpRandom ^ ((nint)BinaryPrimitives.ReverseEndianness((ulong)addr) & s.FpSwabMask);
    }

    /// <summary>kmem_cache_open's per-cache randomness and init hooks: s->random (hardened), s->random_seq
    /// (random freelist, init_cache_random_seq: indices scaled by the object size), init_on_alloc/free.</summary>
    private void SetupCacheHardening(KmemCache s)
    {
        lock (_rngLock)
        {
            if (_hardened)
            {
                Span<byte> secret = stackalloc byte[8];
                _rng.NextBytes(secret);
                s.FpRandom = (nint)BinaryPrimitives.ReadInt64LittleEndian(secret);
                s.FpSwabMask = -1;
            }
            int count = s.ObjectsPerSlab;
            if (_randomFreelist && count >= 2)
            {
                // freelist_randomize: Fisher-Yates over 0..count-1.
                var seq = new uint[count];
                for (uint i = 0; i < seq.Length; i++)
                {
                    seq[i] = i;
                }
                for (int i = count - 1; i > 0; i--)
                {
                    int r = (int)(_rng.NextInt64(uint.MaxValue + 1L) % (i + 1));
                    (seq[i], seq[r]) = (seq[r], seq[i]);
                }
                for (int i = 0; i < seq.Length; i++)
                {
                    seq[i] *= s.Size;
                }
                s.RandomSeq = seq;
            }
        }
        SetupInitHooks(s);
        if (s.WantInitOnFree)
        {
            // A freed object must be cleared before anyone can have it again: no magazine may hold it uncleared.
            s.MagazineLimit = 0;
        }
    }

    /// <summary>shuffle_freelist: the objects of a new slab (the first at <paramref name="first"/>) chained in
    /// the cache's random sequence from a random position, skipping offsets past a smaller (fallback-order)
    /// slab; each object is set up (debug state, constructor) in that order. Returns the head.</summary>
    private nint ShuffleFreelist(KmemCache s, nint first, int objects)
    {
        uint[] seq = s.RandomSeq!;
        int pos;
        lock (_rngLock)
        {
            pos = (int)(_rng.NextInt64(uint.MaxValue + 1L) % seq.Length);
        }
        long pageLimit = (long)objects * s.Size;
        var ctor = s.Ctor;
        nint head = first + (nint)NextFreelistEntry(seq, ref pos, pageLimit);
        SlubDebug.SetupObject(s, head, ctor);
        nint cur = head;
        for (int i = 1; i < objects; i++)
        {
            nint next = first + (nint)NextFreelistEntry(seq, ref pos, pageLimit);
            SlubDebug.SetupObject(s, next, ctor);
            SetFreepointer(s, cur, next);
            cur = next;
        }
        SetFreepointer(s, cur, 0);
        return head;
    }

    /// <summary>next_freelist_entry.</summary>
    private static uint NextFreelistEntry(uint[] seq, ref int pos, long pageLimit)
    {
        uint offset;
        do
        {
            offset = seq[pos];
            if (++pos >= seq.Length)
            {
                pos = 0;
            }
        }
        while (offset >= pageLimit);
        return offset;
    }
}
