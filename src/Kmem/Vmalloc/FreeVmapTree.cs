// The free vmap space (mm/vmalloc.c free_vmap_area_root): free blocks ordered by
// address in a treap whose nodes cache the largest free size in their subtree,
// as the kernel's augmented rb-tree does. Insert, remove and the lowest-address
// fit are O(log n) expected; blocks never overlap and adjacent blocks are merged
// on insert. Not thread-safe: VmapSpace holds its lock around every call.
namespace Kmem.Vmalloc;

/// <summary>Free address ranges [Start, End) with a lowest-address first-fit search.</summary>
internal sealed class FreeVmapTree
{
    private sealed class Node(ulong start, ulong end, uint priority)
    {
        public ulong Start = start;
        public ulong End = end;
        public readonly uint Priority = priority;
        /// <summary>subtree_max_size: the largest block in this subtree.</summary>
        public ulong MaxSize = end - start;
        public Node? Left;
        public Node? Right;
    }

    // Fixed seed: the tree's shape, like everything else, is repeatable from run to run.
    private readonly Random _priorities = new(0x766d6170);
    private Node? _root;

    /// <summary>Free blocks in the tree.</summary>
    public int Count { get; private set; }

    /// <summary>Free bytes in the tree.</summary>
    public ulong FreeBytes { get; private set; }

    /// <summary>The largest free block (0 when none).</summary>
    public ulong LargestBlock => _root?.MaxSize ?? 0;

    /// <summary>find_vmap_lowest_match: the lowest <paramref name="align"/>-aligned address at which
    /// <paramref name="size"/> bytes fit in one free block; subtrees too small are never entered.</summary>
    public bool FindLowest(ulong size, ulong align, out ulong address, out ulong blockStart)
    {
        // Iterative in-order walk with pruning on MaxSize: the first fit met is the lowest.
        var stack = new Stack<Node>();
        var n = _root;
        while (n is not null || stack.Count > 0)
        {
            while (n is not null && n.MaxSize >= size)
            {
                stack.Push(n);
                n = n.Left;
            }
            if (stack.Count == 0)
            {
                break;
            }
            n = stack.Pop();
            ulong a = (n.Start + align - 1) & ~(align - 1);
            if (a >= n.Start && a <= n.End && n.End - a >= size)
            {
                address = a;
                blockStart = n.Start;
                return true;
            }
            n = n.Right;
        }
        address = blockStart = 0;
        return false;
    }

    /// <summary>Takes [address, address+size) out of the free block that starts at
    /// <paramref name="blockStart"/> (found by <see cref="FindLowest"/>); the remainders stay free.</summary>
    public void Carve(ulong blockStart, ulong address, ulong size)
    {
        var (a, rest) = Split(_root, blockStart);
        var (block, c) = Split(rest, blockStart + 1);
        if (block is null || address < block.Start || address + size > block.End)
        {
            throw new InvalidOperationException($"vmap free tree: no free block at 0x{blockStart:x} holds 0x{address:x}+0x{size:x}");
        }
        Count--;
        FreeBytes -= block.End - block.Start;
        ulong end = block.End;
        _root = Merge(a, c);
        if (address > blockStart)
        {
            InsertRaw(blockStart, address);
        }
        if (address + size < end)
        {
            InsertRaw(address + size, end);
        }
    }

    /// <summary>merge_or_add_vmap_area: frees [start, end), merged with the free blocks touching it.</summary>
    public void Insert(ulong start, ulong end)
    {
        var (a, b) = Split(_root, start);
        if (Rightmost(a) is { } prev && prev.End == start)
        {
            (a, _) = Split(a, prev.Start);
            start = prev.Start;
            Count--;
            FreeBytes -= prev.End - prev.Start;
        }
        if (Leftmost(b) is { } next && next.Start == end)
        {
            (_, b) = Split(b, next.Start + 1);
            end = next.End;
            Count--;
            FreeBytes -= next.End - next.Start;
        }
        _root = Merge(Merge(a, NewNode(start, end)), b);
    }

    /// <summary>The free blocks in address order (for checks and reports).</summary>
    public List<(ulong Start, ulong End)> Blocks()
    {
        var list = new List<(ulong, ulong)>(Count);
        var stack = new Stack<Node>();
        var n = _root;
        while (n is not null || stack.Count > 0)
        {
            for (; n is not null; n = n.Left)
            {
                stack.Push(n);
            }
            n = stack.Pop();
            list.Add((n.Start, n.End));
            n = n.Right;
        }
        return list;
    }

    private void InsertRaw(ulong start, ulong end)
    {
        var (a, b) = Split(_root, start);
        _root = Merge(Merge(a, NewNode(start, end)), b);
    }

    private Node NewNode(ulong start, ulong end)
    {
        Count++;
        FreeBytes += end - start;
        return new Node(start, end, (uint)_priorities.Next());
    }

    private static ulong Max(Node? n) => n?.MaxSize ?? 0;

    private static void Update(Node n) => n.MaxSize = Math.Max(n.End - n.Start, Math.Max(Max(n.Left), Max(n.Right)));

    /// <summary>Splits into blocks starting below <paramref name="key"/> and the rest.</summary>
    private static (Node? Below, Node? AtOrAbove) Split(Node? t, ulong key)
    {
        if (t is null)
        {
            return (null, null);
        }
        if (t.Start < key)
        {
            var (l, r) = Split(t.Right, key);
            t.Right = l;
            Update(t);
            return (t, r);
        }
        else
        {
            var (l, r) = Split(t.Left, key);
            t.Left = r;
            Update(t);
            return (l, t);
        }
    }

    /// <summary>Joins two treaps where every block of <paramref name="a"/> lies below every block of <paramref name="b"/>.</summary>
    private static Node? Merge(Node? a, Node? b)
    {
        if (a is null)
        {
            return b;
        }
        if (b is null)
        {
            return a;
        }
        if (a.Priority > b.Priority)
        {
            a.Right = Merge(a.Right, b);
            Update(a);
            return a;
        }
        b.Left = Merge(a, b.Left);
        Update(b);
        return b;
    }

    private static Node? Rightmost(Node? n)
    {
        while (n?.Right is not null)
        {
            n = n.Right;
        }
        return n;
    }

    private static Node? Leftmost(Node? n)
    {
        while (n?.Left is not null)
        {
            n = n.Left;
        }
        return n;
    }
}
