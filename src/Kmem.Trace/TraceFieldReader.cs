// The fields of one trace event ("key=value key=value ...", include/trace/events/kmem.h and
// percpu.h print each value up to a blank), read in the kernel's order over the line's bytes in
// place. Fast paths for the common hex and decimal spellings; on failure it keeps what was
// expected and where. A ref struct on the reading thread's stack: not shared.
using System.Text;
using Kmem.Trace;

namespace Kmem;

/// <summary>A cursor over "key=value key=value …", each value ending at a blank.</summary>
internal ref struct TraceFieldReader
{
    private readonly ReadOnlySpan<byte> _s;
    private int _p;
    private int _failAt;

    public TraceFieldReader(ReadOnlySpan<byte> s)
    {
        _s = s;
    }

    /// <summary>What the failing field should have looked like.</summary>
    public string? Expected { get; private set; }

    /// <summary>The text where the failing field should have been, up to the next blank.</summary>
    public readonly ReadOnlySpan<byte> Found
    {
        get
        {
            var rest = _s[Math.Min(_failAt, _s.Length)..];
            int sp = rest.IndexOf((byte)' ');
            var found = sp < 0 ? rest : rest[..sp];
            return found.Length > 80 ? found[..80] : found;
        }
    }

    public readonly bool At(ReadOnlySpan<byte> key) => _s[_p..].StartsWith(key);

    public void Fail(string expected)
    {
        Expected = expected;
    }

    public bool Hex(ReadOnlySpan<byte> key, out ulong value)
    {
        if (FastHex(key, out value))
        {
            return true;
        }
        if (Value(key, out var text) && (TraceNumbers.TryPointer(text, out value) || IsNull(text, out value)))
        {
            return true;
        }
        value = 0;
        return Fail(key, "<hex pointer>");
    }

    public bool Pfn(out ulong value)
    {
        // 6.1 prints pfn=0x…: the hex fast path after the "0x".
        if (FastHex("pfn=0x"u8, out value))
        {
            return true;
        }
        if (Value("pfn="u8, out var text) && TraceNumbers.TryPfn(text, out value))
        {
            return true;
        }
        value = 0;
        return Fail("pfn="u8, "<0xhex or decimal>");
    }

    public bool Unsigned(ReadOnlySpan<byte> key, out ulong value)
    {
        if (FastDecimal(key, out value))
        {
            return true;
        }
        if (Value(key, out var text) && TraceNumbers.TryUnsigned(text, out value))
        {
            return true;
        }
        value = 0;
        return Fail(key, "<number>");
    }

    public bool Signed(ReadOnlySpan<byte> key, out long value)
    {
        if (Value(key, out var text) && TraceNumbers.TrySigned(text, out value))
        {
            return true;
        }
        value = 0;
        return Fail(key, "<number>");
    }

    public bool Int(ReadOnlySpan<byte> key, out int value)
    {
        if (FastInt(key, out value))
        {
            return true;
        }
        if (Value(key, out var text) && TraceNumbers.TryInt(text, out value))
        {
            return true;
        }
        value = 0;
        return Fail(key, "<number>");
    }

    public bool TrueFalse(ReadOnlySpan<byte> key, out bool value)
    {
        var rest = _s[_p..];
        if (rest.StartsWith(key))
        {
            // Fast path: "true" or "false" and a blank or the end, without searching for the blank.
            var v = rest[key.Length..];
            int n = v.StartsWith("false"u8) ? 5 : v.StartsWith("true"u8) ? 4 : 0;
            if (n != 0 && (v.Length == n || v[n] == ' '))
            {
                value = n == 4;
                _p += key.Length + (v.Length == n ? n : n + 1);
                return true;
            }
        }
        if (Value(key, out var text) && (text.SequenceEqual("true"u8) || text.SequenceEqual("false"u8)))
        {
            value = text[0] == 't';
            return true;
        }
        value = false;
        return Fail(key, "true|false");
    }

    public bool Word(ReadOnlySpan<byte> key, string expected, out ReadOnlySpan<byte> value)
    {
        if (Value(key, out value))
        {
            return true;
        }
        Expected = expected;
        return false;
    }

    /// <summary>call_site=: symbol+0xoff/0xsize, then " [module]" when the kernel printed one.</summary>
    public bool CallSite(out ReadOnlySpan<byte> value)
    {
        int start = _p + "call_site=".Length;
        if (!Value("call_site="u8, out value) || value.IsEmpty)
        {
            return Fail("call_site="u8, "<symbol+0xoff/0xsize or address>");
        }
        if (_p < _s.Length && _s[_p] == '[')
        {
            int close = _s[_p..].IndexOf((byte)']');
            if (close > 0)
            {
                _p += close + 1;
                value = _s[start.._p];
                if (_p < _s.Length && _s[_p] == ' ')
                {
                    _p++;
                }
            }
        }
        return true;
    }

    // The fast paths read the digits straight up to the blank, with no separate search for
    // the blank: plain spellings only (at most 16 hex or 19 decimal digits, an int of at most
    // 9 digits). Anything else returns false with the cursor unmoved, and the general path
    // (Value, then TraceNumbers) decides, so the accepted syntax and the error messages stay
    // exactly those of the general path.

    private bool FastHex(ReadOnlySpan<byte> key, out ulong value)
    {
        var rest = _s[_p..];
        value = 0;
        if (!rest.StartsWith(key))
        {
            return false;
        }
        int k = key.Length;
        int end = Math.Min(rest.Length, k + 16);
        ulong v = 0;
        int i = k;
        // A table rather than tests for digit or letter: pointers mix both at random, and a branch
        // that guesses which would miss on every third digit or so.
        var digits = HexDigits;
        for (; i < end; i++)
        {
            uint d = digits[rest[i]];
            if (d > 15)
            {
                break;
            }
            v = (v << 4) | d;
        }
        return Ended(rest, k, i, v, out value);
    }

    // The value of each byte as a hex digit ('0'-'9', 'a'-'f', 'A'-'F'), 0xFF for any other byte.
    private static ReadOnlySpan<byte> HexDigits =>
    [
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    ];

    private bool FastDecimal(ReadOnlySpan<byte> key, out ulong value)
    {
        var rest = _s[_p..];
        value = 0;
        if (!rest.StartsWith(key))
        {
            return false;
        }
        int k = key.Length;
        int end = Math.Min(rest.Length, k + 19);
        ulong v = 0;
        int i = k;
        for (; i < end; i++)
        {
            uint d = (uint)(rest[i] - '0');
            if (d > 9)
            {
                break;
            }
            v = v * 10 + d;
        }
        return Ended(rest, k, i, v, out value);
    }

    private bool FastInt(ReadOnlySpan<byte> key, out int value)
    {
        var rest = _s[_p..];
        value = 0;
        if (!rest.StartsWith(key))
        {
            return false;
        }
        int k = key.Length;
        bool negative = k < rest.Length && rest[k] == '-';
        int first = negative ? k + 1 : k;
        int end = Math.Min(rest.Length, first + 9);
        int v = 0;
        int i = first;
        for (; i < end; i++)
        {
            uint d = (uint)(rest[i] - '0');
            if (d > 9)
            {
                break;
            }
            v = v * 10 + (int)d;
        }
        if (!Ended(rest, first, i, 0, out _))
        {
            return false;
        }
        value = negative ? -v : v;
        return true;
    }

    // Digits ran from first to i: they are the whole value when there is at least one and a blank
    // (or the end) follows; then the cursor moves past the blank.
    private bool Ended(ReadOnlySpan<byte> rest, int first, int i, ulong v, out ulong value)
    {
        value = v;
        if (i == first || (i < rest.Length && rest[i] != ' '))
        {
            value = 0;
            return false;
        }
        _p += i < rest.Length ? i + 1 : i;
        return true;
    }

    private bool Value(ReadOnlySpan<byte> key, out ReadOnlySpan<byte> value)
    {
        _failAt = _p;
        var rest = _s[_p..];
        if (!rest.StartsWith(key))
        {
            value = default;
            return false;
        }
        rest = rest[key.Length..];
        int sp = rest.IndexOf((byte)' ');
        value = sp < 0 ? rest : rest[..sp];
        _p += key.Length + value.Length + (sp < 0 ? 0 : 1);
        return true;
    }

    private bool Fail(ReadOnlySpan<byte> key, string shape)
    {
        Expected = Encoding.ASCII.GetString(key) + shape;
        return false;
    }

    private static bool IsNull(ReadOnlySpan<byte> text, out ulong value)
    {
        value = 0;
        return text.SequenceEqual("(null)"u8);
    }
}
