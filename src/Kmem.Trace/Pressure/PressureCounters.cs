// Kmem's pressure counters at one moment (kswapd wakeups and runs, allocation stalls,
// compaction stalls and successes, direct reclaim's steals, OOM kills, swap-out, kswapd's
// rounds for a lower zone and what they scanned): the
// differences around a call are its decisions. Read without locks, each a single read.
namespace Kmem;

/// <summary>Kmem's pressure counters at one moment: the differences around a call are its decisions.</summary>
internal readonly record struct PressureCounters(long Wakeups, long Allocstall, long CompactStall, long CompactSuccess, long PgstealDirect, long OomKill,
    long Pswpout, long KswapdRuns, long KswapdLowerZoneRuns, long KswapdLowerZoneScanned)
{
    public static PressureCounters Read(Machine m)
    {
        var mm = m.Mm;
        ref var s = ref mm.Stats;
        return new PressureCounters(mm.KswapdWakeups, mm.Allocstall.Sum(), Volatile.Read(ref s.CompactStall), Volatile.Read(ref s.CompactSuccess),
            Volatile.Read(ref s.PgstealDirect), Volatile.Read(ref s.OomKill), Volatile.Read(ref s.Pswpout), mm.KswapdRuns,
            mm.KswapdLowerZone.Runs, mm.KswapdLowerZone.Scanned);
    }
}
