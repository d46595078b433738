// The recorded kernel's own trace ring buffer, as far as it predates the trace: a kernel that traces from boot
// (trace_event= on its command line) allocates the boot CPU's buffer in early_trace_init, before any event can be
// recorded, and keeps it; a CPU brought up later allocates its own inside the trace (capture B's second CPU:
// 28,789 order-0 GFP_KERNEL|__GFP_RETRY_MAYFAIL pages at SMP bring-up). ring_buffer_alloc takes, per CPU, one
// page and one cache-line-sized buffer_page descriptor for each BUF_PAGE_SIZE of the size asked (the page less its
// header, 16 bytes on 64-bit and 12 on 32-bit), at least two, and one more of each for the reader page. This
// happens before setup_per_cpu_pageset, while every CPU's boot pageset caches nothing, so the pages come straight
// off the buddy lists (PageAllocator.BuddyOnly); the unmovable requests steal the largest free blocks there, which
// is how the recorded kernels end with that many more Unmovable pageblocks. Held from before the first event; the
// pages join the memory held for what the kernel used before tracing (UntracedMemory), which a pressure capture's
// vmstat can correct; the descriptors are never freed (nor is the kernel's buffer). Replaying thread only.
namespace Kmem;

internal static class PreTraceRingBuffer
{
    private const int DescriptorBytes = 64; // ALIGN(sizeof(struct buffer_page), cache_line_size())

    /// <summary>Pages (and as many descriptors) of one CPU's buffer of <paramref name="bytes"/>: nr_pages and the reader page.</summary>
    public static long PagesPerCpu(long bytes, bool is64Bit)
    {
        long bufPage = Machine.PageSize - (is64Bit ? 16 : 12);
        return Math.Max(2, (bytes + bufPage - 1) / bufPage) + 1;
    }

    /// <summary>Makes the boot CPU's buffer of <paramref name="bytes"/> on <paramref name="m"/> (pinned to CPU 0,
    /// from the buddy lists), as early_trace_init did before the trace began.</summary>
    /// <returns>The buffer's pages (its descriptors stay allocated in their slab cache); none when <paramref name="bytes"/> is 0.</returns>
    /// <exception cref="InvalidOperationException">The machine cannot hold the buffer: it is smaller than the recorded one.</exception>
    public static List<Page> Hold(Machine m, long bytes)
    {
        var held = new List<Page>();
        if (bytes <= 0)
        {
            return held;
        }
        const Gfp Flags = Gfp.Kernel | Gfp.RetryMayfail;
        long pages = PagesPerCpu(bytes, m.Options.Preset == Preset.X64);
        using (m.OnCpu(0))
        using (m.PageAllocator.BuddyOnly.Open())
        {
            for (long i = 0; i < pages; i++)
            {
                Page page;
                if (m.Kmalloc(DescriptorBytes, Flags | Gfp.Zero) == 0 || (page = m.AllocPages(Flags, 0)).IsNull)
                {
                    throw new InvalidOperationException(
                        $"the trace ring buffer of {bytes >> 10} KiB per CPU that the capture's command line names does not fit this machine ({i:N0} of {pages:N0} pages taken)");
                }
                held.Add(page);
            }
        }
        return held;
    }
}
