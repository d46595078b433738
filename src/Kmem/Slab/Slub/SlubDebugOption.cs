// The slub_debug= boot option (mm/slub.c setup_slub_debug, parse_slub_debug_flags, kmem_cache_flags,
// 6.1): blocks separated by ';', each "<letters>[,<cache>[,<cache>…]]". A block without a cache list sets
// the flags of every cache; a block with one sets the flags of those caches only (a trailing '*' matches
// a prefix). No letters ("slub_debug", "slub_debug=,dentry") means FZPU. Immutable once parsed.
using System.Text;

namespace Kmem.Slab;

/// <summary>A parsed slub_debug= value: the flags of every cache, per-cache blocks, and the O switch.</summary>
internal sealed class SlubDebugOption
{
    /// <summary>DEBUG_DEFAULT_FLAGS: F, Z, P and U.</summary>
    public const SlabFlags DefaultFlags = SlabFlags.ConsistencyChecks | SlabFlags.RedZone | SlabFlags.Poison | SlabFlags.StoreUser;

    /// <summary>SLAB_DEBUG_FLAGS: the flags that make a cache a debug cache (slow paths only).</summary>
    public const SlabFlags DebugFlags = SlabFlags.RedZone | SlabFlags.Poison | SlabFlags.StoreUser | SlabFlags.Trace
        | SlabFlags.ConsistencyChecks;

    /// <summary>DEBUG_METADATA_FLAGS: what slub_debug=O drops from a cache whose order would grow.</summary>
    public const SlabFlags MetadataFlags = SlabFlags.RedZone | SlabFlags.Poison | SlabFlags.StoreUser;

    private readonly List<(SlabFlags Flags, string[] Caches)> _blocks = [];

    private SlubDebugOption() { }

    /// <summary>No debugging at all (the option absent).</summary>
    public static SlubDebugOption None { get; } = new();

    /// <summary>The flags of caches that no block names.</summary>
    public SlabFlags Global { get; private set; }

    /// <summary>disable_higher_order_debug (letter O).</summary>
    public bool DisableHigherOrderDebug { get; private set; }

    /// <summary>Parses the option's value ("" is the bare option: FZPU for every cache).</summary>
    /// <exception cref="FormatException">An unknown letter or an empty cache name; the message says which.</exception>
    public static SlubDebugOption Parse(string value)
    {
        var o = new SlubDebugOption { Global = DefaultFlags };
        if (value.Length == 0)
        {
            return o;
        }
        bool globalChanged = false, listSpecified = false;
        foreach (string raw in value.Split(';'))
        {
            if (raw.Length == 0)
            {
                continue;
            }
            int comma = raw.IndexOf(',', StringComparison.Ordinal);
            string letters = comma < 0 ? raw : raw[..comma];
            SlabFlags flags = comma == 0 ? DefaultFlags : ParseLetters(letters, value, o);
            if (comma < 0)
            {
                o.Global = flags;
                globalChanged = true;
                continue;
            }
            string[] caches = raw[(comma + 1)..].Split(',');
            foreach (string c in caches)
            {
                if (c.Length == 0 || c.Trim().Length != c.Length)
                {
                    throw new FormatException($"slub_debug={value}: empty or padded cache name in \"{raw}\"");
                }
            }
            o._blocks.Add((flags, caches));
            listSpecified = true;
        }
        if (listSpecified && !globalChanged)
        {
            o.Global = 0;
        }
        return o;
    }

    private static SlabFlags ParseLetters(string letters, string value, SlubDebugOption o)
    {
        SlabFlags flags = 0;
        foreach (char ch in letters)
        {
            switch (char.ToLowerInvariant(ch))
            {
                case '-': flags = 0; break;
                case 'f': flags |= SlabFlags.ConsistencyChecks; break;
                case 'z': flags |= SlabFlags.RedZone; break;
                case 'p': flags |= SlabFlags.Poison; break;
                case 'u': flags |= SlabFlags.StoreUser; break;
                case 't': flags |= SlabFlags.Trace; break;
                case 'a': flags |= SlabFlags.Failslab; break;
                case 'o': o.DisableHigherOrderDebug = true; break;
                default:
                    throw new FormatException($"slub_debug={value}: option '{ch}' unknown (letters are F, Z, P, U, T, A, O and -)");
            }
        }
        return flags;
    }

    /// <summary>kmem_cache_flags: <paramref name="flags"/> plus the debug flags slub_debug gives the cache
    /// named <paramref name="name"/> (its block's flags when a block names it, else the global ones).</summary>
    public SlabFlags CacheFlags(string name, SlabFlags flags)
    {
        foreach (var (blockFlags, caches) in _blocks)
        {
            foreach (string c in caches)
            {
                bool match = c.EndsWith('*') ? name.StartsWith(c[..^1], StringComparison.Ordinal) : name == c;
                if (match)
                {
                    return flags | blockFlags;
                }
            }
        }
        return flags | Global;
    }

    /// <summary>The flags as slub_debug letters ("FZPU"), "-" for none.</summary>
    public static string Letters(SlabFlags flags)
    {
        var sb = new StringBuilder();
        if ((flags & SlabFlags.ConsistencyChecks) != 0) { sb.Append('F'); }
        if ((flags & SlabFlags.RedZone) != 0) { sb.Append('Z'); }
        if ((flags & SlabFlags.Poison) != 0) { sb.Append('P'); }
        if ((flags & SlabFlags.StoreUser) != 0) { sb.Append('U'); }
        if ((flags & SlabFlags.Trace) != 0) { sb.Append('T'); }
        if ((flags & SlabFlags.Failslab) != 0) { sb.Append('A'); }
        return sb.Length == 0 ? "-" : sb.ToString();
    }
}
