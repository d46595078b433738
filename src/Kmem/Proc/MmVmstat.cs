// The reclaim layer's vmstat values (VmSource.Mm): LRU sizes per zone and node,
// page cache, swap cache, dirty and writeback pages, page tables, kernel
// stacks, and the reclaim, swap, OOM and compaction events, by their
// /proc/vmstat names. The reclaim layer is the page allocator's reclaimer; on a
// machine without one every value is 0. Counters are read without the layer's
// lock: each is a single 64-bit read. The LRU sizes are kept per node and zone;
// the other node counters are machine-wide and reported on node 0.
using Kmem.PageAlloc;
using Kmem.Reclaim;

namespace Kmem.Proc;

internal static class MmVmstat
{
    public static MmLayer? Of(PageAllocator pa) => pa.Reclaimer as MmLayer;

    /// <summary>The machine-wide value of a VmSource.Mm item.</summary>
    public static long Value(PageAllocator pa, in VmstatItem item)
    {
        if (Of(pa) is not { } mm)
        {
            return 0;
        }
        if (item.Kind == VmstatKind.Node)
        {
            long sum = 0;
            foreach (var node in pa.Nodes)
            {
                sum += NodeValue(mm, node, item);
            }
            return sum;
        }
        if (item.Kind == VmstatKind.Zone)
        {
            long sum = 0;
            foreach (var zone in pa.Zones)
            {
                sum += ZoneValue(mm, zone, item);
            }
            return sum;
        }
        ref readonly var s = ref mm.Stats;
        return item.Name switch
        {
            "pgpgin" => s.Pgpgin,
            "pgpgout" => s.Pgpgout,
            "pswpin" => s.Pswpin,
            "pswpout" => s.Pswpout,
            "pgactivate" => s.Pgactivate,
            "pgdeactivate" => s.Pgdeactivate,
            "pgfault" => s.Pgfault,
            "pgmajfault" => s.Pgmajfault,
            "pgrefill" => s.Pgrefill,
            "pgsteal_kswapd" => s.PgstealKswapd,
            "pgsteal_direct" => s.PgstealDirect,
            "pgscan_kswapd" => s.PgscanKswapd,
            "pgscan_direct" => s.PgscanDirect,
            "pgscan_anon" => s.PgscanAnon,
            "pgscan_file" => s.PgscanFile,
            "pgsteal_anon" => s.PgstealAnon,
            "pgsteal_file" => s.PgstealFile,
            "slabs_scanned" => s.SlabsScanned,
            "pageoutrun" => s.Pageoutrun,
            "pgrotated" => s.Pgrotated,
            "kswapd_high_wmark_hit_quickly" => s.KswapdHighWmarkHitQuickly,
            "drop_pagecache" => s.DropPagecache,
            "drop_slab" => s.DropSlab,
            "oom_kill" => s.OomKill,
            "pgmigrate_success" => s.PgmigrateSuccess,
            "pgmigrate_fail" => s.PgmigrateFail,
            "compact_migrate_scanned" => s.CompactMigrateScanned,
            "compact_free_scanned" => s.CompactFreeScanned,
            "compact_isolated" => s.CompactIsolated,
            "compact_stall" => s.CompactStall,
            "compact_fail" => s.CompactFail,
            "compact_success" => s.CompactSuccess,
            "compact_daemon_wake" => s.CompactDaemonWake,
            "compact_daemon_migrate_scanned" => s.CompactDaemonMigrateScanned,
            "compact_daemon_free_scanned" => s.CompactDaemonFreeScanned,
            _ when item.Name.StartsWith("allocstall_", StringComparison.Ordinal) => Volatile.Read(ref mm.Allocstall[(int)item.Zone]),
            _ when item.Name.StartsWith("pgskip_", StringComparison.Ordinal) => Volatile.Read(ref mm.Pgskip[(int)item.Zone]),
            _ => 0,
        };
    }

    /// <summary>One node's value of a node item.</summary>
    public static long NodeValue(MmLayer mm, Node node, in VmstatItem item)
    {
        var vec = mm.Lruvecs[node.Id];
        bool first = node.Id == 0;
        return item.Name switch
        {
            "nr_inactive_anon" => Volatile.Read(ref vec.Count[(int)LruList.InactiveAnon]),
            "nr_active_anon" => Volatile.Read(ref vec.Count[(int)LruList.ActiveAnon]),
            "nr_inactive_file" => Volatile.Read(ref vec.Count[(int)LruList.InactiveFile]),
            "nr_active_file" => Volatile.Read(ref vec.Count[(int)LruList.ActiveFile]),
            _ when !first => 0,
            "nr_anon_pages" => Volatile.Read(ref mm.NrAnonPages),
            "nr_file_pages" => Volatile.Read(ref mm.NrFilePages) + Volatile.Read(ref mm.NrSwapCache),
            "nr_dirty" => Volatile.Read(ref mm.NrDirty),
            "nr_writeback" => Volatile.Read(ref mm.NrWriteback),
            "nr_vmscan_write" => mm.Stats.NrVmscanWrite,
            "nr_dirtied" => mm.Stats.NrDirtied,
            "nr_written" => mm.Stats.NrWritten,
            "nr_kernel_stack" => Volatile.Read(ref mm.NrKernelStackKb),
            "nr_page_table_pages" => Volatile.Read(ref mm.NrPageTable),
            "nr_swapcached" => Volatile.Read(ref mm.NrSwapCache),
            _ => 0,
        };
    }

    /// <summary>One zone's value of a zone item (the LRU sizes by zone).</summary>
    public static long ZoneValue(MmLayer mm, Zone zone, in VmstatItem item) => item.Name switch
    {
        "nr_zone_inactive_anon" => Volatile.Read(ref mm.ZoneLru[zone.Index, (int)LruList.InactiveAnon]),
        "nr_zone_active_anon" => Volatile.Read(ref mm.ZoneLru[zone.Index, (int)LruList.ActiveAnon]),
        "nr_zone_inactive_file" => Volatile.Read(ref mm.ZoneLru[zone.Index, (int)LruList.InactiveFile]),
        "nr_zone_active_file" => Volatile.Read(ref mm.ZoneLru[zone.Index, (int)LruList.ActiveFile]),
        _ => 0,
    };

    /// <summary>Pages on the file LRU lists of every node.</summary>
    public static long FileLru(PageAllocator pa)
    {
        if (Of(pa) is not { } mm)
        {
            return 0;
        }
        long n = 0;
        foreach (var vec in mm.Lruvecs)
        {
            n += Volatile.Read(ref vec.Count[(int)LruList.InactiveFile]) + Volatile.Read(ref vec.Count[(int)LruList.ActiveFile]);
        }
        return n;
    }
}
