// Use after Dispose: every public entry point of Machine and of the handles it gives out
// throws ObjectDisposedException. The members are found by reflection, so a new one is
// covered without a change here; those reflection cannot call (span parameters, span or
// ref returns) are called by the explicit table below, and the test fails when a member
// is in neither. The public API files are read too: every member they list of these types
// must have been called or be exempt, with the reason written next to it.
using System.Reflection;

namespace Kmem.Tests.Lifetime;

public class DisposedEntryPointTests
{
    /// <summary>The types whose every public instance member must throw after Dispose.</summary>
    private static readonly Type[] s_guarded =
        [typeof(Machine), typeof(ProcFs), typeof(SysSlab), typeof(MachineMetrics), typeof(TaskStruct), typeof(CachedFile), typeof(PercpuCounter)];

    /// <summary>Members that may still be used after Dispose, and why.</summary>
    private static readonly Dictionary<string, string> s_exempt = new()
    {
        ["Machine.Dispose"] = "disposing twice is allowed and does nothing",
        ["CachedFile.Dispose"] = "closing a file of a disposed machine does nothing (the machine closed it)",
        ["PercpuCounter.Dispose"] = "destroying a counter of a disposed machine does nothing (its chunk is gone)",
        ["TaskStruct.Pid"] = "managed data copied at fork",
        ["TaskStruct.Comm"] = "managed data copied at fork",
        ["TaskStruct.OomScoreAdj"] = "managed data copied at fork",
        ["TaskStruct.IsKilled"] = "a managed flag: the last state the task reached",
        ["TaskStruct.HasExited"] = "a managed flag: the last state the task reached",
        ["TaskStruct.Rss"] = "a managed counter: the last value",
        ["TaskStruct.SwapEnts"] = "a managed counter: the last value",
        ["TaskStruct.TotalVm"] = "a managed counter: the last value",
        ["TaskStruct.PgtablesBytes"] = "a managed counter: the last value",
        ["CachedFile.Path"] = "managed data",
        ["CachedFile.Length"] = "a managed counter: the last value",
        ["CachedFile.CachedPages"] = "a managed counter: the last value",
        ["PercpuCounter.Batch"] = "a constant of the counter",
    };

    /// <summary>Members reflection cannot invoke (spans, ref returns), called directly.</summary>
    private static Dictionary<string, Action<Fixture>> Explicit() => new()
    {
        ["Machine.PageSpan"] = f => f.M.PageSpan(f.Page),
        ["Machine.Kmemdup(ReadOnlySpan`1,Gfp)"] = f => f.M.Kmemdup([1, 2, 3], Gfp.Kernel),
        ["Machine.KmemCacheAllocBulk"] = f => f.M.KmemCacheAllocBulk(f.Cache, Gfp.Kernel, new nint[2]),
        ["Machine.KmemCacheFreeBulk"] = f => f.M.KmemCacheFreeBulk(f.Cache, new nint[1]),
        ["Machine.MemcpyFromPage"] = f => f.M.MemcpyFromPage(new byte[8], f.Page, 0),
        ["Machine.MemcpyToPage"] = f => f.M.MemcpyToPage(f.Page, 0, new byte[8]),
        ["Machine.Vmap"] = f => f.M.Vmap([f.Page], VmFlags.Map, PageProt.PageKernel),
        ["Machine.VmMapRam"] = f => f.M.VmMapRam([f.Page], -1),
        ["Machine.PerCpu(PercpuPtr`1,Int32)"] = f => f.M.PerCpu(f.Ptr, 0),
        ["Machine.PerCpu(PercpuVar`1,Int32)"] = f => f.M.PerCpu(f.Var, 0),
        ["TaskStruct.Read"] = f => f.Task.Read(0x1000, new byte[8]),
        ["TaskStruct.Write"] = f => f.Task.Write(0x1000, new byte[8]),
        ["CachedFile.Read"] = f => f.File.Read(0, new byte[8]),
        ["CachedFile.Write"] = f => f.File.Write(0, new byte[8]),
        ["Machine.RcuReadLock"] = f => { using var scope = f.M.RcuReadLock(); },
    };

    /// <summary>What the calls are given: real objects of the machine, made before it is disposed.</summary>
    private sealed class Fixture
    {
        public required Machine M;
        public required Page Page;
        public required KmemCache Cache;
        public required Mempool Pool;
        public required TaskStruct Task;
        public required CachedFile File;
        public required PercpuPtr<int> Ptr;
        public required PercpuVar<int> Var;
        public required PercpuCounter Counter;
        public required ProcFs Proc;
        public required SysSlab SysSlab;
        public required MachineMetrics Metrics;
        public required Shrinker Shrinker;

        public object? Argument(ParameterInfo p)
        {
            Type t = p.ParameterType;
            return t switch
            {
                _ when t == typeof(Page) => Page,
                _ when t == typeof(KmemCache) => Cache,
                _ when t == typeof(Mempool) => Pool,
                _ when t == typeof(TaskStruct) => Task,
                _ when t == typeof(PercpuPtr) => Ptr.Untyped,
                _ when t == typeof(PercpuPtr<int>) => Ptr,
                _ when t == typeof(PercpuVar<int>) => Var,
                _ when t == typeof(Shrinker) => Shrinker,
                _ when t == typeof(string) => p.Name == "path" ? System.IO.Path.Combine(System.IO.Path.GetTempPath(), "kmem-disposed-" + Guid.NewGuid()) : "kmalloc-64",
                _ when t == typeof(Gfp) => Gfp.Kernel,
                _ when t == typeof(int) => 1,
                _ when t == typeof(long) => 1L << 20,
                _ when t == typeof(short) => (short)0,
                _ when t == typeof(uint) => 64u,
                _ when t == typeof(ulong) => 1UL,
                _ when t == typeof(nuint) => (nuint)64,
                _ when t == typeof(nint) => (nint)0x1000,
                _ when t == typeof(byte) => (byte)0,
                _ when t == typeof(bool) => true,
                _ when t == typeof(TimeSpan) => TimeSpan.FromMilliseconds(1),
                _ when t == typeof(CancellationToken) => CancellationToken.None,
                _ when t == typeof(SlabFlags) => SlabFlags.None,
                _ when t == typeof(VmFlags) => VmFlags.Map,
                _ when t == typeof(PageProt) => PageProt.PageKernel,
                _ when t == typeof(object) => null,
                _ when t == typeof(MempoolAllocFn) => (MempoolAllocFn)((_, _) => 0),
                _ when t == typeof(MempoolFreeFn) => (MempoolFreeFn)((_, _) => { }),
                _ when t == typeof(Action<nint>) => null,
                _ when t == typeof(Action) => (Action)(() => { }),
                _ => throw new InvalidOperationException($"no argument of type {t} for {p.Member.DeclaringType?.Name}.{p.Member.Name}: add one"),
            };
        }

        public object Target(Type t) =>
            t == typeof(Machine) ? M : t == typeof(ProcFs) ? Proc : t == typeof(SysSlab) ? SysSlab : t == typeof(MachineMetrics) ? Metrics
            : t == typeof(TaskStruct) ? Task : t == typeof(CachedFile) ? File : t == typeof(PercpuCounter) ? Counter
            : throw new InvalidOperationException(t.Name);
    }

    private static Fixture BootAndDispose(string dir)
    {
        var m = Machine.Boot(new MachineOptions { Memory = "256M", Cpus = 2, Seed = 1 });
        var cache = m.KmemCacheCreate("disposed_test", 64, 0, SlabFlags.None, null)!;
        var f = new Fixture
        {
            M = m,
            Page = m.AllocPage(Gfp.Kernel),
            Cache = cache,
            Pool = m.MempoolCreateKmallocPool(2, 64)!,
            Task = m.CreateTask("t")!,
            File = m.OpenFile(Path.Combine(dir, "file")),
            Ptr = m.AllocPercpu<int>(),
            Var = m.DefinePerCpu<int>("disposed_var"),
            Counter = m.PercpuCounterInit(0, Gfp.Kernel)!,
            Proc = m.Proc,
            SysSlab = m.SysSlab,
            Metrics = m.Metrics,
            Shrinker = new Shrinker("s", _ => 0, _ => 0),
        };
        f.Task.Mmap(1 << 16);
        m.Dispose();
        return f;
    }

    private static string Key(MemberInfo member, MethodInfo method)
    {
        string owner = method.DeclaringType!.Name;
        return $"{owner}.{member.Name}";
    }

    private static string Signature(MethodInfo method) =>
        $"{method.DeclaringType!.Name}.{method.Name}({string.Join(",", method.GetParameters().Select(p => p.ParameterType.Name.TrimEnd('&')))})";

    private static bool NeedsExplicitCall(MethodInfo method) =>
        method.ReturnType.IsByRef || method.ReturnType.IsByRefLike || method.GetParameters().Any(p => p.ParameterType.IsByRefLike || p.ParameterType.IsByRef);

    [Fact]
    public void EveryPublicEntryPointThrowsObjectDisposedExceptionAfterDispose()
    {
        string dir = Directory.CreateTempSubdirectory("kmem-disposed").FullName;
        try
        {
            var f = BootAndDispose(dir);
            var explicitCalls = Explicit();
            var called = new HashSet<string>(StringComparer.Ordinal);
            var failures = new List<string>();
            foreach (var type in s_guarded)
            {
                foreach (var method in type.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly))
                {
                    if (method.Name is "ToString" or "Equals" or "GetHashCode")
                    {
                        continue;
                    }
                    var member = method.IsSpecialName
                        ? (MemberInfo)type.GetProperties().First(p => p.GetMethod == method || p.SetMethod == method)
                        : method;
                    string key = Key(member, method);
                    if (s_exempt.ContainsKey(key))
                    {
                        called.Add(key);
                        continue;
                    }
                    Action call;
                    if (NeedsExplicitCall(method))
                    {
                        var entry = explicitCalls.FirstOrDefault(e => e.Key == Signature(method) || e.Key == key);
                        if (entry.Value is null)
                        {
                            failures.Add($"{Signature(method)}: takes or returns a span or a ref; add it to the explicit table");
                            continue;
                        }
                        call = () => entry.Value(f);
                    }
                    else
                    {
                        var m = method.IsGenericMethodDefinition ? method.MakeGenericMethod(typeof(int)) : method;
                        object?[] args = [.. m.GetParameters().Select(f.Argument)];
                        object target = f.Target(type);
                        call = () =>
                        {
                            try
                            {
                                m.Invoke(target, args);
                            }
                            catch (TargetInvocationException e) when (e.InnerException is not null)
                            {
                                throw e.InnerException;
                            }
                        };
                    }
                    called.Add(key);
                    Exception? thrown = Record.Exception(call);
                    if (thrown is not ObjectDisposedException)
                    {
                        failures.Add($"{Signature(method)}: {(thrown is null ? "returned normally" : thrown.GetType().Name + ": " + thrown.Message)}");
                    }
                }
            }
            Assert.True(failures.Count == 0, "after Dispose, these did not throw ObjectDisposedException:\n" + string.Join("\n", failures));
            // Every member the public API files list for these types was called (or is exempt).
            var listed = PublicApiMembers().Where(k => s_guarded.Any(t => k.StartsWith(t.Name + ".", StringComparison.Ordinal))).ToHashSet();
            Assert.Equal([], listed.Where(k => !called.Contains(k)).Order(StringComparer.Ordinal));
            Assert.True(called.Count > 200, $"only {called.Count} members were called: reflection found too few");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void AMemoryOwnerOfADisposedMachineThrowsAndItsDisposeDoesNothing()
    {
        var m = Machine.Boot(new MachineOptions { Memory = "128M", Cpus = 1, Seed = 1 });
        var owner = m.KmallocOwner(64, Gfp.Kernel)!;
        m.Dispose();
        Assert.Throws<ObjectDisposedException>(() => owner.GetSpan());
        Assert.Throws<ObjectDisposedException>(() => owner.Memory.Pin());
        ((IDisposable)owner).Dispose();
    }

    [Fact]
    public void DisposeTwiceAndDisposeAfterAFailedCallAreQuiet()
    {
        var m = Machine.Boot(new MachineOptions { Memory = "128M", Cpus = 1, Seed = 1 });
        Assert.Throws<ArgumentOutOfRangeException>(() => m.AllocPagesNode(5, Gfp.Kernel, 0));
        m.Dispose();
        m.Dispose();
        Assert.Throws<ObjectDisposedException>(() => m.Kmalloc(8, Gfp.Kernel));
    }

    /// <summary>"Kmem.Machine.Kmalloc(nuint size, Kmem.Gfp gfp) -> nint" → "Machine.Kmalloc"; properties by name.</summary>
    private static IEnumerable<string> PublicApiMembers()
    {
        foreach (string file in new[] { "PublicAPI.Shipped.txt", "PublicAPI.Unshipped.txt" })
        {
            foreach (string line in File.ReadLines(Path.Combine(Repository.Root(), "src", "Kmem", file)))
            {
                if (!line.StartsWith("Kmem.", StringComparison.Ordinal))
                {
                    continue;
                }
                string name = line["Kmem.".Length..].Split(['(', ' '], 2)[0];
                name = name.EndsWith(".get", StringComparison.Ordinal) || name.EndsWith(".set", StringComparison.Ordinal) ? name[..^4] : name;
                int generic = name.IndexOf('<', StringComparison.Ordinal);
                name = generic >= 0 ? name[..generic] : name;
                string[] parts = name.Split('.');
                if (parts.Length == 2)
                {
                    yield return name;
                }
            }
        }
    }
}
