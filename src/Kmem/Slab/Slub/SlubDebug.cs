// SLUB debugging (mm/slub.c under CONFIG_SLUB_DEBUG, 6.1), apart from the allocator it watches: the slow
// paths every debug cache takes (SlubDebug.SlowPaths.cs), red zones, poisoning, alloc/free tracks, TRACE
// lines, the checks and reports of slub_debug=F (check_object, check_pad_bytes, slab_pad_check,
// print_trailer), the refused-free and out-of-memory reports and list_slab_objects, whose output follows
// the kernel's lines. Slub holds one and calls it only off its fast paths (a debug cache, a bad free, a
// failed slab allocation, a busy shutdown).
// A failed check restores the bytes it names ("FIX … Restoring"), keeps the object as it was (a free that
// fails leaves it allocated; an allocation that fails leaks the rest of the slab, "Marking all objects
// used"), and only then reports through the machine's bug policy, outside every lock.
// Lock order as in Slub.cs: node list_lock → slab lock.
using System.Globalization;
using System.Text;
using Kmem.Physical;
using static Kmem.Slab.Slub;
using static Kmem.Slab.SlubLayout;

namespace Kmem.Slab;

/// <summary>slub_debug of one machine's SLUB: the debug caches' slow paths, checks and reports.</summary>
internal sealed unsafe partial class SlubDebug
{
    /// <summary>POISON_INUSE: slab and object padding.</summary>
    public const byte PoisonInuse = 0x5a;
    /// <summary>POISON_FREE: the body of a poisoned object.</summary>
    public const byte PoisonFree = 0x6b;
    /// <summary>POISON_END: the last byte of a poisoned object.</summary>
    public const byte PoisonEnd = 0xa5;
    /// <summary>SLUB_RED_INACTIVE: red zones of a free object.</summary>
    public const byte RedInactive = 0xbb;
    /// <summary>SLUB_RED_ACTIVE: red zones of an allocated object.</summary>
    public const byte RedActive = 0xcc;

    private const string BugLine = "=============================================================================";
    private const string DashLine = "-----------------------------------------------------------------------------";

    private readonly Slub _slub;
    private readonly PhysMem _mem;
    private readonly CpuTopology _cpus;
    private readonly KernelLog _log;
    private readonly Action<KernelBugException> _bug;
    /// <summary>The alloc/free tracks' caller names and stack depot.</summary>
    private readonly SlubTracks _tracks;
    /// <summary>CONFIG_SLAB_FREELIST_HARDENED: a double free of a freelist head is set_freepointer's BUG.</summary>
    private readonly bool _hardened;

    /// <summary>The debugging of <paramref name="slub"/>, which owns <paramref name="mem"/>'s slabs.</summary>
    public SlubDebug(Slub slub, PhysMem mem, CpuTopology cpus, KernelLog log, Action<KernelBugException> bug, SlubTracks tracks, bool hardened)
    {
        _slub = slub;
        _mem = mem;
        _cpus = cpus;
        _log = log;
        _bug = bug;
        _tracks = tracks;
        _hardened = hardened;
    }

    private ulong KernelAddress(nint p) => _slub.KernelAddress(p);

    private nint ObjectAt(KmemCache s, uint pfn, uint idx) => _slub.ObjectAt(s, pfn, idx);

    // ───────────────────────────── object setup ─────────────────────────────

    /// <summary>setup_slab_debug: a poisoned cache's new slab is filled with POISON_INUSE.</summary>
    internal static void SetupSlabDebug(KmemCache s, nint start, int order)
    {
        if ((s.Flags & SlabFlags.Poison) != 0)
        {
            Bytes(start, (uint)PhysMem.PageSize << order).Fill(PoisonInuse);
        }
    }

    /// <summary>setup_object: setup_object_debug (red zones inactive, poison, empty tracks), then the
    /// constructor.</summary>
    internal static void SetupObject(KmemCache s, nint obj, Action<nint>? ctor)
    {
        if ((s.Flags & (SlabFlags.StoreUser | SlabFlags.RedZone)) != 0 || s.ObjectPoison)
        {
            InitObject(s, obj, RedInactive);
            if ((s.Flags & SlabFlags.StoreUser) != 0)
            {
                Bytes(obj + (nint)InfoEnd(s), 2 * KmemCache.TrackSize).Clear();
            }
        }
        ctor?.Invoke(obj);
    }

    /// <summary>init_object: red zones set to <paramref name="val"/>, a poisoned object's body to POISON_FREE
    /// ending in POISON_END.</summary>
    internal static void InitObject(KmemCache s, nint obj, byte val)
    {
        if ((s.Flags & SlabFlags.RedZone) != 0)
        {
            Bytes(obj - (nint)s.RedLeftPad, s.RedLeftPad).Fill(val);
        }
        if (s.ObjectPoison)
        {
            Bytes(obj, s.ObjectSize - 1).Fill(PoisonFree);
            *(byte*)(obj + (nint)s.ObjectSize - 1) = PoisonEnd;
        }
        if ((s.Flags & SlabFlags.RedZone) != 0)
        {
            Bytes(obj + (nint)s.ObjectSize, s.Inuse - s.ObjectSize).Fill(val);
        }
    }

    // ───────────────────────────── tracks ─────────────────────────────

    /// <summary>set_track (SlubTracks.Set).</summary>
    private void SetTrack(KmemCache s, nint obj, int item) => _tracks.Set(s, obj, item);

    /// <summary>print_tracking (SlubTracks.Print).</summary>
    private void PrintTracking(KmemCache s, nint obj, StringBuilder sb) => _tracks.Print(s, obj, sb);

    /// <summary>trace(): SLAB_TRACE's line for an allocation or a free (with the freed object's bytes).</summary>
    private void Trace(KmemCache s, uint pfn, nint obj, bool alloc)
    {
        if ((s.Flags & SlabFlags.Trace) == 0)
        {
            return;
        }
        ref PageFrame f = ref _mem.Frame(pfn);
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture,
            $"TRACE {s.Name} {(alloc ? "alloc" : "free")} 0x{KernelAddress(obj):x} inuse={f.Aux} fp=0x{Addr(SlabFreelistHead(s, pfn)):x}");
        if (!alloc)
        {
            sb.Append('\n');
            PrintSection("Object ", obj, s.ObjectSize, sb);
        }
        _log.Printk(sb.ToString().TrimEnd('\n'));
    }

    // ───────────────────────────── reports ─────────────────────────────

    private ulong Addr(nint p) => p == 0 ? 0 : KernelAddress(p);

    private nint SlabFreelistHead(KmemCache s, uint pfn)
    {
        uint idx = SlabPage.FreeIdx(_mem.Frame(pfn).Private);
        return idx == SlabPage.NoObject ? 0 : ObjectAt(s, pfn, idx);
    }

    /// <summary>slab_bug's header.</summary>
    private static void SlabBug(KmemCache s, string what, StringBuilder sb) =>
        sb.Append(BugLine).Append('\n').Append("BUG ").Append(s.Name).Append(" (Not tainted): ").Append(what).Append('\n')
            .Append(DashLine).Append("\n\n");

    /// <summary>print_slab_info.</summary>
    private void PrintSlabInfo(KmemCache s, uint pfn, StringBuilder sb)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        string flags = (f.Flags & PageFlags.Head) != 0 ? "slab|head" : "slab";
        sb.Append(CultureInfo.InvariantCulture,
            $"Slab 0x{KernelAddress(_mem.PageAddress(pfn)):x} objects={SlabPage.Objects(f.Private)} used={f.Aux} fp=0x{Addr(SlabFreelistHead(s, pfn)):x} flags=0x{(uint)(f.Flags & PageFlags.KernelMask & ~PageFlags.Locked):x}({flags})\n");
    }

    /// <summary>print_section: print_hex_dump with the address prefix, 16 bytes a row, and the ASCII column.</summary>
    private void PrintSection(string text, nint addr, uint length, StringBuilder sb)
    {
        var bytes = Bytes(addr, length);
        for (int i = 0; i < bytes.Length; i += 16)
        {
            var row = bytes.Slice(i, Math.Min(16, bytes.Length - i));
            sb.Append(text).Append(CultureInfo.InvariantCulture, $"{KernelAddress(addr + i):x16}: ");
            int col = 0;
            for (int j = 0; j < row.Length; j++)
            {
                if (j > 0)
                {
                    sb.Append(' ');
                    col++;
                }
                sb.Append(CultureInfo.InvariantCulture, $"{row[j]:x2}");
                col += 2;
            }
            sb.Append(' ', 49 - col);
            foreach (byte b in row)
            {
                sb.Append(b is >= 0x20 and < 0x7f ? (char)b : '.');
            }
            sb.Append('\n');
        }
    }

    /// <summary>print_trailer: tracks, the slab, the object with its red zones, and the padding.</summary>
    private void PrintTrailer(KmemCache s, uint pfn, nint p, StringBuilder sb)
    {
        nint addr = _mem.PageAddress(pfn);
        PrintTracking(s, p, sb);
        PrintSlabInfo(s, pfn, sb);
        sb.Append(CultureInfo.InvariantCulture, $"Object 0x{KernelAddress(p):x} @offset={p - addr} fp=0x{Addr(GetFreepointer(s, p)):x}\n\n");
        if ((s.Flags & SlabFlags.RedZone) != 0)
        {
            PrintSection("Redzone  ", p - (nint)s.RedLeftPad, s.RedLeftPad, sb);
        }
        else if (p > addr + 16)
        {
            PrintSection("Bytes b4 ", p - 16, 16, sb);
        }
        PrintSection("Object   ", p, Math.Min(s.ObjectSize, (uint)PhysMem.PageSize), sb);
        if ((s.Flags & SlabFlags.RedZone) != 0)
        {
            PrintSection("Redzone  ", p + (nint)s.ObjectSize, s.Inuse - s.ObjectSize, sb);
        }
        uint off = MetadataEnd(s);
        if (off != SizeFromObject(s))
        {
            PrintSection("Padding  ", p + (nint)off, SizeFromObject(s) - off, sb);
        }
        sb.Append(CultureInfo.InvariantCulture, $"CPU: {_cpus.Current} PID: {Environment.CurrentManagedThreadId}\n");
    }

    /// <summary>object_err.</summary>
    private void ObjectErr(KmemCache s, uint pfn, nint obj, string reason, StringBuilder sb)
    {
        SlabBug(s, reason, sb);
        PrintTrailer(s, pfn, obj, sb);
    }

    /// <summary>slab_err.</summary>
    private void SlabErr(KmemCache s, uint pfn, string reason, StringBuilder sb)
    {
        SlabBug(s, reason, sb);
        PrintSlabInfo(s, pfn, sb);
    }

    /// <summary>check_bytes_and_report: <paramref name="bytes"/> at <paramref name="start"/> must all be
    /// <paramref name="value"/>; otherwise the kernel's report, then the bytes restored.</summary>
    private bool CheckBytesAndReport(KmemCache s, uint pfn, nint obj, string what, nint start, byte value, uint bytes, StringBuilder sb)
    {
        var span = Bytes(start, bytes);
        int fault = span.IndexOfAnyExcept(value);
        if (fault < 0)
        {
            return true;
        }
        int end = span.LastIndexOfAnyExcept(value) + 1;
        nint addr = _mem.PageAddress(pfn);
        SlabBug(s, what + " overwritten", sb);
        sb.Append(CultureInfo.InvariantCulture,
            $"0x{KernelAddress(start + fault):x}-0x{KernelAddress(start + end - 1):x} @offset={start + fault - addr}. First byte 0x{span[fault]:x} instead of 0x{value:x}\n");
        PrintTrailer(s, pfn, obj, sb);
        sb.Append(CultureInfo.InvariantCulture,
            $"FIX {s.Name}: Restoring {what} 0x{KernelAddress(start + fault):x}-0x{KernelAddress(start + end - 1):x}=0x{value:x}\n");
        span[fault..end].Fill(value);
        return false;
    }

    /// <summary>check_valid_pointer: 0, or the start of an object of the slab.</summary>
    private bool CheckValidPointer(KmemCache s, uint pfn, nint p)
    {
        if (p == 0)
        {
            return true;
        }
        nint slot = p - (nint)s.RedLeftPad;
        nint b = _mem.PageAddress(pfn);
        long objects = SlabPage.Objects(_mem.Frame(pfn).Private);
        return slot >= b && slot < b + (nint)(objects * s.Size) && (slot - b) % s.Size == 0;
    }

    /// <summary>check_pad_bytes: the padding after the metadata keeps POISON_INUSE.</summary>
    private bool CheckPadBytes(KmemCache s, uint pfn, nint p, StringBuilder sb)
    {
        uint off = MetadataEnd(s);
        return SizeFromObject(s) == off
            || CheckBytesAndReport(s, pfn, p, "Object padding", p + (nint)off, PoisonInuse, SizeFromObject(s) - off, sb);
    }

    /// <summary>check_object: red zones (or alignment padding), poison of a free object, padding, and the free
    /// pointer.</summary>
    private bool CheckObject(KmemCache s, uint pfn, nint obj, byte val, StringBuilder sb)
    {
        nint endObject = obj + (nint)s.ObjectSize;
        if ((s.Flags & SlabFlags.RedZone) != 0)
        {
            if (!CheckBytesAndReport(s, pfn, obj, "Left Redzone", obj - (nint)s.RedLeftPad, val, s.RedLeftPad, sb)
                || !CheckBytesAndReport(s, pfn, obj, "Right Redzone", endObject, val, s.Inuse - s.ObjectSize, sb))
            {
                return false;
            }
        }
        else if ((s.Flags & SlabFlags.Poison) != 0 && s.ObjectSize < s.Inuse)
        {
            CheckBytesAndReport(s, pfn, obj, "Alignment padding", endObject, PoisonInuse, s.Inuse - s.ObjectSize, sb);
        }
        if ((s.Flags & SlabFlags.Poison) != 0)
        {
            if (val != RedActive && s.ObjectPoison
                && (!CheckBytesAndReport(s, pfn, obj, "Poison", obj, PoisonFree, s.ObjectSize - 1, sb)
                    || !CheckBytesAndReport(s, pfn, obj, "End Poison", endObject - 1, PoisonEnd, 1, sb)))
            {
                return false;
            }
            CheckPadBytes(s, pfn, obj, sb);
        }
        if (s.Offset < s.Inuse && val == RedActive)
        {
            // The free pointer lies inside an allocated object: it is user data now.
            return true;
        }
        if (!CheckValidPointer(s, pfn, GetFreepointer(s, obj)))
        {
            ObjectErr(s, pfn, obj, "Freepointer corrupt", sb);
            SetFreepointer(s, obj, 0);
            return false;
        }
        return true;
    }

    /// <summary>slab_pad_check: a poisoned cache's slab keeps POISON_INUSE in the bytes after its last object.</summary>
    private void SlabPadCheck(KmemCache s, uint pfn, StringBuilder sb)
    {
        if ((s.Flags & SlabFlags.Poison) == 0)
        {
            return;
        }
        ref PageFrame f = ref _mem.Frame(pfn);
        int order = (f.Flags & PageFlags.Head) != 0 ? f.Order : 0;
        uint length = (uint)PhysMem.PageSize << order;
        uint remainder = length % s.Size;
        if (remainder == 0)
        {
            return;
        }
        nint start = _mem.PageAddress(pfn);
        nint pad = start + (nint)(length - remainder);
        var span = Bytes(pad, remainder);
        int fault = span.IndexOfAnyExcept(PoisonInuse);
        if (fault < 0)
        {
            return;
        }
        int end = span.LastIndexOfAnyExcept(PoisonInuse) + 1;
        SlabErr(s, pfn, $"Padding overwritten. 0x{KernelAddress(pad + fault):x}-0x{KernelAddress(pad + end - 1):x} @offset={pad + fault - start}", sb);
        PrintSection("Padding ", pad, remainder, sb);
        sb.Append(CultureInfo.InvariantCulture,
            $"FIX {s.Name}: Restoring slab padding 0x{KernelAddress(pad + fault):x}-0x{KernelAddress(pad + end - 1):x}=0x{PoisonInuse:x}\n");
        span[fault..end].Fill(PoisonInuse);
    }

    /// <summary>list_slab_objects: the report of a partial slab that still has objects at shutdown.</summary>
    public void ListSlabObjects(KmemCache s, uint pfn)
    {
        ref PageFrame f = ref _mem.Frame(pfn);
        int objects = SlabPage.Objects(f.Private);
        uint freeIdx = SlabPage.FreeIdx(f.Private);
        nint fp = freeIdx == SlabPage.NoObject ? 0 : ObjectAt(s, pfn, freeIdx);
        _log.Printk(new string('=', 77));
        _log.Printk($"BUG {s.Name} (Not tainted): Objects remaining in {s.Name} on __kmem_cache_shutdown()");
        _log.Printk(new string('-', 77));
        _log.Printk("");
        string flags = (f.Flags & PageFlags.Head) != 0 ? "slab|head" : "slab";
        _log.Printk($"Slab 0x{KernelAddress(_mem.PageAddress(pfn)):x} objects={objects} used={f.Aux} fp=0x{(fp == 0 ? 0 : KernelAddress(fp)):x} "
            + $"flags=0x{(uint)(f.Flags & PageFlags.KernelMask):x}({flags})");
        var bits = _slub.AllocBits(pfn);
        for (int i = 0; i < objects; i++)
        {
            if (bits is not null && Volatile.Read(ref bits[i]) != 0)
            {
                _log.Printk($"Object 0x{KernelAddress(ObjectAt(s, pfn, (uint)i)):x} @offset={(long)i * s.Size + s.RedLeftPad}");
            }
        }
    }

    /// <summary>slab_out_of_memory: the cache's figures, node by node, when no slab could be had.</summary>
    public void SlabOutOfMemory(KmemCache s, Gfp gfp, int node)
    {
        _log.Printk($"SLUB: Unable to allocate memory on node {node}, gfp=0x{(uint)gfp:x}({GfpFlags.Format(gfp)})");
        _log.Printk($"  cache: {s.Name}, object size: {s.ObjectSize}, buffer size: {s.Size}, default order: {s.Order}, min order: {s.MinOrder}");
        for (int nid = 0; nid < s.Nodes.Length; nid++)
        {
            var n = s.Nodes[nid];
            long slabs = Volatile.Read(ref n.NrSlabs);
            long objs = Volatile.Read(ref n.TotalObjects);
            _log.Printk($"  node {nid}: slabs: {slabs}, objs: {objs}, free: {SlubSysfs.CountPartialFree(_mem, n)}");
        }
    }

    /// <summary>Sends a collected report through the machine's bug policy (outside every lock).</summary>
    internal void RaiseReport(KmemCache s, nint obj, StringBuilder? sb)
    {
        if (sb is { Length: > 0 })
        {
            _bug(new SlabBugException(sb.ToString().TrimEnd('\n'), KernelAddress(obj), s.Name));
        }
    }

    /// <summary>A refused free (not an object's start, or already free): a debug cache reports it with
    /// object_err/slab_err and the trailer; with CONFIG_SLAB_FREELIST_HARDENED a free of the object at the head
    /// of the freelist it would join is set_freepointer's BUG; otherwise the short report.</summary>
    public void ReportBadFree(KmemCache s, uint pfn, nint obj, string what, string caller, long offset)
    {
        if (_hardened && what == "Object already free" && IsFreelistHead(s, pfn, obj))
        {
            _bug(new SlabBugException("------------[ cut here ]------------\n"
                + "kernel BUG at mm/slub.c: set_freepointer: BUG_ON(object == fp)\n"
                + $"invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\nCPU: {_cpus.Current} PID: {Environment.CurrentManagedThreadId}\n"
                + $"double free of 0x{KernelAddress(obj):x} in {s.Name}: the object is already the head of the freelist ({caller})",
                KernelAddress(obj), s.Name));
            return;
        }
        if (!s.IsDebug)
        {
            _slub.Report(s, obj, what, caller, offset);
            return;
        }
        var sb = new StringBuilder();
        if (what == "Object already free")
        {
            ObjectErr(s, pfn, obj, what, sb);
        }
        else
        {
            SlabErr(s, pfn, what, sb);
        }
        sb.Append(CultureInfo.InvariantCulture, $"FIX {s.Name}: Object at 0x{KernelAddress(obj):x} not freed\n");
        RaiseReport(s, obj, sb);
    }

    /// <summary>Whether <paramref name="obj"/> heads the freelist a free would push it onto: the cpu freelist
    /// when its slab is this CPU's, else the slab's own.</summary>
    private bool IsFreelistHead(KmemCache s, uint pfn, nint obj)
    {
        var c = s.CpuSlab[_cpus.Current];
        c.Lock();
        bool cpuSlab = c.Slab == pfn;
        nint head = c.Freelist;
        c.Unlock();
        if (cpuSlab)
        {
            return head == obj;
        }
        ref PageFrame f = ref _mem.Frame(pfn);
        SlabPage.Lock(ref f);
        head = SlabFreelistHead(s, pfn);
        SlabPage.Unlock(ref f);
        return head == obj;
    }

    /// <summary>The tracking lines of an object of a STORE_USER cache (cache_from_obj prints them after
    /// "Wrong slab cache").</summary>
    public string TrackingOf(KmemCache owner, nint p)
    {
        if ((owner.Flags & SlabFlags.StoreUser) == 0)
        {
            return "";
        }
        var sb = new StringBuilder();
        PrintTracking(owner, p, sb);
        return sb.ToString();
    }
}
