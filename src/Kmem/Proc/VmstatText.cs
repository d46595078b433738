// The kernel's vmstat_text (mm/vmstat.c): every /proc/vmstat name, in the order
// a Linux 6.1 kernel of each preset prints them, with what Kmem fills each one
// from. One table per preset; /proc/vmstat, /proc/zoneinfo and the metrics all
// read these tables, so a name exists in exactly one place. Immutable.
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Proc;

/// <summary>Which of the kernel's counter arrays a vmstat item belongs to; it decides where zoneinfo prints
/// it and whether a metric is a gauge or a counter.</summary>
internal enum VmstatKind : byte
{
    /// <summary>enum zone_stat_item: per zone, summed for /proc/vmstat.</summary>
    Zone,
    /// <summary>enum numa_stat_item (CONFIG_NUMA): per-zone event counts.</summary>
    Numa,
    /// <summary>enum node_stat_item: per node; zoneinfo prints them under the node's first populated zone.</summary>
    Node,
    /// <summary>enum vm_stat_item: computed when the file is read (the dirty limits).</summary>
    Vm,
    /// <summary>enum vm_event_item: global event counters.</summary>
    Event,
    /// <summary>Names kept at the end of the file for old tools, always 0 (nr_unstable).</summary>
    Deprecated,
}

/// <summary>What Kmem reads a vmstat item from. <see cref="None"/> is a counter of a layer Kmem does not
/// have yet (page cache, slab, reclaim, swap, …): it prints 0.</summary>
internal enum VmSource : byte
{
    None,
    /// <summary>NR_FREE_PAGES: pages on the buddy lists.</summary>
    NrFreePages,
    NumaHit,
    NumaMiss,
    NumaForeign,
    NumaLocal,
    NumaOther,
    /// <summary>global_dirty_limits: the dirty threshold.</summary>
    DirtyThreshold,
    /// <summary>global_dirty_limits: the background dirty threshold.</summary>
    DirtyBackgroundThreshold,
    /// <summary>PGALLOC of one zone type, in pages.</summary>
    PgAlloc,
    /// <summary>PGFREE, in pages.</summary>
    PgFree,
    /// <summary>NR_SLAB_RECLAIMABLE_B of a node, in pages.</summary>
    NrSlabReclaimable,
    /// <summary>NR_SLAB_UNRECLAIMABLE_B of a node, in pages.</summary>
    NrSlabUnreclaimable,
    /// <summary>A counter of the reclaim layer (LRU sizes, page cache, swap, reclaim and compaction events),
    /// looked up by name in <see cref="MmVmstat"/>.</summary>
    Mm,
}

/// <summary>One line of /proc/vmstat: the exact name, its kind, and where its value comes from.</summary>
internal readonly record struct VmstatItem(string Name, VmstatKind Kind, VmSource Source, ZoneType Zone);

/// <summary>The per-preset vmstat_text tables.</summary>
internal static class VmstatText
{
    /// <summary>x86-64, as the Linux 6.1 x86-64 kernel prints them (NUMA, NUMA balancing, THP with PUD
    /// splits, ZONE_DEVICE, no CMA).</summary>
    private static readonly VmstatItem[] s_x64 = Build(Arch.For(Preset.X64), numa: true, thpPud: true);

    /// <summary>x86-32 PAE, as the Linux 6.1 i386 PAE kernel prints them (no NUMA, HighMem, THP without PUD
    /// splits, no ZONE_DEVICE).</summary>
    private static readonly VmstatItem[] s_x86Pae = Build(Arch.For(Preset.X86Pae), numa: false, thpPud: false);

    /// <summary>
    /// vmstat_text for one configuration, as the kernel assembles it: zone items, NUMA items (CONFIG_NUMA),
    /// node items, the dirty limits, then the events, whose per-zone names follow the compiled-in zones
    /// (TEXTS_FOR_ZONES) and whose NUMA and PUD-THP entries exist only with those options.
    /// </summary>
    private static VmstatItem[] Build(Arch arch, bool numa, bool thpPud)
    {
        var items = new List<VmstatItem>
        {
            Z("nr_free_pages", VmSource.NrFreePages), Z("nr_zone_inactive_anon", VmSource.Mm), Z("nr_zone_active_anon", VmSource.Mm),
            Z("nr_zone_inactive_file", VmSource.Mm), Z("nr_zone_active_file", VmSource.Mm), Z("nr_zone_unevictable"), Z("nr_zone_write_pending"),
            Z("nr_mlock"), Z("nr_bounce"), Z("nr_zspages"), Z("nr_free_cma"),
        };
        if (numa)
        {
            items.AddRange([
                Numa("numa_hit", VmSource.NumaHit), Numa("numa_miss", VmSource.NumaMiss),
                Numa("numa_foreign", VmSource.NumaForeign), Numa("numa_interleave"), Numa("numa_local", VmSource.NumaLocal),
                Numa("numa_other", VmSource.NumaOther),
            ]);
        }
        items.AddRange([
            N("nr_inactive_anon", VmSource.Mm), N("nr_active_anon", VmSource.Mm), N("nr_inactive_file", VmSource.Mm), N("nr_active_file", VmSource.Mm), N("nr_unevictable"),
            N("nr_slab_reclaimable", VmSource.NrSlabReclaimable), N("nr_slab_unreclaimable", VmSource.NrSlabUnreclaimable), N("nr_isolated_anon"), N("nr_isolated_file"),
            N("workingset_nodes"), N("workingset_refault_anon"), N("workingset_refault_file"),
            N("workingset_activate_anon"), N("workingset_activate_file"), N("workingset_restore_anon"),
            N("workingset_restore_file"), N("workingset_nodereclaim"), N("nr_anon_pages", VmSource.Mm), N("nr_mapped"),
            N("nr_file_pages", VmSource.Mm), N("nr_dirty", VmSource.Mm), N("nr_writeback", VmSource.Mm), N("nr_writeback_temp"), N("nr_shmem"),
            N("nr_shmem_hugepages"), N("nr_shmem_pmdmapped"), N("nr_file_hugepages"), N("nr_file_pmdmapped"),
            N("nr_anon_transparent_hugepages"), N("nr_vmscan_write", VmSource.Mm), N("nr_vmscan_immediate_reclaim"), N("nr_dirtied", VmSource.Mm),
            N("nr_written", VmSource.Mm), N("nr_throttled_written"), N("nr_kernel_misc_reclaimable"), N("nr_foll_pin_acquired"),
            N("nr_foll_pin_released"), N("nr_kernel_stack", VmSource.Mm), N("nr_page_table_pages", VmSource.Mm), N("nr_sec_page_table_pages"),
            N("nr_swapcached", VmSource.Mm),
        ]);
        if (numa)
        {
            items.AddRange([N("pgpromote_success"), N("pgpromote_candidate")]);
        }
        items.AddRange([
            V("nr_dirty_threshold", VmSource.DirtyThreshold),
            V("nr_dirty_background_threshold", VmSource.DirtyBackgroundThreshold),
            E("pgpgin", VmSource.Mm), E("pgpgout", VmSource.Mm), E("pswpin", VmSource.Mm), E("pswpout", VmSource.Mm),
        ]);
        items.AddRange(arch.Zones.Select(z => PgAlloc("pgalloc_" + ZoneSuffix(z), z)));
        items.AddRange(arch.Zones.Select(z => new VmstatItem("allocstall_" + ZoneSuffix(z), VmstatKind.Event, VmSource.Mm, z)));
        items.AddRange(arch.Zones.Select(z => new VmstatItem("pgskip_" + ZoneSuffix(z), VmstatKind.Event, VmSource.Mm, z)));
        items.AddRange([
            E("pgfree", VmSource.PgFree), E("pgactivate", VmSource.Mm), E("pgdeactivate", VmSource.Mm), E("pglazyfree"), E("pgfault", VmSource.Mm),
            E("pgmajfault", VmSource.Mm), E("pglazyfreed"), E("pgrefill", VmSource.Mm), E("pgreuse"), E("pgsteal_kswapd", VmSource.Mm), E("pgsteal_direct", VmSource.Mm),
            E("pgdemote_kswapd"), E("pgdemote_direct"), E("pgscan_kswapd", VmSource.Mm), E("pgscan_direct", VmSource.Mm),
            E("pgscan_direct_throttle"), E("pgscan_anon", VmSource.Mm), E("pgscan_file", VmSource.Mm), E("pgsteal_anon", VmSource.Mm), E("pgsteal_file", VmSource.Mm),
        ]);
        if (numa)
        {
            items.Add(E("zone_reclaim_failed"));
        }
        items.AddRange([
            E("pginodesteal"), E("slabs_scanned", VmSource.Mm), E("kswapd_inodesteal"),
            E("kswapd_low_wmark_hit_quickly"), E("kswapd_high_wmark_hit_quickly", VmSource.Mm), E("pageoutrun", VmSource.Mm), E("pgrotated", VmSource.Mm),
            E("drop_pagecache", VmSource.Mm), E("drop_slab", VmSource.Mm), E("oom_kill", VmSource.Mm),
        ]);
        if (numa)
        {
            items.AddRange([
                E("numa_pte_updates"), E("numa_huge_pte_updates"), E("numa_hint_faults"), E("numa_hint_faults_local"),
                E("numa_pages_migrated"),
            ]);
        }
        items.AddRange([
            E("pgmigrate_success", VmSource.Mm), E("pgmigrate_fail", VmSource.Mm), E("thp_migration_success"), E("thp_migration_fail"),
            E("thp_migration_split"), E("compact_migrate_scanned", VmSource.Mm), E("compact_free_scanned", VmSource.Mm), E("compact_isolated", VmSource.Mm),
            E("compact_stall", VmSource.Mm), E("compact_fail", VmSource.Mm), E("compact_success", VmSource.Mm), E("compact_daemon_wake", VmSource.Mm),
            E("compact_daemon_migrate_scanned", VmSource.Mm), E("compact_daemon_free_scanned", VmSource.Mm), E("htlb_buddy_alloc_success"),
            E("htlb_buddy_alloc_fail"), E("unevictable_pgs_culled"), E("unevictable_pgs_scanned"),
            E("unevictable_pgs_rescued"), E("unevictable_pgs_mlocked"), E("unevictable_pgs_munlocked"),
            E("unevictable_pgs_cleared"), E("unevictable_pgs_stranded"), E("thp_fault_alloc"), E("thp_fault_fallback"),
            E("thp_fault_fallback_charge"), E("thp_collapse_alloc"), E("thp_collapse_alloc_failed"), E("thp_file_alloc"),
            E("thp_file_fallback"), E("thp_file_fallback_charge"), E("thp_file_mapped"), E("thp_split_page"),
            E("thp_split_page_failed"), E("thp_deferred_split_page"), E("thp_split_pmd"), E("thp_scan_exceed_none_pte"),
            E("thp_scan_exceed_swap_pte"), E("thp_scan_exceed_share_pte"),
        ]);
        if (thpPud)
        {
            items.Add(E("thp_split_pud"));
        }
        items.AddRange([
            E("thp_zero_page_alloc"), E("thp_zero_page_alloc_failed"), E("thp_swpout"), E("thp_swpout_fallback"),
            E("balloon_inflate"), E("balloon_deflate"), E("balloon_migrate"), E("swap_ra"), E("swap_ra_hit"),
            E("ksm_swpin_copy"), E("cow_ksm"), E("zswpin"), E("zswpout"),
            E("direct_map_level2_splits"), E("direct_map_level3_splits"),
            Deprecated("nr_unstable"),
        ]);
        return [.. items];
    }

    /// <summary>The zone's part of a per-zone event name (the kernel's TEXT_FOR_HIGHMEM says "high").</summary>
    private static string ZoneSuffix(ZoneType zone) => zone == ZoneType.HighMem ? "high" : ZoneNames.Of(zone).ToLowerInvariant();

    /// <summary>x86-32 without PAE: the PAE list without the CONFIG_TRANSPARENT_HUGEPAGE events, since
    /// 2-level paging has no PMD-sized pages to make THPs from (thp_migration_* stay: they belong to
    /// CONFIG_MIGRATION).</summary>
    private static readonly VmstatItem[] s_x86 =
        [.. s_x86Pae.Where(i => !i.Name.StartsWith("thp_", StringComparison.Ordinal) || i.Name.StartsWith("thp_migration_", StringComparison.Ordinal))];

    /// <summary>The table of a preset.</summary>
    public static VmstatItem[] For(Preset preset) => preset switch
    {
        Preset.X64 => s_x64,
        Preset.X86Pae => s_x86Pae,
        Preset.X86 => s_x86,
        _ => throw new ArgumentOutOfRangeException(nameof(preset), preset, "unknown preset"),
    };

    private static VmstatItem Z(string name, VmSource source = VmSource.None) => new(name, VmstatKind.Zone, source, 0);

    private static VmstatItem Numa(string name, VmSource source = VmSource.None) => new(name, VmstatKind.Numa, source, 0);

    private static VmstatItem N(string name, VmSource source = VmSource.None) => new(name, VmstatKind.Node, source, 0);

    private static VmstatItem V(string name, VmSource source) => new(name, VmstatKind.Vm, source, 0);

    private static VmstatItem E(string name, VmSource source = VmSource.None) => new(name, VmstatKind.Event, source, 0);

    private static VmstatItem PgAlloc(string name, ZoneType zone) => new(name, VmstatKind.Event, VmSource.PgAlloc, zone);

    private static VmstatItem Deprecated(string name) => new(name, VmstatKind.Deprecated, VmSource.None, 0);
}
