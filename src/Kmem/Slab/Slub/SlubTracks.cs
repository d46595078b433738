// SLUB's alloc/free tracks (mm/slub.c set_track, print_tracking, print_track; lib/stackdepot.c, 6.1): a
// SLAB_STORE_USER object keeps two struct track records after its free pointer (the caller, a stack depot
// handle, the CPU, the pid and the time in jiffies); the caller names and the stacks are interned here once
// per machine, as the kernel's stack depot keeps each stack once. The records live in the objects' bytes and
// are written by whoever holds the object; the depot's tables change under their own lock.
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Kmem.Slab;

/// <summary>The tracks of SLAB_STORE_USER objects and their stack depot, for one machine's SLUB.</summary>
/// <param name="cpus">The machine's CPUs (a track names the CPU it was set on).</param>
internal sealed unsafe class SlubTracks(CpuTopology cpus)
{
    private readonly long _bootTimestamp = Stopwatch.GetTimestamp();
    // The "addresses" and stack depot of tracks: method names by id (id 0 = none), stacks by handle.
    private readonly Lock _depotLock = new();
    private readonly Dictionary<string, uint> _callerIds = [];
    private readonly List<string> _callerNames = [""];
    private readonly Dictionary<string, uint> _stackHandles = [];
    private readonly List<string[]> _stacks = [[]];

    /// <summary>The track <paramref name="item"/> (0 = alloc, 1 = free) of an object: after the free pointer.</summary>
    public static nint TrackAt(KmemCache s, nint obj, int item) => obj + (nint)(SlubLayout.InfoEnd(s) + (uint)item * KmemCache.TrackSize);

    /// <summary>jiffies at HZ=250, from the slab layer's creation.</summary>
    public ulong Jiffies => (ulong)(Stopwatch.GetElapsedTime(_bootTimestamp).TotalMilliseconds / 4);

    /// <summary>set_track: the caller (the first method outside Kmem on the stack), its stack in the depot, the
    /// CPU, the thread as pid and the time.</summary>
    public void Set(KmemCache s, nint obj, int item)
    {
        var (caller, handle) = CaptureCaller();
        nint t = TrackAt(s, obj, item);
        *(ulong*)t = caller;
        *(uint*)(t + 8) = handle;
        *(int*)(t + 12) = cpus.Current;
        *(int*)(t + 16) = Environment.CurrentManagedThreadId;
        *(int*)(t + 20) = 0;
        *(ulong*)(t + 24) = Jiffies;
    }

    /// <summary>The API entry point as its caller called it. Machine's entry points keep their slow halves out of line
    /// (KmemCacheAllocSlow, KmallocGuarded, …); once the JIT inlines an entry point into its caller, such a half is
    /// the outermost library frame, and the stack would name it instead of the entry point depending on tiering.</summary>
    private static string EntryName(System.Reflection.MethodBase m)
    {
        string name = m.Name;
        if (m.IsPublic)
        {
            return name;
        }
        foreach (string half in (ReadOnlySpan<string>)["Guarded", "Slow"])
        {
            if (name.Length > half.Length && name.EndsWith(half, StringComparison.Ordinal))
            {
                return name[..^half.Length];
            }
        }
        return name;
    }

    /// <summary>The calling method outside the Kmem library and the stack down to it, interned.</summary>
    private (uint Caller, uint Handle) CaptureCaller()
    {
        var frames = new StackTrace(2, false).GetFrames();
        var lib = typeof(SlubTracks).Assembly;
        // The stack is kept from the API entry point (the outermost library frame) outwards, as the kernel's
        // stack depot keeps it from kmem_cache_alloc/kmalloc; the caller is the first frame outside.
        int entry = -1;
        for (int i = 0; i < frames.Length; i++)
        {
            if (frames[i].GetMethod()?.DeclaringType?.Assembly == lib)
            {
                entry = i;
            }
            else if (entry >= 0)
            {
                break;
            }
        }
        var names = new List<string>(16);
        for (int i = Math.Max(entry, 0); i < frames.Length && names.Count < 16; i++)
        {
            if (frames[i].GetMethod() is { } m)
            {
                names.Add(i == entry ? EntryName(m) : m.Name);
            }
        }
        string caller = names.Count > 1 ? names[1] : names.Count == 1 ? names[0] : "?";
        string stackKey = string.Join('\n', names);
        lock (_depotLock)
        {
            if (!_callerIds.TryGetValue(caller, out uint id))
            {
                id = (uint)_callerNames.Count;
                _callerNames.Add(caller);
                _callerIds[caller] = id;
            }
            if (!_stackHandles.TryGetValue(stackKey, out uint handle))
            {
                handle = (uint)_stacks.Count;
                _stacks.Add([.. names]);
                _stackHandles[stackKey] = handle;
            }
            return (id, handle);
        }
    }

    /// <summary>print_tracking: the alloc and free tracks that were ever set.</summary>
    public void Print(KmemCache s, nint obj, StringBuilder sb)
    {
        if ((s.Flags & SlabFlags.StoreUser) == 0)
        {
            return;
        }
        ulong now = Jiffies;
        PrintTrack("Allocated", TrackAt(s, obj, 0), now, sb);
        PrintTrack("Freed", TrackAt(s, obj, 1), now, sb);
    }

    private void PrintTrack(string what, nint t, ulong now, StringBuilder sb)
    {
        ulong addr = *(ulong*)t;
        if (addr == 0)
        {
            return;
        }
        uint handle = *(uint*)(t + 8);
        string name;
        string[] stack;
        lock (_depotLock)
        {
            name = addr < (ulong)_callerNames.Count ? _callerNames[(int)addr] : $"0x{addr:x}";
            stack = handle < (uint)_stacks.Count ? _stacks[(int)handle] : [];
        }
        ulong when = *(ulong*)(t + 24);
        sb.Append(CultureInfo.InvariantCulture, $"{what} in {name} age={now - when} cpu={*(int*)(t + 12)} pid={*(int*)(t + 16)}\n");
        if (stack.Length == 0)
        {
            sb.Append("object allocation/free stack trace missing\n");
        }
        foreach (string frame in stack)
        {
            sb.Append(' ').Append(frame).Append('\n');
        }
    }

    /// <summary>The name of the track's caller (for tests and the sysfs view), or null when never set.</summary>
    public string? Caller(KmemCache s, nint obj, bool free)
    {
        if ((s.Flags & SlabFlags.StoreUser) == 0)
        {
            return null;
        }
        ulong addr = *(ulong*)TrackAt(s, obj, free ? 1 : 0);
        lock (_depotLock)
        {
            return addr == 0 || addr >= (ulong)_callerNames.Count ? null : _callerNames[(int)addr];
        }
    }

    /// <summary>The caller's name and the stack of a track's ids ("" and none for unknown ids).</summary>
    public (string Name, string[] Stack) Lookup(uint caller, uint handle)
    {
        lock (_depotLock)
        {
            return (caller < (uint)_callerNames.Count ? _callerNames[(int)caller] : "",
                handle < (uint)_stacks.Count ? _stacks[(int)handle] : []);
        }
    }
}
