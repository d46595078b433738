// Kmem's own SLOB summary (the "slobinfo" file). Linux has no report for SLOB (no /proc/slabinfo, no
// /sys/kernel/slab); this file is Kmem's, in a slabinfo-like layout: the three free lists with their
// pages and free units, the pages SLOB holds, and per owner (kmalloc, then each cache oldest first) the
// live blocks, the bytes asked for and the bytes held (units with the kmalloc header, or whole pages).
// Built from one snapshot taken under slob_lock.
using System.Text;
using Kmem.Slab;

namespace Kmem.Proc;

internal static class Slobinfo
{
    public const string Title = "slobinfo - Kmem's own SLOB summary (Linux has no slabinfo with SLOB)\n";

    public static string Show(Slob slob)
    {
        var sum = slob.Summary();
        var sb = new StringBuilder(Title);
        sb.Append("# list             <pages> <free_units> <free_bytes>\n");
        long listed = 0;
        for (int i = 0; i < sum.Lists.Length; i++)
        {
            var (pages, free) = sum.Lists[i];
            listed += pages;
            sb.Left(Slob.ListNames[i], 17).Append(' ').Num(pages, 7).Append(' ').Num(free, 12).Append(' ').Num(free * Slob.SlobUnit, 12).Append('\n');
        }
        sb.Append("# pages            <slob_pages> <full_pages> <page_blocks> <block_pages>\n");
        sb.Left("pages", 17).Append(' ').Num(sum.SlobPages, 12).Append(' ').Num(sum.SlobPages - listed, 12)
            .Append(' ').Num(sum.PageBlocks, 13).Append(' ').Num(sum.PageBlockPages, 13).Append('\n');
        sb.Append("# owner            <blocks> <requested_bytes> <held_bytes>\n");
        long blocks = 0, requested = 0, held = 0;
        foreach (var (name, n, req, h) in sum.Owners)
        {
            sb.Left(name, 17).Append(' ').Num(n, 8).Append(' ').Num(req, 17).Append(' ').Num(h, 12).Append('\n');
            blocks += n;
            requested += req;
            held += h;
        }
        sb.Left("total", 17).Append(' ').Num(blocks, 8).Append(' ').Num(requested, 17).Append(' ').Num(held, 12).Append('\n');
        return sb.ToString();
    }
}
