// The common prefix of a trace line as kernel/trace/trace_output.c prints it
// ("%16s-%-7d [(%7d)] [%03d] FLAGS %5llu.%06lu: "): task, pid, optional TGID column, CPU,
// latency flags and timestamp. A fast pass for the default shape, a general reader for every
// other; both read the line's bytes in place. Stateless, so safe from any thread.
using Kmem.Trace;

namespace Kmem;

/// <summary>Reads the task-pid-CPU-flags-timestamp prefix of one trace line.</summary>
internal static class TraceLinePrefix
{
    /// <summary>The shape of a whole line, as error messages spell it.</summary>
    public const string Shape = "TASK-PID [CPU] FLAGS SECONDS.MICROS: EVENT: FIELDS";

    // The common prefix as the kernel prints it with the default options: "%16s-%-7d [%03d] " (the task
    // right-aligned in 16 columns, so '[' in column 25), 5 latency flags, "%5llu.%06lu: ". One forward pass
    // with no searches; any other shape (a longer comm or pid, the TGID column, 4 flags or none, another
    // clock) returns false and TryGeneral reads the line, so what is accepted is exactly what it accepts.
    public static bool TryFast(ReadOnlySpan<byte> s, int p, out int cpu, out int pid, out ReadOnlySpan<byte> comm, out long micros, out int q)
    {
        cpu = pid = q = 0;
        comm = default;
        micros = 0;
        const int Open = 25; // '[' of "[000]"
        if (s.Length < Open + 20 || p >= Open - 1 || s[Open - 1] != ' ' || s[Open] != '[' || s[Open + 4] != ']' || s[Open + 5] != ' ')
        {
            return false;
        }
        uint c0 = (uint)(s[Open + 1] - '0'), c1 = (uint)(s[Open + 2] - '0'), c2 = (uint)(s[Open + 3] - '0');
        if (c0 > 9 || c1 > 9 || c2 > 9)
        {
            return false;
        }
        // "-%-7d": the dash in column 16, the pid's digits, blanks up to the CPU field. The pid's dash is
        // then the task's last one, as the general reader takes it.
        const int Dash = 16;
        if (p >= Dash || s[Dash] != '-')
        {
            return false;
        }
        int v = 0;
        int i = Dash + 1;
        for (; i < Open - 1 && (uint)(s[i] - '0') <= 9; i++)
        {
            v = v * 10 + (s[i] - '0');
        }
        if (i == Dash + 1)
        {
            return false;
        }
        for (; i < Open - 1; i++)
        {
            if (s[i] != ' ')
            {
                return false;
            }
        }
        // The general reader takes the first " [digits] ": it is this one only if no '[' comes before.
        var task = s[p..Dash];
        if (task.Contains((byte)'['))
        {
            return false;
        }
        // Five flag characters, a blank, the timestamp right-aligned, ": ".
        int t = Open + 6;
        if (s[t + 5] != ' ' || s[t + 4] == ':' || s[t] == ' ' || s[t + 1] == ' ' || s[t + 2] == ' ' || s[t + 3] == ' ' || s[t + 4] == ' ')
        {
            return false;
        }
        t += 6;
        while (t < s.Length && s[t] == ' ')
        {
            t++;
        }
        int digits = t;
        ulong seconds = 0;
        while (t < s.Length && (uint)(s[t] - '0') <= 9 && t - digits < 12)
        {
            seconds = seconds * 10 + (uint)(s[t] - '0');
            t++;
        }
        if (t == digits || t + 9 > s.Length || s[t] != '.' || s[t + 7] != ':' || s[t + 8] != ' ')
        {
            return false;
        }
        ulong fraction = 0;
        for (int k = t + 1; k < t + 7; k++)
        {
            uint d = (uint)(s[k] - '0');
            if (d > 9)
            {
                return false;
            }
            fraction = fraction * 10 + d;
        }
        cpu = (int)(c0 * 100 + c1 * 10 + c2);
        pid = v;
        comm = task;
        micros = (long)(seconds * 1_000_000 + fraction);
        q = t + 9;
        return true;
    }

    // Any prefix of trace_output.c's shapes: see TryFast for the common one.
    public static bool TryGeneral(ReadOnlySpan<byte> s, int p, out int cpu, out int tgid, out int pid, out ReadOnlySpan<byte> comm,
        out long micros, out int q, out string? expected)
    {
        expected = null;
        tgid = -1;
        pid = 0;
        comm = default;
        micros = 0;
        // [CPU] is the first " [digits] " after the task: the comm may hold spaces and dashes.
        int cpuOpen = FindCpu(s, p, out cpu, out q);
        if (cpuOpen < 0)
        {
            expected = $"expected {Shape} (no [CPU] field)";
            return false;
        }
        var task = s[p..cpuOpen].TrimEnd((byte)' ');
        if (!task.IsEmpty && task[^1] == ')')
        {
            // The TGID column of the record-tgid option: "(   1234)", "(-------)" when unknown.
            int open = task.LastIndexOf((byte)'(');
            var inner = open < 0 ? default : task[(open + 1)..^1].Trim((byte)' ');
            if (open < 0 || (inner.IndexOfAnyExcept((byte)'-') >= 0 && !TraceNumbers.TryInt(inner, out tgid)))
            {
                expected = $"expected {Shape} ((TGID) before [CPU] is not a number)";
                return false;
            }
            task = task[..open].TrimEnd((byte)' ');
        }
        int dash = task.LastIndexOf((byte)'-');
        if (dash < 0 || !TraceNumbers.TryInt(task[(dash + 1)..], out pid))
        {
            expected = $"expected {Shape} (TASK-PID before [CPU])";
            return false;
        }

        // Latency flags (4 chars before 5.13, 5 since, none without irq-info), then the timestamp.
        var token = NextToken(s, ref q);
        if (token.IsEmpty || token[^1] != ':')
        {
            if (token.Length is not (4 or 5))
            {
                expected = $"expected {Shape} (4 or 5 latency flag characters after [CPU])";
                return false;
            }
            token = NextToken(s, ref q);
        }
        if (!ParseTimestamp(token, out micros))
        {
            expected = $"expected {Shape} (SECONDS.MICROS: timestamp)";
            return false;
        }
        comm = task[..dash];
        return true;
    }

    // The first " [" + digits + "]" followed by a space or the end; returns the index of the
    // space before '[' and, in q, the index after "] ".
    private static int FindCpu(ReadOnlySpan<byte> s, int from, out int cpu, out int q)
    {
        while (true)
        {
            int i = s[from..].IndexOf(" ["u8);
            if (i < 0)
            {
                cpu = 0;
                q = 0;
                return -1;
            }
            i += from;
            int j = i + 2;
            int v = 0;
            while (j < s.Length && (uint)(s[j] - '0') <= 9 && v < 1_000_000)
            {
                v = v * 10 + (s[j] - '0');
                j++;
            }
            if (j > i + 2 && j < s.Length && s[j] == ']' && (j + 1 == s.Length || s[j + 1] == ' '))
            {
                cpu = v;
                q = j + 1;
                return i;
            }
            from = i + 2;
        }
    }

    // Skips blanks, then returns the bytes up to the next blank; q ends after them.
    private static ReadOnlySpan<byte> NextToken(ReadOnlySpan<byte> s, ref int q)
    {
        while (q < s.Length && s[q] == ' ')
        {
            q++;
        }
        int start = q;
        while (q < s.Length && s[q] != ' ')
        {
            q++;
        }
        var token = s[start..q];
        if (q < s.Length)
        {
            q++;
        }
        return token;
    }

    // "58.900561:" → 58900561 µs. More or fewer than 6 decimals are scaled to microseconds;
    // a clock printed without a dot (counter, x86-tsc) is kept as its raw number.
    private static bool ParseTimestamp(ReadOnlySpan<byte> token, out long micros)
    {
        micros = 0;
        if (token.Length < 2 || token[^1] != ':')
        {
            return false;
        }
        token = token[..^1];
        int dot = token.IndexOf((byte)'.');
        if (dot < 0)
        {
            return TraceNumbers.TrySigned(token, out micros) && micros >= 0;
        }
        var frac = token[(dot + 1)..];
        if (!TraceNumbers.TryUnsigned(token[..dot], out ulong seconds) || seconds > 9_000_000_000_000
            || !TraceNumbers.TryUnsigned(frac, out ulong fraction) || frac.Length > 9)
        {
            return false;
        }
        for (int i = frac.Length; i < 6; i++)
        {
            fraction *= 10;
        }
        for (int i = 6; i < frac.Length; i++)
        {
            fraction /= 10;
        }
        micros = (long)(seconds * 1_000_000 + fraction);
        return true;
    }
}
