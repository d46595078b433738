// The common prefix of trace lines, generated in the kernel's own layout ("%16s-%-7d [%03d] FLAGS
// %5llu.%06lu: ") and in its variants (comms longer than 16 columns, with blanks and dashes; pids
// wider than 7; CPUs above 999; the TGID column; 4 flag characters or none; 9 decimals): every one
// reads back as the task, pid, CPU and timestamp it was written with. The reader has a fast path for
// the common layout and a general one for the rest; this holds both to the same answers. Fields
// after the prefix are checked too, so a fast path that stopped at the wrong column would show.
using System.Globalization;
using CsCheck;

namespace Kmem.Tests.Trace;

public class TracePrefixPropertyTests
{
    private sealed record Prefix(string Comm, int Pid, int Cpu, int Tgid, int FlagCount, long Seconds, int Micros, bool NineDecimals, ulong Ptr);

    private static readonly Gen<string> s_comm =
        Gen.Char["abcxyz019/:<>_.- "].Array[1, 22].Select(chars => new string(chars).Trim()).Where(s => s.Length > 0 && !s.EndsWith('-'));

    private static readonly Gen<Prefix> s_prefix =
        from comm in s_comm
        from pid in Gen.OneOf(Gen.Int[0, 99_999], Gen.Int[0, int.MaxValue])
        from cpu in Gen.OneOf(Gen.Int[0, 15], Gen.Int[0, 4095])
        from tgid in Gen.OneOf(Gen.Const(-2), Gen.Const(-1), Gen.Int[0, 9_999_999])
        from flagCount in Gen.Int[0, 2]
        from seconds in Gen.OneOf(Gen.Long[0, 99_999], Gen.Long[0, 999_999_999_999])
        from micros in Gen.Int[0, 999_999]
        from nine in Gen.Bool
        from ptr in Gen.ULong
        select new Prefix(comm, pid, cpu, tgid, flagCount, seconds, micros, nine, ptr);

    private static string Line(Prefix p)
    {
        var inv = CultureInfo.InvariantCulture;
        // Tgid -2: no TGID column; -1: the column with dashes (unknown).
        string tgid = p.Tgid switch
        {
            -2 => "",
            -1 => " (-------)",
            _ => string.Create(inv, $" ({p.Tgid,7})"),
        };
        string flags = p.FlagCount switch
        {
            0 => "d..1. ",
            1 => "d..1 ",
            _ => "",
        };
        string fraction = p.NineDecimals ? p.Micros.ToString("D6", inv) + "123" : p.Micros.ToString("D6", inv);
        return string.Create(inv, $"{p.Comm,16}-{p.Pid,-7}{tgid} [{p.Cpu:D3}] {flags}{p.Seconds,5}.{fraction}: kfree: call_site=f+0x1/0x2 ptr={p.Ptr:x16}");
    }

    [Fact]
    public void EveryPrefixReadsBackAsWritten()
    {
        s_prefix.Sample(p =>
        {
            var e = TraceData.One(Line(p));
            Assert.Equal(TraceEventKind.Kfree, e.Kind);
            Assert.Equal(p.Comm, e.Comm);
            Assert.Equal(p.Pid, e.Pid);
            Assert.Equal(p.Cpu, e.Cpu);
            Assert.Equal(p.Tgid == -2 ? -1 : p.Tgid, e.Tgid);
            Assert.Equal(p.Seconds * 1_000_000 + p.Micros, e.Timestamp);
            Assert.Equal("f+0x1/0x2", e.CallSite);
            Assert.Equal(p.Ptr, e.Ptr);
        }, iter: 2_000);
    }

    private static string Kernel(string comm, int pid, int cpu) =>
        string.Create(CultureInfo.InvariantCulture, $"{comm,16}-{pid,-7} [{cpu:D3}] d..1.     1.000002: kfree: call_site=f+0x1/0x2 ptr=ffff888003c1e000");

    [Fact]
    public void ABracketInTheCommIsReadTheGeneralWayWithTheSameAnswer()
    {
        // In the kernel's columns, but the comm holds a '[': the first " [digits] " rule decides.
        var e = TraceData.One(Kernel("a [b] c-d", 5, 3));
        Assert.Equal(("a [b] c-d", 5, 3, 1_000_002L), (e.Comm, e.Pid, e.Cpu, e.Timestamp));
        // A comm that holds " [007] " itself: that is the first CPU field, and the task before it has no pid.
        var error = TraceData.Error(Kernel("x [007] y", 5, 3) + "\n");
        Assert.Contains("TASK-PID before [CPU]", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("          <idle>-0       [000] d..1.     0.000000: kfree: call_site=f+0x1/0x2 ptr=ffff888003c1e000", "<idle>", 0, 0, 0L)]
    [InlineData("    kworker/u4:0-9       [001] .....   123.456789: kfree: call_site=f+0x1/0x2 ptr=ffff888003c1e000", "kworker/u4:0", 9, 1, 123_456_789L)]
    [InlineData(" a-very-long-comm-name-12345678 [002] d..1.     1.000002: kfree: call_site=f+0x1/0x2 ptr=ffff888003c1e000", "a-very-long-comm-name", 12_345_678, 2, 1_000_002L)]
    public void RealShapesReadBack(string line, string comm, int pid, int cpu, long micros)
    {
        var e = TraceData.One(line);
        Assert.Equal((comm, pid, cpu, micros), (e.Comm, e.Pid, e.Cpu, e.Timestamp));
    }

    private const string At = "          <idle>-0       [000] d..1.     0.000000: ";

    [Fact]
    public void FieldSpellingsOffTheFastPathsReadTheSameWay()
    {
        // Each field once in the plain spelling the fast paths take and once in a spelling only the
        // general path takes; both must give the same value.
        Assert.Equal(0xffff888003c1e000UL, TraceData.One(At + "kfree: call_site=f+0x1/0x2 ptr=ffff888003c1e000").Ptr);
        Assert.Equal(0xffff888003c1e000UL, TraceData.One(At + "kfree: call_site=f+0x1/0x2 ptr=0xffff888003c1e000").Ptr);
        Assert.Equal(0UL, TraceData.One(At + "kfree: call_site=f+0x1/0x2 ptr=(null)").Ptr);
        Assert.Equal(0x83dcUL, TraceData.One(At + "mm_page_free: page=fffacca84020f700 pfn=0x83dc order=0").Pfn);
        Assert.Equal(0x83dcUL, TraceData.One(At + "mm_page_free: page=fffacca84020f700 pfn=0X83DC order=0").Pfn);
        Assert.Equal(33_756UL, TraceData.One(At + "mm_page_free: page=fffacca84020f700 pfn=33756 order=0").Pfn);
        const string Alloc = "kmalloc: call_site=f+0x1/0x2 ptr=ffff888003000000 bytes_req={0} bytes_alloc=64 gfp_flags=GFP_KERNEL node={1} accounted={2}";
        var a = TraceData.One(At + string.Format(CultureInfo.InvariantCulture, Alloc, "12345678901234567890", "-1", "true"));
        Assert.Equal((12_345_678_901_234_567_890UL, -1, true), (a.BytesReq, a.Node, a.Accounted));
        a = TraceData.One(At + string.Format(CultureInfo.InvariantCulture, Alloc, "60", "1234567890", "false"));
        Assert.Equal((60UL, 1_234_567_890, false), (a.BytesReq, a.Node, a.Accounted));
        Assert.Contains("bytes_req=<number>", TraceData.Error(At + string.Format(CultureInfo.InvariantCulture, Alloc, "99999999999999999999", "-1", "true") + "\n").Message, StringComparison.Ordinal);
        Assert.Contains("ptr=<hex pointer>", TraceData.Error(At + "kfree: call_site=f+0x1/0x2 ptr=1ffff888003c1e000\n").Message, StringComparison.Ordinal);
        Assert.Contains("accounted=true|false", TraceData.Error(At + string.Format(CultureInfo.InvariantCulture, Alloc, "60", "-1", "falsey") + "\n").Message, StringComparison.Ordinal);
    }
}
