// The slab shrinkers as 6.1 runs them: the dentry and inode caches of opened
// files (SReclaimable) pruned by the superblock shrinker, and nr_deferred kept
// per node for a NUMA-aware shrinker (node 0 for the others).
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

public sealed class ShrinkerTests
{
    private static void OpenClose(Machine m, string path)
    {
        using var f = m.OpenFile(path);
    }

    [Fact]
    public void ClosedFilesKeepTheirDentriesAndInodesAsReclaimableSlabUntilTheShrinkerPrunesThem()
    {
        using var m = Boot();
        var dir = Directory.CreateTempSubdirectory("kmem-dcache-");
        try
        {
            long reclaimableBefore = Meminfo(m, "SReclaimable");
            Assert.Null(m.Mm.Dcache.Shrinker); // no file yet: no superblock, no shrinker
            for (int i = 0; i < 400; i++)
            {
                OpenClose(m, Path.Combine(dir.FullName, $"f{i}"));
            }
            Assert.Equal((400L, 400L, 400L, 0L), m.Mm.Dcache.State);
            // 400 × (192 + 600) bytes at least, on SLAB_RECLAIM_ACCOUNT pages.
            Assert.True(Meminfo(m, "SReclaimable") - reclaimableBefore >= 400 * (192 + 600) / 1024,
                $"SReclaimable {reclaimableBefore} -> {Meminfo(m, "SReclaimable")} kB");
            Assert.Contains(m.SlabCaches, c => c.Name == "dentry");
            // An open file's dentry is in use: reclaim may not take it.
            using var held = m.OpenFile(Path.Combine(dir.FullName, "f0"));
            long scannedBefore = Vmstat(m)["slabs_scanned"];
            m.DropCaches(2);
            Assert.Equal((1L, 0L, 1L, 0L), m.Mm.Dcache.State);
            Assert.True(Vmstat(m)["slabs_scanned"] > scannedBefore);
            m.Mm.Validate();
            // The objects went back to their caches: SReclaimable falls once the empty slabs are released.
            m.KmemCacheShrink(m.SlabCaches.First(c => c.Name == "dentry"));
            m.KmemCacheShrink(m.SlabCaches.First(c => c.Name == "inode_cache"));
            Assert.True(Meminfo(m, "SReclaimable") - reclaimableBefore < 400 * (192 + 600) / 1024 / 4);
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void TheSuperblockShrinkerRotatesAReferencedDentryAndStopsWithoutGfpFs()
    {
        using var m = Boot();
        var dir = Directory.CreateTempSubdirectory("kmem-dcache-");
        try
        {
            string a = Path.Combine(dir.FullName, "a"), b = Path.Combine(dir.FullName, "b");
            OpenClose(m, a);
            OpenClose(m, a); // dput of a dentry already on the LRU marks it referenced
            OpenClose(m, b);
            var s = m.Mm.Dcache.Shrinker!;
            Assert.True(s.NumaAware);
            Assert.Equal(2, s.CountObjects(new ShrinkControl { Gfp = Gfp.Kernel, Nid = 0 }));
            Assert.Equal(Shrinker.Stop, s.ScanObjects(new ShrinkControl { Gfp = Gfp.NoFs, Nid = 0, NrToScan = 2 }));
            Assert.Equal((2L, 2L, 2L, 0L), m.Mm.Dcache.State);
            // nr_to_scan 2: dentries 2 × 2/3 = 1, so the walk visits 2: a (referenced) rotates, b goes, and b's
            // inode, now unused, goes with the inode walk (0 + 1).
            long freed = s.ScanObjects(new ShrinkControl { Gfp = Gfp.Kernel, Nid = 0, NrToScan = 2 });
            Assert.Equal(2, freed);
            Assert.Equal((1L, 1L, 1L, 0L), m.Mm.Dcache.State);
            // vfs_cache_pressure scales the count.
            m.Mm.Dcache.VfsCachePressure = 200;
            Assert.Equal(2, s.CountObjects(new ShrinkControl { Gfp = Gfp.Kernel, Nid = 0 }));
            // The rotated dentry lost its mark: the next walk frees it, and its inode in the same call.
            Assert.Equal(2, s.ScanObjects(new ShrinkControl { Gfp = Gfp.Kernel, Nid = 0, NrToScan = 1 }));
            Assert.Equal((0L, 0L, 0L, 0L), m.Mm.Dcache.State);
            Assert.Equal(Shrinker.Empty, s.CountObjects(new ShrinkControl { Gfp = Gfp.Kernel, Nid = 0 }));
            m.Mm.Validate();
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void DeferredWorkIsKeptPerNodeForANumaAwareShrinkerAndOnNodeZeroOtherwise()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "128M", Nodes = 2, Cpus = 2, Seed = 1, Kswapd = false });
        var seenAware = new List<int>();
        var aware = new Shrinker("aware", sc => sc.Nid == 1 ? 100 : 0, sc =>
        {
            seenAware.Add(sc.Nid);
            return Shrinker.Stop;
        }) { NumaAware = true };
        var seenPlain = new List<int>();
        var plain = new Shrinker("plain", sc =>
        {
            seenPlain.Add(sc.Nid);
            return 100;
        }, _ => Shrinker.Stop);
        m.RegisterShrinker(aware);
        m.RegisterShrinker(plain);
        m.DropCaches(2);
        // Priority 0, seeks 2: delta = 100 × 4 / 2 = 200 = 2 × freeable; nothing scanned, so all of it is deferred.
        Assert.Equal([1], seenAware);
        Assert.Equal([0L, 200L], aware.NrDeferred);
        Assert.Equal(200, aware.Deferred);
        Assert.Equal([0, 0], seenPlain); // asked once per node, always as node 0
        Assert.Single(plain.NrDeferred);
        Assert.Equal(200, plain.Deferred); // capped at 2 × freeable
    }
}
