// A small intern table from UTF-8 byte spans to strings, with a 32-bit tag per entry,
// so that the trace reader turns the call sites, comms, cache names and gfp texts that
// repeat on millions of lines into the same string (and parsed gfp mask) without
// allocating. Open addressing, power-of-two size; bounded: past MaxEntries new keys are
// not stored (Find fails), so memory stays bounded whatever the trace. Not thread-safe.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Kmem.Trace;

internal sealed class SpanIntern
{
    /// <summary>Distinct keys kept at most; a real 6.1 boot trace has about 1,300 call sites.</summary>
    public const int MaxEntries = 1 << 16;

    private int[] _slots;          // entry index + 1, 0 = empty
    private byte[][] _keys;
    private string[] _texts;
    private uint[] _tags;
    private int[] _hashes;
    private int _count;
    private int _last = -1;        // the entry Find returned last: runs of one comm or gfp text skip the hash

    public SpanIntern()
    {
        _slots = new int[256];
        _keys = new byte[64][];
        _texts = new string[64];
        _tags = new uint[64];
        _hashes = new int[64];
    }

    public int Count => _count;

    public bool IsFull => _count >= MaxEntries;

    /// <summary>The entry for <paramref name="key"/>, or -1.</summary>
    public int Find(ReadOnlySpan<byte> key)
    {
        int last = _last;
        if (last >= 0 && key.SequenceEqual(_keys[last]))
        {
            return last;
        }
        int hash = Hash(key);
        int mask = _slots.Length - 1;
        for (int i = hash & mask; ; i = (i + 1) & mask)
        {
            int slot = _slots[i];
            if (slot == 0)
            {
                return -1;
            }
            int e = slot - 1;
            if (_hashes[e] == hash && key.SequenceEqual(_keys[e]))
            {
                _last = e;
                return e;
            }
        }
    }

    /// <summary>Adds a key not yet present; returns its entry, or -1 when the table is full.</summary>
    public int Add(ReadOnlySpan<byte> key, string text, uint tag)
    {
        if (IsFull)
        {
            return -1;
        }
        if (_count == _keys.Length)
        {
            Array.Resize(ref _keys, _count * 2);
            Array.Resize(ref _texts, _count * 2);
            Array.Resize(ref _tags, _count * 2);
            Array.Resize(ref _hashes, _count * 2);
        }
        // Keep the load factor under 1/2 so probe runs stay short.
        if ((_count + 1) * 2 > _slots.Length)
        {
            Rehash(_slots.Length * 2);
        }
        int e = _count++;
        _keys[e] = key.ToArray();
        _texts[e] = text;
        _tags[e] = tag;
        _hashes[e] = Hash(key);
        Place(e);
        return e;
    }

    /// <summary>The interned string for <paramref name="key"/>, decoded as UTF-8 on first sight.</summary>
    public string Intern(ReadOnlySpan<byte> key) => Intern(key, out _);

    /// <summary>The interned string for <paramref name="key"/> and its entry (-1 when the table is full
    /// and the key new: the string is then a fresh one, not interned).</summary>
    public string Intern(ReadOnlySpan<byte> key, out int entry)
    {
        int e = Find(key);
        if (e >= 0)
        {
            entry = e;
            return _texts[e];
        }
        string text = Encoding.UTF8.GetString(key);
        entry = Add(key, text, 0);
        return text;
    }

    public string Text(int entry) => _texts[entry];

    public uint Tag(int entry) => _tags[entry];

    private void Rehash(int size)
    {
        _slots = new int[size];
        for (int e = 0; e < _count; e++)
        {
            Place(e);
        }
    }

    private void Place(int e)
    {
        int mask = _slots.Length - 1;
        int i = _hashes[e] & mask;
        while (_slots[i] != 0)
        {
            i = (i + 1) & mask;
        }
        _slots[i] = e + 1;
    }

    private static int Hash(ReadOnlySpan<byte> key)
    {
        // Eight bytes a step (call sites are ~30 bytes, comms ~10, gfp texts ~20): a multiply and a
        // shift per word instead of one per byte, then a finaliser so that the low bits the table
        // uses depend on every byte. The last word overlaps the one before when the length is not
        // a multiple of 8; the length is mixed in first, so such keys still differ.
        ref byte start = ref MemoryMarshal.GetReference(key);
        int n = key.Length;
        ulong h = (ulong)n * 0x9E3779B97F4A7C15UL;
        if (n >= 8)
        {
            int i = 0;
            for (; i <= n - 8; i += 8)
            {
                h = (h ^ Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref start, i))) * 0xFF51AFD7ED558CCDUL;
                h ^= h >> 32;
            }
            if (i < n)
            {
                h = (h ^ Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref start, n - 8))) * 0xFF51AFD7ED558CCDUL;
                h ^= h >> 32;
            }
        }
        else
        {
            ulong w = 0;
            for (int i = 0; i < n; i++)
            {
                w = (w << 8) | Unsafe.Add(ref start, i);
            }
            h = (h ^ w) * 0xFF51AFD7ED558CCDUL;
        }
        h ^= h >> 33;
        h *= 0xC4CEB9FE1A85EC53UL;
        h ^= h >> 33;
        return (int)h;
    }
}
