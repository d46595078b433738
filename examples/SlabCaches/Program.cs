// docs/slab.md's programs: kmalloc and a kmem_cache, SLUB's /sys/kernel/slab, and a slab object
// handed out as Memory<byte>. Run with an argument slub, slab or slob to pick the allocator (the
// sysfs part runs on SLUB only, as Linux has /sys/kernel/slab only there).
using Kmem;

SlabAllocator allocator = args.Length > 0 ? Enum.Parse<SlabAllocator>(args[0], ignoreCase: true) : SlabAllocator.Slub;
using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Slab = allocator, Seed = 1 });

nint p = m.Kmalloc(100, Gfp.Kernel);                 // from kmalloc-128; 0 on failure
KmemCache cache = m.KmemCacheCreate("my_objects", 72, 0, SlabFlags.HwcacheAlign, null)!;
nint obj = m.KmemCacheAlloc(cache, Gfp.Kernel);
m.KmemCacheFree(cache, obj);
m.Kfree(p);
Console.WriteLine($"{allocator}: ksize of a 100-byte kmalloc would be {KsizeOf(m, 100)}; my_objects holds {cache.ObjectSize}-byte objects");

if (m.SysSlab.Available)
{
    Console.Write(m.SysSlab.Read("kmalloc-64", "objs_per_slab"));     // "64\n"
    Console.Write(m.SysSlab.Read("kmalloc-64", "partial"));           // e.g. "3 N0=3\n": total, then per node (NUMA)
    Console.Write(m.SysSlab.Read("kmalloc-64", "slabs_cpu_partial")); // e.g. "64(2) C0=32(1) C1=32(1)\n"
    string dump = m.SysSlab.Dump("kmalloc-64");                        // "aliases:0\nalign:64\n…", as grep . * prints it
    var entries = m.SysSlab.List();                                    // directories and links, ls order
    m.SysSlab.Write("kmalloc-64", "shrink", "1");                      // kmem_cache_shrink
    Console.WriteLine($"kmalloc-64 has {dump.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length} attributes; /sys/kernel/slab lists {entries.Count} entries");
}

using var stream = new MemoryStream(Enumerable.Range(0, 72).Select(i => (byte)i).ToArray());
using (var owner = m.KmemCacheAllocOwner(cache, Gfp.Kernel)!)
{
    Memory<byte> mem = owner.Memory;          // hand it to a stream, a pipe, async code
    await stream.ReadExactlyAsync(mem);
    Console.WriteLine($"read {mem.Length} bytes into a slab object; its last byte is {mem.Span[^1]}");
}                                             // kmem_cache_free, exactly once

m.KmemCacheDestroy(cache);
Console.WriteLine($"kernel log lines: {m.Log.Lines.Count}");

static int KsizeOf(Machine m, int size)
{
    nint p = m.Kmalloc((nuint)size, Gfp.Kernel);
    int ksize = (int)m.Ksize(p);
    m.Kfree(p);
    return ksize;
}
