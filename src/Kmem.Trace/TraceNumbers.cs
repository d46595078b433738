// Number reading for trace fields, straight from ASCII bytes: %zu/%u (unsigned
// decimal), %d (signed decimal), %p and %lx (hex without 0x, at most 16 digits), and
// the pfn, which 6.1 prints as 0x%lx and older kernels as %lu. Each rejects empty input,
// stray characters and overflow. Stateless and thread-safe.
namespace Kmem.Trace;

internal static class TraceNumbers
{
    public static bool TryUnsigned(ReadOnlySpan<byte> s, out ulong value)
    {
        value = 0;
        if (s.IsEmpty || s.Length > 20)
        {
            return false;
        }
        ulong v = 0;
        if (s.Length <= 19)
        {
            // 19 digits stay below 10^19 < 2^64: no overflow check needed (the common case, by far).
            foreach (byte b in s)
            {
                uint d = (uint)(b - '0');
                if (d > 9)
                {
                    return false;
                }
                v = v * 10 + d;
            }
            value = v;
            return true;
        }
        foreach (byte b in s)
        {
            uint d = (uint)(b - '0');
            if (d > 9)
            {
                return false;
            }
            ulong next = v * 10 + d;
            if (next / 10 != v)
            {
                return false;
            }
            v = next;
        }
        value = v;
        return true;
    }

    public static bool TrySigned(ReadOnlySpan<byte> s, out long value)
    {
        value = 0;
        bool negative = !s.IsEmpty && s[0] == '-';
        if (!TryUnsigned(negative ? s[1..] : s, out ulong v) || v > (negative ? 1UL << 63 : long.MaxValue))
        {
            return false;
        }
        value = negative ? (long)(0 - v) : (long)v;
        return true;
    }

    public static bool TryInt(ReadOnlySpan<byte> s, out int value)
    {
        if (TrySigned(s, out long v) && v >= int.MinValue && v <= int.MaxValue)
        {
            value = (int)v;
            return true;
        }
        value = 0;
        return false;
    }

    public static bool TryHex(ReadOnlySpan<byte> s, out ulong value)
    {
        value = 0;
        if (s.IsEmpty || s.Length > 16)
        {
            return false;
        }
        ulong v = 0;
        foreach (byte b in s)
        {
            uint d = (uint)(b - '0');
            if (d > 9)
            {
                // Fold 'A'..'F' onto 'a'..'f', then map 'a'..'f' to 10..15.
                d = (uint)((b | 0x20) - 'a');
                if (d > 5)
                {
                    return false;
                }
                d += 10;
            }
            v = (v << 4) | d;
        }
        value = v;
        return true;
    }

    /// <summary>A pointer: hex digits as %p prints them, or with a 0x prefix as tools that re-render traces print them.</summary>
    public static bool TryPointer(ReadOnlySpan<byte> s, out ulong value) =>
        s.Length > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') ? TryHex(s[2..], out value) : TryHex(s, out value);

    /// <summary>A pfn: <c>0x…</c> hex (6.1) or plain decimal (older kernels).</summary>
    public static bool TryPfn(ReadOnlySpan<byte> s, out ulong value)
    {
        if (s.Length > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        {
            return TryHex(s[2..], out value);
        }
        return TryUnsigned(s, out value);
    }
}
