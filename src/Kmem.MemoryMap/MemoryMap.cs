// A picture of physical memory: every page frame as a cell coloured by what it
// is used for (free blocks by order, per-CPU lists, slab, large kmalloc,
// vmalloc, task and page-cache pages, page tables, reserved), zone starts
// marked, a legend and a title; as a PNG or as a character map for a terminal.
// The public face; FrameScan classifies, MemoryMapLayout places,
// MemoryMapPainter draws. Stateless: every call takes its own snapshot of the
// machine (see FrameScan for what that snapshot guarantees).
namespace Kmem;

/// <summary>One entry of the memory map's legend: a state (a free order for free frames), its name, its colour
/// in the picture and its character in the text map.</summary>
/// <param name="State">The frame state.</param>
/// <param name="Order">For <see cref="FrameState.Free"/>, the order of the free block; 0 otherwise.</param>
/// <param name="Name">The name the legend prints.</param>
/// <param name="Color">The colour as 0xRRGGBB.</param>
/// <param name="Symbol">The character of <see cref="MemoryMap.RenderText(Machine, int)"/>.</param>
public readonly record struct MemoryMapLegendEntry(FrameState State, int Order, string Name, uint Color, char Symbol);

/// <summary>
/// Pictures of a machine's physical memory: a cell per page frame (or per group of frames on a big machine),
/// coloured by the frame's <see cref="FrameState"/>.
/// </summary>
/// <remarks>
/// The picture (<see cref="Render(Machine, string, MemoryMapOptions?)"/>) has a title line (preset, memory,
/// CPUs, nodes, frames per cell and the caption), the grid in pfn order with a line and a name at the start of
/// each zone, and the legend. The text map (<see cref="RenderText(Machine, int)"/>) prints one character per
/// group of frames, a block of lines per zone. Neither takes the zone locks: on a machine that other threads
/// are changing, the picture is a snapshot that may catch a block mid-change; on a quiet one it is exact.
/// </remarks>
public static class MemoryMap
{
    private static readonly uint[] s_freeColors =
    [
        0x00441b, 0x065c24, 0x12712f, 0x23873c, 0x389c4a, 0x52b05a, 0x6fc16d, 0x8ccf86, 0xa8dca0, 0xc2e6bb, 0xd9f0d3,
    ];

    private static readonly MemoryMapLegendEntry[] s_legend = BuildLegend();

    /// <summary>The legend, in the order the picture prints it: free blocks by order 0 .. MAX_ORDER-1 (a ramp
    /// from dark green for scattered single frames to pale green for the largest blocks, so that a machine with
    /// plenty of contiguous memory looks calm and fragmentation shows up dark), then per-CPU lists, slab, large kmalloc, vmalloc, page tables, task anon, page
    /// cache, other kernel allocations, reserved and holes.</summary>
    public static IReadOnlyList<MemoryMapLegendEntry> Legend => s_legend;

    /// <summary>The legend entry of a state (of a free block's order for <see cref="FrameState.Free"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The order is not 0 .. MAX_ORDER-1 for a free block.</exception>
    public static MemoryMapLegendEntry LegendOf(FrameState state, int order = 0)
    {
        if (state == FrameState.Free && (uint)order >= Machine.MaxOrder)
        {
            throw new ArgumentOutOfRangeException(nameof(order), order, $"a free block's order is 0..{Machine.MaxOrder - 1}");
        }
        return s_legend[FrameScan.KeyOf(state, order)];
    }

    /// <summary>What frame <paramref name="pfn"/> is used for.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The pfn is beyond the machine.</exception>
    public static FrameState Classify(Machine m, ulong pfn) => Classify(m, pfn, out _);

    /// <summary>What frame <paramref name="pfn"/> is used for, with the order of its block: the free block's
    /// order for <see cref="FrameState.Free"/>, the per-CPU list's order for <see cref="FrameState.PerCpuList"/>,
    /// the allocation's order for an allocated frame, 0 for a reserved frame or a hole.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The pfn is beyond the machine.</exception>
    public static FrameState Classify(Machine m, ulong pfn, out int order)
    {
        ArgumentNullException.ThrowIfNull(m);
        if (pfn >= m.MaxPfn)
        {
            throw new ArgumentOutOfRangeException(nameof(pfn), $"pfn 0x{pfn:x} is beyond max_pfn 0x{m.MaxPfn:x}");
        }
        return FrameScan.ClassifyOne(m, (uint)pfn, out order);
    }

    /// <summary>The geometry <see cref="Render(Machine, Stream, MemoryMapOptions?)"/> would use for
    /// <paramref name="m"/>: picture size, cells, where each frame and legend swatch is drawn.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range (the message names it).</exception>
    public static MemoryMapLayout GetLayout(Machine m, MemoryMapOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(m);
        return new MemoryMapLayout(m.MaxPfn, options ?? new MemoryMapOptions(), ZonesOf(m));
    }

    /// <summary>Writes the picture of <paramref name="m"/>'s physical memory as a PNG file.</summary>
    /// <param name="m">The machine.</param>
    /// <param name="pngPath">The file to write (created or replaced).</param>
    /// <param name="options">Layout and caption; null for the defaults.</param>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range (the message names it).</exception>
    /// <exception cref="IOException">The file cannot be written.</exception>
    public static void Render(Machine m, string pngPath, MemoryMapOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(m);
        ArgumentException.ThrowIfNullOrEmpty(pngPath);
        var layout = GetLayout(m, options);
        using var file = new FileStream(pngPath, FileMode.Create, FileAccess.Write, FileShare.None);
        MemoryMapPainter.Paint(m, layout, options?.Caption, options?.Pressure, file);
    }

    /// <summary>Writes the picture of <paramref name="m"/>'s physical memory as PNG to a stream.</summary>
    /// <param name="m">The machine.</param>
    /// <param name="png">The stream the PNG is written to (left open).</param>
    /// <param name="options">Layout and caption; null for the defaults.</param>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range (the message names it).</exception>
    public static void Render(Machine m, Stream png, MemoryMapOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(m);
        ArgumentNullException.ThrowIfNull(png);
        MemoryMapPainter.Paint(m, GetLayout(m, options), options?.Caption, options?.Pressure, png);
    }

    /// <summary>A character map of physical memory for a terminal, with at most 32 lines of cells.</summary>
    /// <inheritdoc cref="RenderText(Machine, int, int)"/>
    public static string RenderText(Machine m, int width) => RenderText(m, width, 32);

    /// <summary>A character map of physical memory for a terminal: a title line, then for each populated zone a
    /// header and lines that start with the first pfn they show, one character per group of 2^k frames (the
    /// state most of them have, as in the picture; see <see cref="Legend"/> for the characters), then the
    /// legend.</summary>
    /// <param name="m">The machine.</param>
    /// <param name="width">Characters per line, the pfn column included (at least 24).</param>
    /// <param name="maxLines">Most lines of cells over all zones (at least 1); k is the smallest that keeps
    /// the map within it, give or take a line per zone.</param>
    /// <exception cref="ArgumentOutOfRangeException">The width or the line count is too small.</exception>
    public static string RenderText(Machine m, int width, int maxLines)
    {
        ArgumentNullException.ThrowIfNull(m);
        return MemoryMapText.Render(m, width, maxLines);
    }

    internal static IReadOnlyList<MemoryMapZone> ZonesOf(Machine m)
    {
        bool numa = m.NrNodes > 1;
        return [.. m.PageAllocator.Zones
            .Where(z => z.SpannedPages > 0)
            .OrderBy(z => z.StartPfn)
            .Select(z => new MemoryMapZone(numa ? $"N{z.Node.Id} {z.Name}" : z.Name, z.StartPfn, z.EndPfn))];
    }

    private static MemoryMapLegendEntry[] BuildLegend()
    {
        var legend = new MemoryMapLegendEntry[FrameScan.KeyCount];
        for (int order = 0; order < Machine.MaxOrder; order++)
        {
            legend[order] = new MemoryMapLegendEntry(FrameState.Free, order, $"free order {order}", s_freeColors[order],
                order < 10 ? (char)('0' + order) : (char)('A' + order - 10));
        }
        foreach (var state in FrameScan.OtherStates)
        {
            (string name, uint color, char symbol) = state switch
            {
                FrameState.PerCpuList => ("per-CPU lists", 0xffd92fu, 'p'),
                FrameState.Slab => ("slab", 0xff7f0eu, 'S'),
                FrameState.LargeKmalloc => ("large kmalloc", 0xd62728u, 'L'),
                FrameState.Vmalloc => ("vmalloc", 0x9467bdu, 'V'),
                FrameState.PageTable => ("page tables", 0xe377c2u, 'T'),
                FrameState.TaskAnon => ("task anon", 0x1f77b4u, 'a'),
                FrameState.PageCache => ("page cache", 0x17becfu, 'c'),
                FrameState.Kernel => ("other kernel", 0x8c564bu, 'k'),
                FrameState.Reserved => ("reserved", 0x7f7f7fu, 'R'),
                _ => ("hole (not RAM)", 0x000000u, '_'),
            };
            legend[FrameScan.KeyOf(state, 0)] = new MemoryMapLegendEntry(state, 0, name, color, symbol);
        }
        return legend;
    }
}
