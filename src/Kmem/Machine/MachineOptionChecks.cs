// Boot's check of the machine options (Machine.Boot calls it before anything is allocated): each
// option's range, the combinations a preset refuses, and the memory size against the preset's
// limits. Every refusal is a MachineOptionException naming the option. Stateless.
using Kmem.Physical;
using Kmem.Slab;

namespace Kmem;

/// <summary>The checks Machine.Boot makes of its options.</summary>
internal static class MachineOptionChecks
{
    /// <summary>Checks every option; returns the memory size in bytes.</summary>
    /// <exception cref="MachineOptionException">An option is invalid (its name in <see cref="MachineOptionException.Option"/>).</exception>
    public static long Validate(MachineOptions o, Arch arch)
    {
        long memory;
        try
        {
            memory = MachineOptions.ParseSize(o.Memory, "Memory");
        }
        catch (FormatException e)
        {
            throw new MachineOptionException("Memory", e.Message, e);
        }
        const int page = PhysMem.PageSize;
        if (memory % page != 0)
        {
            throw new MachineOptionException("Memory", $"Memory: {o.Memory} ({memory} bytes) is not a multiple of the page size ({page} bytes)");
        }
        if (o.Nodes < 1 || o.Nodes > 64)
        {
            throw new MachineOptionException("Nodes", $"Nodes: {o.Nodes} — a machine has 1..64 nodes (MAX_NUMNODES)");
        }
        if (o.Nodes > 1 && arch.HasHighMem)
        {
            throw new MachineOptionException("Nodes", $"Nodes: {o.Nodes} — the {o.Preset} preset supports 1 node");
        }
        if (memory < Arch.MinMemory * o.Nodes)
        {
            throw new MachineOptionException("Memory", $"Memory: {o.Memory} is too small: the first MiB, the kernel image (16M at 16M) and the memmap "
                + $"need at least {MachineOptions.FormatSize(Arch.MinMemory)} per node ({MachineOptions.FormatSize(Arch.MinMemory * o.Nodes)} for {o.Nodes} node(s))");
        }
        if (arch.HasHighMem)
        {
            // The 32-bit memmap must fit in lowmem with room to spare, or the kernel cannot boot.
            uint frames = (uint)(memory >> PhysMem.PageShift);
            uint lowmem = (uint)Math.Min(frames, Arch.MaxLowmem32 >> PhysMem.PageShift);
            uint needed = Arch.KernelStartPfn + Arch.KernelImagePfns + arch.MemmapPages(frames) + (uint)(Arch.MinMemory >> PhysMem.PageShift) / 2;
            if (needed > lowmem)
            {
                throw new MachineOptionException("Memory", $"Memory: {o.Memory} needs a {MachineOptions.FormatSize((long)arch.MemmapPages(frames) << PhysMem.PageShift)} memmap, "
                    + $"which does not fit in the {MachineOptions.FormatSize((long)lowmem << PhysMem.PageShift)} of lowmem beside the kernel on the {o.Preset} preset");
            }
        }
        if (memory > arch.MaxMemory)
        {
            throw new MachineOptionException("Memory", $"Memory: {o.Memory} is above the {o.Preset} preset's limit of {MachineOptions.FormatSize(arch.MaxMemory)}");
        }
        if (memory >> PhysMem.PageShift >= PhysMem.NoPfn)
        {
            // A pfn is 32 bits here (NoPfn is the last value): the frame count must fit below it.
            throw new MachineOptionException("Memory", $"Memory: {o.Memory} is more page frames than Kmem numbers (32-bit pfns: below 16T)");
        }
        if (o.HighPte == true && o.Preset == Preset.X64)
        {
            throw new MachineOptionException("HighPte", "HighPte: the X64 preset has no HighMem to put page tables in (CONFIG_HIGHPTE depends on CONFIG_HIGHMEM, an x86-32 option)");
        }
        if (o.SlubThreadCache is { } threadCache)
        {
            long bytes;
            try
            {
                bytes = MachineOptions.ParseSize(threadCache, "SlubThreadCache");
            }
            catch (FormatException e)
            {
                throw new MachineOptionException("SlubThreadCache", e.Message, e);
            }
            if (bytes > memory)
            {
                throw new MachineOptionException("SlubThreadCache", $"SlubThreadCache: {threadCache} is more than the machine's memory ({o.Memory})");
            }
        }
        if (o.Cpus < 1 || o.Cpus > 8192)
        {
            throw new MachineOptionException("Cpus", $"Cpus: {o.Cpus} — a machine has 1..8192 CPUs (NR_CPUS)");
        }
        if (o.WatermarkScaleFactor < 1 || o.WatermarkScaleFactor > 3000)
        {
            throw new MachineOptionException("WatermarkScaleFactor", $"WatermarkScaleFactor: {o.WatermarkScaleFactor} — vm.watermark_scale_factor is 1..3000");
        }
        if (o.WatermarkBoostFactor < 0)
        {
            throw new MachineOptionException("WatermarkBoostFactor", $"WatermarkBoostFactor: {o.WatermarkBoostFactor} — vm.watermark_boost_factor is 0 or more");
        }
        if (o.MinFreeKbytes is < 0)
        {
            throw new MachineOptionException("MinFreeKbytes", $"MinFreeKbytes: {o.MinFreeKbytes} — vm.min_free_kbytes is 0 or more");
        }
        if (o.PercpuPagelistHighFraction is < 0 or (> 0 and < 8))
        {
            throw new MachineOptionException("PercpuPagelistHighFraction", $"PercpuPagelistHighFraction: {o.PercpuPagelistHighFraction} — vm.percpu_pagelist_high_fraction is 0 or at least 8");
        }
        foreach (var (name, value) in new[] { ("KernelCore", o.KernelCore), ("MovableCore", o.MovableCore) })
        {
            if (value is not null && !IsCoreSize(value))
            {
                throw new MachineOptionException(name, $"{name}: \"{value}\" is not a size (\"512M\") or a percentage (\"25%\") of memory");
            }
        }
        if (o.FailPageAlloc is { } fpa)
        {
            try
            {
                FaultAttr.FromBootOption(fpa, "fail_page_alloc", new Random(0));
            }
            catch (FormatException e)
            {
                throw new MachineOptionException("FailPageAlloc", $"FailPageAlloc: {e.Message}", e);
            }
        }
        if (o.Failslab is { } fs)
        {
            try
            {
                FaultAttr.FromBootOption(fs, "failslab", new Random(0));
            }
            catch (FormatException e)
            {
                throw new MachineOptionException("Failslab", $"Failslab: {e.Message}", e);
            }
        }
        if (o.SlubDebug is { } sd)
        {
            try
            {
                SlubDebugOption.Parse(sd);
            }
            catch (FormatException e)
            {
                throw new MachineOptionException("SlubDebug", $"SlubDebug: {e.Message}", e);
            }
        }
        return memory;
    }

    private static bool IsCoreSize(string value)
    {
        if (value.EndsWith('%'))
        {
            return int.TryParse(value.AsSpan(0, value.Length - 1), out int pct) && pct is >= 0 and <= 100;
        }
        try
        {
            MachineOptions.ParseSize(value, "size");
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }
}
