// The machine: one booted instance of Kmem with its physical memory, CPUs,
// kernel log and the layers above them. Machine is the public face; each layer
// adds its kernel-named methods in a partial file in its own folder
// (PageAlloc/Machine.PageAlloc.cs, …). Boot validates every option before
// anything is allocated; Dispose gives every host mapping back.
// Lifetime: every public member enters _life (Physical/MachineLifetime.cs) before it
// touches the machine, so after Dispose each throws ObjectDisposedException, and Dispose
// waits for the calls in flight before it stops the daemons (joined, never abandoned)
// and unmaps. Nothing the layers or their threads hold refers back to Machine (the bug
// policy and the vmalloc factory capture the log and a weak reference), so a machine
// nobody disposed is collected, and its finalizer gives the memfd and mappings back.
using Kmem.Highmem;
using Kmem.PageAlloc;
using Kmem.Physical;
using Kmem.Reclaim;
using Kmem.Slab;
using Kmem.Vmalloc;

namespace Kmem;

/// <summary>
/// A booted Kmem machine: Linux 6.1 memory management over real bytes. Create one with
/// <see cref="Boot"/>; dispose it to release its memory.
/// </summary>
/// <remarks>
/// Every method may be called from any thread. The current CPU is the host's processor id modulo
/// <see cref="NrCpus"/> unless the thread pins one with <see cref="OnCpu"/>.
/// </remarks>
public sealed partial class Machine : IDisposable
{
    private readonly PhysMem _mem;
    private readonly CpuTopology _cpus;
    private readonly MachineLifetime _life;
    private readonly MachineOptions _options;
    private readonly long _memoryBytes;
    private readonly int _seed;
    private readonly Random _random;
    private readonly KernelLog _log;
    private readonly FaultAttr _failPageAlloc;
    private readonly FaultAttr _failslab;
    private readonly Action<KernelBugException> _bug;

    private Machine(MachineOptions options, Arch arch, long memoryBytes)
    {
        _options = options;
        Arch = arch;
        _memoryBytes = memoryBytes;
        _seed = options.Seed ?? System.Random.Shared.Next();
        _random = new Random(_seed);
        var log = _log = new KernelLog(echo: options.Console);
        _cpus = new CpuTopology(options.Cpus, options.Nodes);
        _failPageAlloc = options.FailPageAlloc is { } fpa
            ? FaultAttr.FromBootOption(fpa, "fail_page_alloc", _random, log)
            : new FaultAttr("fail_page_alloc", _random, log);
        // failslab draws from its own source: a Random may not be shared by two attributes' locks.
        var failslabRandom = new Random(_seed ^ 0x5f1ab);
        _failslab = options.Failslab is { } fs
            ? FaultAttr.FromBootOption(fs, "failslab", failslabRandom, log)
            : new FaultAttr("failslab", failslabRandom, log);
        uint maxPfn = (uint)(memoryBytes >> PhysMem.PageShift);
        uint lowmem = arch.LowmemLimit == ulong.MaxValue ? maxPfn : (uint)Math.Min(maxPfn, arch.LowmemLimit >> PhysMem.PageShift);
        _mem = new PhysMem(maxPfn, lowmem, arch.PageblockOrder);
        _life = _mem.Lifetime;
        _bug = BugPolicy(_log, options.OnBug);
        try
        {
            Highmem = new HighmemMaps(_mem, arch, _cpus, _log, _bug);
            // The page allocator makes its reclaimer at the end of its constructor (see PageAllocator.cs). The
            // lambda captures locals only, and the vmalloc factory holds the machine weakly: kswapd's thread and
            // the metrics' meter reach the reclaimer, and must not keep the machine alive.
            var self = new WeakReference<Machine>(this);
            var (mem, highmem, vmalloc, slab) = (_mem, Highmem, VmallocFactory(self), SlabFactory(self));
            MmLayer? mm = null;
            PageAllocator = new PageAllocator(options, arch, mem, _cpus, log, _failPageAlloc, _bug,
                pa => mm = new MmLayer(options, mem, pa, log, highmem, vmalloc, slab));
            Mm = mm!;
            Mempools = new Mempools(_mem, PageAllocator, _cpus, _log, _bug);
            SlabLayer = options.Slab switch
            {
                SlabAllocator.Slub => new Slub(PageAllocator, _log, _bug, _failslab, SlubThreadCacheBytes(options, memoryBytes), _seed),
                SlabAllocator.Slob => new Slob(PageAllocator, _log, _bug),
                SlabAllocator.Slab => new ArraySlab(PageAllocator, _log, _bug, _failslab),
                _ => null,
            };
            _slubFast = (SlabLayer as Slub)?.Fast;
            _arrayFast = (SlabLayer as ArraySlab)?.Fast;
            RcuInit();
        }
        catch
        {
            GC.SuppressFinalize(this);
            _life.Shutdown();
            Highmem?.Dispose();
            _mem.Dispose();
            throw;
        }
    }

    /// <summary>A machine nobody disposed: its daemons are stopped and joined and its host memory given back.</summary>
    ~Machine()
    {
        try
        {
            Release(finalizing: true);
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException or IOException)
        {
            // A finalizer must not throw; what could not be released goes with the process.
        }
    }

    /// <summary>Boots a machine.</summary>
    /// <param name="options">The configuration; null boots the default (1 GiB, 2 CPUs, one node, X64, SLUB).</param>
    /// <exception cref="MachineOptionException">An option is invalid; the message names it and its limit.</exception>
    public static Machine Boot(MachineOptions? options = null)
    {
        options ??= new MachineOptions();
        var arch = Arch.For(options.Preset);
        long memory = MachineOptionChecks.Validate(options, arch);
        return new Machine(options, arch, memory);
    }

    /// <summary>The options the machine was booted with.</summary>
    public MachineOptions Options { get { _life.ThrowIfDisposed(); return _options; } }

    /// <summary>RAM size in bytes.</summary>
    public long MemoryBytes { get { _life.ThrowIfDisposed(); return _memoryBytes; } }

    /// <summary>The architecture preset.</summary>
    public Preset Preset { get { _life.ThrowIfDisposed(); return _options.Preset; } }

    /// <summary>Number of possible CPUs.</summary>
    public int NrCpus { get { _life.ThrowIfDisposed(); return _cpus.Count; } }

    /// <summary>Number of NUMA nodes.</summary>
    public int NrNodes { get { _life.ThrowIfDisposed(); return PageAllocator.Nodes.Length; } }

    /// <summary>The seed every random choice of this machine derives from.</summary>
    public int Seed { get { _life.ThrowIfDisposed(); return _seed; } }

    /// <summary>The machine's seeded random source (fault injection, workloads).</summary>
    public Random Random { get { _life.ThrowIfDisposed(); return _random; } }

    /// <summary>The kernel log (what dmesg shows).</summary>
    public KernelLog Log { get { _life.ThrowIfDisposed(); return _log; } }

    /// <summary>fail_page_alloc: fault injection for the page allocator (/sys/kernel/debug/fail_page_alloc).</summary>
    public FaultAttr FailPageAlloc { get { _life.ThrowIfDisposed(); return _failPageAlloc; } }

    /// <summary>failslab: fault injection for every slab allocation (/sys/kernel/debug/failslab): probability,
    /// interval, times, space (counted in object sizes), verbose, ignore-gfp-wait (default true) and cache-filter
    /// (only caches with <see cref="SlabFlags.Failslab"/>). Large kmallocs go to the page allocator and
    /// <see cref="FailPageAlloc"/> instead.</summary>
    public FaultAttr Failslab { get { _life.ThrowIfDisposed(); return _failslab; } }

    /// <summary>smp_processor_id(): the CPU the calling thread runs on, as this machine sees it.</summary>
    public int CurrentCpu { get { _life.ThrowIfDisposed(); return _cpus.Current; } }

    internal Arch Arch { get; }
    internal PhysMem Mem => _mem;
    internal CpuTopology Cpus => _cpus;
    internal PageAllocator PageAllocator { get; }
    /// <summary>kmap, kmap_local and the page copy helpers (mapping primitives, below the slab layer).</summary>
    internal HighmemMaps Highmem { get; }
    /// <summary>Mempool creation and the pool checks.</summary>
    internal Mempools Mempools { get; }
    /// <summary>The slab layer (SLUB, SLAB or SLOB, as booted); null when this build lacks the chosen one.</summary>
    internal SlabBackend? SlabLayer { get; }

    /// <summary>Pins the calling thread to <paramref name="cpu"/> until the returned scope is disposed.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The CPU does not exist.</exception>
    public CpuScope OnCpu(int cpu) { _life.ThrowIfDisposed(); return _cpus.Pin(cpu); }

    /// <summary>
    /// A layer's per-machine state, created on first use: read without a lock once it exists, created at
    /// most once under the layer's lock, and never after the layer was disposed. <paramref name="create"/>
    /// should be a static lambda, so that the fast path allocates nothing.
    /// </summary>
    internal T CreateOnce<T>(ref T? field, Lock gate, ref bool disposed, Func<Machine, T> create)
        where T : class
    {
        if (Volatile.Read(ref field) is { } existing)
        {
            return existing;
        }
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (field is null)
            {
                Volatile.Write(ref field, create(this));
            }
            return field;
        }
    }

    /// <summary>The machine's policy for a kernel bug: throw, or log and carry on.</summary>
    internal void Bug(KernelBugException bug) => _bug(bug);

    /// <summary>The vmalloc space for the reclaim layer (X64's kernel stacks), made on first use; through a weak
    /// reference, since the layers must not keep the machine alive.</summary>
    private static Func<VmapSpace> VmallocFactory(WeakReference<Machine> self) =>
        () => self.TryGetTarget(out var m) ? m.VmallocSpace : throw new ObjectDisposedException(nameof(Machine));

    /// <summary>The slab layer for reclaim's dentry and inode caches, reached weakly like <see cref="VmallocFactory"/>.</summary>
    private static Func<SlabBackend?> SlabFactory(WeakReference<Machine> self) =>
        () => self.TryGetTarget(out var m) ? m.SlabLayer : null;

    /// <summary>The bug policy the layers get: it captures the log and the option, not the machine.</summary>
    private static Action<KernelBugException> BugPolicy(KernelLog log, OnBug onBug) => bug =>
    {
        log.Printk(bug.Report);
        if (onBug == OnBug.Throw)
        {
            throw bug;
        }
    };

    /// <summary>Releases the machine's memory and every host mapping. Calls in flight on other threads finish
    /// first; every later call throws <see cref="ObjectDisposedException"/>. The machine's threads (kswapd,
    /// kcompactd) are stopped and joined before any memory is unmapped. A second call does nothing.</summary>
    /// <exception cref="InvalidOperationException">Called from inside one of the machine's own calls (a
    /// constructor, shrinker or mempool callback), which would wait for itself.</exception>
    public void Dispose()
    {
        Release(finalizing: false);
        GC.SuppressFinalize(this);
    }

    private void Release(bool finalizing)
    {
        if (!_life.Shutdown())
        {
            return;
        }
        if (finalizing)
        {
            // Only host resources: the files and streams the machine wrote may be finalized already.
            Mm.StopDaemons();
        }
        else
        {
            Mm.Dispose();
        }
        DisposeProc();
        Highmem.Dispose();
        DisposeVmalloc();
        _mem.Dispose();
    }

    /// <summary>The thread magazines' budget: the option, or 1/64 of the memory within 4M..64M.</summary>
    private static long SlubThreadCacheBytes(MachineOptions o, long memory) =>
        o.SlubThreadCache is { } text ? MachineOptions.ParseSize(text, "SlubThreadCache") : Math.Clamp(memory / 64, 4L << 20, 64L << 20);
}
