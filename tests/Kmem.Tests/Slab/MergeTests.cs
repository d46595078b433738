// Cache merging (find_mergeable / slab_unmergeable of 6.1): a new cache reuses the newest existing one of
// the same size class after alignment (at most a word bigger, aligned alike) with the same SLAB_MERGE_SAME
// flags, unless either has a constructor or a never-merge flag (debugging, RCU, failslab, NoMerge), merging is
// off (slub_nomerge), or the candidate is a kmalloc cache. The alias is the same cache object with one more
// reference and the new name among its aliases; destroying an alias drops one reference.
namespace Kmem.Tests.Slab;

public class MergeTests
{
    private static Machine Boot(bool nomerge = false, string? slubDebug = null) =>
        Machine.Boot(new MachineOptions { Memory = "256M", Seed = 2, SlubNomerge = nomerge, SlubDebug = slubDebug });

    [Fact]
    public void ACompatibleCacheIsAnAliasOfTheExistingOne()
    {
        using var m = Boot();
        var a = m.KmemCacheCreate("merge_a", 60, 0, SlabFlags.None, null)!;
        var b = m.KmemCacheCreate("merge_b", 64, 0, SlabFlags.None, null)!;
        Assert.Same(a, b);
        Assert.Equal(2, a.RefCount);
        Assert.Equal("merge_b", string.Join(",", a.Aliases));
        // The object grows to the largest alias, so a zeroed allocation clears what every user expects.
        Assert.Equal(64u, a.ObjectSize);
        Assert.Equal(64u, a.Size);
        string slabinfo = m.Proc.Slabinfo();
        Assert.Contains("\nmerge_a ", slabinfo, StringComparison.Ordinal);
        Assert.DoesNotContain("merge_b", slabinfo, StringComparison.Ordinal);
        nint p = m.KmemCacheAlloc(b, Gfp.Kernel);
        m.KmemCacheFree(a, p);
        // Destroying the alias drops it; the cache lives on for its creator.
        m.KmemCacheDestroy(b);
        Assert.False(a.IsDestroyed);
        Assert.Equal(1, a.RefCount);
        Assert.Empty(a.Aliases);
        nint q = m.KmemCacheAlloc(a, Gfp.Kernel);
        m.KmemCacheFree(a, q);
        m.KmemCacheDestroy(a);
        Assert.True(a.IsDestroyed);
    }

    [Fact]
    public void AWordOfWasteOrMoreIsNoMatch()
    {
        using var m = Boot();
        var a = m.KmemCacheCreate("waste_a", 64, 0, SlabFlags.None, null)!;
        // ALIGN(56, 8) = 56: 64 − 56 = 8, a whole word wasted.
        Assert.NotSame(a, m.KmemCacheCreate("waste_b", 56, 0, SlabFlags.None, null));
        // Bigger than the candidate.
        Assert.NotSame(a, m.KmemCacheCreate("waste_c", 65, 0, SlabFlags.None, null));
        Assert.Same(a, m.KmemCacheCreate("waste_d", 57, 0, SlabFlags.None, null));
    }

    [Fact]
    public void AlignmentMustFitTheCandidatesStride()
    {
        using var m = Boot();
        var a = m.KmemCacheCreate("al_a", 72, 0, SlabFlags.None, null)!;
        Assert.Equal(72u, a.Size);
        // 72 bytes on 16: ALIGN(72, 16) = 80 > 72.
        Assert.NotSame(a, m.KmemCacheCreate("al_b", 72, 16, SlabFlags.None, null));
        // 64 on a cache line: 72 is not a multiple of 64.
        var c = m.KmemCacheCreate("al_c", 64, 0, SlabFlags.HwcacheAlign, null)!;
        Assert.NotSame(a, c);
        Assert.Same(c, m.KmemCacheCreate("al_d", 64, 64, SlabFlags.None, null));
    }

    [Fact]
    public void MergeSameFlagsMustAgreeAndTheNewestCandidateWins()
    {
        using var m = Boot();
        var x = m.KmemCacheCreate("ms_x", 96, 0, SlabFlags.None, null)!;
        var y = m.KmemCacheCreate("ms_y", 96, 0, SlabFlags.ReclaimAccount, null)!;
        Assert.NotSame(x, y);
        Assert.Same(y, m.KmemCacheCreate("ms_z", 96, 0, SlabFlags.ReclaimAccount, null));
        Assert.Same(x, m.KmemCacheCreate("ms_w", 96, 0, SlabFlags.None, null));
        // On a cache line 96 bytes round up to 128: bigger than x.
        Assert.NotSame(x, m.KmemCacheCreate("ms_v", 96, 0, SlabFlags.HwcacheAlign, null));
        var newer = m.KmemCacheCreate("ms_newer", 90, 0, SlabFlags.NoMerge, null)!;
        Assert.NotSame(x, newer);
        Assert.Same(x, m.KmemCacheCreate("ms_u", 92, 0, SlabFlags.None, null));
        Assert.Equal("ms_w,ms_u", string.Join(",", x.Aliases));
    }

    [Fact]
    public void ConstructorsDebuggingRcuAndNoMergeNeverMerge()
    {
        using var m = Boot(slubDebug: "Z,nm_debug");
        var a = m.KmemCacheCreate("nm_a", 128, 0, SlabFlags.None, null)!;
        Assert.NotSame(a, m.KmemCacheCreate("nm_ctor", 128, 0, SlabFlags.None, _ => { }));
        Assert.NotSame(a, m.KmemCacheCreate("nm_debug", 128, 0, SlabFlags.None, null));
        Assert.NotSame(a, m.KmemCacheCreate("nm_poison", 128, 0, SlabFlags.Poison, null));
        Assert.NotSame(a, m.KmemCacheCreate("nm_rcu", 128, 0, SlabFlags.TypesafeByRcu, null));
        Assert.NotSame(a, m.KmemCacheCreate("nm_flag", 128, 0, SlabFlags.NoMerge, null));
        Assert.NotSame(a, m.KmemCacheCreate("nm_failslab", 128, 0, SlabFlags.Failslab, null));
        // A cache with a constructor is no candidate either.
        var ctor = m.KmemCacheCreate("nm_ctor2", 200, 0, SlabFlags.None, _ => { })!;
        Assert.NotSame(ctor, m.KmemCacheCreate("nm_after_ctor", 200, 0, SlabFlags.None, null));
        Assert.Same(a, m.KmemCacheCreate("nm_plain", 128, 0, SlabFlags.None, null));
    }

    [Fact]
    public void KmallocCachesAreNeverMergeTargets()
    {
        using var m = Boot();
        var s = m.KmemCacheCreate("not_kmalloc", 64, 0, SlabFlags.None, null)!;
        Assert.Equal("not_kmalloc", s.Name);
        Assert.Equal(-1, m.SlabCaches.Single(c => c.Name == "kmalloc-64").RefCount);
        Assert.Empty(m.SlabCaches.Single(c => c.Name == "kmalloc-64").Aliases);
    }

    [Fact]
    public void SlubNomergeTurnsMergingOff()
    {
        using var m = Boot(nomerge: true);
        var a = m.KmemCacheCreate("off_a", 64, 0, SlabFlags.None, null)!;
        var b = m.KmemCacheCreate("off_b", 64, 0, SlabFlags.None, null)!;
        Assert.NotSame(a, b);
        Assert.Equal(1, a.RefCount);
    }
}
