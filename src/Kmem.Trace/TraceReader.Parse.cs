// One trace line to one TraceEvent: the common prefix (read by TraceLinePrefix) and the fields
// of each Linux 6.1 template (include/trace/events/kmem.h, percpu.h, read by TraceFieldReader),
// expected in the kernel's order; extra fields after the last expected one are ignored. Works on
// the line's bytes in place; on failure it says what was expected. Part of TraceReader, not
// thread-safe.
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
        if (!TraceLinePrefix.TryFast(s, p, out int cpu, out int pid, out var comm, out long micros, out int q)
            && !TraceLinePrefix.TryGeneral(s, p, out cpu, out tgid, out pid, out comm, out micros, out q, out expected))
        {
            return LineResult.Bad;
        }
        int colon = q < s.Length ? s[q..].IndexOf((byte)':') : -1;
        if (colon <= 0)
        {
            expected = $"expected {TraceLinePrefix.Shape} (EVENT: after the timestamp)";
            return LineResult.Bad;
        }
        var name = s.Slice(q, colon);
        int f = q + colon + 1;
        if (f < s.Length && s[f] == ' ')
        {
            f++;
        }
        var fields = new TraceFieldReader(s[f..]);

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
        else if (PressureKind(name) is TraceEventKind kind)
        {
            // vmscan, compaction and oom events: their fields as text, read by the pressure replay (Pressure/).
            e.Kind = kind;
            var text = s[f..].TrimEnd((byte)' ');
            e.Text = Encoding.UTF8.GetString(text);
            int at = text.IndexOf("pfn=0x"u8);
            if (kind == TraceEventKind.MmVmscanWriteFolio && at >= 0)
            {
                var hex = text[(at + 6)..];
                int end = hex.IndexOf((byte)' ');
                if (TraceNumbers.TryHex(end < 0 ? hex : hex[..end], out ulong pfn))
                {
                    e.Pfn = pfn;
                }
            }
            return LineResult.Event;
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

    // The vmscan, compaction and oom events the pressure replay reads; the others of these systems stay unknown (counted).
    private static TraceEventKind? PressureKind(ReadOnlySpan<byte> name) => name switch
    {
        _ when name.SequenceEqual("mm_vmscan_wakeup_kswapd"u8) => TraceEventKind.MmVmscanWakeupKswapd,
        _ when name.SequenceEqual("mm_vmscan_kswapd_wake"u8) => TraceEventKind.MmVmscanKswapdWake,
        _ when name.SequenceEqual("mm_vmscan_kswapd_sleep"u8) => TraceEventKind.MmVmscanKswapdSleep,
        _ when name.SequenceEqual("mm_vmscan_direct_reclaim_begin"u8) => TraceEventKind.MmVmscanDirectReclaimBegin,
        _ when name.SequenceEqual("mm_vmscan_direct_reclaim_end"u8) => TraceEventKind.MmVmscanDirectReclaimEnd,
        _ when name.SequenceEqual("mm_vmscan_write_folio"u8) => TraceEventKind.MmVmscanWriteFolio,
        _ when name.SequenceEqual("mm_compaction_try_to_compact_pages"u8) => TraceEventKind.MmCompactionTryToCompactPages,
        _ when name.SequenceEqual("mm_compaction_end"u8) => TraceEventKind.MmCompactionEnd,
        _ when name.SequenceEqual("mm_compaction_deferred"u8) => TraceEventKind.MmCompactionDeferred,
        _ when name.SequenceEqual("mark_victim"u8) => TraceEventKind.MarkVictim,
        _ when name.SequenceEqual("oom_score_adj_update"u8) => TraceEventKind.OomScoreAdjUpdate,
        _ when name.SequenceEqual("mm_compaction_begin"u8) => TraceEventKind.MmCompactionBegin,
        _ when name.SequenceEqual("mm_compaction_isolate_freepages"u8) => TraceEventKind.MmCompactionIsolateFreepages,
        _ when name.SequenceEqual("reclaim_retry_zone"u8) => TraceEventKind.ReclaimRetryZone,
        _ => null,
    };

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

    private bool ParseSlabAlloc(ref TraceFieldReader fields, ref TraceEvent e, TraceEventKind kind)
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

    private static bool ParsePercpuRequest(ref TraceFieldReader fields, ref TraceEvent e)
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

    private static bool ParsePage(ref TraceFieldReader fields, ref TraceEvent e)
    {
        if (!fields.Hex("page="u8, out ulong page) || !fields.Pfn(out ulong pfn))
        {
            return false;
        }
        e.Page = page;
        e.Pfn = pfn;
        return true;
    }

    private bool ParseCallSite(ref TraceFieldReader fields, ref TraceEvent e)
    {
        if (!fields.CallSite(out var site))
        {
            return false;
        }
        e.CallSite = _sites.Intern(site, out int entry);
        e.CallSiteId = entry + 1;
        return true;
    }

    private bool ParseGfp(ref TraceFieldReader fields, ref TraceEvent e)
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
}
