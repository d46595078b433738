// A small intern table from UTF-8 byte spans to strings, with a 32-bit tag per entry,
// so that the trace reader turns the call sites, comms, cache names and gfp texts that
// repeat on millions of lines into the same string (and parsed gfp mask) without
// allocating. Open addressing, power-of-two size; bounded: past MaxEntries new keys are
// not stored (Find fails), so memory stays bounded whatever the trace. Not thread-safe.
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
    public string Intern(ReadOnlySpan<byte> key)
    {
        int e = Find(key);
        if (e >= 0)
        {
            return _texts[e];
        }
        string text = Encoding.UTF8.GetString(key);
        Add(key, text, 0);
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
        // FNV-1a over the bytes: keys are short (a call site is ~30 bytes) and this is
        // cheaper than setting up a general-purpose hasher per lookup.
        uint h = 2166136261;
        foreach (byte b in key)
        {
            h = (h ^ b) * 16777619;
        }
        return (int)(h ^ (h >> 15));
    }
}
