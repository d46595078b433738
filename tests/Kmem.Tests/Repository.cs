// The clone the tests run from: found by walking up from the test binary to the folder that
// holds Kmem.slnx. For the tests that read the source tree itself (layering, sizes, examples).
namespace Kmem.Tests;

internal static class Repository
{
    /// <summary>The repository's root folder.</summary>
    public static string Root()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Kmem.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new DirectoryNotFoundException("Kmem.slnx not found above the test binary");
    }
}
