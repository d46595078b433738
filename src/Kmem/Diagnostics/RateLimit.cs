// The kernel's ratelimit_state: at most Burst events per Interval. Thread-safe
// with one lock; used on failure paths only.
namespace Kmem;

internal sealed class RateLimit(TimeSpan interval, int burst)
{
    private readonly Lock _lock = new();
    private long _windowStart = long.MinValue;
    private int _printed;

    /// <summary>__ratelimit: true when this event may be reported.</summary>
    public bool Allow()
    {
        long now = Environment.TickCount64;
        lock (_lock)
        {
            if (_windowStart == long.MinValue || now - _windowStart >= (long)interval.TotalMilliseconds)
            {
                _windowStart = now;
                _printed = 0;
            }
            return _printed++ < burst;
        }
    }
}
