// The end of the reclaim layer's per-node daemon threads (kswapd, kcompactd) at the machine's Dispose: the stop is
// signalled under the daemon's wake lock, which its starts and wakeups take too, so no thread starts or is woken
// after it; then each thread is joined without a bound, since the machine unmaps memory only after its threads
// have ended. No state of its own; the caller's locks as described.
namespace Kmem.Reclaim;

internal static class DaemonThreads
{
    /// <summary>Cancels <paramref name="stop"/> under <paramref name="wakeLock"/> and joins the threads
    /// <paramref name="threads"/> gives there.</summary>
    /// <exception cref="InvalidOperationException">Called on one of the threads (a callback of its own run disposing
    /// the machine): a thread cannot join itself.</exception>
    public static void StopAndJoin(Lock wakeLock, CancellationTokenSource stop, Func<Thread?[]?> threads)
    {
        Thread?[]? started;
        lock (wakeLock)
        {
            stop.Cancel();
            started = threads();
        }
        foreach (var t in started ?? [])
        {
            if (t == Thread.CurrentThread)
            {
                throw new InvalidOperationException($"{t.Name} cannot stop itself: dispose the machine from another thread");
            }
            t?.Join();
        }
    }
}
