// Cache identity in a replay (every cache the kernel named keeps its name and the flags the trace
// shows, never merged into a provisional call-site cache), the boot shaped by a capture's zoneinfo,
// the --compare-proc notes told from counts, and the README's --compare-proc example on the
// bundled capture.
using Kmem.PageAlloc;
using Kmem.Tests.Cli;

namespace Kmem.Tests.Trace;

public class TraceCacheIdentityTests
{
    private const string Base = "ffff888000000000";

    private static string Alloc(string site, ulong offset, int size, string gfp = "GFP_KERNEL", bool accounted = false, int cpu = 0) =>
        ReplayData.Line($"kmem_cache_alloc: call_site={site}+0x10/0x80 ptr=ffff8880{offset:x8} bytes_req={size} bytes_alloc={size} gfp_flags={gfp} node=-1 accounted={(accounted ? "true" : "false")}", cpu);

    private static string Free(ulong offset, string name) =>
        ReplayData.Line($"kmem_cache_free: call_site=f+0x1/0x2 ptr=ffff8880{offset:x8} name={name}");

    private static (Machine M, TraceReplayResult R) Replay(string text)
    {
        var m = ReplayData.Boot();
        using var reader = ReplayData.Reader(ReplayData.Header + text);
        return (m, new TraceReplayer(m).Replay(reader));
    }

    [Fact]
    public void ANamedCacheIsNeverMergedIntoAProvisionalOneOfTheSameSize()
    {
        // Two call sites of 128-byte objects; one free names the first site's cache. find_mergeable would
        // alias the named cache onto the provisional one, and destroying the provisional cache would drop the name.
        var (m, r) = Replay(Alloc("__kernfs_new_node", 0x01000000, 128) + Alloc("__kernfs_new_node", 0x01000080, 128)
            + Alloc("other_site", 0x02000000, 128) + Free(0x01000000, "kernfs_node_cache"));
        using (m)
        {
            var named = Assert.Single(m.SlabCaches, c => c.Name == "kernfs_node_cache");
            Assert.Empty(named.Aliases);
            Assert.Equal(1, named.RefCount);
            Assert.DoesNotContain(m.SlabCaches, c => c.Name == "__kernfs_new_node/128");
            var other = Assert.Single(m.SlabCaches, c => c.Name == "other_site/128");
            Assert.Empty(other.Aliases);
            var lines = TraceProcComparison.ParseSlabinfo(m.Proc.Slabinfo(), "slabinfo").ToDictionary(c => c.Name, c => c.Line);
            Assert.Equal(1, r.Caches.Single(c => c.Name == "kernfs_node_cache").Live);
            Assert.True(lines["kernfs_node_cache"].ActiveObjs >= 1);
            Assert.True(lines["other_site/128"].ActiveObjs >= 1);
        }
    }

    private static string Kmalloc(ulong offset) =>
        ReplayData.Line($"kmalloc: call_site=k+0x1/0x2 ptr=ffff8880{offset:x8} bytes_req=128 bytes_alloc=128 gfp_flags=GFP_KERNEL node=-1 accounted=false");

    private static string Kfree(ulong offset) => ReplayData.Line($"kfree: call_site=g+0x1/0x2 ptr=ffff8880{offset:x8}");

    [Fact]
    public void TheScanNamesEachSiteByTheFirstFreeOfOneOfItsObjects()
    {
        string text = ReplayData.Header
            + Alloc("d_alloc", 0x01000000, 192) + Alloc("d_alloc", 0x01000100, 192)
            + Free(0x01000100, "dentry") + Free(0x01000000, "other") // the first free names the site; a later one does not
            + Alloc("inode", 0x02000000, 640) + Kfree(0x02000000) + Free(0x02000000, "never") // a kfree'd object names nothing
            + Alloc("pid", 0x03000000, 128) + Kmalloc(0x03000000) + Free(0x03000000, "kmalloc-named") // nor a kmalloc's address
            + Alloc("d_alloc", 0x04000000, 64) + Free(0x04000000, "small"); // bytes_alloc is part of the site
        using var reader = ReplayData.Reader(text);
        var names = TraceCacheNames.Scan(reader);
        Assert.Equal(2, names.Count);
        Assert.Equal("dentry", names.NameOf("d_alloc+0x10/0x80", 192));
        Assert.Equal("small", names.NameOf("d_alloc+0x10/0x80", 64));
        Assert.Null(names.NameOf("inode+0x10/0x80", 640));
        Assert.Null(names.NameOf("pid+0x10/0x80", 128));
    }

    /// <summary>With the names scanned first, a site allocates from its named cache from its first object on: no
    /// provisional cache, nothing moved, and the objects of two sites that one name reaches share that cache's slabs.</summary>
    [Fact]
    public void ScannedNamesPutASitesFirstObjectInItsNamedCache()
    {
        string text = ReplayData.Header + Alloc("d_alloc", 0x01000000, 192) + Alloc("d_alloc_anon", 0x01000100, 192)
            + Free(0x01000000, "dentry") + Free(0x01000100, "dentry");
        TraceCacheNames names;
        using (var scan = ReplayData.Reader(text))
        {
            names = TraceCacheNames.Scan(scan);
        }
        using var m = ReplayData.Boot();
        using var reader = ReplayData.Reader(text);
        var r = new TraceReplayer(m, new TraceReplayOptions { CacheNames = names }).Replay(reader);
        Assert.Equal(0, r.MovedObjects);
        Assert.DoesNotContain(m.SlabCaches, c => c.Name.Contains('/', StringComparison.Ordinal));
        var dentry = Assert.Single(r.Caches, c => c.Name == "dentry");
        Assert.Equal(2, dentry.Allocations);
        Assert.Equal(2, dentry.CallSites);

        // Without them the first objects go to provisional caches and move at the naming frees.
        using var m2 = ReplayData.Boot();
        using var reader2 = ReplayData.Reader(text);
        Assert.Equal(2, new TraceReplayer(m2).Replay(reader2).MovedObjects);
    }

    [Fact]
    public void SlabAccountComesFromAccountedWithoutGfpAccount()
    {
        var (m, _) = Replay(Alloc("alloc_pid", 0x01000000, 128, accounted: true)
            + Alloc("xas_alloc", 0x02000000, 576, gfp: "GFP_KERNEL_ACCOUNT", accounted: true)
            + Alloc("plain", 0x03000000, 256)
            + Free(0x01000000, "pid") + Free(0x02000000, "radix_tree_node") + Free(0x03000000, "plain_cache"));
        using (m)
        {
            Assert.Equal(SlabFlags.Account, m.SlabCaches.Single(c => c.Name == "pid").Flags & TraceCaches.TraceFlags);
            Assert.Equal(SlabFlags.None, m.SlabCaches.Single(c => c.Name == "radix_tree_node").Flags & TraceCaches.TraceFlags); // __GFP_ACCOUNT explains accounted=true
            Assert.Equal(SlabFlags.None, m.SlabCaches.Single(c => c.Name == "plain_cache").Flags & TraceCaches.TraceFlags);
        }
    }

    [Fact]
    public void ReclaimableComesFromTheSlabPagesGfpNotFromTheName()
    {
        // The kernel's new slab page (pfn 0x3000, __GFP_RECLAIMABLE) holds the next allocation on its CPU; a cache
        // named like an inode cache whose slab page is not reclaimable stays unreclaimable.
        var text = ReplayData.Line("mm_page_alloc: page=ffffea0000000000 pfn=0x3000 order=1 migratetype=1 gfp_flags=GFP_KERNEL|__GFP_RECLAIMABLE|__GFP_COMP")
            + Alloc("__d_alloc", 0x03000040, 192)
            + ReplayData.Line("mm_page_alloc: page=ffffea0000000000 pfn=0x4000 order=2 migratetype=0 gfp_flags=GFP_KERNEL|__GFP_COMP")
            + Alloc("shmem_alloc_inode", 0x04000000, 784)
            + Free(0x03000040, "dentry") + Free(0x04000000, "shmem_inode_cache");
        var (m, _) = Replay(text);
        using (m)
        {
            Assert.Equal(SlabFlags.ReclaimAccount, m.SlabCaches.Single(c => c.Name == "dentry").Flags & TraceCaches.TraceFlags);
            Assert.Equal(SlabFlags.None, m.SlabCaches.Single(c => c.Name == "shmem_inode_cache").Flags & TraceCaches.TraceFlags);
        }
    }

    [Fact]
    public void AFlagSeenAfterTheCacheWasMadeRemakesItWithItsLiveObjects()
    {
        var (m, r) = Replay(Alloc("alloc_pid", 0x01000000, 128) + Alloc("alloc_pid", 0x01000080, 128)
            + Free(0x01000000, "pid") + Alloc("alloc_pid", 0x01000100, 128, accounted: true) + Alloc("alloc_pid", 0x01000180, 128));
        using (m)
        {
            var pid = Assert.Single(m.SlabCaches, c => c.Name == "pid");
            Assert.Equal(SlabFlags.Account, pid.Flags & TraceCaches.TraceFlags);
            Assert.Equal(3, r.Caches.Single(c => c.Name == "pid").Live);
            Assert.DoesNotContain(m.SlabCaches, c => c.Name == "alloc_pid/128");
            Assert.True(TraceProcComparison.ParseSlabinfo(m.Proc.Slabinfo(), "slabinfo").Single(c => c.Name == "pid").Line.ActiveObjs >= 3);
            Assert.Equal(3, r.MovedObjects); // the named free moves both (the freed one first), the re-make the one live object
        }
    }

    [Fact]
    public void ManagedPagesShapeTheZonesAndTheWatermarksAreDerivedFromThem()
    {
        var managed = TraceProcComparison.SnapshotManagedPages(ReplayData.BundledFolder)!;
        Assert.Equal(3840, managed["DMA"]);
        Assert.Equal(112688, managed["DMA32"]);
        using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1, ManagedPages = managed });
        var zones = m.PageAllocator.Zones.Where(z => z.IsPopulated).ToDictionary(z => z.Type);
        Assert.Equal(3840, zones[ZoneType.Dma].ManagedPages);
        Assert.Equal(112688, zones[ZoneType.Dma32].ManagedPages);
        Assert.Contains("MemTotal:         466112 kB", m.Proc.Meminfo(), StringComparison.Ordinal);
        // 6.1's formulas on these counts: batch 31 (zone_batchsize), high = low / 2 CPUs (zone_highsize), the DMA zone's
        // watermarks exactly as the kernel's (22/27/32) and DMA32's within the managed pages the kernel had at the time.
        var dma32 = zones[ZoneType.Dma32];
        Assert.Equal(31, dma32.Pcp[0].Batch);
        Assert.Equal(dma32.Watermark[Zone.WmarkLow] / 2, dma32.Pcp[0].High);
        Assert.Equal([22L, 27L, 32L], zones[ZoneType.Dma].Watermark[..3]);
        Assert.InRange(dma32.Watermark[Zone.WmarkMin], 652, 652 * 1.02);

        // Without them, the default layout (a 16 MiB kernel image and the memmap) leaves more managed.
        using var plain = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 });
        Assert.True(plain.PageAllocator.Zones.Single(z => z.Type == ZoneType.Dma32).ManagedPages > 120_000);
    }

    [Fact]
    public void ManagedPagesAbovePresentAreRefused()
    {
        var e = Assert.Throws<MachineOptionException>(() => Machine.Boot(new MachineOptions
        {
            Memory = "64M",
            ManagedPages = new Dictionary<string, long> { ["DMA32"] = 1_000_000 },
        }));
        Assert.Equal("ManagedPages", e.Option);
    }

    [Fact]
    public void ManagedPagesOfAZoneTheMachineHasNotAreRefused()
    {
        var e = Assert.Throws<MachineOptionException>(() => Machine.Boot(new MachineOptions
        {
            Memory = "1G",
            Preset = Preset.X86Pae,
            ManagedPages = new Dictionary<string, long> { ["DMA32"] = 1000 },
        }));
        Assert.Contains("DMA32 is not a zone of this machine", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheI386CapturesZonesBootToo()
    {
        var managed = TraceProcComparison.SnapshotManagedPages(Captures.Folder(Captures.I386))!;
        using var m = Machine.Boot(new MachineOptions { Memory = "1536M", Cpus = 1, Preset = Preset.X86Pae, Seed = 1, ManagedPages = managed });
        foreach (var (name, pages) in managed)
        {
            Assert.Equal(pages, m.PageAllocator.Zones.Single(z => z.Name == name).ManagedPages);
        }
        Assert.Contains("MemTotal:        1540536 kB", m.Proc.Meminfo(), StringComparison.Ordinal);
    }

    [Fact]
    public void NotesSayWhatTheCountsShowOrUnexplained()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"kmem-notes-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            // The kernel has 40 pid objects in 2 slabs and 5 kernfs objects Kmem never saw; the trace frees one pid
            // object it never allocated.
            File.WriteAllText(Path.Combine(dir, "slabinfo.txt"),
                "slabinfo - version: 2.1\n"
                + "pid                   40     64    128   32    1 : tunables    0    0    0 : slabdata      2      2      0\n"
                + "nothing_here           5     32    128   32    1 : tunables    0    0    0 : slabdata      1      1      0\n");
            File.WriteAllText(Path.Combine(dir, "buddyinfo.txt"), "Node 0, zone      DMA      0      0      0      0      0      0      0      0      0      0      0\n");
            var (m, r) = Replay(Alloc("alloc_pid", 0x01000000, 128) + Free(0x01000000, "pid") + Free(0x05000000, "pid"));
            using (m)
            {
                var cmp = TraceProcComparison.Compare(m, dir, r);
                string pid = cmp.Slabinfo.Single(s => s.Name == "pid").Note;
                Assert.Contains("2 of its 2 slab pages not seen allocated in the trace", pid, StringComparison.Ordinal);
                Assert.Contains("the trace freed 1 objects of it that it never allocated", pid, StringComparison.Ordinal);
                Assert.Contains("none allocated in the trace under this name", cmp.Slabinfo.Single(s => s.Name == "nothing_here").Note, StringComparison.Ordinal);
                // Kmem's DMA zone has free blocks the kernel's has not: per order, then the pages.
                string dma = cmp.Buddyinfo.Single(b => b.Zone == "Node 0, zone DMA").Note;
                Assert.StartsWith("kmem − kernel blocks: ", dma, StringComparison.Ordinal);
                Assert.Contains("more free pages on Kmem", dma, StringComparison.Ordinal);
                // Without the replay's counts nothing is attributed.
                var bare = TraceProcComparison.Compare(m, dir, null);
                Assert.Contains("unexplained", bare.Slabinfo.Single(s => s.Name == "pid").Note, StringComparison.Ordinal);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void TheReadmeComparisonExampleIsWhatTheBundledCapturePrints()
    {
        string readme = File.ReadAllText(Path.Combine(Repository.Root(), "README.md"));
        int at = readme.IndexOf("a test replays the capture and checks these lines", StringComparison.Ordinal);
        Assert.True(at > 0, "README.md has no --compare-proc example");
        int start = readme.IndexOf("```text\n", at, StringComparison.Ordinal) + "```text\n".Length;
        int end = readme.IndexOf("```", start, StringComparison.Ordinal);
        var expected = readme[start..end].Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0).ToList();
        Assert.Contains(expected, l => l.StartsWith("  kernfs_node_cache ", StringComparison.Ordinal));
        Assert.Contains(expected, l => l.StartsWith("  proc_dir_entry ", StringComparison.Ordinal));

        var (code, stdout, stderr) = CliRun.Kmem("replay", ReplayData.BundledTrace, "--compare-proc");
        Assert.True(code == 0, stderr);
        var printed = stdout.Split('\n').Select(l => l.TrimEnd()).ToList();
        foreach (string line in expected)
        {
            Assert.True(printed.Any(p => p.StartsWith(line, StringComparison.Ordinal)), $"README line not printed: {line}");
        }
        // Every cache Kmem shows under a kernel name is the kernel's; the rest are provisional call-site names.
        var kernelNames = TraceProcComparison.ParseSlabinfo(File.ReadAllText(Path.Combine(ReplayData.BundledFolder, "slabinfo.txt")), "slabinfo.txt")
            .Select(c => c.Name).ToHashSet(StringComparer.Ordinal);
        Assert.DoesNotContain(printed, l => l.EndsWith("not in the kernel's slabinfo", StringComparison.Ordinal));
        Assert.Contains("kernfs_node_cache", kernelNames);
    }
}
