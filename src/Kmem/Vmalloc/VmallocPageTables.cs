// Kmem's own kernel page tables for the vmalloc area (init_mm's pgd, walked by
// vmalloc_to_page): 4 levels on X64, 2 on X86, 3 on X86Pae, each table a real
// array of entries (pfn << PAGE_SHIFT | flag bits) created on first use. Like
// the kernel's, vmalloc tables are never freed and are not counted in meminfo's
// PageTables. Not thread-safe: VmapSpace holds its lock around every call.
using Kmem.Physical;

namespace Kmem.Vmalloc;

/// <summary>The vmalloc area's page tables, as managed arrays.</summary>
internal sealed class VmallocPageTables
{
    /// <summary>_PAGE_PRESENT.</summary>
    public const ulong Present = 0x1;
    /// <summary>_PAGE_RW.</summary>
    public const ulong ReadWrite = 0x2;

    private readonly int[] _shifts;
    private readonly int[] _bits;
    /// <summary>The top level (pgd); upper levels hold child tables, the last level ulong[] ptes.</summary>
    private readonly object?[] _root;

    public VmallocPageTables(VmallocLayout layout)
    {
        _shifts = layout.LevelShifts;
        _bits = layout.LevelBits;
        _root = _shifts.Length == 1 ? throw new ArgumentException("at least two levels") : new object?[1 << _bits[0]];
        Tables = 1;
    }

    /// <summary>Tables allocated so far, the top level included.</summary>
    public int Tables { get; private set; }

    /// <summary>Levels of the walk (4 on X64, 2 on X86, 3 on X86Pae).</summary>
    public int Levels => _shifts.Length;

    /// <summary>set_pte: maps the page at kernel address <paramref name="address"/> to <paramref name="pfn"/>.</summary>
    public void Set(ulong address, uint pfn, bool writable) =>
        Pte(address, create: true)![Index(address, _shifts.Length - 1)] = ((ulong)pfn << PhysMem.PageShift) | Present | (writable ? ReadWrite : 0);

    /// <summary>pte_clear.</summary>
    public void Clear(ulong address)
    {
        if (Pte(address, create: false) is { } pte)
        {
            pte[Index(address, _shifts.Length - 1)] = 0;
        }
    }

    /// <summary>The walk of vmalloc_to_page: the frame mapped at <paramref name="address"/>, or
    /// <see cref="PhysMem.NoPfn"/> when a level is missing or the pte is not present.</summary>
    public uint Lookup(ulong address)
    {
        if (Pte(address, create: false) is not { } pte)
        {
            return PhysMem.NoPfn;
        }
        ulong e = pte[Index(address, _shifts.Length - 1)];
        return (e & Present) != 0 ? (uint)(e >> PhysMem.PageShift) : PhysMem.NoPfn;
    }

    private int Index(ulong address, int level) => (int)((address >> _shifts[level]) & ((1UL << _bits[level]) - 1));

    private ulong[]? Pte(ulong address, bool create)
    {
        object?[] table = _root;
        for (int level = 0; level < _shifts.Length - 1; level++)
        {
            int i = Index(address, level);
            bool lastUpper = level == _shifts.Length - 2;
            if (table[i] is null)
            {
                if (!create)
                {
                    return null;
                }
                table[i] = lastUpper ? new ulong[1 << _bits[level + 1]] : new object?[1 << _bits[level + 1]];
                Tables++;
            }
            if (lastUpper)
            {
                return (ulong[])table[i]!;
            }
            table = (object?[])table[i]!;
        }
        return null;
    }
}
