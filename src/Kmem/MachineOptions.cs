// What a machine is booted with: the kernel's configuration and boot options
// that matter to memory management. Validated once, by Machine.Boot, with
// messages that name the option and its limit.
namespace Kmem;

/// <summary>The architecture a machine models.</summary>
public enum Preset
{
    /// <summary>x86-64: DMA below 16 MiB, DMA32 below 4 GiB, Normal above; no highmem.</summary>
    X64,
    /// <summary>x86-32, 2-level page tables: DMA, Normal up to MAXMEM (just under 880 MiB), HighMem above (at most 4 GiB of RAM).</summary>
    X86,
    /// <summary>x86-32 with PAE, 3-level page tables: like <see cref="X86"/>, up to 64 GiB of RAM.</summary>
    X86Pae,
}

/// <summary>What happens on a programming error the kernel would BUG() on.</summary>
public enum OnBug
{
    /// <summary>Throw a <see cref="KernelBugException"/> carrying the kernel-style report.</summary>
    Throw,
    /// <summary>Log the kernel-style report and carry on, leaving the state as it was.</summary>
    Report,
}

/// <summary>The slab allocator the machine is built with (CONFIG_SLUB, CONFIG_SLAB, CONFIG_SLOB).</summary>
public enum SlabAllocator
{
    /// <summary>SLUB, the default.</summary>
    Slub,
    /// <summary>The classic SLAB allocator.</summary>
    Slab,
    /// <summary>SLOB, the simple list-of-blocks allocator.</summary>
    Slob,
}

/// <summary>Options for <see cref="Machine.Boot"/>. Sizes take the kernel's memparse suffixes (K, M, G, T).</summary>
public sealed class MachineOptions
{
    /// <summary>RAM size, e.g. "512M" or "4G"; a multiple of the page size. Default 1G.</summary>
    public string Memory { get; init; } = "1G";

    /// <summary>NUMA nodes; memory is split evenly between them. Default 1.</summary>
    public int Nodes { get; init; } = 1;

    /// <summary>Possible CPUs. Default 2.</summary>
    public int Cpus { get; init; } = 2;

    /// <summary>Architecture. Default <see cref="Preset.X64"/>.</summary>
    public Preset Preset { get; init; } = Preset.X64;

    /// <summary>kernelcore=: memory kept out of ZONE_MOVABLE, as a size ("512M") or a percentage ("50%").</summary>
    public string? KernelCore { get; init; }

    /// <summary>movablecore=: memory given to ZONE_MOVABLE, as a size or a percentage.</summary>
    public string? MovableCore { get; init; }

    /// <summary>Run a kswapd thread per node (started on the first wakeup). False leaves reclaim to the
    /// allocating threads (direct reclaim only), which makes runs repeatable. Default true.</summary>
    public bool Kswapd { get; init; } = true;

    /// <summary>Seed for every random choice (fault injection, workloads); null picks one.</summary>
    public int? Seed { get; init; }

    /// <summary>Throw or report on a kernel bug. Default <see cref="OnBug.Throw"/>.</summary>
    public OnBug OnBug { get; init; } = OnBug.Throw;

    /// <summary>The slab allocator. Default <see cref="SlabAllocator.Slub"/>.</summary>
    public SlabAllocator Slab { get; init; } = SlabAllocator.Slub;

    /// <summary>Kmem's own SLUB tunable (not the kernel's): how many bytes of free objects an unpinned thread
    /// may keep in its per-cache magazines in front of the per-CPU slabs, as a size ("16M"); "0" turns the
    /// magazines off, so that every thread sees SLUB exactly as the kernel runs it. Threads pinned with
    /// <see cref="Machine.OnCpu"/> never use them. Default (null): 1/64 of the memory, at least 4M and at
    /// most 64M.</summary>
    public string? SlubThreadCache { get; init; }

    /// <summary>vm.min_free_kbytes; null computes the kernel's default from lowmem size.</summary>
    public int? MinFreeKbytes { get; init; }

    /// <summary>vm.watermark_scale_factor, 1..3000 (in 1/10000 of memory). Default 10.</summary>
    public int WatermarkScaleFactor { get; init; } = 10;

    /// <summary>vm.watermark_boost_factor (in 1/10000 of the high watermark). Default 15000.</summary>
    public int WatermarkBoostFactor { get; init; } = 15000;

    /// <summary>vm.percpu_pagelist_high_fraction; 0 sizes pcp high from the low watermark. Default 0.</summary>
    public int PercpuPagelistHighFraction { get; init; }

    /// <summary>fail_page_alloc= boot option: "&lt;interval&gt;,&lt;probability&gt;,&lt;space&gt;,&lt;times&gt;".</summary>
    public string? FailPageAlloc { get; init; }

    /// <summary>slub_debug= boot option (SLUB): debug flags for every cache or for listed caches, in the kernel's
    /// syntax: "FZPU" for all caches; "FZ,dentry,kmalloc-*" for those caches only; several blocks separated
    /// by ';'; "" (the bare option) is FZPU for all; letters F (consistency checks), Z (red zones), P (poison),
    /// U (store user), T (trace), A (failslab target), O (no debug metadata for caches whose order it would
    /// raise), - (none). Null (the default, as CONFIG_SLUB_DEBUG_ON=n): no debugging.</summary>
    public string? SlubDebug { get; init; }

    /// <summary>slub_nomerge (slab_nomerge): never merge a new cache with an existing one. Default false
    /// (CONFIG_SLAB_MERGE_DEFAULT=y: compatible caches are merged).</summary>
    public bool SlubNomerge { get; init; }

    /// <summary>CONFIG_SLAB_FREELIST_HARDENED: free pointers stored XORed with a per-cache secret and the
    /// byte-swapped address they are stored at, and a free of the object at a freelist's head is a BUG. Kconfig's
    /// default is off; Debian's 6.1 kernels (the traces in the reference captures) turn it on.</summary>
    public bool SlabFreelistHardened { get; init; }

    /// <summary>CONFIG_SLAB_FREELIST_RANDOM: a new slab's objects are chained in the order of a per-cache random
    /// permutation, from a random start. Kconfig's default is off; Debian turns it on.</summary>
    public bool SlabFreelistRandom { get; init; }

    /// <summary>init_on_alloc=1: pages and slab objects are zeroed when allocated (slab caches with a
    /// constructor, poisoning or SLAB_TYPESAFE_BY_RCU only on __GFP_ZERO). Default off
    /// (CONFIG_INIT_ON_ALLOC_DEFAULT_ON=n; Debian's kernel turns it on: "heap alloc:on").</summary>
    public bool InitOnAlloc { get; init; }

    /// <summary>init_on_free=1: pages and slab objects are zeroed when freed (not for slab caches with a
    /// constructor, poisoning or SLAB_TYPESAFE_BY_RCU). Default off.</summary>
    public bool InitOnFree { get; init; }

    /// <summary>CONFIG_HIGHPTE: user PTE tables are allocated with __GFP_HIGHMEM (__userpte_alloc_gfp), so on a
    /// preset with HighMem they come from it first and are reached through a mapping rather than the direct map.
    /// Null (the default): on for the x86-32 presets, as the reference i386 capture's kernel has it (its PTE tables
    /// are GFP_KERNEL_ACCOUNT|__GFP_HIGHMEM|__GFP_ZERO allocations), off for X64, which has no HighMem.</summary>
    public bool? HighPte { get; init; }

    /// <summary>failslab= boot option: "&lt;interval&gt;,&lt;probability&gt;,&lt;space&gt;,&lt;times&gt;".</summary>
    public string? Failslab { get; init; }

    /// <summary>Managed pages per zone, by the zone's /proc/zoneinfo name ("DMA", "DMA32", "Normal", "HighMem") and
    /// zoneinfo's "managed" count, for a machine shaped like a recorded one: the boot
    /// reserves present − managed frames in each listed zone instead of its default layout (a 16 MiB kernel image
    /// and the memmap), as memblock kept the real kernel's image, memmap and early allocations; the watermarks,
    /// lowmem reserves and per-CPU list sizes are then derived from these counts. Zones not listed keep the
    /// default. Null (the default): no zone is shaped.</summary>
    public IReadOnlyDictionary<string, long>? ManagedPages { get; init; }

    /// <summary>Init memory per zone, by zoneinfo name: pages the boot keeps reserved while it derives the watermarks,
    /// lowmem reserves and per-CPU list sizes, and then releases to the buddy lists, as 6.1 frees the initrd and the
    /// kernel's init sections (free_initmem) after the initcall that derived them, which are not derived again. A zone
    /// listed in <see cref="ManagedPages"/> ends with that count (its init memory is part of it). Null (the default):
    /// nothing is released after boot.</summary>
    public IReadOnlyDictionary<string, long>? InitMemoryPages { get; init; }

    /// <summary>Where kernel messages are echoed as they are logged (the console), or null.</summary>
    public TextWriter? Console { get; init; }

    /// <summary>An observer of the page allocator's refills, drains and fallback steals (a trace replay's), or null.</summary>
    internal PageAlloc.IPageAllocObserver? PageAllocObserver { get; private set; }

    /// <summary>An observer of the slab layer's new and freed slabs (a trace replay's), or null.</summary>
    internal Slab.ISlabObserver? SlabObserver { get; private set; }

    /// <summary>A copy of these options whose machine reports its decisions to the observers (read once at boot).</summary>
    internal MachineOptions WithObservers(PageAlloc.IPageAllocObserver? pageAlloc, Slab.ISlabObserver? slab)
    {
        var copy = (MachineOptions)MemberwiseClone();
        copy.PageAllocObserver = pageAlloc;
        copy.SlabObserver = slab;
        return copy;
    }

    /// <summary>Parses a size the way the kernel's memparse does: a number with an optional K, M, G or T suffix.</summary>
    /// <exception cref="FormatException">The text is not a size.</exception>
    public static long ParseSize(string text, string option)
    {
        ArgumentNullException.ThrowIfNull(text);
        string t = text.Trim();
        if (t.Length == 0)
        {
            throw new FormatException($"{option}: empty size");
        }
        int shift = char.ToUpperInvariant(t[^1]) switch { 'K' => 10, 'M' => 20, 'G' => 30, 'T' => 40, _ => 0 };
        string digits = shift == 0 ? t : t[..^1];
        if (!long.TryParse(digits, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long n)
            || n > (long.MaxValue >> shift))
        {
            throw new FormatException($"{option}: \"{text}\" is not a size (a number with an optional K, M, G or T suffix)");
        }
        return n << shift;
    }

    /// <summary>Formats a byte count the way the options take it ("512M", "4G").</summary>
    public static string FormatSize(long bytes) =>
        bytes % (1L << 40) == 0 && bytes > 0 ? $"{bytes >> 40}T"
        : bytes % (1L << 30) == 0 && bytes > 0 ? $"{bytes >> 30}G"
        : bytes % (1L << 20) == 0 && bytes > 0 ? $"{bytes >> 20}M"
        : bytes % (1L << 10) == 0 && bytes > 0 ? $"{bytes >> 10}K"
        : bytes.ToString(System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>An invalid <see cref="MachineOptions"/> value; the message names the option and its limit.</summary>
public sealed class MachineOptionException : ArgumentException
{
    /// <summary>Creates the exception for <paramref name="option"/>.</summary>
    public MachineOptionException(string option, string message, Exception? inner = null) : base(message, inner) => Option = option;

    /// <summary>Creates an exception without an option name.</summary>
    public MachineOptionException() : this("", "invalid machine option") { }

    /// <summary>Creates an exception without an option name.</summary>
    public MachineOptionException(string message) : this("", message) { }

    /// <summary>Creates an exception without an option name.</summary>
    public MachineOptionException(string message, Exception inner) : this("", message, inner) { }

    /// <summary>The option's name in <see cref="MachineOptions"/>.</summary>
    public string Option { get; }
}
