// The machine's printk: a bounded ring of kernel-style messages (what dmesg shows),
// optionally echoed to a TextWriter. Thread-safe: one lock around the ring.
namespace Kmem;

/// <summary>
/// The kernel log of one machine: warnings, bug reports and allocation failures
/// land here in the kernel's wording. <see cref="Lines"/> is what <c>dmesg</c> would show.
/// </summary>
public sealed class KernelLog
{
    private readonly Lock _lock = new();
    private readonly Queue<string> _ring = new();
    private readonly int _capacity;
    private readonly TextWriter? _echo;

    /// <summary>Creates a log that keeps the newest <paramref name="capacity"/> lines.</summary>
    /// <param name="capacity">How many lines to keep.</param>
    /// <param name="echo">Where each line is also written as it is logged, or null.</param>
    public KernelLog(int capacity = 4096, TextWriter? echo = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        _capacity = capacity;
        _echo = echo;
    }

    /// <summary>Raised after each line is logged (for tools that follow the log).</summary>
    public event Action<string>? LineLogged;

    /// <summary>Logs one message; a message with newlines becomes several lines.</summary>
    public void Printk(string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        foreach (var line in message.Split('\n'))
        {
            lock (_lock)
            {
                if (_ring.Count == _capacity)
                {
                    _ring.Dequeue();
                }
                _ring.Enqueue(line);
                _echo?.WriteLine(line);
            }
            LineLogged?.Invoke(line);
        }
    }

    /// <summary>A copy of the lines kept, oldest first.</summary>
    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lock)
            {
                return [.. _ring];
            }
        }
    }

    /// <summary>True when some kept line contains <paramref name="text"/>.</summary>
    public bool Contains(string text)
    {
        lock (_lock)
        {
            return _ring.Any(l => l.Contains(text, StringComparison.Ordinal));
        }
    }

    /// <summary>Forgets every kept line (dmesg -c).</summary>
    public void Clear()
    {
        lock (_lock)
        {
            _ring.Clear();
        }
    }
}
