// The kernel's fault injection (lib/fault-inject.c: struct fault_attr, should_fail) and the
// fail_page_alloc filters (mm/page_alloc.c: should_fail_alloc_page). One FaultAttr is one
// debugfs directory (fail_page_alloc, later failslab). Mutable state is guarded by one lock,
// taken only when injection is armed; Enabled is a lock-free read for the allocator's fast path.
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;

namespace Kmem;

/// <summary>The kernel's enum fault_flags: how one call to <see cref="FaultAttr.ShouldFailEx"/> behaves.</summary>
[Flags]
public enum FaultFlags
{
    /// <summary>No flag.</summary>
    None = 0,
    /// <summary>FAULT_NOWARN: force the failure silently (the caller passed __GFP_NOWARN).</summary>
    NoWarn = 1 << 0,
}

/// <summary>
/// A fault-injection capability (struct fault_attr) such as <c>fail_page_alloc</c>: decides,
/// as the kernel's should_fail() does, whether an operation is forced to fail, and logs the
/// kernel's FAULT_INJECTION report when it is. Defaults are the kernel's: probability 0
/// (disabled), interval 1, times 1, space 0, verbose 2.
/// </summary>
/// <remarks>
/// The verbose ratelimit, task-filter and stack-trace address filters are not modelled (the
/// kernel's ratelimit is off by default). Random numbers come only from the <see cref="Random"/>
/// given at construction and are drawn under this attribute's lock, so a seeded run repeats.
/// </remarks>
public sealed class FaultAttr
{
    // Largest order whose page count (1 << order) fits the size argument.
    private const int MaxShiftableOrder = 62;

    // The calling thread's /proc/self/fail-nth. Per thread and shared by every FaultAttr,
    // as the kernel's task->fail_nth is shared by failslab, fail_page_alloc and the rest.
    [ThreadStatic]
    private static int t_failNth;

    // Set once any thread arms fail-nth, so that Enabled stays off thread-local storage until then.
    private static volatile bool s_failNthUsed;

    private readonly Lock _lock = new();
    private readonly Random _random;
    private readonly KernelLog? _log;

    // Read without the lock by Enabled; written under it.
    private int _probability;
    private long _interval = 1;
    private int _times = 1;
    private int _space;
    private int _verbose = 2;
    private ulong _count;
    private long _failures;
    private int _minOrder = 1;

    /// <summary>Creates a capability with the kernel's defaults (FAULT_ATTR_INITIALIZER).</summary>
    /// <param name="name">Its debugfs name, printed in the report: <c>fail_page_alloc</c> or <c>failslab</c>.</param>
    /// <param name="random">The machine's seeded random source; used only under this attribute's lock.</param>
    /// <param name="log">Where forced failures are reported, or null to report nowhere.</param>
    public FaultAttr(string name, Random random, KernelLog? log = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(random);
        Name = name;
        _random = random;
        _log = log;
    }

    /// <summary>The capability's name (its debugfs directory), printed as <c>name …</c> in the report.</summary>
    public string Name { get; }

    /// <summary>probability: the percent chance (0..100) that an eligible call fails; 0 disables injection.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is outside 0..100.</exception>
    public int Probability
    {
        get => Volatile.Read(ref _probability);
        set
        {
            if (value is < 0 or > 100)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "probability must be 0..100");
            }
            lock (_lock)
            {
                Volatile.Write(ref _probability, value);
            }
        }
    }

    /// <summary>interval: only every interval-th call that reaches the interval check may fail (1 = every call).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is below 1.</exception>
    public long Interval
    {
        get
        {
            lock (_lock)
            {
                return _interval;
            }
        }
        set
        {
            if (value < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "interval must be >= 1");
            }
            lock (_lock)
            {
                _interval = value;
            }
        }
    }

    /// <summary>times: how many failures may still be forced; -1 means unlimited. Counts down as failures happen.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is below -1.</exception>
    public int Times
    {
        get
        {
            lock (_lock)
            {
                return _times;
            }
        }
        set
        {
            if (value < -1)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "times must be -1 (unlimited) or >= 0");
            }
            lock (_lock)
            {
                _times = value;
            }
        }
    }

    /// <summary>
    /// space: a budget consumed before any failure: while it is larger than a call's size the call
    /// succeeds and the size is subtracted. fail_page_alloc measures size in pages (1 &lt;&lt; order).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative.</exception>
    public int Space
    {
        get
        {
            lock (_lock)
            {
                return _space;
            }
        }
        set
        {
            if (value < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "space must be >= 0");
            }
            lock (_lock)
            {
                _space = value;
            }
        }
    }

    /// <summary>verbose: 0 reports nothing, 1 the FAULT_INJECTION lines, 2 those and the call trace.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is outside 0..2.</exception>
    public int Verbose
    {
        get => Volatile.Read(ref _verbose);
        set
        {
            if (value is < 0 or > 2)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "verbose must be 0, 1 or 2");
            }
            Volatile.Write(ref _verbose, value);
        }
    }

    /// <summary>ignore-gfp-wait: never fail allocations that may sleep (__GFP_DIRECT_RECLAIM). Default true.</summary>
    public bool IgnoreGfpWait { get; set; } = true;

    /// <summary>cache-filter (failslab): fail only allocations from caches created with SLAB_FAILSLAB (or given
    /// it by slub_debug's letter A). Default false.</summary>
    public bool CacheFilter { get; set; }

    /// <summary>ignore-gfp-highmem (fail_page_alloc): never fail __GFP_HIGHMEM allocations. Default true.</summary>
    public bool IgnoreGfpHighmem { get; set; } = true;

    /// <summary>min-order (fail_page_alloc): never fail allocations below this order. Default 1, so order 0 is spared.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative.</exception>
    public int MinOrder
    {
        get => Volatile.Read(ref _minOrder);
        set
        {
            if (value < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "min-order must be >= 0");
            }
            Volatile.Write(ref _minOrder, value);
        }
    }

    /// <summary>How many failures this capability has forced.</summary>
    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>
    /// The calling thread's fail-nth, as /proc/self/fail-nth: when set to n &gt; 0, the n-th call
    /// on this thread that reaches should_fail (of any capability) fails, the calls before it do
    /// not, and no other setting applies meanwhile; it reads back the calls left and is 0 when unset.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative.</exception>
    public static int FailNth
    {
        get => t_failNth;
        set
        {
            if (value < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "fail-nth must be >= 0");
            }
            if (value != 0)
            {
                s_failNthUsed = true;
            }
            t_failNth = value;
        }
    }

    /// <summary>
    /// True when a call could be failed at all (probability set, or fail-nth armed on this thread).
    /// When false every should_fail answer is no, so callers may skip the checks.
    /// </summary>
    public bool Enabled
    {
        // Inlined into the slab fast paths, which otherwise pay a call and its register spills for a flag.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Volatile.Read(ref _probability) != 0 || (s_failNthUsed && t_failNth != 0);
    }

    /// <summary>
    /// should_fail_alloc_page(): whether a page allocation of <paramref name="order"/> with
    /// <paramref name="gfp"/> is forced to fail. In order: below min-order, __GFP_NOFAIL,
    /// __GFP_HIGHMEM with ignore-gfp-highmem, and __GFP_DIRECT_RECLAIM with ignore-gfp-wait are
    /// never failed; otherwise should_fail with a size of 2^order pages, silently for __GFP_NOWARN.
    /// </summary>
    /// <param name="gfp">The allocation's flags.</param>
    /// <param name="order">The allocation's order.</param>
    /// <returns>True when the allocation must fail.</returns>
    public bool ShouldFailAllocPage(Gfp gfp, int order)
    {
        if ((uint)order > MaxShiftableOrder)
        {
            throw new ArgumentOutOfRangeException(nameof(order), order, "order must be 0..62");
        }
        // The filters below have no side effects and should_fail says no when neither
        // probability nor fail-nth is set, so skipping them all is the same answer.
        if (!Enabled)
        {
            return false;
        }
        if (order < MinOrder)
        {
            return false;
        }
        if ((gfp & Gfp.NoFail) != 0)
        {
            return false;
        }
        if (IgnoreGfpHighmem && (gfp & Gfp.HighMem) != 0)
        {
            return false;
        }
        if (IgnoreGfpWait && (gfp & Gfp.DirectReclaim) != 0)
        {
            return false;
        }
        // 6.1 as released made __GFP_NOWARN silence the attribute for good (a sticky no_warn);
        // the fix, in 6.1 stable, silences only this call, which is what is done here.
        var flags = (gfp & Gfp.NoWarn) != 0 ? FaultFlags.NoWarn : FaultFlags.None;
        return ShouldFailEx(1L << order, flags);
    }

    /// <summary>should_fail(): <see cref="ShouldFailEx"/> with no flags.</summary>
    /// <param name="size">The operation's size, consumed from <see cref="Space"/>.</param>
    /// <returns>True when the operation must fail.</returns>
    public bool ShouldFail(long size) => ShouldFailEx(size, FaultFlags.None);

    /// <summary>
    /// should_fail_ex(): the kernel's decision, in its order. An armed fail-nth counts down and
    /// alone decides. Otherwise no failure when probability is 0 or times is 0; while space is
    /// larger than <paramref name="size"/> the size is consumed and the call succeeds; with an
    /// interval only every interval-th call goes on; then it fails with the given probability.
    /// A failure is reported per <see cref="Verbose"/> (unless <see cref="FaultFlags.NoWarn"/>)
    /// and uses up one of <see cref="Times"/> unless times is -1.
    /// </summary>
    /// <param name="size">The operation's size, consumed from <see cref="Space"/>.</param>
    /// <param name="flags">Per-call behaviour.</param>
    /// <returns>True when the operation must fail.</returns>
    public bool ShouldFailEx(long size, FaultFlags flags)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        var nth = t_failNth;
        if (nth != 0)
        {
            t_failNth = --nth;
            if (nth != 0)
            {
                return false;
            }
            Fail(flags);
            return true;
        }
        // Unarmed: stay off the lock, as the allocator calls this on every eligible allocation.
        if (Volatile.Read(ref _probability) == 0)
        {
            return false;
        }
        string? report;
        bool withTrace;
        lock (_lock)
        {
            if (_probability == 0 || _times == 0)
            {
                return false;
            }
            if (_space > size)
            {
                _space -= (int)size;
                return false;
            }
            if (_interval > 1)
            {
                _count++;
                if (_count % (ulong)_interval != 0)
                {
                    return false;
                }
            }
            if (_probability <= _random.Next(100))
            {
                return false;
            }
            // Counted under the same lock as the check of times, so that racing callers never force more than times.
            report = CommitFailure(flags, out withTrace);
        }
        Report(report, withTrace);
        return true;
    }

    // The kernel's "fail:" label: fail_dump(), then use up one of times.
    private void Fail(FaultFlags flags)
    {
        string? report;
        bool withTrace;
        lock (_lock)
        {
            report = CommitFailure(flags, out withTrace);
        }
        Report(report, withTrace);
    }

    /// <summary>Counts a forced failure (called under the lock) and returns its report, or null when none is due.</summary>
    private string? CommitFailure(FaultFlags flags, out bool withTrace)
    {
        string? report = null;
        var verbose = Volatile.Read(ref _verbose);
        withTrace = verbose > 1;
        if (verbose > 0 && (flags & FaultFlags.NoWarn) == 0 && _log is not null)
        {
            // Printed before times is decremented, as fail_dump() runs first.
            report = string.Create(CultureInfo.InvariantCulture,
                $"FAULT_INJECTION: forcing a failure.\nname {Name}, interval {_interval}, probability {_probability}, space {_space}, times {_times}");
        }
        if (_times != -1 && _times != 0)
        {
            _times--;
        }
        _failures++;
        return report;
    }

    private void Report(string? report, bool withTrace)
    {
        if (report is null || _log is null)
        {
            return;
        }
        // Logged outside the lock: the log raises events that may call back into the machine.
        if (withTrace)
        {
            report += "\n" + CallTrace(new StackTrace(1, false));
        }
        _log.Printk(report);
    }

    // dump_stack()'s call trace, one frame a line, method names only.
    private static string CallTrace(StackTrace trace)
    {
        var sb = new StringBuilder("Call Trace:");
        foreach (var raw in trace.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var frame = raw.StartsWith("at ", StringComparison.Ordinal) ? raw[3..] : raw;
            sb.Append("\n ").Append(frame);
        }
        return sb.ToString();
    }

    /// <summary>
    /// Reads the boot option <c>fail_page_alloc=</c> / <c>failslab=</c>, whose value is
    /// <c>&lt;interval&gt;,&lt;probability&gt;,&lt;space&gt;,&lt;times&gt;</c> (setup_fault_attr),
    /// into a new capability with the other settings at their defaults.
    /// </summary>
    /// <param name="value">The option's value, e.g. <c>1,100,0,-1</c>.</param>
    /// <param name="name">The capability's name.</param>
    /// <param name="random">The machine's seeded random source.</param>
    /// <param name="log">Where forced failures are reported, or null.</param>
    /// <returns>The configured capability.</returns>
    /// <exception cref="FormatException">The value is not four integers in range; the message says which.</exception>
    public static FaultAttr FromBootOption(string value, string name, Random random, KernelLog? log = null)
    {
        ArgumentNullException.ThrowIfNull(value);
        var attr = new FaultAttr(name, random, log);
        var parts = value.Split(',');
        if (parts.Length != 4)
        {
            throw new FormatException(
                $"{name}={value}: expected <interval>,<probability>,<space>,<times> (FAULT_INJECTION: failed to parse arguments)");
        }
        var interval = ParseField(parts[0], "interval", long.MaxValue, value, name);
        var probability = ParseField(parts[1], "probability", int.MaxValue, value, name);
        var space = ParseField(parts[2], "space", int.MaxValue, value, name);
        var times = ParseField(parts[3], "times", int.MaxValue, value, name);
        try
        {
            attr.Interval = interval;
            attr.Probability = (int)probability;
            attr.Space = (int)space;
            attr.Times = (int)times;
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new FormatException($"{name}={value}: {FirstLine(e.Message)}", e);
        }
        return attr;
    }

    private static long ParseField(string text, string field, long max, string value, string name)
    {
        if (!long.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var result))
        {
            throw new FormatException(
                $"{name}={value}: {field} '{text}' is not an integer; expected <interval>,<probability>,<space>,<times>");
        }
        if (result > max || result < -max - 1)
        {
            throw new FormatException($"{name}={value}: {field} '{text}' is too large");
        }
        return result;
    }

    // ArgumentException appends " (Parameter '…')" and the actual value on further lines.
    private static string FirstLine(string message)
    {
        var end = message.IndexOf(" (Parameter", StringComparison.Ordinal);
        if (end < 0)
        {
            end = message.IndexOf('\n', StringComparison.Ordinal);
        }
        return end < 0 ? message : message[..end];
    }
}
