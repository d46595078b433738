// The OOM killer: the victim is the task the kernel's formula picks (computed
// here from the report's own task dump), −1000 is spared, the report has the
// kernel's lines, oom_kill counts, and __GFP_NOFAIL succeeds by killing.
using System.Globalization;
using System.Text.RegularExpressions;
using static Kmem.Tests.Reclaim.ReclaimTestKit;

namespace Kmem.Tests.Reclaim;

public partial class OomTests
{
    [GeneratedRegex(@"^\[\s*(\d+)\]\s+0\s+\d+\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(-?\d+) (\S+)$")]
    private static partial Regex TaskLine();

    [GeneratedRegex(@"^Out of memory: Killed process (\d+) \((\S+)\) total-vm:\d+kB, anon-rss:\d+kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:\d+kB oom_score_adj:-?\d+$")]
    private static partial Regex KilledLine();

    [Fact]
    public void TheVictimIsTheTaskTheFormulaPicksAndMinus1000IsSpared()
    {
        using var m = Boot();
        long total = m.PageAllocator.TotalRamPages;
        var small = m.CreateTask("small", 0)!;
        var favoured = m.CreateTask("favoured", 1000)!;
        var spared = m.CreateTask("spared", -1000)!;
        var hog = m.CreateTask("hog", 0)!;
        ulong s = small.Mmap(4 << 20), f = favoured.Mmap(2 << 20), p = spared.Mmap(16 << 20), h = hog.Mmap(256 << 20);
        Fill(small, s, 4 << 20, 1);
        Fill(favoured, f, 2 << 20, 2);
        Fill(spared, p, 16 << 20, 3);
        // Independently of Kmem: badness = rss + swapents + pgtables/4096 + adj × (total/1000).
        long Badness(TaskStruct t) => t.Rss + t.SwapEnts + t.PgtablesBytes / 4096 + t.OomScoreAdj * (total / 1000);
        Assert.Equal((1000 + Badness(favoured) * 1000 / total) * 2 / 3, m.OomScore(favoured));
        Assert.Equal(0, m.OomScore(spared));
        var killed = new List<int>();
        Assert.Throws<TaskKilledException>(() => Fill(hog, h, 256 << 20, 4));
        Assert.True(hog.IsKilled);
        Assert.False(spared.IsKilled);
        Check(spared, p, 16 << 20, 3);
        var lines = m.Log.Lines.ToList();
        int reports = 0;
        for (int i = 0; i < lines.Count; i++)
        {
            if (!lines[i].Contains(" invoked oom-killer: ", StringComparison.Ordinal))
            {
                continue;
            }
            reports++;
            Assert.Equal("Tasks state (memory values in pages):", lines[i + 1]);
            Assert.Equal("[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name", lines[i + 2]);
            int j = i + 3;
            int expected = -1;
            long best = long.MinValue;
            for (; TaskLine().Match(lines[j]) is { Success: true } tm; j++)
            {
                long rss = long.Parse(tm.Groups[3].Value, CultureInfo.InvariantCulture);
                long pgtables = long.Parse(tm.Groups[4].Value, CultureInfo.InvariantCulture);
                long swapents = long.Parse(tm.Groups[5].Value, CultureInfo.InvariantCulture);
                long adj = long.Parse(tm.Groups[6].Value, CultureInfo.InvariantCulture);
                if (adj == -1000)
                {
                    continue;
                }
                long points = rss + swapents + pgtables / 4096 + adj * (total / 1000);
                if (points >= best)
                {
                    best = points;
                    expected = int.Parse(tm.Groups[1].Value, CultureInfo.InvariantCulture);
                }
            }
            Assert.StartsWith("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/,task=", lines[j], StringComparison.Ordinal);
            var km = KilledLine().Match(lines[j + 1]);
            Assert.True(km.Success, lines[j + 1]);
            Assert.True(expected == int.Parse(km.Groups[1].Value, CultureInfo.InvariantCulture), string.Join("\n", lines.Skip(i).Take(j - i + 2)));
            Assert.NotEqual(spared.Pid, expected);
            killed.Add(expected);
        }
        Assert.Equal(reports, Vmstat(m)["oom_kill"]);
        Assert.Equal(favoured.Pid, killed[0]); // adj 1000 outweighs everyone's size at the first OOM
        Assert.Contains(hog.Pid, killed);
        Assert.Contains(lines, l => l.StartsWith("hog invoked oom-killer: gfp_mask=0x100dca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO), order=0, oom_score_adj=0", StringComparison.Ordinal));
        m.Mm.Validate();
    }

    [Fact]
    public void GfpNofsFailsWithoutKillingButNofailKills()
    {
        using var m = Boot();
        var t = m.CreateTask("victim")!;
        ulong a = t.Mmap(128 << 20);
        var page = new byte[4096];
        ulong at = a;
        // Fill memory with the task's pages, stopping short of the OOM killer.
        while (m.PageAllocator.NrFreePages > 400)
        {
            t.Write(at, page);
            at += 4096;
        }
        var held = new List<Page>();
        for (Page p; !(p = m.AllocPage(Gfp.NoFs | Gfp.NoWarn)).IsNull;)
        {
            held.Add(p);
        }
        Assert.False(t.IsKilled); // GFP_NOFS may not call the OOM killer
        Assert.Equal(0, Vmstat(m)["oom_kill"]);
        var nofail = m.AllocPage(Gfp.NoFs | Gfp.NoFail);
        Assert.False(nofail.IsNull);
        Assert.True(t.IsKilled);
        Assert.Equal(1, Vmstat(m)["oom_kill"]);
        Assert.Contains(m.Log.Lines, l => l.StartsWith("kmem invoked oom-killer: gfp_mask=0x8c40(GFP_NOFS|__GFP_NOFAIL), order=0", StringComparison.Ordinal));
        m.FreePage(nofail);
        foreach (var p in held)
        {
            m.FreePage(p);
        }
        m.Mm.Validate();
    }
}
