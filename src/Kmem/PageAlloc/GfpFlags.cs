// The kernel's gfp helpers: gfp_zone() and gfp_migratetype() (include/linux/gfp.h) and
// the ftrace rendering show_gfp_flags() (include/trace/events/mmflags.h, printed by
// trace_print_flags_seq), with its inverse for reading traces. Stateless and thread-safe;
// the name table is immutable. Format and Parse are for traces and reports, not hot paths.
using System.Globalization;
using System.Text;

namespace Kmem;

/// <summary>
/// Helpers over <see cref="Gfp"/>: the zone and migrate type an allocation asks for, and the
/// exact text ftrace prints for a gfp mask (<c>GFP_KERNEL|__GFP_ZERO</c>) and back.
/// </summary>
public static class GfpFlags
{
    /// <summary>GFP_ZONEMASK: the zone modifier bits (DMA, HIGHMEM, DMA32, MOVABLE).</summary>
    public const Gfp ZoneMask = Gfp.Dma | Gfp.HighMem | Gfp.Dma32 | Gfp.Movable;

    /// <summary>GFP_MOVABLE_MASK: the bits that select the migrate type (RECLAIMABLE, MOVABLE).</summary>
    public const Gfp MovableMask = Gfp.Reclaimable | Gfp.Movable;

    // GFP_MOVABLE_SHIFT: __GFP_MOVABLE >> 3 == MIGRATE_MOVABLE, __GFP_RECLAIMABLE >> 3 == MIGRATE_RECLAIMABLE.
    private const int MovableShift = 3;

    // __def_gfpflag_names for 6.1 without KASAN_HW_TAGS, in the kernel's order. The order
    // matters: composites come first and claim their bits, so GFP_NOIO (== __GFP_RECLAIM)
    // is only printed when GFP_KERNEL and friends did not already take those bits.
    private static readonly (Gfp Mask, string Name)[] Names =
    [
        (Gfp.TransHuge, "GFP_TRANSHUGE"),
        (Gfp.TransHugeLight, "GFP_TRANSHUGE_LIGHT"),
        (Gfp.HighUserMovable, "GFP_HIGHUSER_MOVABLE"),
        (Gfp.HighUser, "GFP_HIGHUSER"),
        (Gfp.User, "GFP_USER"),
        (Gfp.KernelAccount, "GFP_KERNEL_ACCOUNT"),
        (Gfp.Kernel, "GFP_KERNEL"),
        (Gfp.NoFs, "GFP_NOFS"),
        (Gfp.Atomic, "GFP_ATOMIC"),
        (Gfp.NoIo, "GFP_NOIO"),
        (Gfp.NoWait, "GFP_NOWAIT"),
        (Gfp.Dma, "GFP_DMA"),
        (Gfp.HighMem, "__GFP_HIGHMEM"),
        (Gfp.Dma32, "GFP_DMA32"),
        (Gfp.High, "__GFP_HIGH"),
        (Gfp.AtomicBit, "__GFP_ATOMIC"),
        (Gfp.Io, "__GFP_IO"),
        (Gfp.Fs, "__GFP_FS"),
        (Gfp.NoWarn, "__GFP_NOWARN"),
        (Gfp.RetryMayfail, "__GFP_RETRY_MAYFAIL"),
        (Gfp.NoFail, "__GFP_NOFAIL"),
        (Gfp.NoRetry, "__GFP_NORETRY"),
        (Gfp.Comp, "__GFP_COMP"),
        (Gfp.Zero, "__GFP_ZERO"),
        (Gfp.NoMemalloc, "__GFP_NOMEMALLOC"),
        (Gfp.Memalloc, "__GFP_MEMALLOC"),
        (Gfp.Hardwall, "__GFP_HARDWALL"),
        (Gfp.ThisNode, "__GFP_THISNODE"),
        (Gfp.Reclaimable, "__GFP_RECLAIMABLE"),
        (Gfp.Movable, "__GFP_MOVABLE"),
        (Gfp.Account, "__GFP_ACCOUNT"),
        (Gfp.Write, "__GFP_WRITE"),
        (Gfp.Reclaim, "__GFP_RECLAIM"),
        (Gfp.DirectReclaim, "__GFP_DIRECT_RECLAIM"),
        (Gfp.KswapdReclaim, "__GFP_KSWAPD_RECLAIM"),
        (Gfp.ZeroTags, "__GFP_ZEROTAGS"),
    ];

    private static readonly Dictionary<string, Gfp> ByName =
        Names.ToDictionary(n => n.Name, n => n.Mask, StringComparer.Ordinal);

    /// <summary>
    /// The text ftrace prints for <paramref name="gfp"/> (show_gfp_flags): <c>none</c> for 0;
    /// otherwise each table entry whose bits are all present, in the kernel's order, joined
    /// with '|', each claiming its bits; bits no entry names are appended as <c>0x…</c>.
    /// </summary>
    /// <param name="gfp">The mask to print.</param>
    /// <returns>For example <c>GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP</c>.</returns>
    public static string Format(Gfp gfp)
    {
        if (gfp == 0)
        {
            return "none";
        }
        var sb = new StringBuilder();
        var left = gfp;
        // Like trace_print_flags_seq: stop as soon as every bit has been claimed.
        for (int i = 0; i < Names.Length && left != 0; i++)
        {
            var (mask, name) = Names[i];
            if ((left & mask) != mask)
            {
                continue;
            }
            left &= ~mask;
            if (sb.Length > 0)
            {
                sb.Append('|');
            }
            sb.Append(name);
        }
        if (left != 0)
        {
            if (sb.Length > 0)
            {
                sb.Append('|');
            }
            sb.Append("0x").Append(((uint)left).ToString("x", CultureInfo.InvariantCulture));
        }
        return sb.ToString();
    }

    /// <summary>
    /// Reads a gfp mask as ftrace prints it: <c>none</c>, names in the kernel's spelling
    /// (case-sensitive) and <c>0x…</c> hex parts joined by '|', or a plain hex or decimal number.
    /// </summary>
    /// <param name="text">The text, e.g. <c>GFP_KERNEL|__GFP_ZERO</c>.</param>
    /// <returns>The mask.</returns>
    /// <exception cref="FormatException">A part is not a known name or a number; the message names it.</exception>
    public static Gfp Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!TryParseCore(text, out var gfp, out var error))
        {
            throw new FormatException(error);
        }
        return gfp;
    }

    /// <summary>Like <see cref="Parse"/>, but returns false instead of throwing.</summary>
    /// <param name="text">The text to read; null gives false.</param>
    /// <param name="gfp">The mask read, or 0 when the text is not valid.</param>
    /// <returns>True when the whole text was valid.</returns>
    public static bool TryParse(string? text, out Gfp gfp)
    {
        if (text is null)
        {
            gfp = 0;
            return false;
        }
        return TryParseCore(text, out gfp, out _);
    }

    private static bool TryParseCore(string text, out Gfp gfp, out string? error)
    {
        gfp = 0;
        error = null;
        if (text == "none")
        {
            return true;
        }
        uint value = 0;
        foreach (var token in text.Split('|'))
        {
            if (ByName.TryGetValue(token, out var mask))
            {
                value |= (uint)mask;
            }
            else if (TryParseNumber(token, out var number))
            {
                value |= number;
            }
            else
            {
                error = token.Length == 0
                    ? $"Empty gfp flag name in '{text}'."
                    : $"Unknown gfp flag '{token}' in '{text}'.";
                return false;
            }
        }
        gfp = (Gfp)value;
        return true;
    }

    private static bool TryParseNumber(string token, out uint value)
    {
        if (token.Length > 2 && token[0] == '0' && (token[1] == 'x' || token[1] == 'X'))
        {
            return uint.TryParse(token.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
        }
        return uint.TryParse(token, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }

    /// <summary>
    /// gfp_zone(): the highest zone an allocation with <paramref name="gfp"/> may use, from the
    /// kernel's GFP_ZONE_TABLE. A zone the machine does not have falls back as the kernel's
    /// OPT_ZONE_* macros do: DMA, DMA32 and HighMem become Normal; Movable+HighMem is always Movable.
    /// </summary>
    /// <param name="gfp">The allocation's flags; only the zone modifiers matter.</param>
    /// <param name="hasDma">The machine has ZONE_DMA.</param>
    /// <param name="hasDma32">The machine has ZONE_DMA32.</param>
    /// <param name="hasHighMem">The machine has ZONE_HIGHMEM.</param>
    /// <returns>The highest zone type to start the zonelist walk at.</returns>
    /// <exception cref="ArgumentException">
    /// The zone modifiers are a GFP_ZONE_BAD combination (more than one of DMA, DMA32 and
    /// HIGHMEM), on which the kernel BUGs under DEBUG_VM.
    /// </exception>
    public static ZoneType GfpZone(Gfp gfp, bool hasDma, bool hasDma32, bool hasHighMem)
    {
        var zoneBits = gfp & ZoneMask;
        var optDma = hasDma ? ZoneType.Dma : ZoneType.Normal;
        var optDma32 = hasDma32 ? ZoneType.Dma32 : ZoneType.Normal;
        var optHighMem = hasHighMem ? ZoneType.HighMem : ZoneType.Normal;
        return zoneBits switch
        {
            0 => ZoneType.Normal,
            Gfp.Dma => optDma,
            Gfp.HighMem => optHighMem,
            Gfp.Dma32 => optDma32,
            // __GFP_MOVABLE alone only picks the migrate type.
            Gfp.Movable => ZoneType.Normal,
            Gfp.Movable | Gfp.Dma => optDma,
            Gfp.Movable | Gfp.HighMem => ZoneType.Movable,
            Gfp.Movable | Gfp.Dma32 => optDma32,
            _ => throw new ArgumentException(
                $"gfp_zone: invalid zone modifiers {Format(zoneBits)} in {Format(gfp)} (GFP_ZONE_BAD).",
                nameof(gfp)),
        };
    }

    /// <summary>
    /// gfp_migratetype(): the migrate type an allocation asks for,
    /// <c>(gfp &amp; (__GFP_RECLAIMABLE|__GFP_MOVABLE)) &gt;&gt; 3</c>. The machine forces
    /// Unmovable itself when grouping by mobility is disabled.
    /// </summary>
    /// <param name="gfp">The allocation's flags.</param>
    /// <returns>Unmovable, Movable or Reclaimable.</returns>
    /// <exception cref="ArgumentException">Both __GFP_RECLAIMABLE and __GFP_MOVABLE are set.</exception>
    public static MigrateType GfpMigratetype(Gfp gfp)
    {
        var bits = gfp & MovableMask;
        if (bits == MovableMask)
        {
            throw new ArgumentException(
                $"gfp_migratetype: __GFP_RECLAIMABLE and __GFP_MOVABLE both set in {Format(gfp)}.",
                nameof(gfp));
        }
        return (MigrateType)((uint)bits >> MovableShift);
    }

    /// <summary>Why no allocation can carry <paramref name="gfp"/>: zone modifiers that GFP_ZONE_BAD lists
    /// (<see cref="GfpZone"/> throws on them) or both migrate-type bits (<see cref="GfpMigratetype"/> throws);
    /// null for a mask the allocators accept. For readers of traces, which must refuse such masks as bad input.</summary>
    internal static string? Invalid(Gfp gfp)
    {
        var zoneBits = gfp & ZoneMask & ~Gfp.Movable;
        if ((zoneBits & (zoneBits - 1)) != 0)
        {
            return $"zone modifiers {Format(zoneBits)} together: gfp_zone() allows one of GFP_DMA, GFP_DMA32 and __GFP_HIGHMEM";
        }
        if ((gfp & MovableMask) == MovableMask)
        {
            return "__GFP_RECLAIMABLE and __GFP_MOVABLE together: gfp_migratetype() allows one";
        }
        return null;
    }

    /// <summary>gfpflags_allow_blocking(): true when the allocation may sleep (__GFP_DIRECT_RECLAIM).</summary>
    /// <param name="gfp">The allocation's flags.</param>
    /// <returns>True when direct reclaim is allowed.</returns>
    public static bool GfpAllowBlocking(Gfp gfp) => (gfp & Gfp.DirectReclaim) != 0;
}
