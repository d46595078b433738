// One trace line to one TraceEvent: the common prefix of trace_output.c
// ("%16s-%-7d [(%7d)] [%03d] FLAGS %5llu.%06lu: ") and the fields of each Linux 6.1
// template (include/trace/events/kmem.h, percpu.h), expected in the kernel's order;
// extra fields after the last expected one are ignored. Works on the line's bytes in
// place; on failure it says what was expected. Part of TraceReader, not thread-safe.
using System.Text;
using Kmem.Trace;

namespace Kmem;

public sealed partial class TraceReader
{
    private enum LineResult
    {
        Event,
        Skipped,
        Bad,
    }

    /// <summary>The <see cref="UnknownEvents"/> key for unknown names beyond the first 65,536 distinct ones.</summary>
    public const string OtherUnknownEvents = "(other)";

    private const string PrefixShape = "TASK-PID [CPU] FLAGS SECONDS.MICROS: EVENT: FIELDS";

    private LineResult ParseLine(ReadOnlySpan<byte> s, ref TraceEvent e, out string? expected)
    {
        expected = null;
        int p = s.IndexOfAnyExcept((byte)' '); // the comm is right-aligned in 16 columns
        if (p < 0)
        {
            return LineResult.Skipped;
        }
        if (s[p..].StartsWith("CPU:"u8) && s.IndexOf("[LOST "u8) > 0)
        {
            // "CPU:1 [LOST 123 EVENTS]": the ring buffer overflowed; not an event.
            var lost = s[(s.IndexOf("[LOST "u8) + 6)..];
            int sp = lost.IndexOf((byte)' ');
            if (sp > 0 && TraceNumbers.TryUnsigned(lost[..sp], out ulong n))
            {
                LostEvents += (long)n;
                return LineResult.Skipped;
            }
        }

        int tgid = -1;
        if (!FastPrefix(s, p, out int cpu, out int pid, out var comm, out long micros, out int q)
            && !GeneralPrefix(s, p, out cpu, out tgid, out pid, out comm, out micros, out q, out expected))
        {
            return LineResult.Bad;
        }
        int colon = q < s.Length ? s[q..].IndexOf((byte)':') : -1;
        if (colon <= 0)
        {
            expected = $"expected {PrefixShape} (EVENT: after the timestamp)";
            return LineResult.Bad;
        }
        var name = s.Slice(q, colon);
        int f = q + colon + 1;
        if (f < s.Length && s[f] == ' ')
        {
            f++;
        }
        var fields = new FieldReader(s[f..]);

        e.LineNumber = Lines;
        e.Cpu = cpu;
        e.Pid = pid;
        e.Tgid = tgid;
        e.Timestamp = micros;
        e.Comm = _comms.Intern(comm);

        // Most frequent first: kmem_cache_alloc and kmem_cache_free are two thirds of a boot trace.
        bool ok;
        string eventName;
        if (name.SequenceEqual("kmem_cache_alloc"u8))
        {
            (eventName, ok) = ("kmem_cache_alloc", ParseSlabAlloc(ref fields, ref e, TraceEventKind.KmemCacheAlloc));
        }
        else if (name.SequenceEqual("kmem_cache_free"u8))
        {
            e.Kind = TraceEventKind.KmemCacheFree;
            eventName = "kmem_cache_free";
            ok = false;
            if (ParseCallSite(ref fields, ref e)
                && fields.Hex("ptr="u8, out ulong ptr)
                && fields.Word("name="u8, "name=<cache name>", out var cacheName))
            {
                ok = true;
                e.Ptr = ptr;
                e.Name = _names.Intern(cacheName);
            }
        }
        else if (name.SequenceEqual("mm_page_alloc"u8))
        {
            e.Kind = TraceEventKind.MmPageAlloc;
            eventName = "mm_page_alloc";
            ok = false;
            if (ParsePage(ref fields, ref e)
                && fields.Int("order="u8, out int order)
                && fields.Int("migratetype="u8, out int mt)
                && ParseGfp(ref fields, ref e))
            {
                ok = true;
                e.Order = order;
                e.MigrateType = (MigrateType)mt;
            }
        }
        else if (name.SequenceEqual("mm_page_free"u8) || name.SequenceEqual("mm_page_free_batched"u8))
        {
            bool batched = name.Length == "mm_page_free_batched".Length;
            e.Kind = batched ? TraceEventKind.MmPageFreeBatched : TraceEventKind.MmPageFree;
            eventName = batched ? "mm_page_free_batched" : "mm_page_free";
            ok = ParsePage(ref fields, ref e) && fields.Int("order="u8, out int order) && Set(ref e, order);
        }
        else if (name.SequenceEqual("mm_page_alloc_zone_locked"u8))
        {
            e.Kind = TraceEventKind.MmPageAllocZoneLocked;
            eventName = "mm_page_alloc_zone_locked";
            ok = false;
            if (ParsePage(ref fields, ref e)
                && fields.Int("order="u8, out int order)
                && fields.Int("migratetype="u8, out int mt)
                && fields.Int("percpu_refill="u8, out int refill))
            {
                ok = true;
                e.Order = order;
                e.MigrateType = (MigrateType)mt;
                e.PercpuRefill = refill != 0;
            }
        }
        else if (name.SequenceEqual("kmalloc"u8))
        {
            (eventName, ok) = ("kmalloc", ParseSlabAlloc(ref fields, ref e, TraceEventKind.Kmalloc));
        }
        else if (name.SequenceEqual("mm_page_pcpu_drain"u8))
        {
            e.Kind = TraceEventKind.MmPagePcpuDrain;
            eventName = "mm_page_pcpu_drain";
            ok = false;
            if (ParsePage(ref fields, ref e)
                && fields.Int("order="u8, out int order)
                && fields.Int("migratetype="u8, out int mt))
            {
                ok = true;
                e.Order = order;
                e.MigrateType = (MigrateType)mt;
            }
        }
        else if (name.SequenceEqual("kfree"u8))
        {
            e.Kind = TraceEventKind.Kfree;
            eventName = "kfree";
            ok = ParseCallSite(ref fields, ref e) && fields.Hex("ptr="u8, out ulong ptr) && SetPtr(ref e, ptr);
        }
        else if (name.SequenceEqual("tracing_mark_write"u8))
        {
            e.Kind = TraceEventKind.Marker;
            e.Text = Encoding.UTF8.GetString(s[f..].TrimEnd((byte)' '));
            return LineResult.Event;
        }
        else if (name.SequenceEqual("mm_page_alloc_extfrag"u8))
        {
            e.Kind = TraceEventKind.MmPageAllocExtfrag;
            eventName = "mm_page_alloc_extfrag";
            ok = false;
            if (ParsePage(ref fields, ref e)
                && fields.Int("alloc_order="u8, out int allocOrder)
                && fields.Int("fallback_order="u8, out int fallbackOrder)
                && fields.Int("pageblock_order="u8, out int pageblockOrder)
                && fields.Int("alloc_migratetype="u8, out int allocMt)
                && fields.Int("fallback_migratetype="u8, out int fallbackMt)
                && fields.Int("fragmenting="u8, out int fragmenting)
                && fields.Int("change_ownership="u8, out int changeOwnership))
            {
                ok = true;
                e.Order = allocOrder;
                e.FallbackOrder = fallbackOrder;
                e.PageblockOrder = pageblockOrder;
                e.MigrateType = (MigrateType)allocMt;
                e.FallbackMigrateType = (MigrateType)fallbackMt;
                e.Fragmenting = fragmenting != 0;
                e.ChangeOwnership = changeOwnership != 0;
            }
        }
        else if (name.SequenceEqual("percpu_alloc_percpu"u8))
        {
            e.Kind = TraceEventKind.PercpuAllocPercpu;
            eventName = "percpu_alloc_percpu";
            ok = false;
            if (ParseCallSite(ref fields, ref e)
                && ParsePercpuRequest(ref fields, ref e)
                && fields.Hex("base_addr="u8, out ulong baseAddr)
                && fields.Signed("off="u8, out long off)
                && fields.Hex("ptr="u8, out ulong ptr)
                && fields.Unsigned("bytes_alloc="u8, out ulong bytesAlloc)
                && ParseGfp(ref fields, ref e))
            {
                ok = true;
                e.BaseAddr = baseAddr;
                e.Off = off;
                e.Ptr = ptr;
                e.BytesAlloc = bytesAlloc;
            }
        }
        else if (name.SequenceEqual("percpu_free_percpu"u8))
        {
            e.Kind = TraceEventKind.PercpuFreePercpu;
            eventName = "percpu_free_percpu";
            ok = false;
            if (fields.Hex("base_addr="u8, out ulong baseAddr)
                && fields.Signed("off="u8, out long off)
                && fields.Hex("ptr="u8, out ulong ptr))
            {
                ok = true;
                e.BaseAddr = baseAddr;
                e.Off = off;
                e.Ptr = ptr;
            }
        }
        else if (name.SequenceEqual("percpu_create_chunk"u8) || name.SequenceEqual("percpu_destroy_chunk"u8))
        {
            bool create = name[7] == 'c';
            e.Kind = create ? TraceEventKind.PercpuCreateChunk : TraceEventKind.PercpuDestroyChunk;
            eventName = create ? "percpu_create_chunk" : "percpu_destroy_chunk";
            ok = fields.Hex("base_addr="u8, out ulong baseAddr) && SetBase(ref e, baseAddr);
        }
        else if (name.SequenceEqual("percpu_alloc_percpu_fail"u8))
        {
            e.Kind = TraceEventKind.PercpuAllocPercpuFail;
            eventName = "percpu_alloc_percpu_fail";
            ok = ParsePercpuRequest(ref fields, ref e);
        }
        else
        {
            CountUnknown(name);
            return LineResult.Skipped;
        }
        if (ok)
        {
            return LineResult.Event;
        }
        expected = $"{eventName}: expected {fields.Expected}, found '{Encoding.UTF8.GetString(fields.Found)}'";
        return LineResult.Bad;
    }

    // The common prefix as the kernel prints it with the default options: "%16s-%-7d [%03d] " (the task
    // right-aligned in 16 columns, so '[' in column 25), 5 latency flags, "%5llu.%06lu: ". One forward pass
    // with no searches; any other shape (a longer comm or pid, the TGID column, 4 flags or none, another
    // clock) returns false and GeneralPrefix reads the line, so what is accepted is exactly what it accepts.
    private static bool FastPrefix(ReadOnlySpan<byte> s, int p, out int cpu, out int pid, out ReadOnlySpan<byte> comm, out long micros, out int q)
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

    // Any prefix of trace_output.c's shapes: see FastPrefix for the common one.
    private static bool GeneralPrefix(ReadOnlySpan<byte> s, int p, out int cpu, out int tgid, out int pid, out ReadOnlySpan<byte> comm,
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
            expected = $"expected {PrefixShape} (no [CPU] field)";
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
                expected = $"expected {PrefixShape} ((TGID) before [CPU] is not a number)";
                return false;
            }
            task = task[..open].TrimEnd((byte)' ');
        }
        int dash = task.LastIndexOf((byte)'-');
        if (dash < 0 || !TraceNumbers.TryInt(task[(dash + 1)..], out pid))
        {
            expected = $"expected {PrefixShape} (TASK-PID before [CPU])";
            return false;
        }

        // Latency flags (4 chars before 5.13, 5 since, none without irq-info), then the timestamp.
        var token = NextToken(s, ref q);
        if (token.IsEmpty || token[^1] != ':')
        {
            if (token.Length is not (4 or 5))
            {
                expected = $"expected {PrefixShape} (4 or 5 latency flag characters after [CPU])";
                return false;
            }
            token = NextToken(s, ref q);
        }
        if (!ParseTimestamp(token, out micros))
        {
            expected = $"expected {PrefixShape} (SECONDS.MICROS: timestamp)";
            return false;
        }
        comm = task[..dash];
        return true;
    }

    private static bool Set(ref TraceEvent e, int order)
    {
        e.Order = order;
        return true;
    }

    private static bool SetPtr(ref TraceEvent e, ulong ptr)
    {
        e.Ptr = ptr;
        return true;
    }

    private static bool SetBase(ref TraceEvent e, ulong baseAddr)
    {
        e.BaseAddr = baseAddr;
        return true;
    }

    private bool ParseSlabAlloc(ref FieldReader fields, ref TraceEvent e, TraceEventKind kind)
    {
        e.Kind = kind;
        if (!ParseCallSite(ref fields, ref e) || !fields.Hex("ptr="u8, out ulong ptr))
        {
            return false;
        }
        e.Ptr = ptr;
        // Kernels after 6.1 print the cache name here; take it when present.
        if (kind == TraceEventKind.KmemCacheAlloc && fields.At("name="u8))
        {
            fields.Word("name="u8, "name=<cache name>", out var cacheName);
            e.Name = _names.Intern(cacheName);
        }
        if (!fields.Unsigned("bytes_req="u8, out ulong req)
            || !fields.Unsigned("bytes_alloc="u8, out ulong alloc)
            || !ParseGfp(ref fields, ref e)
            || !fields.Int("node="u8, out int node)
            || !fields.TrueFalse("accounted="u8, out bool accounted))
        {
            return false;
        }
        e.BytesReq = req;
        e.BytesAlloc = alloc;
        e.Node = node;
        e.Accounted = accounted;
        return true;
    }

    private static bool ParsePercpuRequest(ref FieldReader fields, ref TraceEvent e)
    {
        if (!fields.Int("reserved="u8, out int reserved)
            || !fields.Int("is_atomic="u8, out int atomic)
            || !fields.Unsigned("size="u8, out ulong size)
            || !fields.Unsigned("align="u8, out ulong align))
        {
            return false;
        }
        e.Reserved = reserved != 0;
        e.IsAtomic = atomic != 0;
        e.Size = size;
        e.Align = align;
        return true;
    }

    private static bool ParsePage(ref FieldReader fields, ref TraceEvent e)
    {
        if (!fields.Hex("page="u8, out ulong page) || !fields.Pfn(out ulong pfn))
        {
            return false;
        }
        e.Page = page;
        e.Pfn = pfn;
        return true;
    }

    private bool ParseCallSite(ref FieldReader fields, ref TraceEvent e)
    {
        if (!fields.CallSite(out var site))
        {
            return false;
        }
        e.CallSite = _sites.Intern(site, out int entry);
        e.CallSiteId = entry + 1;
        return true;
    }

    private bool ParseGfp(ref FieldReader fields, ref TraceEvent e)
    {
        if (!fields.Word("gfp_flags="u8, "gfp_flags=<flags>", out var text))
        {
            return false;
        }
        int entry = _gfps.Find(text);
        if (entry >= 0)
        {
            e.Gfp = (Gfp)_gfps.Tag(entry);
            return true;
        }
        // First sight of this spelling: parse it once with the kernel's name table.
        string spelled = Encoding.UTF8.GetString(text);
        if (!GfpFlags.TryParse(spelled, out var gfp))
        {
            fields.Fail("gfp_flags=<flags> (GFP_* and __GFP_* names, 0x… or none, joined by '|')");
            return false;
        }
        if (GfpFlags.Invalid(gfp) is string why)
        {
            // No allocation of a running kernel carries such a mask: gfp_zone()/gfp_migratetype() refuse it.
            fields.Fail($"gfp_flags=<a mask an allocation can carry> ({why})");
            return false;
        }
        _gfps.Add(text, spelled, (uint)gfp);
        e.Gfp = gfp;
        return true;
    }

    private void CountUnknown(ReadOnlySpan<byte> name)
    {
        // Past the intern table's bound, new names share one entry so memory stays bounded.
        int entry = _unknownNames.Find(name);
        string key = entry >= 0 ? _unknownNames.Text(entry)
            : _unknownNames.IsFull ? OtherUnknownEvents
            : _unknownNames.Intern(name);
        _unknown[key] = _unknown.GetValueOrDefault(key) + 1;
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

    /// <summary>A cursor over "key=value key=value …", each value ending at a blank.</summary>
    private ref struct FieldReader
    {
        private readonly ReadOnlySpan<byte> _s;
        private int _p;
        private int _failAt;

        public FieldReader(ReadOnlySpan<byte> s)
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
            for (; i < end; i++)
            {
                uint b = rest[i];
                uint d = b - '0';
                if (d > 9)
                {
                    d = (b | 0x20) - 'a';
                    if (d > 5)
                    {
                        break;
                    }
                    d += 10;
                }
                v = (v << 4) | d;
            }
            return Ended(rest, k, i, v, out value);
        }

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
}
