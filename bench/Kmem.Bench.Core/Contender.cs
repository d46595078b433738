// The contenders of the quick comparison: Kmem (kmalloc and kmem_cache on each
// slab backend, the page allocator, vmalloc) and what a .NET program would use
// instead (glibc two ways, mimalloc, jemalloc, tcmalloc, ArrayPool, new byte[]).
// A contender that cannot run here (a missing library, a slab backend not in
// this build) is left out with a note. The set owns the machines it boots.
using System.Globalization;

namespace Kmem.Bench;

/// <summary>What a contender is, for the targets: Kmem's own, or an allocator people would use instead.</summary>
internal enum ContenderKind
{
    Kmem,
    Host,
    /// <summary>The bare thread-local freelist (<see cref="FloorAllocator"/>): the language's limit, not a rival.</summary>
    Floor,
}

/// <summary>One allocator in the comparison.</summary>
internal abstract class Contender(string name, ContenderKind kind)
{
    /// <summary>The name shown in tables and JSON.</summary>
    public string Name { get; } = name;

    public ContenderKind Kind { get; } = kind;

    /// <summary>The largest object this contender is asked for (kmem_cache classes stop at 4 KiB).</summary>
    public int MaxSize { get; init; } = int.MaxValue;

    /// <summary>Whether it only takes part in the page-sized rows (the page allocator and vmalloc).</summary>
    public bool PagesOnly { get; init; }

    /// <summary>Kmem's machine, for pinning threads to its CPUs and reading its slab pages; null for the others.</summary>
    public Machine? Machine { get; init; }

    /// <summary>Whether this contender takes part in <paramref name="w"/>.</summary>
    public bool Supports(Workload w) => w.MaxSize <= MaxSize && (!PagesOnly || w.PageRow) && !(Kind == ContenderKind.Floor && w is CrossThreadWorkload);

    /// <summary>Whether Kmem's worker threads are pinned to the machine's CPUs (OnCpu). By default they are not:
    /// each worker is bound to its own host core, so the machine's current CPU (the processor id modulo the CPU
    /// count) is already the worker's, and an unpinned thread allocates as a .NET program's threads do, through
    /// SLUB's thread magazines; a pinned thread stands for a CPU and bypasses them.</summary>
    public bool PinThreads { get; init; }

    /// <summary>Pins the calling thread to CPU <paramref name="cpu"/> of Kmem's machine when <see cref="PinThreads"/>;
    /// otherwise, and for the other contenders, null.</summary>
    public IDisposable? EnterCpu(int cpu) => PinThreads ? Machine?.OnCpu(cpu) : null;

    /// <summary>The memory this contender holds now, like for like: the process's VmRSS, Kmem's too (its slab pages
    /// as the memfd pages they touched, with its metadata, magazines and allocation maps beside them).</summary>
    public static long HeldBytes() => ProcStatus.ResidentBytes();

    /// <summary>Sets up <paramref name="w"/> for this contender (generic over the allocator struct).</summary>
    public abstract WorkloadRun Create(Workload w, TwoThreads threads);

    /// <summary>The memory held on the batch or larson workload (<see cref="MemoryProbe"/>).</summary>
    public abstract MemoryFigures MeasureMemory(string workload);

    /// <summary>The value of a "Name:   123 kB" line of /proc/meminfo text, in bytes.</summary>
    public static long MeminfoBytes(string meminfo, string field)
    {
        foreach (string line in meminfo.Split('\n'))
        {
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
            {
                string[] parts = line[(field.Length + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return long.Parse(parts[0], CultureInfo.InvariantCulture) * 1024;
            }
        }
        throw new InvalidOperationException($"no {field} line in meminfo");
    }
}

/// <summary>A contender whose allocator is the struct <typeparamref name="TAlloc"/>.</summary>
internal sealed class Contender<TAlloc, THandle>(string name, ContenderKind kind, TAlloc allocator) : Contender(name, kind)
    where TAlloc : struct, IAllocator<THandle>
{
    public TAlloc Allocator { get; } = allocator;

    public override WorkloadRun Create(Workload w, TwoThreads threads) => w.Create<TAlloc, THandle>(this, threads);

    public override MemoryFigures MeasureMemory(string workload) => MemoryProbe.Measure(this, workload);
}

/// <summary>VmRSS of this process.</summary>
internal static class ProcStatus
{
    public static long ResidentBytes()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                string kb = line["VmRSS:".Length..].Trim().Split(' ')[0];
                return long.Parse(kb, CultureInfo.InvariantCulture) * 1024;
            }
        }
        throw new InvalidOperationException("no VmRSS line in /proc/self/status");
    }
}

/// <summary>The contenders that can run here, in table order, and a note for each one left out.</summary>
internal sealed class ContenderSet : IDisposable
{
    /// <summary>The names every run knows, in table order.</summary>
    public static IReadOnlyList<string> AllNames { get; } =
    [
        "SLUB kmalloc", "SLUB cache", "SLAB kmalloc", "SLAB cache", "SLOB kmalloc", "SLOB cache",
        "Kmem pages", "Kmem vmalloc",
        "glibc NativeMemory", "glibc malloc", "mimalloc", "jemalloc", "tcmalloc", "ArrayPool", "new byte[]", FloorName,
    ];

    /// <summary>The name of the floor contender (<see cref="FloorAllocator"/>).</summary>
    public const string FloorName = "C# floor";

    private readonly List<Machine> _machines = [];

    public List<Contender> Contenders { get; } = [];

    public List<string> Notes { get; } = [];

    /// <summary>Builds the contenders whose names pass <paramref name="wanted"/> (all when null).</summary>
    public static ContenderSet Create(Func<string, bool>? wanted = null, bool pinKmemThreads = false) =>
        Create(wanted, NativeLibraries.Glibc, NativeLibraries.Known, pinKmemThreads);

    /// <summary>As <see cref="Create(Func{string, bool}?, bool)"/>, with the native libraries given.</summary>
    public static unsafe ContenderSet Create(Func<string, bool>? wanted, NativeLibrarySpec glibc, IReadOnlyList<NativeLibrarySpec> natives,
        bool pinKmemThreads = false)
    {
        wanted ??= _ => true;
        var set = new ContenderSet();
        foreach (var backend in (ReadOnlySpan<SlabAllocator>)[SlabAllocator.Slub, SlabAllocator.Slab, SlabAllocator.Slob])
        {
            string prefix = backend.ToString().ToUpperInvariant();
            bool kmalloc = wanted($"{prefix} kmalloc"), cache = wanted($"{prefix} cache");
            if (!kmalloc && !cache)
            {
                continue;
            }
            var m = set.Boot(backend);
            if (!SlabWorks(m, out string? why))
            {
                set.Notes.Add($"{prefix} skipped: {why}");
                continue;
            }
            if (kmalloc)
            {
                set.Contenders.Add(new Contender<KmallocAllocator, nint>($"{prefix} kmalloc", ContenderKind.Kmem, new(m)) { Machine = m, PinThreads = pinKmemThreads });
            }
            if (cache)
            {
                try
                {
                    set.Contenders.Add(new Contender<KmemCacheAllocator, nint>($"{prefix} cache", ContenderKind.Kmem, new(m))
                    {
                        Machine = m,
                        MaxSize = KmemCacheAllocator.MaxSize,
                        PinThreads = pinKmemThreads,
                    });
                }
                catch (InvalidOperationException e)
                {
                    set.Notes.Add($"{prefix} cache skipped: {e.Message}");
                }
            }
        }
        if (wanted("Kmem pages") || wanted("Kmem vmalloc"))
        {
            var m = set.Boot(SlabAllocator.Slub);
            if (wanted("Kmem pages"))
            {
                set.Contenders.Add(new Contender<PagesAllocator, nint>("Kmem pages", ContenderKind.Kmem, new(m)) { Machine = m, PagesOnly = true, PinThreads = pinKmemThreads });
            }
            if (wanted("Kmem vmalloc"))
            {
                set.Contenders.Add(new Contender<VmallocAllocator, nint>("Kmem vmalloc", ContenderKind.Kmem, new(m)) { Machine = m, PagesOnly = true, PinThreads = pinKmemThreads });
            }
        }
        if (wanted("glibc NativeMemory"))
        {
            set.Contenders.Add(new Contender<NativeMemoryAllocator, nint>("glibc NativeMemory", ContenderKind.Host, default));
        }
        foreach (var spec in natives.Prepend(glibc))
        {
            if (!wanted(spec.Name))
            {
                continue;
            }
            if (NativeLibraries.TryResolve(spec, spec.MallocSymbol, spec.FreeSymbol, out nint malloc, out nint free, out string? note))
            {
                set.Contenders.Add(new Contender<FunctionPointerAllocator, nint>(spec.Name, ContenderKind.Host, new(malloc, free)));
            }
            else
            {
                set.Notes.Add(note!);
            }
        }
        if (wanted("ArrayPool"))
        {
            set.Contenders.Add(new Contender<ArrayPoolAllocator, byte[]>("ArrayPool", ContenderKind.Host, default));
        }
        if (wanted("new byte[]"))
        {
            set.Contenders.Add(new Contender<GcAllocator, byte[]>("new byte[]", ContenderKind.Host, default));
        }
        if (wanted(FloorName))
        {
            // Objects freed on another thread would pile up on that thread's lists: the floor sits out the cross-thread row.
            set.Contenders.Add(new Contender<FloorAllocator, nint>(FloorName, ContenderKind.Floor, default) { MaxSize = FloorAllocator.MaxSize });
        }
        return set;
    }

    /// <summary>Whether the slab API works on <paramref name="m"/>: a backend not in this build throws
    /// InvalidOperationException from every slab call.</summary>
    public static bool SlabWorks(Machine m, out string? why)
    {
        try
        {
            m.Kfree(m.Kmalloc(64, Gfp.Kernel));
            why = null;
            return true;
        }
        catch (InvalidOperationException e)
        {
            why = e.Message;
            return false;
        }
    }

    private Machine Boot(SlabAllocator backend)
    {
        var m = Machine.Boot(new MachineOptions { Memory = "1G", Cpus = TwoThreads.Count, Preset = Preset.X64, Seed = 1, Slab = backend });
        _machines.Add(m);
        return m;
    }

    public void Dispose()
    {
        foreach (var m in _machines)
        {
            m.Dispose();
        }
        _machines.Clear();
    }
}
