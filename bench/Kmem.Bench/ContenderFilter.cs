// Which benchmarks run: one whose contender library is not installed is left
// out of the run (with a note on the console) rather than failing it.
using System.Reflection;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Filters;

namespace Kmem.Bench;

/// <summary>Marks a benchmark that needs the named native contender (see <see cref="NativeContender.Known"/>).</summary>
[AttributeUsage(AttributeTargets.Method)]
internal sealed class ContenderAttribute(string name) : Attribute
{
    public string Name { get; } = name;
}

/// <summary>Leaves out the benchmarks whose contender library cannot be loaded.</summary>
public sealed class ContenderFilterConfig : ManualConfig
{
    private static readonly HashSet<string> s_noted = [];

    public ContenderFilterConfig() => AddFilter(new SimpleFilter(c => IsRunnable(c.Descriptor.WorkloadMethod)));

    private static bool IsRunnable(MethodInfo method)
    {
        if (method.GetCustomAttribute<ContenderAttribute>() is not { } needs)
        {
            return true;
        }
        if (NativeContender.TryLoad(needs.Name, out string? note) is not null)
        {
            return true;
        }
        lock (s_noted)
        {
            if (s_noted.Add(needs.Name))
            {
                Console.WriteLine($"// note: {note}");
            }
        }
        return false;
    }
}
