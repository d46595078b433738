// The vm events of the memory-pressure layer (mm/vmstat.c vm_event_states and
// the node counters that several owners share), by their /proc/vmstat names.
// One instance per machine, handed to every owner. Each counter is written
// under the lock of the owner that counts it (see LockOrder.cs); where two
// owners count the same event under different locks (pgpgin: page-cache reads
// under Filemap.Lock, swap-ins under Swapfile.Lock) the increment is atomic.
// Read without locks by the reports: each is a single 64-bit read.
namespace Kmem.Reclaim;

/// <summary>The LRU list indices of a lruvec (enum lru_list).</summary>
internal enum LruList
{
    InactiveAnon = 0,
    ActiveAnon = 1,
    InactiveFile = 2,
    ActiveFile = 3,
}

/// <summary>The vm events and node counters this layer keeps (the /proc/vmstat names in comments).</summary>
internal struct ReclaimStats
{
    public long PgscanKswapd, PgscanDirect, PgscanAnon, PgscanFile;      // pgscan_*
    public long PgstealKswapd, PgstealDirect, PgstealAnon, PgstealFile;  // pgsteal_*
    public long Pgactivate, Pgdeactivate, Pgrefill, Pgfault, Pgmajfault;
    public long Pswpin, Pswpout, Pgpgin, Pgpgout;
    public long SlabsScanned, Pageoutrun, DropPagecache, DropSlab, OomKill, Pgrotated;
    public long KswapdLowWmarkHitQuickly, KswapdHighWmarkHitQuickly;
    public long NrVmscanWrite, NrDirtied, NrWritten;
    public long PgmigrateSuccess, PgmigrateFail;
    public long CompactMigrateScanned, CompactFreeScanned, CompactIsolated, CompactStall, CompactFail,
        CompactSuccess, CompactDaemonWake, CompactDaemonMigrateScanned, CompactDaemonFreeScanned;
}

/// <summary>The layer's shared counters.</summary>
internal sealed class VmEvents
{
    /// <summary>Events and counters; written under the counting owner's lock, read without it.</summary>
    public ReclaimStats Stats;

    /// <summary>NR_WRITEBACK: pages being written out right now (file writeback under Filemap.Lock; swap-out
    /// in reclaim, which holds Filemap.Lock too).</summary>
    public long NrWriteback;
}
