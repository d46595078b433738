// kernel/rcu/tree.c and update.c, reduced to what memory management needs: read-side critical sections
// (rcu_read_lock/rcu_read_unlock), grace periods, call_rcu's callback list and rcu_do_batch's batches,
// synchronize_rcu and rcu_barrier. kvfree_rcu's batching is KfreeRcuBatches.
//
// The model (liburcu's memory-barrier flavour, with a 64-bit epoch instead of its phase bit):
//  - _gpSeq is a global epoch, starting at 1; every call_rcu and every synchronize_rcu takes the next one
//    (Interlocked.Increment, a full fence, after the caller unlinked what it frees).
//  - Each thread that reads has an RcuReader record (one per thread and machine). Entering the outermost
//    read section stores the epoch it saw into Ctr (a full fence, before the section reads anything);
//    leaving stores 0 (a release: the section's reads come before it). Nested sections only count.
//  - A callback taken at epoch s may run once every reader has Ctr == 0 or Ctr >= s: a reader with
//    0 < Ctr < s was inside a section when the callback was queued, and may still hold what it frees; a
//    reader that read an epoch >= s began after the unlink (the epoch it read was written after it). The
//    Dekker pattern (reader: store Ctr, fence, read data; updater: unlink, fence, read Ctr) covers a reader
//    caught between reading the epoch and storing Ctr: its stale, smaller epoch only makes it wait longer.
//    So a grace period ends, for the callbacks of epoch s, when min(Ctr > 0) >= s: no tick, no CPU
//    bookkeeping, and with no reader inside a section every grace period has already ended.
//  - Callbacks run at defined points only (runs stay repeatable): the outermost rcu_read_unlock while
//    callbacks wait, every kvfree_rcu, synchronize_rcu/rcu_barrier, and reclaim's and the OOM killer's
//    hooks (Machine.Rcu.cs). call_rcu itself only queues: the slab layer calls it under its own locks.
//    They run in batches (rcu_do_batch): at most max(blimit, qlen >> rcu_divisor) ready callbacks are
//    taken under the lock, then run without it, until none is ready.
// Locking: _lock guards the callback queue (Pending is changed with Interlocked); _processLock lets one thread run callbacks at a
// time (another processing point returns at once: the running thread drains what is ready). The readers'
// array is copy-on-write under _lock. Reader records are touched by their own thread only, but Ctr.
namespace Kmem.Rcu;

/// <summary>One thread's read-side state for one machine.</summary>
internal sealed class RcuReader(int threadId)
{
    /// <summary>The epoch seen on entering the outermost section, 0 outside: read by grace-period checks.</summary>
    public long Ctr;
    /// <summary>rcu_read_lock nesting depth (the thread's own).</summary>
    public int Nesting;
    /// <summary>The managed thread this record belongs to.</summary>
    public int ThreadId { get; } = threadId;
}

/// <summary>struct rcu_state of one machine: readers, grace periods and the callbacks waiting for them.</summary>
internal sealed class RcuState : IDisposable
{
    /// <summary>blimit's default (DEFAULT_RCU_BLIMIT): callbacks run per batch when few wait.</summary>
    public const int DefaultBlimit = 10;
    /// <summary>qhimark's default (DEFAULT_RCU_QHIMARK): what may wait before kvfree_rcu's caller waits.</summary>
    public const int DefaultQhimark = 10000;
    /// <summary>rcu_divisor: a batch takes at least qlen >> rcu_divisor callbacks.</summary>
    public const int RcuDivisor = 7;

    private readonly record struct Callback(long Seq, Action Func, int Objects);

    private long _gpSeq = 1;
    private readonly ThreadLocal<RcuReader> _self;
    private RcuReader[] _readers = [];
    private readonly Lock _lock = new();
    private readonly Queue<Callback> _queue = new();
    private readonly Lock _processLock = new();
    private int _processingThread;
    private long _pending;
    private readonly Func<bool> _dead;

    /// <param name="dead">Whether the memory callbacks would free into is gone (then nothing runs).</param>
    public RcuState(Func<bool> dead)
    {
        _dead = dead;
        _self = new ThreadLocal<RcuReader>(Register);
        Kfree = new KfreeRcuBatches(this);
    }

    /// <summary>kvfree_rcu's per-channel batches.</summary>
    public KfreeRcuBatches Kfree { get; }

    /// <summary>blimit: callbacks a batch runs at least.</summary>
    public int Blimit { get; set; } = DefaultBlimit;

    /// <summary>qhimark: objects that may wait for a grace period before kvfree_rcu's caller waits for one
    /// itself (kvfree_call_rcu's fallback to synchronize_rcu).</summary>
    public int Qhimark { get; set; } = DefaultQhimark;

    /// <summary>Objects waiting: queued callbacks (a kvfree_rcu batch counts its pointers) and pointers in
    /// kvfree_rcu's open batches.</summary>
    public long Pending => Volatile.Read(ref _pending);

    /// <summary>Callback batches run so far (rcu_do_batch invocations that ran something).</summary>
    public long Batches { get; private set; }

    /// <summary>Callbacks run so far.</summary>
    public long Invoked { get; private set; }

    /// <summary>Grace periods a caller waited for (synchronize_rcu, rcu_barrier, kvfree_rcu's fallback).</summary>
    public long Waits => Volatile.Read(ref _waits);

    private long _waits;
    private long _freed;

    /// <summary>Whether the calling thread is inside a read-side critical section (rcu_read_lock_held).</summary>
    public bool ReadLockHeld => _self.IsValueCreated && _self.Value!.Nesting > 0;

    private RcuReader Register()
    {
        var r = new RcuReader(Environment.CurrentManagedThreadId);
        lock (_lock)
        {
            Volatile.Write(ref _readers, [.. _readers, r]);
        }
        return r;
    }

    // ───────────────────────────── read side ─────────────────────────────

    /// <summary>rcu_read_lock: the calling thread's record, entered (nested sections only count).</summary>
    public RcuReader ReadLock()
    {
        var r = _self.Value!;
        if (r.Nesting++ == 0)
        {
            // The store, then a full fence, before the section reads anything.
            Interlocked.Exchange(ref r.Ctr, Volatile.Read(ref _gpSeq));
        }
        return r;
    }

    /// <summary>rcu_read_unlock: leaves the section entered at depth <paramref name="depth"/> (the depth after
    /// entering); sections must close innermost first, on the thread that opened them. Leaving the outermost
    /// section runs the callbacks whose grace period it ended.</summary>
    /// <exception cref="InvalidOperationException">Wrong thread, wrong order, or a section closed twice.</exception>
    public void ReadUnlock(RcuReader r, int depth)
    {
        if (r.ThreadId != Environment.CurrentManagedThreadId)
        {
            throw new InvalidOperationException("rcu_read_unlock() on a thread other than the one that called rcu_read_lock()");
        }
        if (r.Nesting != depth || depth <= 0)
        {
            throw new InvalidOperationException(depth > r.Nesting
                ? "rcu_read_unlock() of a read-side critical section already left"
                : $"rcu_read_unlock() out of order: the section entered at depth {depth} is left while depth {r.Nesting} is open");
        }
        if (--r.Nesting == 0)
        {
            Volatile.Write(ref r.Ctr, 0);
            if (Volatile.Read(ref _pending) > 0)
            {
                Process();
            }
        }
    }

    // ───────────────────────────── grace periods ─────────────────────────────

    /// <summary>The smallest epoch a reader inside a section entered with; long.MaxValue with none.
    /// Callbacks of epoch s are ready when s &lt;= this.</summary>
    private long OldestReader()
    {
        Interlocked.MemoryBarrier();
        long min = long.MaxValue;
        foreach (var r in Volatile.Read(ref _readers))
        {
            long c = Volatile.Read(ref r.Ctr);
            if (c != 0 && c < min)
            {
                min = c;
            }
        }
        return min;
    }

    /// <summary>Whether a grace period started at epoch <paramref name="seq"/> has ended (poll_state_synchronize_rcu).</summary>
    public bool GracePeriodEnded(long seq) => OldestReader() >= seq;

    /// <summary>synchronize_rcu: waits until every reader inside a section now has left it.</summary>
    /// <exception cref="InvalidOperationException">The caller is inside a read-side critical section.</exception>
    public void Synchronize()
    {
        if (ReadLockHeld)
        {
            throw new InvalidOperationException("Illegal synchronize_rcu() in RCU read-side critical section: the grace period would wait for its caller");
        }
        long seq = Interlocked.Increment(ref _gpSeq);
        Interlocked.Increment(ref _waits);
        var spin = new SpinWait();
        while (!GracePeriodEnded(seq))
        {
            spin.SpinOnce(sleep1Threshold: 30);
        }
    }

    /// <summary>rcu_barrier: every callback queued before the call (kvfree_rcu's open batches included) has run
    /// when it returns; returns the objects freed.</summary>
    /// <exception cref="InvalidOperationException">The caller is inside a read-side critical section.</exception>
    public long Barrier()
    {
        // Counted from here: a reader leaving meanwhile may run the callbacks on its own thread.
        long before = Volatile.Read(ref _freed);
        Kfree.Offload(force: true);
        Synchronize();
        lock (_processLock)
        {
            Process();
        }
        return Volatile.Read(ref _freed) - before;
    }

    /// <summary>Reclaim's hook: with <paramref name="wait"/> (the OOM path) a barrier, unless the caller is inside
    /// a read section and cannot wait for itself; else <see cref="Flush"/>. Returns the objects freed.</summary>
    public long Reclaim(bool wait) => wait && !ReadLockHeld ? Barrier() : Flush();

    /// <summary>kfree_rcu_shrink_scan: hands kvfree_rcu's open batches on and runs what is ready, without
    /// waiting for a grace period; returns the objects freed.</summary>
    public long Flush()
    {
        Kfree.Offload(force: true);
        return Process();
    }

    // ───────────────────────────── callbacks ─────────────────────────────

    /// <summary>call_rcu: <paramref name="func"/> runs after a grace period, at the next processing point; never
    /// runs it here (callers may hold their locks).</summary>
    /// <param name="func">The callback.</param>
    /// <param name="objects">The objects it frees (what counts against <see cref="Qhimark"/>).</param>
    public void CallRcu(Action func, int objects = 1)
    {
        lock (_lock)
        {
            long seq = Interlocked.Increment(ref _gpSeq);
            _queue.Enqueue(new Callback(seq, func, objects));
            Interlocked.Add(ref _pending, objects);
        }
    }

    /// <summary>Objects counted as waiting without a queued callback yet (kvfree_rcu's open batches).</summary>
    internal void AddPending(long objects) => Interlocked.Add(ref _pending, objects);

    /// <summary>rcu_do_batch at a processing point: runs every callback whose grace period has ended, in
    /// batches, and hands kvfree_rcu's open batches on when a slot is free. Returns the objects freed; 0 when
    /// another thread is running callbacks (it drains what is ready) or this thread already is (a callback's
    /// own call).</summary>
    public long Process()
    {
        int me = Environment.CurrentManagedThreadId;
        if (Volatile.Read(ref _processingThread) == me || !_processLock.TryEnter())
        {
            return 0;
        }
        long freed = 0;
        try
        {
            _processingThread = me;
            while (true)
            {
                Kfree.Offload(force: false);
                var batch = TakeReady();
                if (batch.Count == 0)
                {
                    break;
                }
                Batches++;
                foreach (var cb in batch)
                {
                    if (!_dead())
                    {
                        cb.Func();
                    }
                    Invoked++;
                    freed += cb.Objects;
                    Interlocked.Add(ref _freed, cb.Objects);
                }
            }
        }
        finally
        {
            _processingThread = 0;
            _processLock.Exit();
        }
        return freed;
    }

    /// <summary>rcu_segcblist_extract_done_cbs with rcu_do_batch's limit: the next ready callbacks, at most
    /// max(blimit, qlen >> rcu_divisor), out of the queue and out of Pending.</summary>
    private List<Callback> TakeReady()
    {
        long oldest = OldestReader();
        var batch = new List<Callback>();
        lock (_lock)
        {
            int limit = Math.Max(Blimit, _queue.Count >> RcuDivisor);
            while (batch.Count < limit && _queue.TryPeek(out var cb) && cb.Seq <= oldest)
            {
                batch.Add(_queue.Dequeue());
                Interlocked.Add(ref _pending, -cb.Objects);
            }
        }
        return batch;
    }

    public void Dispose() => _self.Dispose();
}
