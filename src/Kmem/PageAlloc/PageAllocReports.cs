// The page allocator's complaints, in the kernel's words: "BUG: Bad page state"
// with dump_page, the ratelimited "page allocation failure" warning with a
// Mem-Info summary, and the once-only warning for an order above MAX_ORDER.
// All of this is off the fast paths; the allocator keeps one instance and calls
// it only when something has gone wrong. The warning limits are its only state.
using System.Text;
using Kmem.Physical;

namespace Kmem.PageAlloc;

internal sealed class PageAllocReports
{
    private readonly PageAllocator _allocator;
    private readonly PhysMem _mem;
    private readonly Action<KernelBugException> _bug;
    private readonly RateLimit _allocWarnLimit = new(TimeSpan.FromSeconds(5), 10);
    private int _orderWarned;

    public PageAllocReports(PageAllocator allocator, Action<KernelBugException> bug)
    {
        _allocator = allocator;
        _mem = allocator.Mem;
        _bug = bug;
    }

    private Arch Arch => _allocator.Arch;
    private KernelLog Log => _allocator.Log;

    private static readonly (PageFlags Flag, string Name)[] s_flagNames =
    [
        (PageFlags.Locked, "locked"), (PageFlags.Referenced, "referenced"), (PageFlags.Uptodate, "uptodate"),
        (PageFlags.Dirty, "dirty"), (PageFlags.Lru, "lru"), (PageFlags.Active, "active"),
        (PageFlags.Workingset, "workingset"), (PageFlags.Slab, "slab"), (PageFlags.Reserved, "reserved"),
        (PageFlags.Private, "private"), (PageFlags.Writeback, "writeback"), (PageFlags.Head, "head"),
        (PageFlags.Reclaim, "reclaim"), (PageFlags.SwapBacked, "swapbacked"), (PageFlags.Unevictable, "unevictable"),
        (PageFlags.Mlocked, "mlocked"),
    ];

    /// <summary>The calling task's name as reports show it (current->comm, at most 15 characters).</summary>
    public static string Comm
    {
        get
        {
            string name = Thread.CurrentThread.Name ?? "kmem";
            return name.Length > 15 ? name[..15] : name;
        }
    }

    /// <summary>bad_page: the report, then the machine's bug policy (throw or log and carry on).</summary>
    public void BadPage(uint pfn, string reason)
    {
        var sb = new StringBuilder();
        sb.Append($"BUG: Bad page state in process {Comm}  pfn:{pfn:x5}\n");
        sb.Append(DumpPage(pfn, reason));
        sb.Append("Disabling lock debugging due to kernel taint");
        _bug(new BadPageStateException(sb.ToString(), pfn, reason));
    }

    /// <summary>dump_page.</summary>
    public string DumpPage(uint pfn, string reason)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        int width = Arch.StructPageSize == 64 ? 16 : 8;
        ulong address = Arch.VmemmapBase + (ulong)pfn * (ulong)Arch.StructPageSize;
        string zero = new('0', width);
        var zone = pfn < _mem.MaxPfn ? _allocator.ZoneOf(pfn) : null;
        PageFlags flags = f.Flags;
        var names = s_flagNames.Where(n => (flags & n.Flag) != 0).Select(n => n.Name).ToList();
        names.Add($"node={zone?.Node.Id ?? 0}");
        names.Add($"zone={(zone is null ? 0 : Array.IndexOf(Arch.Zones, zone.Type))}");
        return $"page:{address.ToString($"x{width}")} refcount:{f.RefCount} mapcount:{f.MapCount} mapping:{zero} index:0x0 pfn:0x{pfn:x}\n"
            + $"flags: 0x{(uint)(f.Flags & PageFlags.KernelMask):x}({string.Join('|', names)})\n"
            + $"page dumped because: {reason}\n";
    }

    public void WarnOrderTooLarge(Gfp gfp, int order)
    {
        if ((gfp & Gfp.NoWarn) != 0 || Interlocked.Exchange(ref _orderWarned, 1) != 0)
        {
            return;
        }
        Log.Printk($"WARNING: CPU: {_allocator.Cpus.Current} PID: {Environment.ProcessId} at mm/page_alloc.c __alloc_pages\n"
            + $"__alloc_pages: order:{order} >= MAX_ORDER ({Arch.MaxOrder}), mode:{Hex(gfp)}({GfpFlags.Format(gfp)})");
    }

    public void BadGfp(Gfp gfp) =>
        _bug(new KernelBugException($"kernel BUG at include/linux/gfp.h: invalid gfp mask {Hex(gfp)}({GfpFlags.Format(gfp)}): "
            + "the zone modifiers or migrate types combine in a way gfp_zone()/gfp_migratetype() forbid"));

    private static string Hex(Gfp gfp) => $"0x{(uint)gfp:x}";

    /// <summary>warn_alloc: the failure line and a Mem-Info summary of every zone, ratelimited.</summary>
    public void WarnAlloc(Gfp gfp, int order)
    {
        if ((gfp & Gfp.NoWarn) != 0 || !_allocWarnLimit.Allow())
        {
            return;
        }
        int nodes = _allocator.Nodes.Length;
        string mems = nodes == 1 ? "0" : $"0-{nodes - 1}";
        var sb = new StringBuilder();
        sb.Append($"{Comm}: page allocation failure: order:{order}, mode:{Hex(gfp)}({GfpFlags.Format(gfp)}), nodemask=(null),cpuset=/,mems_allowed={mems}\n");
        sb.Append("Mem-Info:\n");
        foreach (var z in _allocator.Zones.Where(z => z.PresentPages > 0))
        {
            long k = PhysMem.PageSize >> 10;
            sb.Append($"Node {z.Node.Id} {z.Name} free:{z.FreePages * k}kB boost:{z.WatermarkBoost * k}kB min:{z.Watermark[Zone.WmarkMin] * k}kB "
                + $"low:{z.Watermark[Zone.WmarkLow] * k}kB high:{z.Watermark[Zone.WmarkHigh] * k}kB "
                + $"reserved_highatomic:{z.NrReservedHighatomic * k}KB present:{z.PresentPages * k}kB managed:{z.ManagedPages * k}kB\n");
            sb.Append("lowmem_reserve[]:");
            foreach (var t in Arch.Zones)
            {
                sb.Append($" {z.LowmemReserve[(int)t]}");
            }
            sb.Append('\n');
            sb.Append($"Node {z.Node.Id} {z.Name}:");
            long total = 0;
            for (int o = 0; o < Arch.MaxOrder; o++)
            {
                long n = z.NrFree(o);
                total += n << o;
                sb.Append($" {n}*{4 << o}kB");
            }
            sb.Append($" = {total * k}kB\n");
        }
        Log.Printk(sb.ToString().TrimEnd('\n'));
    }
}
