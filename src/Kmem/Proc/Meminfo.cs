// /proc/meminfo (fs/proc/meminfo.c meminfo_proc_show, hugetlb_report_meminfo,
// arch_report_meminfo; 6.1): every line the preset's kernel prints, in its
// order. Page-allocator figures are real; the LRU lists, page cache, swap,
// page tables and kernel stacks come from the reclaim layer; counters of layers
// Kmem does not have yet (hugetlb, shmem, mapped files) print 0; slab
// comes from the nodes' slab counters. Values are
// read without locks, as the kernel does.
using System.Text;
using Kmem.PageAlloc;
using Kmem.Physical;
using Kmem.Reclaim;
using Kmem.Vmalloc;

namespace Kmem.Proc;

internal static class Meminfo
{
    /// <summary>How a line is printed.</summary>
    private enum Style
    {
        /// <summary>show_val_kb: the label padded to 16 columns, "%8lu kB".</summary>
        Kb,
        /// <summary>"HardwareCorrupted: %5lu kB".</summary>
        Kb5,
        /// <summary>"HugePages_Total:   %5lu": a count, no unit (label padded to 19 columns).</summary>
        Count5,
    }

    /// <param name="pa">The page allocator.</param>
    /// <param name="vmallocPages">Frames backing vmalloc areas (nr_vmalloc_pages).</param>
    /// <param name="percpuPages">Frames holding per-CPU chunks (pcpu_nr_pages: populated pages × units).</param>
    public static string Show(PageAllocator pa, long vmallocPages, long percpuPages = 0)
    {
        var v = MeminfoValues.Read(pa);
        var r = MmMeminfo.Read(pa);
        var sb = new StringBuilder();
        void Line(string label, long kb, Style style = Style.Kb)
        {
            switch (style)
            {
                case Style.Kb:
                    sb.Left(label + ":", 16).Num(kb, 8).Append(" kB\n");
                    break;
                case Style.Kb5:
                    sb.Append(label).Append(": ").Num(kb, 5).Append(" kB\n");
                    break;
                default:
                    sb.Left(label + ":", 19).Num(kb, 5).Append('\n');
                    break;
            }
        }
        var arch = pa.Arch;
        Line("MemTotal", v.TotalRam);
        Line("MemFree", v.Free);
        Line("MemAvailable", v.Available);
        Line("Buffers", 0);
        Line("Cached", r.Cached);
        Line("SwapCached", r.SwapCached);
        Line("Active", r.ActiveAnon + r.ActiveFile);
        Line("Inactive", r.InactiveAnon + r.InactiveFile);
        Line("Active(anon)", r.ActiveAnon);
        Line("Inactive(anon)", r.InactiveAnon);
        Line("Active(file)", r.ActiveFile);
        Line("Inactive(file)", r.InactiveFile);
        Line("Unevictable", 0);
        Line("Mlocked", 0);
        if (arch.HasHighMem)
        {
            // CONFIG_HIGHMEM.
            Line("HighTotal", v.HighTotal);
            Line("HighFree", v.HighFree);
            Line("LowTotal", v.TotalRam - v.HighTotal);
            Line("LowFree", v.Free - v.HighFree);
        }
        Line("SwapTotal", r.SwapTotal);
        Line("SwapFree", r.SwapFree);
        Line("Zswap", 0);
        Line("Zswapped", 0);
        Line("Dirty", r.Dirty);
        Line("Writeback", r.Writeback);
        Line("AnonPages", r.AnonPages);
        Line("Mapped", 0);
        Line("Shmem", 0);
        // KReclaimable = SReclaimable + NR_KERNEL_MISC_RECLAIMABLE (none yet).
        Line("KReclaimable", v.SReclaimable);
        Line("Slab", v.SReclaimable + v.SUnreclaim);
        Line("SReclaimable", v.SReclaimable);
        Line("SUnreclaim", v.SUnreclaim);
        Line("KernelStack", r.KernelStack);
        Line("PageTables", r.PageTables);
        Line("SecPageTables", 0);
        Line("NFS_Unstable", 0);
        Line("Bounce", 0);
        Line("WritebackTmp", 0);
        Line("CommitLimit", v.CommitLimit);
        Line("Committed_AS", r.CommittedAs);
        Line("VmallocTotal", (long)(VmallocLayout.For(arch, pa.Mem.LowmemPfns).TotalBytes >> 10));
        Line("VmallocUsed", vmallocPages * (PhysMem.PageSize >> 10));
        Line("VmallocChunk", 0);
        Line("Percpu", percpuPages * (PhysMem.PageSize >> 10));
        Line("HardwareCorrupted", 0, Style.Kb5);
        if (arch.HasThp)
        {
            // CONFIG_TRANSPARENT_HUGEPAGE.
            Line("AnonHugePages", 0);
            Line("ShmemHugePages", 0);
            Line("ShmemPmdMapped", 0);
            Line("FileHugePages", 0);
            Line("FilePmdMapped", 0);
        }
        Line("HugePages_Total", 0, Style.Count5);
        Line("HugePages_Free", 0, Style.Count5);
        Line("HugePages_Rsvd", 0, Style.Count5);
        Line("HugePages_Surp", 0, Style.Count5);
        // HPAGE_SIZE: one PMD, 2 MiB (4 MiB with 2-level 32-bit paging, where a PMD is a PGD entry).
        Line("Hugepagesize", (PhysMem.PageSize >> 10) << HugePageOrder(arch));
        Line("Hugetlb", 0);
        var dm = DirectMap(arch, (long)pa.Mem.LowmemPfns << PhysMem.PageShift);
        Line("DirectMap4k", dm.Small >> 10);
        Line(arch.Preset == Preset.X86 ? "DirectMap4M" : "DirectMap2M", dm.Large >> 10);
        if (arch.Preset == Preset.X64)
        {
            // Printed when the CPU has 1 GiB pages (direct_gbpages), as on any current x86-64 CPU.
            Line("DirectMap1G", dm.Huge >> 10);
        }
        return sb.ToString();
    }

    /// <summary>log2 of a PMD-sized page in base pages: 9 (2 MiB), or 10 (4 MiB) for 2-level x86-32.</summary>
    private static int HugePageOrder(Arch arch) => arch.Preset == Preset.X86 ? 10 : 9;

    /// <summary>
    /// The page sizes of the direct map, in bytes. Kmem maps lowmem once and does not split it later, so
    /// this is the layout init_memory_mapping gives it at boot (split_mem_range): the first large page's
    /// worth as 4 KiB pages (fixed-range MTRRs live there), then large pages (2 MiB; 4 MiB for 2-level
    /// x86-32), on x86-64 1 GiB pages for whole aligned GiBs, and 4 KiB pages for an unaligned tail.
    /// </summary>
    private static (long Small, long Large, long Huge) DirectMap(Arch arch, long lowmemBytes)
    {
        long large = arch.Preset == Preset.X86 ? 4L << 20 : 2L << 20;
        const long gb = 1L << 30;
        long head = Math.Min(large, lowmemBytes);
        long largeEnd = lowmemBytes / large * large;
        long tail = lowmemBytes - Math.Max(head, largeEnd);
        long huge = 0;
        if (arch.Preset == Preset.X64 && largeEnd >= 2 * gb)
        {
            huge = (largeEnd / gb - 1) * gb;
        }
        long largeBytes = Math.Max(0, largeEnd - head) - huge;
        return (head + tail, largeBytes, huge);
    }
}

/// <summary>The page-allocator figures of /proc/meminfo, in kB.</summary>
internal readonly record struct MeminfoValues(long TotalRam, long Free, long Available, long HighTotal, long HighFree, long CommitLimit,
    long SReclaimable, long SUnreclaim)
{
    private const int KbPerPage = PhysMem.PageSize >> 10;

    public static MeminfoValues Read(PageAllocator pa)
    {
        long totalRam = 0, free = 0, highTotal = 0, highFree = 0;
        foreach (var zone in pa.Zones)
        {
            long zoneFree = Volatile.Read(ref zone.FreePages);
            totalRam += zone.ManagedPages;
            free += zoneFree;
            if (ProcText.IsHighmem(pa, zone))
            {
                // totalhigh_pages counts managed highmem pages; nr_free_highpages the free ones.
                highTotal += zone.ManagedPages;
                highFree += zoneFree;
            }
        }
        // vm_commit_limit: (totalram − hugetlb) × overcommit_ratio (50) / 100 + swap; no hugetlb.
        long commitLimit = totalRam * 50 / 100 + (MmVmstat.Of(pa)?.TotalSwapPages ?? 0);
        long slabReclaimable = 0, slabUnreclaimable = 0;
        foreach (var node in pa.Nodes)
        {
            slabReclaimable += Volatile.Read(ref node.NrSlabReclaimable);
            slabUnreclaimable += Volatile.Read(ref node.NrSlabUnreclaimable);
        }
        return new MeminfoValues(totalRam * KbPerPage, free * KbPerPage, SiMemAvailable(pa, free, slabReclaimable) * KbPerPage,
            highTotal * KbPerPage, highFree * KbPerPage, commitLimit * KbPerPage,
            slabReclaimable * KbPerPage, slabUnreclaimable * KbPerPage);
    }

    /// <summary>
    /// si_mem_available: free pages less totalreserve_pages, plus the part of the page cache and of
    /// reclaimable kernel memory that can go without pushing the zones under their low watermarks (the page
    /// cache is the file LRU lists).
    /// </summary>
    private static long SiMemAvailable(PageAllocator pa, long free, long slabReclaimable)
    {
        long wmarkLow = 0;
        foreach (var zone in pa.Zones)
        {
            wmarkLow += zone.WmarkPages(Zone.WmarkLow);
        }
        long available = free - pa.TotalReservePages;
        long pagecache = MmVmstat.FileLru(pa);
        pagecache -= Math.Min(pagecache / 2, wmarkLow);
        available += pagecache;
        // NR_SLAB_RECLAIMABLE_B + NR_KERNEL_MISC_RECLAIMABLE (none yet), in pages.
        long reclaimable = slabReclaimable;
        available += reclaimable - Math.Min(reclaimable / 2, wmarkLow);
        return Math.Max(available, 0);
    }
}

/// <summary>The reclaim layer's figures of /proc/meminfo, in kB (0 without a reclaim layer).</summary>
internal readonly record struct MmMeminfo(long Cached, long SwapCached, long ActiveAnon, long InactiveAnon, long ActiveFile,
    long InactiveFile, long SwapTotal, long SwapFree, long Dirty, long Writeback, long AnonPages, long KernelStack, long PageTables,
    long CommittedAs)
{
    private const int KbPerPage = PhysMem.PageSize >> 10;

    public static MmMeminfo Read(PageAllocator pa)
    {
        if (MmVmstat.Of(pa) is not { } mm)
        {
            return default;
        }
        long[] lru = new long[4];
        foreach (var vec in mm.Lruvecs)
        {
            for (int l = 0; l < 4; l++)
            {
                lru[l] += Volatile.Read(ref vec.Count[l]);
            }
        }
        return new MmMeminfo(Volatile.Read(ref mm.NrFilePages) * KbPerPage, Volatile.Read(ref mm.NrSwapCache) * KbPerPage,
            lru[(int)LruList.ActiveAnon] * KbPerPage, lru[(int)LruList.InactiveAnon] * KbPerPage,
            lru[(int)LruList.ActiveFile] * KbPerPage, lru[(int)LruList.InactiveFile] * KbPerPage,
            mm.TotalSwapPages * KbPerPage, mm.NrSwapPages * KbPerPage, Volatile.Read(ref mm.NrDirty) * KbPerPage,
            Volatile.Read(ref mm.NrWriteback) * KbPerPage, Volatile.Read(ref mm.NrAnonPages) * KbPerPage,
            Volatile.Read(ref mm.NrKernelStackKb), Volatile.Read(ref mm.NrPageTable) * KbPerPage, mm.CommittedPages * KbPerPage);
    }
}
